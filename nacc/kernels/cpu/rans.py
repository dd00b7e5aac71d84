"""rANS in numba, word-identical to constriction's ``stack.AnsCoder`` (u32 words, u64 state).

Spec (every quantity an unsigned integer; ``P`` is the coder precision, 24 in nacc):

* A symbol is coded from its interval ``(start, freq)`` in a table of total ``2**P``:
  ``start`` is the sum of the frequencies of the smaller symbols, ``freq >= 1`` its own.
* Encoding runs over the symbols in *reverse* order from ``state = 0``::

      if state >> (64 - P) >= freq:  emit(state & 0xFFFFFFFF); state >>= 32
      state = ((state // freq) << P) | (state % freq + start)

* The compressed words are the emitted words in emission order, then the low and the high
  32 bits of the final state; the high word is left out when it is zero, and both are left
  out when the state is zero.
* Decoding reads the words from the back: ``state`` is the last two words (high word last),
  or the single word, or 0.  Then per symbol, front to back::

      q = state & (2**P - 1)      # the quantile: the symbol is the s with start <= q < start + freq
      state = (state >> P) * freq + q - start
      if state < 2**32 and words remain:  state = (state << 32) | next word from the back

The functions ``dec_init``, ``dec_quantile`` and ``dec_advance`` are plain ``@njit``
functions so that predictor kernels can fuse table computation and decoding in one loop.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from nacc.kernels.cpu import compile_notice
from nacc.spec import CODER_PRECISION

compile_notice.install()    # every JIT kernel module imports this one
WORD_MASK = np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, nogil=True)
def encode(start, freq, precision):
    """Encode symbols given as intervals, in coding order. Returns the u32 words.

    ``start`` and ``freq`` are uint32 arrays of equal length (one entry per symbol, in the
    order the decoder will meet them); each table has total ``2**precision``.
    """
    n = start.shape[0]
    out = np.empty(n + 2, dtype=np.uint32)  # at most one word per symbol, plus the state
    n_out = 0
    state = np.uint64(0)
    p = np.uint64(precision)
    shift = np.uint64(64 - precision)
    for i in range(n - 1, -1, -1):
        f = np.uint64(freq[i])
        if (state >> shift) >= f:
            out[n_out] = np.uint32(state & WORD_MASK)
            n_out += 1
            state = state >> np.uint64(32)
        state = ((state // f) << p) | ((state % f) + np.uint64(start[i]))
    if state != np.uint64(0):
        out[n_out] = np.uint32(state & WORD_MASK)
        n_out += 1
        high = state >> np.uint64(32)
        if high != np.uint64(0):
            out[n_out] = np.uint32(high)
            n_out += 1
    return out[:n_out].copy()


@nb.njit(cache=True, nogil=True, inline="always")
def dec_init(words):
    """Decoder state from the compressed words: returns ``(state, pos)``; ``pos`` is the
    number of words not yet consumed (they are read from the back)."""
    pos = words.shape[0]
    state = np.uint64(0)
    if pos >= 2:
        state = (np.uint64(words[pos - 1]) << np.uint64(32)) | np.uint64(words[pos - 2])
        pos -= 2
    elif pos == 1:
        state = np.uint64(words[0])
        pos = 0
    return state, pos


@nb.njit(cache=True, nogil=True, inline="always")
def dec_quantile(state, precision):
    """The quantile in ``[0, 2**precision)`` that selects the next symbol."""
    return np.int64(state & np.uint64((1 << precision) - 1))


@nb.njit(cache=True, nogil=True, inline="always")
def dec_advance(state, pos, words, start, freq, precision):
    """Consume the symbol whose interval ``(start, freq)`` contains the current quantile."""
    q = state & np.uint64((1 << precision) - 1)
    state = (state >> np.uint64(precision)) * np.uint64(freq) + q - np.uint64(start)
    if state < np.uint64(1 << 32) and pos > 0:
        pos -= 1
        state = (state << np.uint64(32)) | np.uint64(words[pos])
    return state, pos


@nb.njit(cache=True, nogil=True, inline="always")
def dec_table(state, pos, words, table, precision):
    """Decode one symbol whose table ``table`` (V frequencies in symbol order, total
    ``2**precision``) is known: returns ``(symbol, state, pos)``."""
    s, acc = table_symbol(table, dec_quantile(state, precision))
    state, pos = dec_advance(state, pos, words, acc, table[s], precision)
    return s, state, pos


@nb.njit(cache=True, nogil=True, inline="always")
def table_symbol(table, q):
    """``(s, start)``: the symbol whose interval of ``table`` (frequencies in symbol order)
    holds the quantile ``q``, and where that interval starts (the last symbol when ``q`` is
    past every interval)."""
    acc = np.int64(0)
    s = 0
    v = table.shape[0]
    while s < v - 1 and acc + table[s] <= q:
        acc += table[s]
        s += 1
    return s, acc


@nb.njit(cache=True, nogil=True)
def find_symbol(cdf, q):
    """Largest ``s`` with ``cdf[s] <= q`` for a cumulative table ``cdf`` of length V+1
    (``cdf[0] = 0``, ``cdf[V] = total``); binary search."""
    lo = 0
    hi = cdf.shape[0] - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if cdf[mid] <= q:
            lo = mid
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True)
def decode_with_tables(words, tables, precision):
    """Decode ``tables.shape[0]`` symbols whose tables are all known up front (tests, static
    predictors). ``tables`` is an int32 (n, V) array with rows summing to ``2**precision``."""
    n, v = tables.shape
    out = np.empty(n, dtype=np.int32)
    cdf = np.zeros(v + 1, dtype=np.int64)
    state, pos = dec_init(words)
    for i in range(n):
        for s in range(v):
            cdf[s + 1] = cdf[s] + tables[i, s]
        q = dec_quantile(state, precision)
        s = find_symbol(cdf, q)
        out[i] = s
        state, pos = dec_advance(state, pos, words, cdf[s], tables[i, s], precision)
    return out


@nb.njit(cache=True, nogil=True)
def intervals_from_tables(tables, symbols, start, freq, offset):
    """Write ``start``/``freq`` of ``symbols`` under ``tables`` (n, V) at ``offset``."""
    n, v = tables.shape
    for i in range(n):
        s = symbols[i]
        acc = 0
        for k in range(s):
            acc += tables[i, k]
        start[offset + i] = acc
        freq[offset + i] = tables[i, s]


@nb.njit(cache=True, nogil=True)
def decode_step(state_pos, words, table, shift):
    """Decode one symbol under an int32 (V,) table of total ``2**(CODER_PRECISION - shift)``;
    the decoder state ``(state, pos)`` lives in the uint64[2] ``state_pos``
    (``nacc.coder.StepDecoder``)."""
    state = state_pos[0]
    pos = np.int64(state_pos[1])
    s, acc = table_symbol(table, dec_quantile(state, CODER_PRECISION) >> shift)
    state, pos = dec_advance(state, pos, words, acc << shift, np.int64(table[s]) << shift,
                             CODER_PRECISION)
    state_pos[0] = state
    state_pos[1] = np.uint64(pos)
    return s
