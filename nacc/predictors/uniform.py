"""``uniform``: every token gets the same table; the baseline and the worst case.

Spec (P = 24): ``base = 2**24 // V``, ``r = 2**24 - base * V``; symbol ``s`` has frequency
``base + 1`` if ``s < r`` else ``base``, so its interval starts at ``s * base + min(s, r)``.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nacc.predictors.base import Predictor, Stepper, register


def uniform_table(vocab: int, precision: int) -> np.ndarray:
    """The int32 (V,) table of the spec above."""
    base, r = divmod(2**precision, vocab)
    table = np.full(vocab, base, np.int32)
    table[:r] += 1
    return table


class _UniformStepper(Stepper):
    def __init__(self, table: np.ndarray):
        self._table = table

    def table(self) -> np.ndarray:
        return self._table.copy()

    def push(self, symbol: int) -> None:
        pass


@register
class Uniform(Predictor):
    name = "uniform"
    kernels = {"triton": "nacc.kernels.triton.drivers"}

    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        row = uniform_table(self.vocab, self.precision)
        for _ in range(len(tokens)):
            yield np.broadcast_to(row, (self.frame_size, self.vocab)).copy()

    def stepper(self) -> Stepper:
        return _UniformStepper(uniform_table(self.vocab, self.precision))

    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base, r = divmod(2**self.precision, self.vocab)
        s = np.ascontiguousarray(tokens, dtype=np.int64).ravel()
        start = (s * base + np.minimum(s, r)).astype(np.uint32)
        freq = (base + (s < r)).astype(np.uint32)
        return start, freq

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        from nacc.kernels.cpu import uniform as K

        h, w = self.frame_shape
        out = K.decode(np.ascontiguousarray(words, np.uint32), n_frames * h * w, self.vocab,
                       self.precision)
        return out.reshape(n_frames, h, w)
