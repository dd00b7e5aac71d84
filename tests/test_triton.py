"""The Triton path: kernels bit-exact with the CPU predictors.

Everything runs on CPU tensors through Triton's interpreter (``device="interpret"``, the same
kernel source as on the GPU, exact integer results); cases are tiny because the interpreter
runs about 5 ms per token.  The kernels are also compiled for sm_90 (no GPU needed) so that
what the interpreter does not see (types, lowering) is checked too.  Test names contain
"triton" (``pytest -k triton``).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

from conftest import repeating_clips
from nacc import codec, coder, container, npyio
from nacc.errors import NaccError
from nacc.kernels.cpu.prevframe import run_tables as _run_tables
from nacc.kernels.triton import accelerate, gpu_available, has_kernel
from nacc.kernels.triton import batch as gb
from nacc.kernels.triton.jit import DECODE, INTERVALS, TABLES
from nacc.predictors import base as predictors
from nacc.predictors.base import Predictor, check_table
from nacc.predictors.prevframe import PrevFrame

DEV = "interpret"
FS = (2, 4)


def _clips(vocab: int, seed: int, lengths=(3, 2, 4)) -> list[np.ndarray]:
    """Segments with different contents and lengths (see ``conftest.repeating_clips``)."""
    return repeating_clips(vocab, FS, seed, lengths)


def _assert_batches_equal(cpu, gpu, clips, batches):
    """``gpu`` encodes ``clips`` to ``cpu``'s words and decodes them back, at every batch
    size in ``batches`` (None: all lanes at once)."""
    ref = [_words(cpu, c) for c in clips]
    for batch in batches:
        got = gb.encode_many(gpu, clips, batch=batch)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
        dec = gb.decode_many(gpu, [(w, len(c)) for w, c in zip(ref, clips)], batch=batch)
        assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))


def _words(pred, tokens) -> np.ndarray:
    return coder.encode_intervals(*pred.intervals(tokens), pred.precision)


@pytest.mark.parametrize("name,vocab", [("uniform", 16), ("uniform", 48),
                                        ("prevframe", 16), ("prevframe", 48)])
def test_triton_four_paths_equal_cpu(name, vocab):
    """tables / stepper / intervals / decode of the Triton predictor == the CPU predictor."""
    cpu = predictors.get(name)(vocab, FS)
    gpu = accelerate(cpu, DEV)
    assert gpu is not cpu and gpu.name == name and gpu.params() == cpu.params()
    assert gpu.model_hash() == cpu.model_hash() and gpu.precision == cpu.precision
    tok = _clips(vocab, 1, (3,))[0]
    for a, b in zip(cpu.tables(tok), gpu.tables(tok), strict=True):
        check_table(b, vocab, gpu.precision)
        assert np.array_equal(a, b)
    s0, f0 = cpu.intervals(tok)
    s1, f1 = gpu.intervals(tok)
    assert s1.dtype == np.uint32 and f1.dtype == np.uint32
    assert np.array_equal(s0, s1) and np.array_equal(f0, f1)
    words = _words(cpu, tok)
    assert np.array_equal(gpu.decode(words, len(tok)), tok)
    st_c, st_g = cpu.stepper(), gpu.stepper()
    for x in tok.ravel()[:12]:          # the stepper launches twice per token: keep it short
        assert np.array_equal(st_c.table(), st_g.table())
        st_c.push(int(x))
        st_g.push(int(x))


@pytest.mark.parametrize("name", ["uniform", "prevframe"])
def test_triton_many_segments_one_launch(name):
    """Lanes of different contents and lengths in one batch give each segment's own words
    and tokens, whatever the batch size."""
    vocab = 32
    cpu = predictors.get(name)(vocab, FS)
    clips = _clips(vocab, 2)
    ref = [_words(cpu, c) for c in clips]
    for batch in (None, 2):
        words = gb.encode_many(cpu, clips, batch=batch, device=DEV)
        assert all(np.array_equal(a, b) for a, b in zip(words, ref, strict=True))
    dec = gb.decode_many(cpu, [(w, len(c)) for w, c in zip(ref, clips)], device=DEV)
    assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))


def test_triton_prevframe_halving_matches_cpu():
    """Row halving (cond above 4096) and order0 halving (above 65536), from a state loaded
    next to both limits, as the CPU kernel does it."""
    import torch

    vocab = 4
    cpu = PrevFrame(vocab, (1, 8))
    c = cpu.n_ctx
    rng = np.random.default_rng(3)
    cond = rng.integers(0, 1400, (c + 1, vocab)).astype(np.uint32)
    cond[:, 0] += (4094 - cond.sum(axis=1)).astype(np.uint32)     # every row at 4094
    o0 = np.array([30000, 20000, 10000, 5530], np.uint32)           # sum 65530
    tok = rng.integers(0, vocab, (3, 1, 8)).astype(np.int32)
    tok[1] = tok[0]
    flat = tok.ravel()
    sums = np.concatenate([cond.sum(axis=1), [o0.sum()]]).astype(np.int64)
    c_cond, c_o0, c_sums = cond.copy(), o0.copy(), sums.copy()
    ref = []
    for t in range(len(tok)):
        out = np.empty((8, vocab), np.int32)
        _run_tables(flat, 8, c, vocab, c_cond, c_o0, c_sums, t, out)
        ref.append(out)
    assert c_o0.sum() < 65536 // 2 + 100 and (c_cond.sum(axis=1) < 2100).any()  # both halved

    gpu = accelerate(cpu, DEV)
    drv = gpu.driver
    lanes = gb.LaneBatch.for_tokens([tok, tok], "cpu")
    state = (torch.from_numpy(np.stack([cond.ravel()] * 2).astype(np.int32)),
             torch.from_numpy(np.stack([o0] * 2).astype(np.int32)))
    for t in range(len(tok)):
        got = drv.tables(lanes, state, t * 8, (t + 1) * 8).numpy()
        assert np.array_equal(got[0], ref[t]) and np.array_equal(got[1], ref[t])
    assert np.array_equal(state[0][0].numpy().reshape(c + 1, vocab), c_cond.astype(np.int32))
    assert np.array_equal(state[1][0].numpy(), c_o0.astype(np.int32))
    # the INTERVALS and DECODE modes from the same loaded state
    state = (torch.from_numpy(cond.ravel().astype(np.int32)[None].copy()),
             torch.from_numpy(o0.astype(np.int32)[None].copy()))
    start, freq = drv.intervals(gb.LaneBatch.for_tokens([tok], "cpu"), state)
    ref_all = np.concatenate(ref)
    ref_start = np.array([r[:x].sum() for r, x in zip(ref_all, flat)], np.int64)
    ref_freq = ref_all[np.arange(flat.size), flat]
    assert np.array_equal(start.numpy(), ref_start) and np.array_equal(freq.numpy(), ref_freq)
    words = coder.encode_intervals(ref_start.astype(np.uint32), ref_freq.astype(np.uint32), 24)
    state = (torch.from_numpy(cond.ravel().astype(np.int32)[None].copy()),
             torch.from_numpy(o0.astype(np.int32)[None].copy()))
    lanes = gb.LaneBatch.for_words([words], [flat.size], "cpu")
    drv.decode(lanes, state)
    assert np.array_equal(lanes.token_arrays()[0], flat)


@pytest.mark.parametrize("solid", [1, 2])
def test_triton_archives_identical_to_codec(solid):
    """The archive pipeline with the device writes the bytes it writes on the CPU (blocks
    coded by the predictor and blocks stored uniform; solid groups) for any lanes per batch,
    and each decodes the other's archive."""
    clips = _clips(64, 4, (2, 3)) + [np.random.default_rng(9).integers(0, 64, (8, *FS))]
    segs = [(f"s{k}.npy", npyio.from_array(c.astype(np.int16))) for k, c in enumerate(clips)]
    originals = [npyio.npy_bytes(n) for _, n in segs]
    opts = codec.Options(predictor="prevframe", vocab=64, solid=solid)
    cpu_arc = b"".join(codec.compress_segments(segs, opts))
    codings = [b.coding for b in container.read_archive(cpu_arc)[1]]
    assert set(codings) == {container.CODED, container.UNIFORM}
    for lanes in (None, 1, 2):
        dev_opts = codec.Options(predictor="prevframe", vocab=64, device=DEV, solid=solid,
                                 lanes=lanes)
        assert b"".join(codec.compress_segments(segs, dev_opts)) == cpu_arc
        assert [d for _, d in codec.decompress_archive(cpu_arc, device=DEV,
                                                       lanes=lanes)] == originals


def _cm(vocab, fs, seed=None):
    """A cm predictor; with ``seed``, a random leaf order (a tree prior's permutation, which
    makes the intervals follow leaf order) instead of the identity."""
    pred = predictors.get("cm")(vocab, fs)
    if seed is not None:
        perm = np.random.default_rng(seed).permutation(vocab).astype(np.int64)
        pred.perm, pred.inv, pred.order = perm, np.argsort(perm).astype(np.int64), perm
    return pred


def test_triton_cm_encode_decode_equal_cpu():
    """cm on lanes of different lengths: words and decoded tokens equal the CPU's; V = 24
    (B = 5: leaves past V, a partial tree) with a shuffled leaf order, frames of two rows
    (the neighbours above and beside a token).  The wrapper is built directly: accelerate()'s
    first-use self-check (the same kernel on a 2x8 clip: about 20 s of CPU for cm here)
    is exercised on prevframe and uniform by test_triton_four_paths_equal_cpu and
    test_triton_self_check_catches_a_drifted_spec."""
    from nacc.kernels.triton.predictor import TritonPredictor
    from nacc.kernels.triton.runtime import Backend

    fs = (2, 2)
    cpu = _cm(24, fs, seed=7)
    clips = []
    rng = np.random.default_rng(8)
    for t in (3, 2):
        v = rng.integers(0, 24, (t, *fs)).astype(np.int32)
        for f in range(1, t):
            keep = rng.random(fs) < 0.6
            v[f][keep] = v[f - 1][keep]       # copies: the copy node and match models fire
        clips.append(v)
    ref = [_words(cpu, c) for c in clips]
    gpu = TritonPredictor(cpu, Backend("interpret", "cpu"))
    assert gpu.order is cpu.order and gpu.model_hash() == cpu.model_hash()
    got = gb.encode_many(gpu, clips)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    dec = gb.decode_many(gpu, [(w, len(c)) for w, c in zip(ref, clips)])
    assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))


def test_triton_cm_tables_and_stepper_equal_cpu():
    """cm full tables (every tree node) and the stepper (across a frame boundary) equal the
    CPU's (V = 6, B = 3: a partial tree; a full table costs one pass per node under the
    interpreter, deeper trees are covered by test_triton_cm_encode_decode_equal_cpu)."""
    from nacc.kernels.triton.predictor import TritonPredictor
    from nacc.kernels.triton.runtime import Backend

    fs = (1, 2)
    cpu = _cm(6, fs)
    tok = np.array([[[3, 5]], [[3, 0]]], np.int32)
    gpu = TritonPredictor(cpu, Backend("interpret", "cpu"))
    for a, b in zip(cpu.tables(tok), gpu.tables(tok), strict=True):
        check_table(b, 6, 24)
        assert np.array_equal(a, b)
    st_c, st_g = cpu.stepper(), gpu.stepper()
    for x in tok.ravel():
        assert np.array_equal(st_c.table(), st_g.table())
        st_c.push(int(x))
        st_g.push(int(x))


class _NoKernel(Predictor):
    name = "test-no-kernel"

    def tables(self, tokens):
        raise NotImplementedError

    def stepper(self):
        raise NotImplementedError


def test_triton_device_choice():
    cpu = predictors.get("prevframe")(16, FS)
    assert accelerate(cpu, "cpu") is cpu
    assert has_kernel(cpu) and has_kernel("uniform") and not has_kernel("test-no-kernel")
    auto = accelerate(cpu, "auto")
    assert (auto is cpu) != gpu_available()
    nk = _NoKernel(16, FS)
    assert accelerate(nk, "auto") is nk
    with pytest.raises(NaccError, match="no GPU kernel"):
        accelerate(nk, DEV)
    with pytest.raises(NaccError, match="unknown device"):
        accelerate(cpu, "tpu")
    if not gpu_available():
        with pytest.raises(NaccError, match="no CUDA GPU"):
            accelerate(cpu, "cuda")
        with pytest.raises(NaccError, match="no CUDA GPU"):
            codec.Options(predictor="prevframe", device="cuda").build(16, FS)
    wrapped = accelerate(cpu, DEV)
    assert accelerate(wrapped, "cpu") is cpu


def test_triton_broken_kernel_auto_falls_back_explicit_fails(monkeypatch):
    """A GPU path that fails when first used: "auto" warns and computes on the CPU, an
    explicit device fails with a NaccError (never a wrong table)."""
    import nacc.kernels.triton as kt
    from nacc.kernels.triton.predictor import TritonPredictor
    from nacc.kernels.triton.runtime import Backend

    def broken(self, inner, backend):
        raise RuntimeError("ptxas fatal: unsupported architecture (simulated)")

    monkeypatch.setattr(kt, "resolve", lambda d: Backend("interpret", "cpu"))
    monkeypatch.setattr(TritonPredictor, "__init__", broken)
    cpu = PrevFrame(16, FS)
    with pytest.warns(gb.GpuFallbackWarning, match="unusable"):
        assert accelerate(cpu, "auto") is cpu
    with pytest.raises(NaccError, match="failed to run"):
        accelerate(cpu, "cuda")


class _DriftedPrevFrame(PrevFrame):
    """A prevframe whose CPU side no longer matches the kernel (a spec changed on one side)."""

    def intervals(self, tokens):
        start, freq = super().intervals(tokens)
        return start, freq + np.uint32(tokens.size > 20)


def test_triton_self_check_catches_a_drifted_spec():
    """The self-check's clip (2 frames of 2x8 under the interpreter) is long enough to see a
    drift that appears only past 20 tokens."""
    from nacc.kernels.triton.predictor import self_check
    from nacc.kernels.triton.runtime import Backend

    self_check(PrevFrame(16, FS), Backend("interpret", "cpu"))
    with pytest.raises(NaccError, match="disagrees"):
        self_check(_DriftedPrevFrame(16, FS), Backend("interpret", "cpu"))


def test_triton_out_of_memory_splits_then_falls_back(monkeypatch):
    """An allocation failure halves the batch (with a warning); a lone lane that still does
    not fit runs on the CPU (with a warning); the words never change."""
    import torch

    cpu = predictors.get("prevframe")(16, FS)
    clips = _clips(16, 5, (2, 2, 1))
    ref = [_words(cpu, c) for c in clips]
    gpu = accelerate(cpu, DEV)
    real = type(gpu.driver).new_state
    oom = getattr(torch, "OutOfMemoryError", RuntimeError)

    def fail_above_one(self, n):
        if n > 1:
            raise oom("CUDA out of memory (simulated)")
        return real(self, n)

    monkeypatch.setattr(type(gpu.driver), "new_state", fail_above_one)
    with pytest.warns(gb.GpuFallbackWarning, match="splitting"):
        assert all(np.array_equal(a, b) for a, b in
                   zip(gb.encode_many(gpu, clips, batch=3), ref, strict=True))

    def always(self, n):
        raise oom("CUDA out of memory (simulated)")

    monkeypatch.setattr(type(gpu.driver), "new_state", always)
    with pytest.warns(gb.GpuFallbackWarning, match="on the CPU"):
        dec = gb.decode_many(gpu, [(w, len(c)) for w, c in zip(ref, clips)], batch=1)
    assert all(np.array_equal(a, b) for a, b in zip(dec, clips, strict=True))


_COMPILE_SM90 = """
import json, sys
import numpy as np
from nacc.kernels.triton import compile_check
clip = np.load(sys.argv[1])
neural = []
for folder in sys.argv[2:]:
    neural += compile_check.neural_variants(folder, 24, (3, 4), clip)
done = dict(compile_check.compile_all(90, exclude="cm ", extra=neural))
fixed = [v[0] for v in compile_check.variants() if not v[0].startswith("cm ")]
print(json.dumps({"fixed": fixed, "neural": [[v[0], v[1][1], v[3].get("MODE")] for v in neural],
                  "done": {k: [len(a["cubin"]), "bar.sync" in a["ptx"]] for k, a in done.items()}}))
"""


def test_triton_kernels_compile_for_sm90(tmp_path):
    """Every kernel and mode compiles for an H100 (sm_90) with Triton's bundled ptxas: the
    fixed variants (cm excluded: ~30 s of CPU per mode, run by hand) and every launch the
    neural driver makes for a tiny transformer and lstm (recorded under the interpreter).
    In a fresh process without TRITON_INTERPRET (with it set when triton is imported,
    triton's own combine functions are interpreter objects that the compiler rejects)."""
    pytest.importorskip("triton.backends.nvidia")
    import json
    import os
    import subprocess
    import sys

    from nacc.neural.modelfile import save_model
    from neural_models import random_model

    folders = []
    for arch, over in [("transformer", dict(k_frames=2, motion_clamp=3, subst=True,
                                            copy_bias=True)),
                       ("lstm", dict(k_frames=2, motion_clamp=2, copy_max=True,
                                     mix_head=True))]:
        save_model(random_model(arch, 24, (3, 4), seed=1, **over), tmp_path / arch)
        folders.append(str(tmp_path / arch))
    np.save(tmp_path / "clip.npy", repeating_clips(24, (3, 4), 0, (2,))[0])
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", _COMPILE_SM90, str(tmp_path / "clip.npy"),
                        *folders], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    neural = got["neural"]
    for arch, own in (("transformer", {"layer_norm_kernel", "attention_kernel"}),
                      ("lstm", {"lstm_cell_kernel"})):
        kinds = {fn for label, fn, _ in neural if label.startswith(arch + " ")}
        assert kinds == {"lin_kernel", "head_hidden_kernel", "head_table_kernel"} | own, kinds
        modes = {m for label, fn, m in neural
                 if label.startswith(arch + " ") and fn == "head_table_kernel"}
        assert modes == {TABLES, INTERVALS, DECODE}
    assert sorted(got["done"]) == sorted(got["fixed"] + [n[0] for n in neural])
    for label, (cubin, bar_sync) in got["done"].items():
        assert cubin > 0, label
        if "prevframe" in label and ("DECODE" in label or "PUSH" in label):
            assert bar_sync, label                   # the per-token barrier survived


def test_triton_bench_scripts_run_toy():
    """bench/gpu_roundtrip.py and bench/bench_gpu.py run end to end under the interpreter."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for script, argv in [
        ("gpu_roundtrip.py", ["--device", DEV, "--frames", "2", "--segments", "2",
                              "--predictors", "uniform", "--batches", "0"]),
        ("bench_gpu.py", ["--device", DEV, "--frames", "1", "--batches", "2",
                          "--cpu-segments", "2", "--threads", "1", "--predictors", "uniform"]),
    ]:
        spec = importlib.util.spec_from_file_location(f"_bench_{script[:-3]}",
                                                      root / "bench" / script)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert mod.main(argv) == 0, script


# -- on a real GPU (skipped here; run them where CUDA is available) ------------------------
cuda_only = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize("name", ["uniform", "prevframe", "cm"])
def test_triton_cuda_equals_cpu_on_dev_clip(name, dev_clip):
    """On the GPU: the four paths on real frames (V = 1024), and a batch of 8 segments of
    unequal length, equal the CPU."""
    cpu = predictors.get(name)(1024, (8, 16))
    gpu = accelerate(cpu, "cuda")
    tok = np.ascontiguousarray(dev_clip[:6], np.int32)
    n_full = 1 if name == "cm" else 2          # a cm full table expands all 1023 nodes
    for a, b in zip(cpu.tables(tok[:n_full]), gpu.tables(tok[:n_full]), strict=True):
        assert np.array_equal(a, b)
    words = _words(cpu, tok)
    assert np.array_equal(_words(gpu, tok), words)
    assert np.array_equal(gpu.decode(words, len(tok)), tok)
    st_c, st_g = cpu.stepper(), gpu.stepper()
    for x in tok.ravel()[:40 if name == "cm" else 150]:
        assert np.array_equal(st_c.table(), st_g.table())
        st_c.push(int(x))
        st_g.push(int(x))
    clips = [np.ascontiguousarray(np.roll(dev_clip, 7 * k, axis=0)[:40 + 9 * k], np.int32)
             for k in range(8)]
    _assert_batches_equal(cpu, gpu, clips, (None, 3))


@pytest.mark.gpu
@cuda_only
def test_triton_cuda_and_interpreter_agree(dev_clip):
    """The compiled kernels and the interpreter give the same words for the same input."""
    cpu = predictors.get("prevframe")(1024, (8, 16))
    tok = np.ascontiguousarray(dev_clip[:2], np.int32)
    a = gb.encode_many(cpu, [tok], device="cuda")[0]
    b = gb.encode_many(cpu, [tok], device="interpret")[0]
    assert np.array_equal(a, b)


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_triton_cuda_neural_equals_cpu_on_dev_clip(arch, dev_clip):
    """On the GPU, the shipped neural models on real frames: full tables of 2 frames, and 6
    segments of unequal length in batches of all lanes and of 4, equal the CPU."""
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "models" / f"commavq-dev-{arch}"
    cpu = predictors.build(arch, 1024, (8, 16), {"model": str(model)})
    gpu = accelerate(cpu, "cuda")
    tok = np.ascontiguousarray(dev_clip[:2], np.int32)
    for a, b in zip(cpu.tables(tok), gpu.tables(tok), strict=True):
        assert np.array_equal(a, b)
    clips = [np.ascontiguousarray(np.roll(dev_clip, 11 * k, axis=0)[:3 + 5 * k], np.int32)
             for k in range(6)]
    _assert_batches_equal(cpu, gpu, clips, (None, 4))
