"""The lane runner: many segments of one ``TritonPredictor`` per launch, in batches sized to
the device memory (see ``nacc.kernels.triton.batch``, its public face, for the contract).

Functions here take a ``TritonPredictor`` (``tp``: ``.driver``, ``.backend``, ``.inner``);
wrapping a CPU predictor is ``batch``'s job, so this module imports no predictor.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from nacc import coder

from .base import LaneBatch
from .runtime import Backend

DEFAULT_INTERPRET_BATCH = 64
INTERPRET_BYTES = 1 << 30      # state memory of one interpreted batch (host RAM)
_BYTES_PER_TOKEN = 16          # tokens, start/freq and headroom, per token of a lane


class GpuFallbackWarning(RuntimeWarning):
    """A batch did not fit the GPU and was split, or ran on the CPU."""


def _is_oom(err: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom) or "out of memory" in str(err).lower()


def _free_cache(backend: Backend) -> None:
    if backend.flavor == "cuda":
        import torch

        torch.cuda.empty_cache()


def auto_batch(pred, backend: Backend, lane_tokens: int, n_items: int) -> int:
    """Largest batch that fits 80% of the free device memory (``n_items`` at most)."""
    per_lane = pred.driver.state_bytes_per_lane() + _BYTES_PER_TOKEN * max(1, lane_tokens)
    if backend.flavor != "cuda":
        return max(1, min(n_items, DEFAULT_INTERPRET_BATCH, INTERPRET_BYTES // per_lane))
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(backend.device))
    return max(1, min(n_items, int(0.8 * free) // per_lane))


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(k, min(n, k + size))) for k in range(0, n, size)]


class _Runner:
    """Runs ``op(pred, items) -> pending`` / ``fetch(pending) -> list`` over batches, one
    batch ahead, splitting a batch that does not fit and running lone lanes on the CPU."""

    def __init__(self, pred, launch, fetch, on_cpu):
        self.pred = pred
        self.launch = launch
        self.fetch = fetch
        self.on_cpu = on_cpu

    def _start(self, items):
        try:
            return ("gpu", self.launch(items))
        except Exception as err:
            if not _is_oom(err):
                raise
            _free_cache(self.pred.backend)
            if len(items) == 1:
                warnings.warn(f"{self.pred.backend}: one segment of {self.pred.name!r} does "
                              "not fit in GPU memory; computing it on the CPU",
                              GpuFallbackWarning, stacklevel=3)
                return ("done", [self.on_cpu(items[0])])
            half = len(items) // 2
            warnings.warn(f"{self.pred.backend}: out of memory with {len(items)} segments in "
                          f"flight; splitting into {half} + {len(items) - half}",
                          GpuFallbackWarning, stacklevel=3)
            return ("done", self._finish(self._start(items[:half]))
                    + self._finish(self._start(items[half:])))

    def _finish(self, pending):
        kind, value = pending
        return value if kind == "done" else self.fetch(value)

    def run(self, items: Sequence, batch: int) -> Iterator[tuple[list[int], list]]:
        """Yields ``(indices, results)`` per batch, in order."""
        chunks = _chunks(len(items), batch)
        if not chunks:
            return
        pending = self._start([items[k] for k in chunks[0]])
        for j, chunk in enumerate(chunks):
            results = self._finish(pending)
            if j + 1 < len(chunks):
                pending = self._start([items[k] for k in chunks[j + 1]])
            yield chunk, results


# -- intervals (encode) ------------------------------------------------------------------
def _intervals_runner(tp):
    drv = tp.driver

    def launch(arrays):
        lb = LaneBatch.for_tokens(arrays, tp.backend.device)
        state = drv.new_state(lb.n_lanes)
        start, freq = drv.intervals(lb, state)
        return lb, start, freq

    def fetch(pending):
        lb, start, freq = pending
        s = start.cpu().numpy().view(np.uint32)
        f = freq.cpu().numpy().view(np.uint32)
        o = lb.offsets
        return [(s[o[k]:o[k + 1]].copy(), f[o[k]:o[k + 1]].copy()) for k in range(lb.n_lanes)]

    return _Runner(tp, launch, fetch, lambda arr: tp.inner.intervals(arr))


def _token_batches(tp, token_arrays, batch):
    """``(int32 token arrays, batch size)`` for the encode-side runners."""
    arrays = [np.ascontiguousarray(a, np.int32) for a in token_arrays]
    size = (batch or auto_batch(tp, tp.backend, max(a.size for a in arrays), len(arrays))
            if arrays else 0)
    return arrays, size


def intervals_many(tp, token_arrays: Sequence[np.ndarray],
                   batch: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(start, freq)`` uint32 of each token array (all of one predictor's shape)."""
    arrays, size = _token_batches(tp, token_arrays, batch)
    if not arrays:
        return []
    out: list = [None] * len(arrays)
    for idx, res in _intervals_runner(tp).run(arrays, size):
        for k, r in zip(idx, res):
            out[k] = r
    return out


def encode_many(tp, token_arrays: Sequence[np.ndarray], batch: int | None = None,
                threads: int | None = None) -> list[np.ndarray]:
    """rANS words of each token array; tables on the device, coding on the CPU while the
    device computes the next batch."""
    arrays, size = _token_batches(tp, token_arrays, batch)
    if not arrays:
        return []
    out: list = [None] * len(arrays)
    threads = threads or os.cpu_count() or 1
    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        for idx, res in _intervals_runner(tp).run(arrays, size):
            words = pool.map(lambda sf: coder.encode_intervals(sf[0], sf[1], tp.precision), res)
            for k, w in zip(idx, words):
                out[k] = w
    return out


# -- decode ------------------------------------------------------------------------------
def _decode_runner(tp):
    drv = tp.driver

    def launch(jobs):
        lb = LaneBatch.for_words([w for w, _ in jobs], [n for _, n in jobs], tp.backend.device)
        state = drv.new_state(lb.n_lanes)
        drv.decode(lb, state)
        return lb

    def fetch(lb):
        return lb.token_arrays()

    def on_cpu(job):
        words, n = job
        return tp.inner.decode(words, n // tp.frame_size).ravel()

    return _Runner(tp, launch, fetch, on_cpu)


def decode_tokens_many(tp, jobs: Sequence[tuple[np.ndarray, int]],
                       batch: int | None = None) -> list[np.ndarray]:
    """Flat int32 tokens of each ``(words, n_tokens)`` job."""
    jobs = [(np.ascontiguousarray(w, np.uint32), int(n)) for w, n in jobs]
    if not jobs:
        return []
    size = batch or auto_batch(tp, tp.backend, max(n for _, n in jobs), len(jobs))
    out: list = [None] * len(jobs)
    for idx, res in _decode_runner(tp).run(jobs, size):
        for k, r in zip(idx, res):
            out[k] = r
    return out


def decode_many(tp, segments: Sequence[tuple[np.ndarray, int]],
                batch: int | None = None) -> list[np.ndarray]:
    """Tokens (T, H, W) of each ``(words, n_frames)`` segment decoded with ``tp``."""
    h, w = tp.frame_shape
    flat = decode_tokens_many(tp, [(wd, t * h * w) for wd, t in segments], batch)
    return [f.reshape(t, h, w) for f, (_, t) in zip(flat, segments)]
