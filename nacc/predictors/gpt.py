"""``gpt``: commaVQ's GPT-2 world model (imported with ``nacc import-gpt``) in exact integers.

Parameters: ``model`` (a gpt model folder, ``nacc.gpt.modelfile``), ``window`` (frames per
window, default 20) and ``stride`` (frames coded per window after the first, default 5);
all three are recorded in the archive, ``model_hash()`` is the sha256 of the folder's
weights file.  The tables follow the integer spec in ``nacc.gpt.intref`` (its module
docstring) under the context policy of ``nacc.gpt.policy``: the first window codes its
frames ``0 .. window - 1``, each later window holds the ``window`` frames ending with the
``stride`` frames it codes.  A window of ``n`` frames needs ``n * (H * W + 1)`` positions.

Paths: ``tables``/``intervals`` run each window in one pass; ``stepper``/``decode`` feed the
window's context frames in one pass, then step token by token with the KV cache; the lane
methods step several segments together (their rows share every matrix product).  All give
the same tables, because every quantity of the spec is computed per token from integers.
Coding needs numpy and numba (``nacc.kernels.cpu.gpt``: the integer kernel of the
few-row products of a step); no torch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from nacc.errors import NaccError
from nacc.predictors.base import Predictor, Stepper, register

DEFAULT_WINDOW = 20
DEFAULT_STRIDE = 5
LANE_BATCH = 8

_LOADED: dict[tuple, tuple] = {}     # one model folder kept loaded (probe and coder share it)


def _load(path: str):
    from nacc.gpt.modelfile import load_model

    p = Path(path)
    try:
        st = (p / "config.json").stat()
    except OSError:
        raise NaccError(f"{path}: not a gpt model folder (no config.json)") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_model(p)
    return _LOADED[key]


class _Lane:
    """Decode state of one segment: what it feeds (``nacc.gpt.policy.LaneFeed``) and its
    cache."""

    def __init__(self, pred: GPT):
        from nacc.gpt.intref import Cache
        from nacc.gpt.policy import LaneFeed

        self.feed = LaneFeed(pred.frame_shape, pred.window, pred.stride, pred.cfg.vocab)
        self.cache = Cache(pred.cfg, pred.window * (pred.frame_size + 1))

    def job(self):
        """The ``(ids, cache, head_rows)`` feed whose one logits row is the next token's."""
        ids, restart = self.feed.next_ids()
        if restart:
            self.cache.reset()
        return ids, self.cache, [len(ids) - 1]

    def push(self, symbol: int) -> None:
        self.feed.push(symbol)


class _GPTStepper(Stepper):
    def __init__(self, pred: GPT):
        self.p = pred
        self.lane = _Lane(pred)

    def table(self) -> np.ndarray:
        run = self.p.runner
        z = run.feed_lanes([self.lane.job()])[0]
        return run.tables(z)[0]

    def push(self, symbol: int) -> None:
        self.lane.push(int(symbol))


@register
class GPT(Predictor):
    name = "gpt"
    lane_batch = LANE_BATCH
    kernels = {"triton": "nacc.kernels.triton.gpt"}

    def backend_kernels(self) -> dict[str, str]:
        """The Triton kernels take models of 8 activation bits only (int8 x int8 products)."""
        return self.kernels if self.cfg.act_bits == 8 else {}

    def __init__(self, vocab, frame_shape, model: str, window: int = DEFAULT_WINDOW,
                 stride: int = DEFAULT_STRIDE):
        super().__init__(vocab, frame_shape)
        self.model_path = str(model)
        self.model, self._hash = _load(self.model_path)
        self.cfg = self.model.cfg
        if self.cfg.vocab != self.vocab:
            raise NaccError(f"{model}: a model of {self.cfg.vocab} codes, data has "
                            f"{self.vocab}")
        for name, val in (("window", window), ("stride", stride)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise NaccError(f"predictor gpt: {name} = {val!r} is not a positive integer")
        if stride > window:
            raise NaccError(f"predictor gpt: stride {stride} exceeds the window {window}")
        self.window = int(window)
        self.stride = int(stride)
        self._runner = None

    @property
    def runner(self):
        self._check_shape()
        if self._runner is None:
            from nacc.gpt.intref import Runner
            from nacc.kernels.cpu.gpt import attend_rows, gemm_i8

            self._runner = Runner(self.model, small=gemm_i8, attend=attend_rows)
        return self._runner

    def params(self) -> dict:
        return {"model": self.model_path, "stride": self.stride, "window": self.window}

    def model_hash(self) -> bytes:
        return self._hash

    def _check_shape(self) -> None:
        need = self.window * (self.frame_size + 1)
        if need > self.cfg.n_positions:
            h, w = self.frame_shape
            raise NaccError(f"{self.model_path}: a window of {self.window} frames of {h}x{w} "
                            f"needs {need} positions, the model has {self.cfg.n_positions}")

    def tables(self, tokens) -> Iterator[np.ndarray]:
        from nacc.gpt.intref import Cache
        from nacc.gpt.policy import coded_rows, window_ids, windows

        video = self.video(tokens)
        run = self.runner
        fs = self.frame_size
        for win in windows(len(video), self.window, self.stride):
            ids = window_ids(video[win.start:win.end], self.cfg.vocab)[:-1]
            z = run.feed(ids, Cache(self.cfg, len(ids)), coded_rows(win, fs))
            tabs = run.tables(z)
            for k in range(win.end - win.code):
                yield tabs[k * fs:(k + 1) * fs]

    def stepper(self) -> Stepper:
        self._check_shape()
        return _GPTStepper(self)

    def decode_lanes(self, jobs: Sequence[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
        """Decode several segments together: each step feeds one token (or a window's
        context) of every unfinished lane through one batched pass."""
        from nacc.coder import StepDecoder

        run = self.runner
        lanes = [_Lane(self) for _ in jobs]
        decs = [StepDecoder(w, self.precision) for w, _ in jobs]
        outs = [np.empty((int(n) * self.frame_size), np.int32) for _, n in jobs]
        todo = [k for k, o in enumerate(outs) if o.size]
        t = 0
        while todo:
            zs = run.feed_lanes([lanes[k].job() for k in todo])
            tabs = run.tables(np.concatenate(zs))
            for row, k in enumerate(todo):
                s = decs[k].decode(tabs[row])
                outs[k][t] = s
                lanes[k].push(s)
            t += 1
            todo = [k for k in todo if t < outs[k].size]
        for o in outs:
            yield o.reshape(-1, *self.frame_shape)

    def decode(self, words, n_frames):
        return next(iter(self.decode_lanes([(words, int(n_frames))])))
