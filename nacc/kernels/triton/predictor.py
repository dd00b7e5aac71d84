"""``TritonPredictor``: a predictor whose tables come from the Triton kernels.

It wraps a CPU predictor and keeps its identity (``name``, ``params()``, ``model_hash()``,
``precision``, vocabulary, frame shape), so an archive written through it is the archive
the CPU predictor writes, and the header never learns the device.  The four contract paths:

* ``tables``: one launch per frame (TABLES mode), the state kept on the device between frames;
* ``stepper``: one PEEK launch per ``table()``, one PUSH launch per ``push()``;
* ``intervals``: one INTERVALS launch for the whole segment, copied back;
* ``decode``: one DECODE launch (rANS decoding fused in the kernel), tokens copied back;
* ``intervals_lanes`` / ``decode_lanes``: many segments per launch, through the lane
  runner of ``nacc.kernels.triton.runner`` (batches sized to the free GPU memory, the next
  batch launched while the previous one is copied back).
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from nacc.errors import NaccError
from nacc.predictors.base import Predictor, Stepper

from . import runner
from .base import LaneBatch, driver_for
from .runtime import Backend


class TritonPredictor(Predictor):
    """Same contract and identity as ``inner``; tables computed by ``backend``."""

    name = "triton"          # replaced per instance by the wrapped predictor's name
    lane_batch = 1 << 14     # lanes handed over per call; the runner splits by GPU memory

    def __init__(self, inner: Predictor, backend: Backend):
        self.inner = inner
        self.backend = backend
        # per instance, the wrapped predictor's registered name (its identity in archives)
        self.name = inner.name  # type: ignore[misc]
        self.precision = inner.precision
        self.order = inner.order                 # interval layout (None: symbol order)
        self.vocab = inner.vocab
        self.frame_shape = inner.frame_shape
        self.driver = driver_for(inner, backend)

    def __repr__(self) -> str:
        return f"TritonPredictor({self.name!r}, {self.backend})"

    def __getattr__(self, attr):
        # attributes of the wrapped predictor (e.g. prevframe's n_ctx) stay visible
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def params(self) -> dict:
        return self.inner.params()

    def model_hash(self) -> bytes:
        return self.inner.model_hash()

    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        tokens = np.ascontiguousarray(tokens, np.int32)
        batch = LaneBatch.for_tokens([tokens], self.backend.device)
        state = self.driver.new_state(1)
        fs = self.frame_size
        for t in range(len(tokens)):
            yield self.driver.tables(batch, state, t * fs, (t + 1) * fs)[0].cpu().numpy()

    def stepper(self) -> Stepper:
        return _TritonStepper(self)

    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return runner.intervals_many(self, [tokens])[0]

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        return next(self.decode_lanes([(words, n_frames)]))

    def intervals_lanes(self, videos):
        yield from runner.intervals_many(self, videos)

    def decode_lanes(self, jobs):
        yield from runner.decode_many(self, list(jobs))


class _TritonStepper(Stepper):
    """Token by token on the device: the history lives in a growing device buffer."""

    def __init__(self, pred: TritonPredictor):
        import torch

        self._p = pred
        self._state = pred.driver.new_state(1)
        self._n = 0
        dev = pred.backend.device
        self._batch = LaneBatch(torch.zeros(max(16, 2 * pred.frame_size), dtype=torch.int32,
                                            device=dev),
                                torch.zeros(1, dtype=torch.int64, device=dev),
                                torch.full((1,), 2**31 - 1, dtype=torch.int32, device=dev),
                                np.array([2**31 - 1], np.int64))

    def table(self) -> np.ndarray:
        return self._p.driver.peek(self._batch, self._state, self._n).cpu().numpy()

    def push(self, symbol: int) -> None:
        import torch

        tok = self._batch.tok
        if self._n >= tok.numel():
            grown = torch.zeros(2 * tok.numel(), dtype=torch.int32, device=tok.device)
            grown[:tok.numel()] = tok
            self._batch.tok = tok = grown
        tok[self._n] = int(symbol)
        self._p.driver.push(self._batch, self._state, self._n)
        self._n += 1


_CHECKED: set = set()
CHECK_FRAME = (2, 8)
CHECK_FRAMES = {"cuda": 3, "interpret": 2}     # the interpreter runs ~5 ms per token


def self_check(inner: Predictor, backend: Backend) -> None:
    """Guard against a kernel that no longer follows its predictor (a spec changed on one
    side only): the first time a (predictor, parameters, vocabulary, model) runs on a GPU,
    code a small seeded clip (3 frames of 2x8, half of each frame copied from the previous
    one; 2 frames under the interpreter) on both sides and raise NaccError if any interval
    differs.  A few milliseconds on a GPU.  A neural model codes 2 frames of its own frame
    shape and decodes them on the device too."""
    key = (type(inner), json.dumps(inner.params(), sort_keys=True), inner.vocab,
           inner.model_hash(), str(backend))
    if key in _CHECKED:
        return
    if getattr(inner, "im", None) is not None:      # a neural model: its own frame shape
        small, shape, n_frames = inner, inner.frame_shape, 2
    else:
        small, shape, n_frames = (type(inner)(inner.vocab, CHECK_FRAME, **inner.params()),
                                  CHECK_FRAME, CHECK_FRAMES[backend.flavor])
    rng = np.random.default_rng(12345)
    tok = rng.integers(0, inner.vocab, (n_frames, *shape)).astype(np.int32)
    for t in range(1, n_frames):
        keep = rng.random(shape) < 0.5
        tok[t][keep] = tok[t - 1][keep]
    ref = small.intervals(tok)
    drv = driver_for(small, backend)
    start, freq = drv.intervals(LaneBatch.for_tokens([tok], backend.device), drv.new_state(1))
    got = (start.cpu().numpy()[:tok.size], freq.cpu().numpy()[:tok.size])
    ok = np.array_equal(ref[0], got[0].view(np.uint32)) and np.array_equal(
        ref[1], got[1].view(np.uint32))
    if ok and getattr(inner, "im", None) is not None:    # the decode kernel too
        from nacc import coder

        lb = LaneBatch.for_words([coder.encode_intervals(*ref, small.precision)], [tok.size],
                                 backend.device)
        drv.decode(lb, drv.new_state(1))
        ok = np.array_equal(lb.token_arrays()[0], tok.ravel())
    if not ok:
        raise NaccError(f"{backend}: the GPU kernel of predictor {inner.name!r} disagrees with "
                        "its CPU implementation on a test clip (the two no longer follow the "
                        "same spec); use --device cpu")
    _CHECKED.add(key)
