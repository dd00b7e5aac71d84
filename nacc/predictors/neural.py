"""``transformer`` and ``lstm``: trained neural predictors with integer inference.

The predictor's parameter ``model`` is the path of a model folder (``config.json`` +
``weights-<sha256[:16]>.npz``, see ``nacc.neural.export``); ``model_hash()`` is the sha256
of the weights file, and loading refuses a folder whose weights do not match it.  Tables
follow the integer spec of ``nacc.neural.intref``; the numba kernels
(``nacc.kernels.cpu.neural``) compute them: ``intervals`` runs the frame-level pass once per
frame and the head for all tokens of the frame in parallel, ``decode`` runs the frame-level
pass once per frame and the head + rANS per token in one fused loop.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from nacc.errors import NaccError
from nacc.kernels.cpu import neural as K
from nacc.predictors.base import Predictor, Stepper, register


def _load(path):
    from nacc.neural.export import ModelError, load_model

    try:
        return load_model(path)
    except ModelError as e:
        raise NaccError(str(e)) from None


class _NeuralStepper(Stepper):
    """Decode order, one token at a time (frame-level pass at each frame start)."""

    def __init__(self, pred: "_Neural"):
        self.p = pred
        h, w = pred.frame_shape
        self.frames: list[np.ndarray] = []
        self.frame_no = 0  # frames fully decoded
        self.i = 0
        self.hs = np.zeros((h * w, pred.d), np.int64)
        self.cs = np.zeros_like(self.hs)
        self.feat = np.empty_like(self.hs)
        self.tab = np.empty(pred.vocab, np.int32)
        self.mot = np.zeros(20, np.int64)  # motion counts, carried across frames
        self.bufs = (np.empty(pred.hw[1].shape[0], np.int64), np.empty(pred.hw[1].shape[1], np.int64),
                     np.empty(pred.vocab, np.int64))

    def table(self) -> np.ndarray:
        p = self.p
        h, w = p.frame_shape
        if self.i == 0:  # frame start: the frame-level pass over the last K frames
            self.t = len(self.frames)  # at most K (older frames are dropped)
            self.video = np.zeros((self.t + 1, h, w), np.int32)
            if self.t:
                self.video[:self.t] = np.stack(self.frames)
            K._frame_feats(self.video, self.t, p.arch_id, p.cfg.k_frames, p.cfg.radius,
                           p.cfg.n_heads, p.cfg.pad, p.tw, p.lw, self.hs, self.cs, self.feat)
            K.motion_start(self.mot, self.frame_no, h * w)
        y, x = divmod(self.i, w)
        K.head_table(self.video, self.t, y, x, self.feat[self.i], p.hw, p.sw, self.mot,
                     p.cfg.motion_clamp, p.cfg.subst, p.cfg.pad, p.precision, *self.bufs,
                     self.tab)
        return self.tab.copy()

    def push(self, symbol: int) -> None:
        h, w = self.p.frame_shape
        y, x = divmod(self.i, w)
        self.video[self.t, y, x] = symbol
        K.motion_push(self.video, self.t, self.i, self.mot)
        self.i += 1
        if self.i == h * w:
            self.frame_no += 1
            self.frames.append(self.video[self.t].copy())
            self.frames = self.frames[-self.p.cfg.k_frames:]
            self.i = 0


class _Neural(Predictor):
    arch: str

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
        self.tw, self.lw, self.hw, self.sw = K.pack(self.im)

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
        v = np.ascontiguousarray(tokens, np.int32)
        if v.ndim != 3 or v.shape[1:] != self.frame_shape:
            raise NaccError(f"tokens of shape {v.shape}, model wants (T, {self.frame_shape[0]}, "
                            f"{self.frame_shape[1]})")
        return v

    def tables(self, tokens) -> Iterator[np.ndarray]:
        v = self._video(tokens)
        h, w = self.frame_shape
        hs = np.zeros((h * w, self.d), np.int64)
        cs = np.zeros_like(hs)
        for t in range(len(v)):
            out = np.empty((h * w, self.vocab), np.int32)
            K.frame_tables(v, t, self.arch_id, self.cfg.k_frames, self.cfg.radius,
                           self.cfg.n_heads, self.cfg.pad, self.precision, self.tw, self.lw,
                           self.hw, self.sw, self.cfg.motion_clamp, self.cfg.subst, hs, cs,
                           out)
            yield out

    def stepper(self) -> Stepper:
        self._check_shape()
        return _NeuralStepper(self)

    def intervals(self, tokens):
        v = self._video(tokens)
        return K.encode_intervals(v, self.arch_id, self.cfg.k_frames, self.cfg.radius,
                                  self.cfg.n_heads, self.cfg.pad, self.precision, self.tw,
                                  self.lw, self.hw, self.sw, self.cfg.motion_clamp,
                                  self.cfg.subst, self.d)

    def decode(self, words, n_frames):
        self._check_shape()
        h, w = self.frame_shape
        return K.decode(np.ascontiguousarray(words, np.uint32), int(n_frames), h, w,
                        self.arch_id, self.cfg.k_frames, self.cfg.radius, self.cfg.n_heads,
                        self.cfg.pad, self.precision, self.tw, self.lw, self.hw, self.sw,
                        self.cfg.motion_clamp, self.cfg.subst, self.d)


@register
class Transformer(_Neural):
    name = "transformer"
    arch = "transformer"


@register
class LSTM(_Neural):
    name = "lstm"
    arch = "lstm"
