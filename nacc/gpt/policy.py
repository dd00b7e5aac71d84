"""The context policy of the ``gpt`` predictor: which frames each window holds and codes.

A *window* of ``n`` frames is the id sequence ``BOS, frame (raster), BOS, frame, ...`` at
positions 0, 1, ... (positions restart in every window).  The first window holds frames
``0 .. window - 1`` and codes all of them; after it, the window that codes frames from
``code`` on holds frames ``code + stride - window .. code + stride - 1`` and codes the last
``stride`` of them: its first frames are context only.  A video of T frames stops at frame
T - 1 (the last window codes fewer frames; what it holds does not depend on T, so a decoder
that does not know T yet computes the same windows).  ``stride = window`` restarts
the context every ``window`` frames; a smaller stride costs ``window / stride`` passes per
frame and gives every coded frame at least ``window - stride`` frames of context.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Window(NamedTuple):
    start: int      # first frame held
    code: int       # first frame coded
    end: int        # one past the last frame (held and coded)


def window_at(code: int, window: int, stride: int) -> Window:
    """The window that codes frames from ``code`` on (``code`` 0 or the end of the window
    before), not cut at the end of the video."""
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} outside 1..{window}")
    if code == 0:
        return Window(0, 0, window)
    return Window(max(0, code + stride - window), code, code + stride)


def windows(n_frames: int, window: int, stride: int) -> list[Window]:
    """The windows of a video of ``n_frames`` frames, the last cut at its end."""
    out = []
    code = 0
    while code < n_frames:
        w = window_at(code, window, stride)
        out.append(w._replace(end=min(w.end, n_frames)))
        code = w.end
    return out


def window_ids(frames: np.ndarray, bos: int) -> np.ndarray:
    """The id sequence of frames (n, H, W): each frame's tokens after a BOS."""
    n = len(frames)
    flat = np.asarray(frames, np.int64).reshape(n, int(np.prod(np.shape(frames)[1:])))
    return np.concatenate([np.full((n, 1), bos, np.int64), flat], axis=1).reshape(-1)


def coded_rows(w: Window, frame_size: int) -> np.ndarray:
    """Positions in the window whose outputs are the tables of its coded tokens, in coding
    order (the position of the id just before each token)."""
    per = frame_size + 1
    f = np.arange(w.code - w.start, w.end - w.start)
    return (f[:, None] * per + np.arange(frame_size)[None, :]).reshape(-1)


class LaneFeed:
    """What one segment being decoded feeds its model, step by step, under this policy:
    at the start of a window, the window's context frames and the next frame's BOS (the
    model's cache restarts first); then, after each decoded token, that token (and the next
    frame's BOS after a frame's last token).  Backends keep the cache; this keeps the
    frames."""

    def __init__(self, frame_shape: tuple[int, int], window: int, stride: int, bos: int):
        self.frame_shape = frame_shape
        self.window, self.stride, self.bos = window, stride, bos
        self.frames: list[np.ndarray] = []      # the last ``window`` frames
        self.done = 0                           # frames decoded
        self.cur = np.zeros(frame_shape[0] * frame_shape[1], np.int32)
        self.win: Window | None = None
        self.i = 0                              # token in the frame
        self.pending: list[int] = []

    def next_ids(self) -> tuple[np.ndarray, bool]:
        """``(ids, restart)``: the ids to feed (the last one's logits give the next token's
        table); ``restart``: the cache must be emptied before them (a new window)."""
        f = self.done
        restart = self.win is None or (self.i == 0 and f == self.win.end)
        if restart:
            self.win = window_at(f, self.window, self.stride)
            n_ctx = f - self.win.start
            ctx = np.asarray(self.frames[len(self.frames) - n_ctx:], np.int32).reshape(
                n_ctx, *self.frame_shape)
            self.pending = [*window_ids(ctx, self.bos).tolist(), self.bos]
        ids = np.asarray(self.pending, np.int64)
        self.pending = []
        return ids, restart

    def push(self, symbol: int) -> None:
        self.cur[self.i] = symbol
        self.i += 1
        self.pending = [symbol]
        if self.i == len(self.cur):
            self.frames.append(self.cur.reshape(self.frame_shape).copy())
            self.frames = self.frames[-self.window:]      # older frames are never context
            self.done += 1
            self.i = 0
            self.pending.append(self.bos)                 # the next frame's BOS
