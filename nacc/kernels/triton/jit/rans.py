"""rANS decode step in Triton (spec: ``nacc.kernels.cpu.rans``), for one lane or a vector of
lanes.  ``state`` is uint64, ``pos`` int64 (words not yet consumed, read from the back of the
lane's words at ``words_ptr + woff``); words are stored as int64 holding u32 values."""
import triton.language as tl

from nacc.spec import CODER_PRECISION

from .common import const, helper

PREC = const(CODER_PRECISION)                      # the coder's precision, 24
TOTAL = const(1 << CODER_PRECISION)                # a coded table's total, 2**24
QMASK = const((1 << CODER_PRECISION) - 1)          # the quantile bits of a state


@helper
def quantile(state, SHIFT):
    """Quantile of the next symbol in a table of total 2**(PREC - SHIFT), as int64."""
    return ((state & QMASK) >> SHIFT).to(tl.int64)


@helper
def advance(state, pos, words_ptr, woff, start, freq, SHIFT, mask):
    """Consume the symbol with interval ``(start, freq)`` (int64, table precision); returns
    the new ``(state, pos)``.  ``mask`` is False for lanes that must not move."""
    q = state & QMASK
    s24 = (start << SHIFT).to(tl.uint64)
    f24 = (freq << SHIFT).to(tl.uint64)
    nxt = (state >> PREC) * f24 + q - s24
    need = mask & (nxt < 4294967296) & (pos > 0)
    word = tl.load(words_ptr + woff + pos - 1, mask=need, other=0)
    nxt = tl.where(need, (nxt << 32) | word.to(tl.uint64), nxt)
    state = tl.where(mask, nxt, state)
    pos = tl.where(need, pos - 1, pos)
    return state, pos
