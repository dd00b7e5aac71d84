"""Many segments at once on the device: the lane runner behind ``TritonPredictor``'s lane
methods (the archive pipeline, ``nacc.codec``, hands it batches of lanes).

Lanes of one launch share a predictor (same name, parameters, vocabulary and frame shape):
``encode_many`` / ``decode_many`` take one predictor and its segments.  Segments are cut
into batches of at most
``batch`` lanes that run one after the other.  Encoding is pipelined: while the
CPU rANS coder (``nacc.coder``, numba, one thread per lane) codes batch k, the kernel of
batch k + 1 is already running.  Decoding runs the rANS decoder inside the kernel (a decode
step needs the table just computed, so it cannot wait for the CPU), and the host checks and
formats batch k while batch k + 1 decodes.

Nothing here changes a byte: every lane is coded exactly as ``pred.intervals`` /
``coder.encode_intervals`` code it alone, whatever the batch size or lane count.

Memory: ``batch=None`` picks the largest batch whose state and buffers fit in 80% of the
free GPU memory.  If an allocation still fails, the batch is split in halves (with a
warning); a single lane that does not fit is computed on the CPU (with a warning).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nacc.errors import NaccError

from . import runner
from .base import LaneBatch
from .predictor import TritonPredictor
from .runner import DEFAULT_INTERPRET_BATCH, GpuFallbackWarning, auto_batch
from .runtime import resolve

__all__ = ["DEFAULT_INTERPRET_BATCH", "GpuFallbackWarning", "LaneBatch", "auto_batch",
           "decode_many", "decode_tokens_many", "encode_many", "intervals_many"]


def _as_triton(pred, device: str | None) -> TritonPredictor:
    if isinstance(pred, TritonPredictor):
        return pred
    backend = resolve(device or "auto")
    if backend is None:
        raise NaccError(f"device {device!r}: no GPU backend (use the CPU predictor directly)")
    return TritonPredictor(pred, backend)


def intervals_many(pred, token_arrays: Sequence[np.ndarray], batch: int | None = None,
                   device: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(start, freq)`` uint32 of each token array (all of one predictor's shape)."""
    return runner.intervals_many(_as_triton(pred, device), token_arrays, batch)


def encode_many(pred, token_arrays: Sequence[np.ndarray], batch: int | None = None,
                device: str | None = None, threads: int | None = None) -> list[np.ndarray]:
    """rANS words of each token array; tables on the device, coding on the CPU while the
    device computes the next batch."""
    return runner.encode_many(_as_triton(pred, device), token_arrays, batch, threads)


def decode_tokens_many(pred, jobs: Sequence[tuple[np.ndarray, int]], batch: int | None = None,
                       device: str | None = None) -> list[np.ndarray]:
    """Flat int32 tokens of each ``(words, n_tokens)`` job."""
    return runner.decode_tokens_many(_as_triton(pred, device), jobs, batch)


def decode_many(pred, segments: Sequence[tuple[np.ndarray, int]], batch: int | None = None,
                device: str | None = None) -> list[np.ndarray]:
    """Tokens (T, H, W) of each ``(words, n_frames)`` segment decoded with ``pred``."""
    return runner.decode_many(_as_triton(pred, device), segments, batch)
