"""Exact int8 matrix products on AVX-512 VNNI (``vpdpbusd``), from numba.

``matmul(xu, packed, out)`` computes ``x @ W`` for an integer ``x`` with ``-128 <= x <= 127``
and an int8 weight matrix ``W`` (K, N) into int32: every product and partial sum is an
integer, so the result is the integer product for any order of the sums, provided the int32
accumulator cannot wrap (``pack`` checks ``255 * max_n sum_k |W[k, n]| < 2**31``).

``vpdpbusd`` multiplies unsigned bytes by signed bytes, so the input travels offset as
``xu = x + 128`` (uint8, K padded to a multiple of 4 with any value: the padded weights are
zero) and the kernel subtracts ``128 * sum_k W[k, n]``.  The weights are packed per block of
16 outputs as ``[block][k // 4][16 outputs][4 k]`` bytes.  ``AVAILABLE`` says whether the
host (and numba's target) has the instructions; callers use a float product otherwise.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numba as nb
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]  # llvmlite ships no stubs
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# rows and 16-output blocks of one register tile (4 x 2 accumulators: measured fastest of
# 1x8, 2x4, 4x2, 4x4, 2x8 on a znver4/5 core)
ROWS = 4
BLOCKS = 2


def _available() -> bool:
    if os.environ.get("NACC_NO_VNNI"):
        return False
    if (getattr(nb.config, "CPU_NAME", None) not in (None, "host")
            or getattr(nb.config, "CPU_FEATURES", None)):
        return False            # numba compiles for another target than this host
    try:
        from llvmlite import binding as llb

        feats = llb.get_host_cpu_features()
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - no feature query
        return False
    return all(feats.get(f, False) for f in ("avx512f", "avx512bw", "avx512vnni"))


AVAILABLE = _available()

_V16 = ir.VectorType(ir.IntType(32), 16)
_I64 = ir.IntType(64)
_I32P = ir.IntType(32).as_pointer()


def _tile(n_blocks: int, n_rows: int):
    """Intrinsic ``tile(xu, x_off, x_stride, wp, w_off, k4, out, o_off, o_stride)``:
    ``n_rows`` rows x ``n_blocks`` blocks of 16 int32 outputs, summed over ``k4`` >= 1
    quads of k in registers, stored (not added) at ``out`` (offsets in elements)."""

    @intrinsic
    def tile(typingctx, xu, x_off, x_stride, wp, w_off, k4, out, o_off, o_stride):
        sig = types.void(xu, x_off, x_stride, wp, w_off, k4, out, o_off, o_stride)

        def codegen(context, builder, signature, args):
            xa, xo, xs, wa, wo, kk, oa, oo, ost = args
            ty = signature.args
            i8p = ir.IntType(8).as_pointer()
            xp = builder.bitcast(context.make_array(ty[0])(context, builder, xa).data, i8p)
            wpp = builder.bitcast(context.make_array(ty[3])(context, builder, wa).data, i8p)
            op = builder.bitcast(context.make_array(ty[6])(context, builder, oa).data, _I32P)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                "llvm.x86.avx512.vpdpbusd.512")
            c = lambda v: ir.Constant(_I64, v)          # noqa: E731
            stride = builder.mul(kk, c(64))
            entry = builder.basic_block
            loop = builder.append_basic_block("dp_loop")
            done = builder.append_basic_block("dp_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            i = builder.phi(_I64)
            accs = [builder.phi(_V16) for _ in range(n_rows * n_blocks)]
            quads = []
            for r in range(n_rows):
                at = builder.add(builder.add(xo, builder.mul(xs, c(r))), builder.mul(i, c(4)))
                q = builder.load(builder.bitcast(builder.gep(xp, [at]), _I32P), align=1)
                q = builder.insert_element(ir.Constant(_V16, ir.Undefined), q,
                                           ir.Constant(ir.IntType(32), 0))
                quads.append(builder.shuffle_vector(q, ir.Constant(_V16, ir.Undefined),
                                                    ir.Constant(_V16, None)))
            base = builder.add(wo, builder.mul(i, c(64)))
            new = [None] * len(accs)
            for j in range(n_blocks):
                at = builder.add(base, builder.mul(stride, c(j)))
                wv = builder.load(builder.bitcast(builder.gep(wpp, [at]), _V16.as_pointer()),
                                  align=1)
                for r in range(n_rows):
                    k = r * n_blocks + j
                    new[k] = builder.call(fn, [accs[k], quads[r], wv])
            i1 = builder.add(i, c(1))
            i.add_incoming(c(0), entry)
            i.add_incoming(i1, loop)
            for a, v in zip(accs, new):
                a.add_incoming(ir.Constant(_V16, None), entry)
                a.add_incoming(v, loop)
            builder.cbranch(builder.icmp_signed("<", i1, kk), loop, done)
            builder.position_at_end(done)
            for r in range(n_rows):
                row = builder.add(oo, builder.mul(ost, c(r)))
                for j in range(n_blocks):
                    at = builder.gep(op, [builder.add(row, c(16 * j))])
                    builder.store(new[r * n_blocks + j], builder.bitcast(at, _V16.as_pointer()),
                                  align=1)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_full = _tile(BLOCKS, ROWS)
_tile_row = _tile(BLOCKS, 1)
_tile_one = _tile(1, 1)


@nb.njit(cache=True, nogil=True)
def matmul_into(xu, wp, k4, n16, corr, out):
    """``out`` (rows, 16 * n16) int32 = x @ W from the offset input ``xu`` and the packed
    weights ``Packed.wp`` (with its ``k4``, ``n16``, ``corr``); callable from numba code."""
    m = xu.shape[0]
    xs = xu.shape[1]
    os_ = out.shape[1]
    bs = k4 * 64
    r = 0
    while r < m:
        nr = ROWS if r + ROWS <= m else 1
        blk = 0
        while blk + BLOCKS <= n16:
            if nr == ROWS:
                _tile_full(xu, r * xs, xs, wp, blk * bs, k4, out, r * os_ + blk * 16, os_)
            else:
                _tile_row(xu, r * xs, xs, wp, blk * bs, k4, out, r * os_ + blk * 16, os_)
            blk += BLOCKS
        while blk < n16:
            for rr in range(r, r + nr):
                _tile_one(xu, rr * xs, xs, wp, blk * bs, k4, out, rr * os_ + blk * 16, os_)
            blk += 1
        for rr in range(r, r + nr):
            for n in range(os_):
                out[rr, n] -= corr[n]
        r += nr


class Int8Weights(NamedTuple):
    """Packed weights as numba kernels take them (``matmul_into``'s weight arguments)."""
    wp: np.ndarray          # int8, see ``Packed``
    k4: int
    n16: int
    corr: np.ndarray        # int32 (16 * n16,)


class Packed:
    """An int8 (K, N) weight matrix packed for ``matmul``."""

    def __init__(self, w: np.ndarray):
        w = np.asarray(w, np.int64)
        if w.ndim != 2 or (w.size and (w.min() < -128 or w.max() > 127)):
            raise ValueError("weights must be an int8-range (K, N) matrix")
        self.k, self.n = w.shape
        self.k4 = max(1, -(-self.k // 4))
        self.n16 = max(1, -(-self.n // 16))
        self.bound = 255 * int(np.abs(w).sum(axis=0).max(initial=0))
        if self.bound >= 2**31:
            raise ValueError(f"int8 product bound {self.bound} does not fit int32")
        pad = np.zeros((self.k4 * 4, self.n16 * 16), np.int64)
        pad[:self.k, :self.n] = w
        self.wp = np.ascontiguousarray(
            pad.reshape(self.k4, 4, self.n16, 16).transpose(2, 0, 3, 1).astype(np.int8)
        ).reshape(-1)
        self.corr = (128 * pad.sum(axis=0)).astype(np.int32)

    @property
    def weights(self) -> Int8Weights:
        """The packed weights as one argument for numba kernels."""
        return Int8Weights(self.wp, self.k4, self.n16, self.corr)

    def input(self, rows: int) -> np.ndarray:
        """A zeroed uint8 (rows, 4 * k4) input buffer (fill ``[:, :K]`` with x + 128)."""
        return np.zeros((rows, self.k4 * 4), np.uint8)

    def matmul(self, xu: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """int32 C-contiguous (rows, 16 * n16) ``x @ W`` from the offset input ``xu`` (see
        ``input``); columns from N on are zero.  ``out``: an optional buffer of that shape."""
        if out is None:
            out = np.empty((xu.shape[0], self.n16 * 16), np.int32)
        if xu.shape[0]:
            matmul_into(xu, self.wp, self.k4, self.n16, self.corr, out)
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int32 (rows, N) ``x @ W`` for integer x in [-128, 127] (a view of the padded
        product when N is not a multiple of 16)."""
        x = np.asarray(x)
        xu = self.input(len(x))
        if x.dtype.kind in "iu" and x.ndim == 2 and x.shape[1] == self.k:
            offset_into(x, xu)
        else:
            xu[:, :self.k] = x + 128
        out = self.matmul(xu)
        return out if out.shape[1] == self.n else out[:, :self.n]


@nb.njit(cache=True, nogil=True)
def offset_into(x, xu):
    """xu[:, :K] = x + 128 for an integer x (rows, K) in [-128, 127] (columns from K on
    are left as they are: their weights are zero)."""
    for r in range(x.shape[0]):
        for k in range(x.shape[1]):
            xu[r, k] = x[r, k] + 128
