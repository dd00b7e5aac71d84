"""numba kernels of the ``gpt`` predictor's CPU path (the spec is ``nacc.gpt.intref``).

``gemm_i8(q, w, out)``: ``out = q @ w`` for a few rows, integer ``q`` (rows, K) with
``|q| <= 2**11 - 1`` and int8 ``w`` (K, N), accumulated in int32 (``|acc| < 2**11 * 127 *
4096 < 2**31``): exact, so equal to the float-BLAS product of ``intref.IntDot``.  It reads
the weights once as bytes for all rows, which is what a token-by-token step needs (a float32
copy reads four bytes a weight); large row counts go to BLAS instead.

``attend_rows(q, kv, p0, spec, exp_att, out)``: the spec's attention of a few query rows;
the rows, one layer's KV cache and the attention constants travel as the packs ``Queries``,
``KVLayer`` and ``AttConst``.
"""
from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np


class Queries(NamedTuple):
    """Quantized query rows: ``qq`` (H, rows, dh) and their scales ``mq``, ``eq`` (H, rows)."""
    qq: np.ndarray
    mq: np.ndarray
    eq: np.ndarray


class KVLayer(NamedTuple):
    """One layer of the KV cache: quantized keys ``kq`` (H, cap, dh) with scales ``km``,
    ``ke`` (H, cap), values ``v`` (H, cap, dh) (floats holding integers)."""
    kq: np.ndarray
    km: np.ndarray
    ke: np.ndarray
    v: np.ndarray


class AttConst(NamedTuple):
    """The attention's constants: 1/sqrt(dh) ~ ``att_m * 2**-att_s``, activation bits,
    mantissa bits of a row scale (``intref.AMB``)."""
    att_m: int
    att_s: int
    bits: int
    amb: int


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
def attend_rows(q, kv, p0, spec, exp_att, out):
    """The spec's attention (``nacc.gpt.intref``, step 2) of the query rows ``q``
    (``Queries``) at positions ``p0, p0 + 1, ...`` over the cached keys ``0..position`` of
    ``kv`` (``KVLayer``), every sum in int64; ``spec`` an ``AttConst``; ``out`` (H, rows,
    dh) int64."""
    qq, mq, eq = q.qq, q.mq, q.eq
    kq, km, ke, v = kv.kq, kv.km, kv.ke, kv.v
    att_m, att_s, bits, amb = spec.att_m, spec.att_s, spec.bits, spec.amb
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
