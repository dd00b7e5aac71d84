"""numba kernels of the ``gpt`` predictor's CPU path (the spec is ``nacc.gpt.intref``).

``gemm_i8(q, w, out)``: ``out = q @ w`` for a few rows, integer ``q`` (rows, K) with
``|q| <= 2**11 - 1`` and int8 ``w`` (K, N), accumulated in int32 (``|acc| < 2**11 * 127 *
4096 < 2**31``): exact, so equal to the float-BLAS product of ``intref.IntDot``.  It reads
the weights once as bytes for all rows, which is what a token-by-token step needs (a float32
copy reads four bytes a weight); large row counts go to BLAS instead.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def gemm_i8(q, w, out):
    rows, k = q.shape
    n = w.shape[1]
    acc = np.zeros((rows, n), np.int32)
    for kk in range(k):
        wr = w[kk]
        for r in range(rows):
            a = np.int32(q[r, kk])
            if a != 0:
                ar = acc[r]
                for j in range(n):
                    ar[j] += a * np.int32(wr[j])
    for r in range(rows):
        for j in range(n):
            out[r, j] = acc[r, j]


@nb.njit(cache=True, nogil=True)
def _rq(t, m, s):
    return (t * m + (np.int64(1) << (s - 1))) >> s


@nb.njit(cache=True, nogil=True)
def attend_rows(qq, mq, eq, kq, km, ke, v, p0, att_m, att_s, bits, amb, exp_att, out):
    """The spec's attention (``nacc.gpt.intref``, step 2) of query rows at positions
    ``p0, p0 + 1, ...`` over the cached keys ``0..position``, every sum in int64: ``qq``
    (H, rows, dh), ``mq``/``eq`` (H, rows); the cache's ``kq`` (H, cap, dh), ``km``/``ke``
    (H, cap), ``v`` (H, cap, dh) (floats holding integers); ``out`` (H, rows, dh) int64."""
    h_n, rows, dh = qq.shape
    last = len(exp_att) - 1
    for h in range(h_n):
        for r in range(rows):
            p1 = p0 + r + 1
            s = np.empty(p1, np.int64)
            smax = np.int64(-(1 << 62))
            for j in range(p1):
                dot = np.int64(0)
                for d in range(dh):
                    dot += qq[h, r, d] * np.int64(kq[h, j, d])
                t = _rq(dot * mq[h, r], np.int64(km[h, j]), amb)
                sj = _rq(t, att_m, att_s + 2 * (bits - 1) + 22 - amb - eq[h, r] - ke[h, j])
                s[j] = sj
                if sj > smax:
                    smax = sj
            acc = np.zeros(dh, np.int64)
            z = np.int64(0)
            for j in range(p1):
                w = np.int64(exp_att[min(smax - s[j], last)])
                if w != 0:
                    z += w
                    for d in range(dh):
                        acc[d] += w * np.int64(v[h, j, d])
            for d in range(dh):
                out[h, r, d] = (2 * acc[d] + z) // (2 * z)
