"""numba kernels of the ``prevframe`` predictor (spec: ``nacc.predictors.prevframe``).

State: ``cond`` uint32 [C + 1, V], ``order0`` uint32 [V] and ``sums`` int64 [C + 2] (the
row sums of ``cond``, then the sum of ``order0``); ``flat`` is the int32 tokens in coding
order, ``frame_size`` = H * W, ``n_ctx`` = C.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from nacc.kernels.cpu import rans
from nacc.spec import CODER_PRECISION

PRECISION = CODER_PRECISION     # the coder's full precision, 24
COND_LIMIT = 4096           # a row of cond summing to more is halved
ORDER0_LIMIT = 65536        # likewise order0


def n_contexts(vocab: int) -> int:
    """C = min(V, max(1, 2**22 // V))."""
    return min(vocab, max(1, 2**22 // vocab))


@njit(cache=True, nogil=True)
def fill_table(cond, order0, sums, ctx, out):
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
def update(cond, order0, sums, ctx, x):
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
def context(flat, i, frame_size, n_ctx):
    if i < frame_size:
        return 0
    return 1 + flat[i - frame_size] % n_ctx


@njit(cache=True, nogil=True)
def run_tables(flat, frame_size, n_ctx, vocab, state_cond, state_o0, state_sums, t, out):
    """Tables of frame ``t`` into ``out`` (H*W, V), updating the state with that frame."""
    for j in range(frame_size):
        i = t * frame_size + j
        ctx = context(flat, i, frame_size, n_ctx)
        fill_table(state_cond, state_o0, state_sums, ctx, out[j])
        update(state_cond, state_o0, state_sums, ctx, flat[i])


@njit(cache=True, nogil=True)
def run_intervals(flat, frame_size, n_ctx, vocab):
    n = flat.shape[0]
    cond = np.zeros((n_ctx + 1, vocab), np.uint32)
    order0 = np.zeros(vocab, np.uint32)
    sums = np.zeros(n_ctx + 2, np.int64)
    table = np.empty(vocab, np.int32)
    start = np.empty(n, np.uint32)
    freq = np.empty(n, np.uint32)
    for i in range(n):
        ctx = context(flat, i, frame_size, n_ctx)
        fill_table(cond, order0, sums, ctx, table)
        x = flat[i]
        acc = 0
        for s in range(x):
            acc += table[s]
        start[i] = acc
        freq[i] = table[x]
        update(cond, order0, sums, ctx, x)
    return start, freq


@njit(cache=True, nogil=True)
def run_decode(words, n, frame_size, n_ctx, vocab):
    cond = np.zeros((n_ctx + 1, vocab), np.uint32)
    order0 = np.zeros(vocab, np.uint32)
    sums = np.zeros(n_ctx + 2, np.int64)
    table = np.empty(vocab, np.int32)
    out = np.empty(n, np.int32)
    state, pos = rans.dec_init(words)
    for i in range(n):
        ctx = context(out, i, frame_size, n_ctx)
        fill_table(cond, order0, sums, ctx, table)
        x, state, pos = rans.dec_table(state, pos, words, table, PRECISION)
        out[i] = x
        update(cond, order0, sums, ctx, x)
    return out
