"""What every Triton driver shares: ``LaneBatch`` (segments on the device), the ``Driver``
base class, and the registry that maps a predictor to its driver.

A *driver* runs one predictor (one vocabulary, frame shape and parameter set) on one backend
for a batch of *lanes* (segments).  The operations every driver offers:

* ``new_state(n_lanes)``: fresh predictor state for that many lanes (device tensors);
* ``intervals(batch, state)``: ``(start, freq)`` int32 device tensors of every token;
* ``decode(batch, state)``: decode every lane's words into ``batch.tok``;
* ``tables(batch, state, i0, i1)``: the full tables of tokens ``[i0, i1)`` of each lane
  (int32 [lanes, i1 - i0, V]), updating the state with those tokens;
* ``peek`` / ``push``: one token of one lane, for the stepper.

Registration: a predictor class declares, per backend, the module of its kernels
(``Predictor.kernels``, e.g. ``{"triton": "nacc.kernels.triton.drivers"}``); that module
registers its driver classes by predictor name with ``@register_driver("name", ...)`` when
imported.  ``driver_for`` imports the declared module on first need, so a new predictor's
GPU path needs no edit here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from nacc.errors import NaccError
from nacc.kernels.cpu import rans as cpu_rans
from nacc.spec import CODER_PRECISION

from .jit import INTERVALS
from .runtime import Backend


def pow2(n: int) -> int:
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
        self.bv = pow2(pred.vocab)
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


BACKEND = "triton"                   # this backend's key in ``Predictor.kernels``
_DRIVERS: dict[str, type[Driver]] = {}


def register_driver(*names: str):
    """Class decorator: ``cls`` drives the predictors registered as ``names``."""
    def deco(cls):
        for name in names:
            if _DRIVERS.get(name, cls) is not cls:
                raise ValueError(f"Triton driver for {name!r} registered twice")
            _DRIVERS[name] = cls
        return cls
    return deco


def _predictor_class(pred):
    if isinstance(pred, str):
        from nacc.predictors import base

        try:
            return base.get(pred)
        except NaccError:
            return None
    return pred if isinstance(pred, type) else type(pred)


def kernel_module(pred) -> str | None:
    """The module of ``pred``'s Triton kernels, or None: for a predictor, what its
    parameters allow (``Predictor.backend_kernels``); for its class or name, what the class
    declares."""
    if isinstance(pred, (str, type)):
        cls = _predictor_class(pred)
        kernels = {} if cls is None else getattr(cls, "kernels", {})
    else:
        kernels = pred.backend_kernels()
    return kernels.get(BACKEND)


def has_kernel(pred) -> bool:
    """``pred`` (a predictor, its class or its name) has Triton kernels."""
    return kernel_module(pred) is not None


def driver_for(pred, backend: Backend) -> Driver:
    """The driver of ``pred`` on ``backend`` (NaccError when it has none)."""
    module = kernel_module(pred)
    if module is not None:
        importlib.import_module(module)      # registers its drivers
    cls = _DRIVERS.get(str(getattr(pred, "name", "")))
    if module is None or cls is None:
        raise NaccError(f"predictor {getattr(pred, 'name', pred)!r} has no GPU kernel")
    if getattr(pred, "order", None) is not None and not cls.LEAF_ORDER:
        raise NaccError(f"predictor {pred.name!r} declares an interval order its GPU kernel "
                        "does not implement")
    return cls(pred, backend)
