"""Triton drivers of ``uniform``, ``prevframe`` and ``cm`` (host side: device buffers and
launches; the base class and the registry are in ``nacc.kernels.triton.base``)."""
from __future__ import annotations

import numpy as np

from .base import Driver, LaneBatch, pow2, register_driver
from .jit import DECODE, PEEK, PUSH, TABLES


@register_driver("uniform")
class UniformDriver(Driver):
    def __init__(self, pred, backend):
        super().__init__(pred, backend)
        self.base, self.r = divmod(2**pred.precision, pred.vocab)

    def intervals(self, batch: LaneBatch, state):
        import torch

        n = int(batch.lengths.sum())
        start = torch.empty(max(n, 1), dtype=torch.int32, device=self.backend.device)
        freq = torch.empty_like(start)
        block = 1024
        grid = (max(1, (n + block - 1) // block),)
        self._run(self.k.uniform.uniform_intervals, grid, batch.tok, start, freq, n,
                  self.base, self.r, BLOCK=block)
        return start, freq

    def decode(self, batch: LaneBatch, state):
        lanes = 32
        grid = ((batch.n_lanes + lanes - 1) // lanes,)
        max_len = int(batch.lengths.max()) if batch.n_lanes else 0
        self._run(
            self.k.uniform.uniform_decode, grid, batch.tok, batch.toff, batch.tlen,
            batch.words, batch.woff, batch.rst, batch.rpos,
            batch.n_lanes, max_len, self.base, self.r, self.shift, LANES=lanes, num_warps=1)

    def tables(self, batch: LaneBatch, state, i0: int, i1: int):
        import torch

        rows = batch.n_lanes * (i1 - i0)
        out = torch.empty((batch.n_lanes, i1 - i0, self.vocab), dtype=torch.int32,
                          device=self.backend.device)
        if rows:
            self._run(self.k.uniform.uniform_tables, (rows,), out, rows, self.vocab,
                      self.base, self.r, BV=min(self.bv, 4096))
        return out

    def peek(self, batch, state, i):
        return self.tables(batch, state, i, i + 1)[0, 0]

    def push(self, batch, state, i):
        pass


@register_driver("prevframe")
class PrevFrameDriver(Driver):
    def __init__(self, pred, backend):
        super().__init__(pred, backend)
        self.n_ctx = pred.n_ctx

    def state_bytes_per_lane(self) -> int:
        return 4 * (self.n_ctx + 2) * self.vocab

    def new_state(self, n_lanes: int):
        import torch

        dev = self.backend.device
        cond = torch.zeros((n_lanes, (self.n_ctx + 1) * self.vocab), dtype=torch.int32,
                           device=dev)
        o0 = torch.zeros((n_lanes, self.vocab), dtype=torch.int32, device=dev)
        return cond, o0

    def _launch(self, mode, batch, state, i0, i1, tab=None, start=None, freq=None):
        cond, o0 = state
        d32 = self._dummy()
        d64 = self._dummy("int64")
        dec = mode == DECODE
        num_warps = 4 if self.bv <= 2048 else 8
        self._run(
            self.k.prevframe.prevframe_kernel, (batch.n_lanes,), batch.tok, batch.toff,
            batch.tlen, cond, o0,
            tab if tab is not None else d32,
            start if start is not None else d32, freq if freq is not None else d32,
            batch.words if dec else d64, batch.woff if dec else d64,
            batch.rst if dec else d64, batch.rpos if dec else d64,
            i0, i1, self.vocab, self.n_ctx, self.frame_size,
            MODE=mode, BV=self.bv, num_warps=num_warps, num_stages=1)

    def decode(self, batch: LaneBatch, state):
        self._launch(DECODE, batch, state, 0, int(batch.lengths.max()))

    def tables(self, batch: LaneBatch, state, i0: int, i1: int):
        import torch

        out = torch.zeros((batch.n_lanes, i1 - i0, self.vocab), dtype=torch.int32,
                          device=self.backend.device)
        self._launch(TABLES, batch, state, i0, i1, tab=out)
        return out

    def peek(self, batch, state, i):
        import torch

        out = torch.zeros((1, 1, self.vocab), dtype=torch.int32, device=self.backend.device)
        self._launch(PEEK, batch, state, i, i + 1, tab=out)
        return out[0, 0]

    def push(self, batch, state, i):
        self._launch(PUSH, batch, state, i, i + 1)


@register_driver("cm")
class CMDriver(Driver):
    """``cm``: LANES lanes per program (one thread each), lanes padded to a multiple of
    LANES; state as in ``nacc.kernels.cpu.cm.new_state``, replicated per lane."""

    LEAF_ORDER = True            # the tree walk lays intervals out in leaf order (= order)
    LANES = 32                   # on the GPU: one warp of lanes per program
    LANES_INTERPRET = 2          # under the interpreter: little padding (64 MiB per lane)

    def __init__(self, pred, backend):
        super().__init__(pred, backend)
        from nacc.kernels.cpu import cm as K

        self.K = K
        self.cfg = np.ascontiguousarray(pred.cfg, np.int64)
        self.B = int(self.cfg[K.C_B])
        self.slots = 32 + K.NCTX + self.B * (K.NIN + 8) + K.NCIN + 4 + K.NCC + (2 << self.B)
        self.lanes = self.LANES if backend.flavor == "cuda" else self.LANES_INTERPRET
        import torch

        dev = backend.device

        def t(a, dtype=np.int32):
            return torch.from_numpy(np.ascontiguousarray(a).astype(dtype)).to(dev)

        self.d_cfg = t(self.cfg, np.int64)
        self.d_perm = t(pred.perm)
        self.d_inv = t(pred.inv)
        self.d_sq = t(K.SQUASH)
        self.d_st = t(K.STRETCH)
        self.d_rt = t(K.RATES)
        self.init = [np.ascontiguousarray(a).ravel().view(np.int32)
                     if a.dtype == np.uint32 else np.ascontiguousarray(a, np.int32).ravel()
                     for a in K.new_state(self.cfg, getattr(pred, "warm", None))]

    def _lanes(self, n: int) -> int:
        """Lanes per program: a warp on the GPU, fewer for small batches (each padded lane
        costs a full state)."""
        return min(self.lanes, pow2(n))

    def state_bytes_per_lane(self) -> int:
        return 4 * sum(a.size for a in self.init) + 8 * self.slots

    def new_state(self, n_lanes: int):
        import torch

        lanes = self._lanes(n_lanes)
        nlp = -(-n_lanes // lanes) * lanes
        dev = self.backend.device
        out = []
        for a in self.init:
            if not a.any():
                out.append(torch.zeros((nlp, a.size), dtype=torch.int32, device=dev))
            else:
                out.append(torch.from_numpy(a).to(dev).repeat(nlp, 1))
        scr = torch.zeros((self.slots, nlp), dtype=torch.int64, device=dev)
        return out, scr, nlp, lanes

    def _pad(self, x, nlp, fill=0):
        import torch

        if x.numel() >= nlp:
            return x
        pad = torch.full((nlp - x.numel(),), fill, dtype=x.dtype, device=x.device)
        return torch.cat([x, pad])

    def _launch(self, mode, batch, state, i0, i1, tab=None, start=None, freq=None):
        arrays, scr, nlp, lanes = state
        ht, w, apm, mc, cw, capm = arrays
        d32 = self._dummy()
        d64 = self._dummy("int64")
        dec = mode == DECODE
        self._run(
            self.k.cm.cm_kernel, (nlp // lanes,),
            batch.tok, self._pad(batch.toff, nlp), self._pad(batch.tlen, nlp), self.d_cfg,
            self.d_perm, self.d_inv, self.d_sq, self.d_st, self.d_rt,
            ht, w, apm, mc, cw, capm, ht.shape[1], w.shape[1], apm.shape[1], mc.shape[1],
            cw.shape[1], capm.shape[1], scr, nlp,
            tab if tab is not None else d32,
            start if start is not None else d32, freq if freq is not None else d32,
            self._pad(batch.words, 1) if dec else d64,
            self._pad(batch.woff, nlp) if dec else d64,
            self._pad(batch.rst, nlp) if dec else d64,
            self._pad(batch.rpos, nlp) if dec else d64,
            i0, i1, MODE=mode, LANES=lanes, num_warps=1, num_stages=1)

    def decode(self, batch: LaneBatch, state):
        nlp = state[2]
        rst = self._pad(batch.rst, nlp)
        rpos = self._pad(batch.rpos, nlp)
        batch.rst, batch.rpos = rst, rpos        # the kernel writes the final coder state
        self._launch(DECODE, batch, state, 0, int(batch.lengths.max()))

    def tables(self, batch: LaneBatch, state, i0: int, i1: int):
        import torch

        nlp = state[2]
        out = torch.zeros((nlp, i1 - i0, self.vocab), dtype=torch.int32,
                          device=self.backend.device)
        self._launch(TABLES, batch, state, i0, i1, tab=out)
        return out[:batch.n_lanes]

    def peek(self, batch, state, i):
        import torch

        nlp = state[2]
        out = torch.zeros((nlp, 1, self.vocab), dtype=torch.int32, device=self.backend.device)
        self._launch(PEEK, batch, state, i, i + 1, tab=out)
        return out[0, 0]

    def push(self, batch, state, i):
        self._launch(PUSH, batch, state, i, i + 1)
