"""Shared fixtures: the real dev clip shipped in the repo, and small clips cut from it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"
DEV_CLIP_SHA256 = "a17646d962d3a94587da9d4a427c2ddfb9fc53d93ccf71cea7c3d17cbfaf9431"
NACC = [sys.executable, "-m", "nacc.cli"]

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))


def cli_in_process(args, cwd):
    """Run the CLI in this process (fast) from ``cwd``; the result's output holds stdout
    and stderr."""
    from click.testing import CliRunner

    from nacc.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def dev_clip() -> np.ndarray:
    """The real commaVQ clip: int16 (600, 8, 16)."""
    return np.load(DEV_CLIP)


@pytest.fixture(scope="session")
def small_clip(dev_clip) -> np.ndarray:
    """Frames 0-9 of the real clip."""
    return np.ascontiguousarray(dev_clip[:10])


def repeating_clips(vocab: int, frame_shape, seed: int, lengths) -> list[np.ndarray]:
    """int32 token videos of the given lengths with different contents; each frame keeps
    about half the tokens of the previous one, so previous-frame contexts are exercised."""
    rng = np.random.default_rng(seed)
    out = []
    for t in lengths:
        v = rng.integers(0, vocab, (t, *frame_shape)).astype(np.int32)
        for f in range(1, t):
            keep = rng.random(frame_shape) < 0.5
            v[f][keep] = v[f - 1][keep]
        out.append(v)
    return out
