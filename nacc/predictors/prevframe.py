"""``prevframe``: adaptive integer counts conditioned on the token at the same position in
the previous frame.

Spec (all integers; P = 24, V = vocabulary, ``C = min(V, max(1, 2**22 // V))`` contexts):

* State: ``cond[C + 1, V]`` and ``order0[V]`` uint32 counts, all zero at the start.
* Context of a token: ``0`` in the first frame, else ``1 + (prev % C)`` where ``prev`` is the
  token at the same (row, column) one frame earlier.
* Score of symbol s: ``score[s] = 1 + 32 * cond[ctx, s] + order0[s]``; ``S = sum(score)``.
* Table: ``freq[s] = 1 + score[s] * (2**24 - V) // S`` (floor); the remainder
  ``2**24 - sum(freq)`` (always < V) goes to the first symbol of largest score.
* Update with the actual token x: ``cond[ctx, x] += 1``, ``order0[x] += 1``; when
  ``cond[ctx]`` sums to more than 4096 after the update, that row is halved (floor);
  likewise ``order0`` above 65536.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nacc.kernels.cpu import prevframe as K
from nacc.predictors.base import Predictor, Stepper, register


class _State:
    def __init__(self, vocab: int, n_ctx: int):
        self.cond = np.zeros((n_ctx + 1, vocab), np.uint32)
        self.order0 = np.zeros(vocab, np.uint32)
        self.sums = np.zeros(n_ctx + 2, np.int64)


class _PrevFrameStepper(Stepper):
    def __init__(self, pred: PrevFrame):
        self._p = pred
        self._st = _State(pred.vocab, pred.n_ctx)
        self._history: list[int] = []
        self._ctx = 0

    def table(self) -> np.ndarray:
        i = len(self._history)
        fs = self._p.frame_size
        self._ctx = 0 if i < fs else 1 + self._history[i - fs] % self._p.n_ctx
        out = np.empty(self._p.vocab, np.int32)
        K.fill_table(self._st.cond, self._st.order0, self._st.sums, self._ctx, out)
        return out

    def push(self, symbol: int) -> None:
        K.update(self._st.cond, self._st.order0, self._st.sums, self._ctx, int(symbol))
        self._history.append(int(symbol))


@register
class PrevFrame(Predictor):
    name = "prevframe"
    kernels = {"triton": "nacc.kernels.triton.drivers"}
    precision = K.PRECISION

    @property
    def n_ctx(self) -> int:
        return K.n_contexts(self.vocab)

    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        flat = np.ascontiguousarray(tokens, np.int32).ravel()
        st = _State(self.vocab, self.n_ctx)
        for t in range(len(tokens)):
            out = np.empty((self.frame_size, self.vocab), np.int32)
            K.run_tables(flat, self.frame_size, self.n_ctx, self.vocab,
                         st.cond, st.order0, st.sums, t, out)
            yield out

    def stepper(self) -> Stepper:
        return _PrevFrameStepper(self)

    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = np.ascontiguousarray(tokens, np.int32).ravel()
        return K.run_intervals(flat, self.frame_size, self.n_ctx, self.vocab)

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        h, w = self.frame_shape
        out = K.run_decode(np.ascontiguousarray(words, np.uint32), n_frames * h * w,
                           self.frame_size, self.n_ctx, self.vocab)
        return out.reshape(n_frames, h, w)
