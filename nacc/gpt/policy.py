"""The context policy of the ``gpt`` predictor: which frames each window holds and codes.

A *window* of ``n`` frames is the id sequence ``BOS, frame (raster), BOS, frame, ...`` at
positions 0, 1, ... (positions restart in every window).  ``windows(T, window, stride)``:
the first window holds frames ``0 .. min(T, window) - 1`` and codes all of them; after it,
each window codes the next ``stride`` frames (fewer at the end) and holds the ``window``
frames ending with them: its first frames are context only.  ``stride = window`` restarts
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


def windows(n_frames: int, window: int, stride: int) -> list[Window]:
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} outside 1..{window}")
    out = []
    end = min(n_frames, window)
    if n_frames > 0:
        out.append(Window(0, 0, end))
    while end < n_frames:
        code = end
        end = min(code + stride, n_frames)
        out.append(Window(max(0, end - window), code, end))
    return out


def window_ids(frames: np.ndarray, bos: int) -> np.ndarray:
    """The id sequence of frames (n, H, W): each frame's tokens after a BOS."""
    n = len(frames)
    flat = np.asarray(frames, np.int64).reshape(n, -1)
    return np.concatenate([np.full((n, 1), bos, np.int64), flat], axis=1).reshape(-1)


def coded_rows(w: Window, frame_size: int) -> np.ndarray:
    """Positions in the window whose outputs are the tables of its coded tokens, in coding
    order (the position of the id just before each token)."""
    per = frame_size + 1
    f = np.arange(w.code - w.start, w.end - w.start)
    return (f[:, None] * per + np.arange(frame_size)[None, :]).reshape(-1)
