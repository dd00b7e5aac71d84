"""Triton kernels of the neural predictors under the interpreter, on tiny random integer
models (``tests/neural_models.py``): tables, intervals and decoded tokens equal the numpy
reference (``nacc.neural.intref``) and the CPU lanes for lanes of different lengths; the
self-check refuses a deliberately wrong kernel.  Names contain "triton"."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")
sys.path.insert(0, str(Path(__file__).parent))

from conftest import repeating_clips
from nacc import coder
from nacc.errors import NaccError
from nacc.kernels.triton import accelerate
from nacc.kernels.triton import batch as gb
from nacc.neural import intref
from nacc.neural.modelfile import save_model
from nacc.predictors.base import get
from neural_models import random_model

V, FS = 24, (3, 4)
CASES = {
    "transformer": ("transformer", dict(k_frames=2)),
    "lstm": ("lstm", dict(k_frames=1)),
    "transformer-motion-subst-cb": ("transformer", dict(k_frames=2, motion_clamp=3,
                                                        subst=True, copy_bias=True)),
    "lstm-k2-motion-copymax": ("lstm", dict(k_frames=2, motion_clamp=2, copy_bias=True,
                                            copy_max=True, subst=True)),
    "lstm-default-head-mix": ("lstm", dict(k_frames=1, motion_clamp=2, copy_bias=True,
                                           copy_max=True, mix_head=True)),
}


def _clips(lengths=(3, 2)):
    return repeating_clips(V, FS, 0, lengths)


@pytest.fixture(scope="module", params=list(CASES))
def model(request, tmp_path_factory):
    arch, over = CASES[request.param]
    im = random_model(arch, V, FS, seed=1, **over)
    folder = tmp_path_factory.mktemp(request.param)
    save_model(im, folder)
    return arch, im, get(arch)(V, FS, model=str(folder))


def test_triton_neural_equals_reference(model):
    arch, im, cpu = model
    gpu = accelerate(cpu, "interpret")
    assert gpu.name == arch and gpu.model_hash() == cpu.model_hash()
    clips = _clips()
    ref = intref.all_tables(im, clips[0])
    assert np.array_equal(np.stack(list(gpu.tables(clips[0]))), ref)
    want = list(cpu.intervals_lanes(clips))
    words = [coder.encode_intervals(s, f, cpu.precision) for s, f in want]
    # all lanes in one batch here; batches of one lane: test_triton_neural_oom_mid_batch_*
    got = gb.encode_many(gpu, clips)
    assert all(np.array_equal(a, b) for a, b in zip(got, words, strict=True))
    dec = gb.decode_many(gpu, [(w, len(c)) for w, c in zip(words, clips)])
    assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))


def test_triton_neural_wrong_kernel_refused(model, monkeypatch):
    """A kernel that drifts from the spec (one frequency off) is refused by the self-check:
    "auto" would fall back, an explicit device raises NaccError."""
    from nacc.kernels.triton import neural as tn
    from nacc.kernels.triton import predictor as tp

    arch, im, cpu = model
    real = tn.NeuralDriver.intervals

    def wrong(self, batch, state):
        start, freq = real(self, batch, state)
        freq[3] += 1
        return start, freq

    monkeypatch.setattr(tn.NeuralDriver, "intervals", wrong)
    monkeypatch.setattr(tp, "_CHECKED", set())
    with pytest.raises(NaccError, match="disagrees"):
        accelerate(cpu, "interpret")


# the split-and-retry is the runner's and NeuralDriver._head's, the same for every variant:
# one transformer and one lstm here; every variant's one-lane encode and decode is also
# checked against the CPU by accelerate()'s self-check in test_triton_neural_equals_reference
@pytest.mark.parametrize("model", ["transformer", "lstm"], indirect=True)
def test_triton_neural_oom_mid_batch_same_bytes(model, monkeypatch):
    """An out-of-memory in the middle of a batch: the batch is split and retried (every
    result then comes from one-lane batches), same words and tokens."""
    import torch

    from nacc.kernels.triton import neural as tn

    arch, im, cpu = model
    gpu = accelerate(cpu, "interpret")
    clips = _clips((2, 1))
    words = [coder.encode_intervals(*cpu.intervals(c), cpu.precision) for c in clips]
    real = tn.NeuralDriver._head
    oom = getattr(torch, "OutOfMemoryError", RuntimeError)

    def flaky(self, vid, jobs, *a, **k):
        if vid.shape[0] > 1 and int(jobs[:, 1].max()) >= 1:    # mid-batch, after some work
            raise oom("CUDA out of memory (simulated)")
        return real(self, vid, jobs, *a, **k)

    monkeypatch.setattr(tn.NeuralDriver, "_head", flaky)
    with pytest.warns(gb.GpuFallbackWarning, match="splitting"):
        got = gb.encode_many(gpu, clips, batch=2)
    assert all(np.array_equal(a, b) for a, b in zip(got, words, strict=True))
    dec = gb.decode_many(gpu, [(w, len(c)) for w, c in zip(words, clips)], batch=2)
    assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))
