"""Host side of the kernels: per predictor, a *driver* that owns device buffers and launches.

A driver runs one predictor (one vocabulary, frame shape and parameter set) on one backend
for a batch of *lanes* (segments).  The operations every driver offers:

* ``new_state(n_lanes)``: fresh predictor state for that many lanes (device tensors);
* ``intervals(batch, state)``: ``(start, freq)`` int32 device tensors of every token;
* ``decode(batch, state)``: decode every lane's words into ``batch.tok``;
* ``tables(batch, state, i0, i1)``: the full tables of tokens ``[i0, i1)`` of each lane
  (int32 [lanes, i1 - i0, V]), updating the state with those tokens;
* ``peek`` / ``push``: one token of one lane, for the stepper.

``LaneBatch`` packs a list of segments into flat device buffers (int64 offsets).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nacc.errors import NaccError
from nacc.kernels.cpu import rans as cpu_rans
from nacc.spec import CODER_PRECISION

from .jit import DECODE, INTERVALS, PEEK, PUSH, TABLES
from .runtime import Backend


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass
class LaneBatch:
    """Segments of one batch on the device: tokens flat (int32), per-lane offsets/lengths,
    and for decoding the words (int64 holding u32), word offsets and rANS state/pos."""
    tok: Any                 # torch tensors (torch is imported only with the GPU path)
    toff: Any
    tlen: Any
    lengths: np.ndarray
    words: Any = None
    woff: Any = None
    rst: Any = None
    rpos: Any = None

    @property
    def n_lanes(self) -> int:
        return len(self.lengths)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    @classmethod
    def for_tokens(cls, token_arrays, device: str) -> LaneBatch:
        import torch

        flats = [np.ascontiguousarray(t, np.int32).ravel() for t in token_arrays]
        lengths = np.array([f.size for f in flats], np.int64)
        offs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        tok = torch.from_numpy(np.concatenate(flats) if flats else np.zeros(0, np.int32))
        return cls(tok.to(device), torch.from_numpy(offs).to(device),
                   torch.from_numpy(lengths.astype(np.int32)).to(device), lengths)

    @classmethod
    def for_words(cls, words_list, lengths, device: str) -> LaneBatch:
        import torch

        lengths = np.asarray(lengths, np.int64)
        offs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        ws = [np.ascontiguousarray(w, np.uint32) for w in words_list]
        wl = np.array([w.size for w in ws], np.int64)
        woff = np.concatenate([[0], np.cumsum(wl)[:-1]]).astype(np.int64)
        st = np.empty(len(ws), np.uint64)
        pos = np.empty(len(ws), np.int64)
        for k, w in enumerate(ws):
            s, p = cpu_rans.dec_init(w)
            st[k] = s
            pos[k] = p
        allw = np.concatenate(ws).astype(np.int64) if ws else np.zeros(0, np.int64)
        if allw.size == 0:
            allw = np.zeros(1, np.int64)
        tok = torch.zeros(max(1, int(lengths.sum())), dtype=torch.int32)

        def dev(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(tok.to(device), dev(offs), dev(lengths.astype(np.int32)), lengths,
                   dev(allw), dev(woff), dev(st.view(np.int64)), dev(pos))

    def token_arrays(self) -> list[np.ndarray]:
        """Per-lane int32 tokens, copied to the host."""
        flat = self.tok.cpu().numpy()
        o = self.offsets
        return [flat[o[k]:o[k + 1]].copy() for k in range(self.n_lanes)]


class Driver:
    """Base driver; subclasses implement the launches."""

    LEAF_ORDER = False     # intervals follow ``pred.order`` (True) or symbol order only

    def __init__(self, pred, backend: Backend):
        self.pred = pred
        self.backend = backend
        self.vocab = pred.vocab
        self.frame_size = pred.frame_size
        self.precision = pred.precision
        self.shift = CODER_PRECISION - pred.precision
        self.bv = _pow2(pred.vocab)
        self.k = backend.kernels

    def _run(self, kernel, grid, *args, **kwargs):
        """Launch ``kernel`` on the backend's device (the current CUDA device may differ)."""
        if self.backend.flavor == "cuda":
            import torch

            with torch.cuda.device(torch.device(self.backend.device)):
                kernel[grid](*args, **kwargs)
        else:
            kernel[grid](*args, **kwargs)

    def _dummy(self, dtype="int32"):
        import torch

        return torch.zeros(1, dtype=getattr(torch, dtype), device=self.backend.device)

    def state_bytes_per_lane(self) -> int:
        return 0

    def new_state(self, n_lanes: int):
        return None

    def _launch(self, mode, batch: LaneBatch, state, i0: int, i1: int, tab=None, start=None,
                freq=None):
        """One launch of the predictor's kernel in ``mode`` over tokens [i0, i1)."""
        raise NotImplementedError

    def tables(self, batch: LaneBatch, state, i0: int, i1: int):
        """int32 [lanes, i1 - i0, V] device tensor: the full tables of tokens [i0, i1)."""
        raise NotImplementedError

    def peek(self, batch: LaneBatch, state, i: int):
        """The table of token ``i`` of lane 0 (a stepper's ``table()``)."""
        raise NotImplementedError

    def push(self, batch: LaneBatch, state, i: int) -> None:
        """Token ``i`` of lane 0 is known: update ``state`` (a stepper's ``push()``)."""
        raise NotImplementedError

    def decode(self, batch: LaneBatch, state) -> None:
        """rANS-decode every lane's words into ``batch.tok`` (one DECODE pass)."""
        raise NotImplementedError

    def intervals(self, batch: LaneBatch, state):
        """``(start, freq)`` int32 device tensors of every lane's tokens, lanes back to back;
        one INTERVALS launch of the subclass's ``_launch`` (uniform overrides this)."""
        import torch

        n = max(1, int(batch.lengths.sum()))
        start = torch.empty(n, dtype=torch.int32, device=self.backend.device)
        freq = torch.empty_like(start)
        self._launch(INTERVALS, batch, state, 0, int(batch.lengths.max()), start=start,
                     freq=freq)
        return start, freq


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
        return min(self.lanes, _pow2(n))

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


# the neural driver (``nacc.kernels.triton.neural``) is imported when first needed
_DRIVERS: dict[str, Any] = {"uniform": UniformDriver, "prevframe": PrevFrameDriver, "cm": CMDriver,
                             "transformer": "neural", "lstm": "neural"}


def kernel_names() -> list[str]:
    """Names of the predictors that have Triton kernels."""
    return sorted(_DRIVERS)


def has_kernel(pred) -> bool:
    """``pred`` (a predictor, its class or its name) has Triton kernels (not ``cm`` with a
    neural input: its external tables have no GPU kernel)."""
    if getattr(pred, "nn", None) is not None:
        return False
    return (pred if isinstance(pred, str) else getattr(pred, "name", None)) in _DRIVERS


def driver_for(pred, backend: Backend) -> Driver:
    cls = _DRIVERS.get(str(getattr(pred, "name", "")))
    if cls == "neural":
        from .neural import NeuralDriver as cls
    if cls is None:
        raise NaccError(f"predictor {getattr(pred, 'name', pred)!r} has no GPU kernel "
                        f"(kernels: {', '.join(sorted(_DRIVERS))})")
    if getattr(pred, "order", None) is not None and not cls.LEAF_ORDER:
        raise NaccError(f"predictor {pred.name!r} declares an interval order its GPU kernel "
                        "does not implement")
    return cls(pred, backend)
