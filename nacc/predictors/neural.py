"""``transformer`` and ``lstm``: trained neural predictors with integer inference.

The predictor's parameter ``model`` is the path of a model folder (``config.json`` +
``weights-<sha256[:16]>.npz``, see ``nacc.neural.modelfile``); ``model_hash()`` is the
sha256 of the weights file, and loading refuses a folder whose weights do not match it or
do not fit the config.  Tables follow the integer spec of ``nacc.neural.intref``.  Coding
needs numpy and numba only (no torch):

* ``tables``, ``intervals``, ``decode`` and the lane methods run the batched kernels of
  ``nacc.kernels.cpu.neural_lanes`` (many segments in lockstep; one segment is a batch of
  one lane);
* ``stepper`` (decode order, one token at a time) runs the per-token kernels of
  ``nacc.kernels.cpu.neural``: the frame-level pass at each frame start, the head per token.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nacc.errors import NaccError
from nacc.predictors.base import Predictor, Stepper, register

# lanes per batch: enough rows for the head's matrix product to run near full speed
LANE_BATCH = 64


def _load(path):
    from nacc.neural.modelfile import load_model

    return load_model(path)


class _NeuralStepper(Stepper):
    """Decode order, one token at a time (frame-level pass at each frame start)."""

    def __init__(self, pred: _Neural):
        from nacc.kernels.cpu import neural as K

        self.K = K
        self.p = pred
        self.w = K.pack(pred.im)
        self.dims = K.dims(pred.cfg)
        h, w = pred.frame_shape
        self.frames: list[np.ndarray] = []
        self.frame_no = 0  # frames fully decoded
        self.i = 0
        self.hs = np.zeros((h * w, pred.d), np.int64)
        self.cs = np.zeros_like(self.hs)
        self.feat = np.empty_like(self.hs)
        self.tab = np.empty(pred.vocab, np.int32)
        self.mot = np.zeros(20, np.int64)  # motion counts, carried across frames
        head = self.w.head
        self.bufs = K._head_bufs(head, pred.vocab)

    def table(self) -> np.ndarray:
        p, K = self.p, self.K
        h, w = p.frame_shape
        if self.i == 0:  # frame start: the frame-level pass over the last K frames
            self.t = len(self.frames)  # at most K (older frames are dropped)
            self.video = np.zeros((self.t + 1, h, w), np.int32)
            if self.t:
                self.video[:self.t] = np.stack(self.frames)
            K._frame_feats(self.video, self.t, self.dims, self.w, self.hs, self.cs, self.feat)
            K.motion_start(self.mot, self.frame_no, h * w)
        y, x = divmod(self.i, w)
        K.head_table(self.video, self.t, y, x, self.feat[self.i], self.w.head, self.mot,
                     self.dims, self.bufs, self.tab)
        return self.tab.copy()

    def push(self, symbol: int) -> None:
        h, w = self.p.frame_shape
        y, x = divmod(self.i, w)
        self.video[self.t, y, x] = symbol
        self.K.motion_push(self.video, self.t, self.i, self.mot)
        self.i += 1
        if self.i == h * w:
            self.frame_no += 1
            self.frames.append(self.video[self.t].copy())
            self.frames = self.frames[-self.p.cfg.k_frames:]
            self.i = 0


class _Neural(Predictor):
    arch: str
    kernels = {"triton": "nacc.kernels.triton.neural"}
    lane_batch = LANE_BATCH

    def __init__(self, vocab, frame_shape, model: str):
        super().__init__(vocab, frame_shape)
        self.model_path = str(model)
        self.im, self._hash = _load(model)
        cfg = self.im.cfg
        if cfg.arch != self.arch:
            raise NaccError(f"{model}: a {cfg.arch} model, not {self.arch}")
        if cfg.vocab != self.vocab:
            raise NaccError(f"{model}: trained for vocabulary {cfg.vocab}, data has {self.vocab}")
        # the frame shape is checked when coding (a probe instance may use a dummy shape)
        self._shape_ok = tuple(cfg.frame_shape) == self.frame_shape
        self.cfg = cfg
        self.precision = cfg.precision
        self.arch_id = 0 if cfg.arch == "transformer" else 1
        self.d = cfg.d_model
        self._lanes = None
        if self._shape_ok:      # packed now, so that forked workers inherit it
            from nacc.kernels.cpu.neural_lanes import LaneModel

            self._lanes = LaneModel(self.im)

    @property
    def lanes(self):
        """The model packed for the batched kernels."""
        self._check_shape()
        return self._lanes

    def params(self) -> dict:
        return {"model": self.model_path}

    def model_hash(self) -> bytes:
        return self._hash

    def _check_shape(self):
        if not self._shape_ok:
            h, w = self.cfg.frame_shape
            raise NaccError(f"{self.model_path}: trained for {h}x{w} frames, data has "
                            f"{self.frame_shape[0]}x{self.frame_shape[1]}")

    def _video(self, tokens):
        self._check_shape()
        return self.video(tokens)

    def tables(self, tokens) -> Iterator[np.ndarray]:
        yield from self.lanes.tables(self._video(tokens))

    def stepper(self) -> Stepper:
        self._check_shape()
        return _NeuralStepper(self)

    def intervals(self, tokens):
        return self.lanes.intervals([self._video(tokens)])[0]

    def decode(self, words, n_frames):
        return self.lanes.decode([(words, int(n_frames))])[0]

    def intervals_lanes(self, videos):
        yield from self.lanes.intervals([self._video(v) for v in videos])

    def decode_lanes(self, jobs):
        yield from self.lanes.decode([(w, int(n)) for w, n in jobs])


@register
class Transformer(_Neural):
    name = "transformer"
    arch = "transformer"


@register
class LSTM(_Neural):
    name = "lstm"
    arch = "lstm"
