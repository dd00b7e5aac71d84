"""``prevframe``: adaptive integer counts conditioned on the token at the same position in
the previous frame.

Spec (all integers; P = 24, V = vocabulary, ``C = min(V, max(1, 2**22 // V))`` contexts):

* State: ``cond[C + 1, V]`` and ``order0[V]`` uint32 counts, all zero at the start.
* Context of a token: ``0`` in the first frame, else ``1 + (prev % C)`` where ``prev`` is the
  token at the same (row, column) one frame earlier.
* Score of symbol s: ``score[s] = 1 + 32 * cond[ctx, s] + order0[s]``; ``S = sum(score)``.
* Table: ``freq[s] = 1 + score[s] * (2**24 - V) // S`` (floor); the remainder
  ``2**24 - sum(freq)`` (always < V) goes to the first symbol of largest score.
* Update with the actual token x: ``cond[ctx, x] += 1``, ``order0[x] += 1``; when
  ``cond[ctx]`` sums to more than 4096 after the update, that row is halved (floor);
  likewise ``order0`` above 65536.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

from nacc.kernels.cpu import rans
from nacc.predictors.base import MAX_PRECISION, Predictor, Stepper, register

PRECISION = MAX_PRECISION   # the coder's full precision, 24
COND_LIMIT = 4096
ORDER0_LIMIT = 65536


def n_contexts(vocab: int) -> int:
    return min(vocab, max(1, 2**22 // vocab))


@njit(cache=True, nogil=True)
def _table(cond, order0, sums, ctx, out):
    """Fill ``out`` (int32[V]) with the table of context ``ctx``; returns nothing."""
    v = out.shape[0]
    total = np.int64(v) + 32 * np.int64(sums[ctx]) + np.int64(sums[-1])
    room = np.int64(1 << PRECISION) - v
    acc = np.int64(0)
    best = 0
    best_score = np.int64(-1)
    for s in range(v):
        score = 1 + 32 * np.int64(cond[ctx, s]) + np.int64(order0[s])
        f = 1 + score * room // total
        out[s] = f
        acc += f
        if score > best_score:
            best_score = score
            best = s
    out[best] += np.int32((1 << PRECISION) - acc)


@njit(cache=True, nogil=True)
def _update(cond, order0, sums, ctx, x):
    cond[ctx, x] += 1
    sums[ctx] += 1
    if sums[ctx] > COND_LIMIT:
        total = 0
        for s in range(cond.shape[1]):
            cond[ctx, s] >>= 1
            total += cond[ctx, s]
        sums[ctx] = total
    order0[x] += 1
    sums[-1] += 1
    if sums[-1] > ORDER0_LIMIT:
        total = 0
        for s in range(order0.shape[0]):
            order0[s] >>= 1
            total += order0[s]
        sums[-1] = total


@njit(cache=True, nogil=True)
def _context(flat, i, frame_size, n_ctx):
    if i < frame_size:
        return 0
    return 1 + flat[i - frame_size] % n_ctx


@njit(cache=True, nogil=True)
def _run_tables(flat, frame_size, n_ctx, vocab, state_cond, state_o0, state_sums, t, out):
    """Tables of frame ``t`` into ``out`` (H*W, V), updating the state with that frame."""
    for j in range(frame_size):
        i = t * frame_size + j
        ctx = _context(flat, i, frame_size, n_ctx)
        _table(state_cond, state_o0, state_sums, ctx, out[j])
        _update(state_cond, state_o0, state_sums, ctx, flat[i])


@njit(cache=True, nogil=True)
def _run_intervals(flat, frame_size, n_ctx, vocab):
    n = flat.shape[0]
    cond = np.zeros((n_ctx + 1, vocab), np.uint32)
    order0 = np.zeros(vocab, np.uint32)
    sums = np.zeros(n_ctx + 2, np.int64)
    table = np.empty(vocab, np.int32)
    start = np.empty(n, np.uint32)
    freq = np.empty(n, np.uint32)
    for i in range(n):
        ctx = _context(flat, i, frame_size, n_ctx)
        _table(cond, order0, sums, ctx, table)
        x = flat[i]
        acc = 0
        for s in range(x):
            acc += table[s]
        start[i] = acc
        freq[i] = table[x]
        _update(cond, order0, sums, ctx, x)
    return start, freq


@njit(cache=True, nogil=True)
def _run_decode(words, n, frame_size, n_ctx, vocab):
    cond = np.zeros((n_ctx + 1, vocab), np.uint32)
    order0 = np.zeros(vocab, np.uint32)
    sums = np.zeros(n_ctx + 2, np.int64)
    table = np.empty(vocab, np.int32)
    out = np.empty(n, np.int32)
    state, pos = rans.dec_init(words)
    for i in range(n):
        ctx = _context(out, i, frame_size, n_ctx)
        _table(cond, order0, sums, ctx, table)
        x, state, pos = rans.dec_table(state, pos, words, table, PRECISION)
        out[i] = x
        _update(cond, order0, sums, ctx, x)
    return out


class _State:
    def __init__(self, vocab: int, n_ctx: int):
        self.cond = np.zeros((n_ctx + 1, vocab), np.uint32)
        self.order0 = np.zeros(vocab, np.uint32)
        self.sums = np.zeros(n_ctx + 2, np.int64)


class _PrevFrameStepper(Stepper):
    def __init__(self, pred: PrevFrame):
        self._p = pred
        self._st = _State(pred.vocab, pred.n_ctx)
        self._history: list[int] = []
        self._ctx = 0

    def table(self) -> np.ndarray:
        i = len(self._history)
        fs = self._p.frame_size
        self._ctx = 0 if i < fs else 1 + self._history[i - fs] % self._p.n_ctx
        out = np.empty(self._p.vocab, np.int32)
        _table(self._st.cond, self._st.order0, self._st.sums, self._ctx, out)
        return out

    def push(self, symbol: int) -> None:
        _update(self._st.cond, self._st.order0, self._st.sums, self._ctx, int(symbol))
        self._history.append(int(symbol))


@register
class PrevFrame(Predictor):
    name = "prevframe"
    precision = PRECISION

    @property
    def n_ctx(self) -> int:
        return n_contexts(self.vocab)

    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        flat = np.ascontiguousarray(tokens, np.int32).ravel()
        st = _State(self.vocab, self.n_ctx)
        for t in range(len(tokens)):
            out = np.empty((self.frame_size, self.vocab), np.int32)
            _run_tables(flat, self.frame_size, self.n_ctx, self.vocab,
                        st.cond, st.order0, st.sums, t, out)
            yield out

    def stepper(self) -> Stepper:
        return _PrevFrameStepper(self)

    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = np.ascontiguousarray(tokens, np.int32).ravel()
        return _run_intervals(flat, self.frame_size, self.n_ctx, self.vocab)

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        h, w = self.frame_shape
        out = _run_decode(np.ascontiguousarray(words, np.uint32), n_frames * h * w,
                          self.frame_size, self.n_ctx, self.vocab)
        return out.reshape(n_frames, h, w)
