"""The predictor contract: token video in, one exact integer frequency table per token out.

A predictor sees a token video ``tokens`` (int32, shape (T, H, W), values 0..V-1) in coding
order: raster order within a frame, then frame by frame.  For every token it produces a table
of V int32 frequencies, each >= 1, summing to exactly ``2**precision`` (precision <= 24),
computed with integer arithmetic only from the tokens already coded.  Four paths give the
same tables, and the tests hold every predictor to that:

* ``tables(tokens)``: reference, yields one (H*W, V) array per frame.
* ``stepper()``: decode order, one token at a time (``table()``, then ``push(symbol)``).
* ``intervals(tokens)``: encode fast path, ``(start, freq)`` of each actual token.
* ``decode(words, n_frames)``: decode fast path, rANS words in, tokens out.

Two lane methods run the fast paths for several token videos (*lanes*) of the predictor's
shape at once, with results identical to running them one by one:
``intervals_lanes(videos)`` and ``decode_lanes(jobs)``.  The defaults here loop; a backend
with batched kernels steps the lanes together.  ``lane_batch`` says how many lanes the
predictor wants per call (the archive pipeline, ``nacc.codec``, cuts batches to it).

The coder lays a table out in symbol order unless the predictor declares a permutation
``order`` (symbol s at position ``order[s]``), so that a predictor built on a code tree can
find a symbol's interval from the nodes on its path alone.

Subclasses override ``intervals``/``decode`` with fused kernels where it pays; the defaults
here derive them from ``tables``/``stepper``.  A predictor registers under a stable name with
``@register``; the archive records the name, ``params()`` and ``model_hash()``, and
``cls(vocab, frame_shape, **params)`` must rebuild an identical predictor.
"""
from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np

from nacc.container import MAX_VOCAB
from nacc.errors import NaccError, OptionError
from nacc.spec import CODER_PRECISION

MAX_PRECISION = CODER_PRECISION     # a table of total 2**P is coded after << (24 - P)

_REGISTRY: dict[str, type[Predictor]] = {}
# predictor modules that ``nacc.predictors`` declares without importing them: imported when a
# name not registered yet is asked for, or when every name is listed, so that using the
# default predictor does not import the others (nor what they import, e.g. numba)
_LAZY_MODULES: list[str] = []


def declare_lazy(module: str) -> None:
    """Import ``module`` (which registers predictors) only when its names may be needed; a
    module that does not exist simply registers nothing."""
    if module not in _LAZY_MODULES:
        _LAZY_MODULES.append(module)


def _load_lazy(only: str | None = None) -> None:
    import importlib

    for module in [m for m in _LAZY_MODULES if only is None or m == only]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
        _LAZY_MODULES.remove(module)


def register(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"predictor name {name!r} registered twice")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Names of the registered predictors, sorted."""
    from nacc import predictors  # noqa: F401  (imports every built-in predictor module)

    _load_lazy()
    return sorted(_REGISTRY)


def get(name: str) -> type[Predictor]:
    """The predictor class registered as ``name``; OptionError (``--predictor``) if
    unknown."""
    from nacc import predictors  # noqa: F401  (as in available())

    if name not in _REGISTRY:
        _load_lazy(f"nacc.predictors.{name}")   # a module named like the predictor first
    if name in _REGISTRY:
        return _REGISTRY[name]
    names = available()
    if name not in _REGISTRY:
        raise OptionError(f"unknown predictor {name!r} (known: {', '.join(names)})",
                          "--predictor")
    return _REGISTRY[name]


def required_params(cls: type[Predictor]) -> list[str]:
    """The parameters ``cls`` cannot be built without (``model`` for the neural ones)."""
    import inspect

    return [p.name for p in list(inspect.signature(cls).parameters.values())[2:]
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def build(name: str, vocab: int, frame_shape: tuple[int, int], params: dict) -> Predictor:
    """The predictor ``name`` built with ``params``; OptionError naming a missing or unknown
    parameter (checked against the constructor before it runs: ``--model`` when the model
    is missing, else ``--param``)."""
    import inspect

    cls = get(name)
    try:
        inspect.signature(cls).bind(vocab, frame_shape, **params)
    except TypeError as e:
        needs = [n for n in required_params(cls) if n not in params]
        hint = f" (needs {', '.join('--' + n for n in needs)})" if needs else ""
        raise OptionError(f"predictor {name!r}: {e}{hint}",
                          "--model" if "model" in needs else "--param") from None
    return cls(vocab, frame_shape, **params)


class Stepper(abc.ABC):
    """Decode-order view of a predictor: the table of the next token, then its value."""

    @abc.abstractmethod
    def table(self) -> np.ndarray:
        """int32[V] frequency table of the next token."""

    @abc.abstractmethod
    def push(self, symbol: int) -> None:
        """Record the value of the token whose table was just returned."""


class Predictor(abc.ABC):
    """Base class; see the module docstring for the contract."""

    name: ClassVar[str]
    precision: int = MAX_PRECISION
    # Interval layout: None = symbol order (start(s) = sum of f(s') for s' < s).  A predictor
    # may set a permutation ``order`` (int array, V): symbol s is laid out at position
    # order[s], i.e. start(s) = sum of f(s') over order[s'] < order[s].  Tables stay indexed
    # by symbol.
    order = None
    # lanes the predictor wants per intervals_lanes / decode_lanes call (1: no batching)
    lane_batch: int = 1
    # the predictor's kernels per compute backend (``nacc.kernels.BACKENDS``): backend name
    # -> module that registers its drivers when imported; {} = CPU only
    kernels: ClassVar[dict[str, str]] = {}

    def backend_kernels(self) -> dict[str, str]:
        """``kernels`` less the backends this instance's parameters rule out (a subclass
        narrows it where a parameter has no kernel on some backend)."""
        return self.kernels

    def __init__(self, vocab: int, frame_shape: tuple[int, int]):
        if not 2 <= int(vocab) <= MAX_VOCAB:
            raise NaccError(f"vocabulary size {vocab} outside 2..{MAX_VOCAB}")
        h, w = (int(x) for x in frame_shape)
        if h < 1 or w < 1:
            raise NaccError(f"frame shape {h}x{w} is empty")
        self.vocab = int(vocab)
        self.frame_shape = (h, w)
        if self.vocab > 2**self.precision:
            raise NaccError(f"vocabulary {vocab} does not fit precision {self.precision}")

    @property
    def frame_size(self) -> int:
        return self.frame_shape[0] * self.frame_shape[1]

    def video(self, tokens) -> np.ndarray:
        """``tokens`` as a C-contiguous int32 (T, H, W) array of this predictor's frames;
        NaccError naming both shapes when they differ."""
        v = np.ascontiguousarray(tokens, np.int32)
        if v.ndim != 3 or v.shape[1:] != self.frame_shape:
            raise NaccError(f"tokens of shape {v.shape}, the predictor wants (T, "
                            f"{self.frame_shape[0]}, {self.frame_shape[1]})")
        return v

    def params(self) -> dict:
        """JSON-serialisable parameters recorded in the archive (vocab and frame shape are
        recorded separately)."""
        return {}

    def model_hash(self) -> bytes:
        """sha256 digest of any weights or priors the tables depend on; b"" if none."""
        return b""

    # -- reference and step paths -------------------------------------------------------
    @abc.abstractmethod
    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        """Yield one int32 (H*W, V) table array per frame of ``tokens`` (T, H, W)."""

    @abc.abstractmethod
    def stepper(self) -> Stepper:
        """A fresh decode-order stepper."""

    # -- fast paths (defaults derived from the two above) --------------------------------
    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(start, freq)`` uint32 arrays of every token, in coding order."""
        from nacc.kernels.cpu.rans import intervals_from_tables

        n = tokens.size
        start = np.empty(n, np.uint32)
        freq = np.empty(n, np.uint32)
        flat = np.ascontiguousarray(tokens, dtype=np.int32).reshape(len(tokens), -1)
        order = self.order
        inv = None if order is None else np.argsort(order)
        for t, table in enumerate(self.tables(tokens)):
            if order is None:
                intervals_from_tables(table, flat[t], start, freq, t * flat.shape[1])
            else:
                intervals_from_tables(np.ascontiguousarray(table[:, inv]),
                                      np.ascontiguousarray(order[flat[t]], np.int32),
                                      start, freq, t * flat.shape[1])
        return start, freq

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        """Decode ``n_frames`` frames from rANS ``words``; returns int32 (T, H, W)."""
        from nacc.coder import StepDecoder

        h, w = self.frame_shape
        out = np.empty(n_frames * h * w, np.int32)
        decoder = StepDecoder(words, self.precision)
        stepper = self.stepper()
        inv = None if self.order is None else np.argsort(self.order)
        for i in range(out.size):
            table = stepper.table()
            if inv is None:
                s = decoder.decode(table)
            else:
                s = int(inv[decoder.decode(np.ascontiguousarray(table[inv]))])
            stepper.push(s)
            out[i] = s
        return out.reshape(n_frames, h, w)

    # -- lanes (several segments at once; defaults loop over the fast paths) -------------
    def intervals_lanes(self, videos: Sequence[np.ndarray]
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``intervals`` of each token video (T_b, H, W) of ``videos``, in order."""
        for video in videos:
            yield self.intervals(video)

    def decode_lanes(self, jobs: Sequence[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
        """``decode(words, n_frames)`` of each ``(words, n_frames)`` job, in order."""
        for words, n_frames in jobs:
            yield self.decode(words, n_frames)


def check_table(table: np.ndarray, vocab: int, precision: int) -> None:
    """Assert the contract on a table (or a stack of tables); used by tests and debugging."""
    t = np.asarray(table)
    if t.dtype != np.int32 or t.shape[-1] != vocab:
        raise AssertionError(f"table dtype/shape {t.dtype}{t.shape}, want int32[..., {vocab}]")
    if t.min() < 1:
        raise AssertionError("table has a frequency < 1")
    sums = t.astype(np.int64).sum(axis=-1)
    if not np.all(sums == 2**precision):
        raise AssertionError(f"table totals {np.unique(sums)[:5]} != 2**{precision}")
