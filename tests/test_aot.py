"""The ahead-of-time build of the CPU kernels (nacc.kernels.cpu.aot) gives exactly what the
numba JIT kernels give, loads without numba, and falls back to the JIT when disabled or
unbuildable."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nacc import coder
from nacc.kernels.cpu import aot, cmstate
from nacc.predictors import cm as cm_mod

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"
PRIORS = ["none"] + sorted(json.loads(
    (Path(cm_mod.PRIOR_DIR) / cm_mod.PRIORS_FILE).read_text())["priors"])


def _has_compiler() -> bool:
    import shutil
    import sysconfig

    return bool(shutil.which("gcc") or shutil.which("cc")) and \
        os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


needs_compiler = pytest.mark.skipif(not _has_compiler(), reason="no C compiler / Python.h")


@pytest.fixture(scope="session")
def aot_cache(tmp_path_factory):
    """A cache folder holding a fresh build (one per test session)."""
    cache = tmp_path_factory.mktemp("nacc-cache")
    env = dict(os.environ, NACC_CACHE=str(cache))
    env.pop("NACC_AOT", None)
    r = subprocess.run([sys.executable, "-m", "nacc.kernels.cpu.aot", "build"], env=env,
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return cache


@pytest.fixture(scope="session")
def ext(aot_cache):
    folder = next(aot_cache.glob("aot-*/"))
    return aot._import(aot._ext_path(str(folder)))


@pytest.fixture(scope="module")
def clip():
    return np.ascontiguousarray(np.load(CLIP)[:100], np.int32).reshape(100, 8, 16)


@needs_compiler
@pytest.mark.parametrize("prior", PRIORS)
def test_aot_equals_jit(ext, clip, prior):
    _aot_equals_jit(ext, clip, cm_mod.CM(1024, (8, 16), prior=prior))


@needs_compiler
def test_aot_equals_jit_with_params(ext, clip):
    """The parameters the GPU kernel refuses (check, xctx, mix2) run on the AOT build too."""
    _aot_equals_jit(ext, clip[:30], cm_mod.CM(1024, (8, 16), prior="commavq-tree-v1", check=1,
                                              xctx=10, mix2=1))


def _aot_equals_jit(ext, clip, pred):
    K = cm_mod._jit()
    flat = clip.ravel()
    s_aot = cmstate.new_state(pred.cfg, pred.warm, ext.cm_apply_counters)
    s_jit = K.new_state(pred.cfg, pred.warm)
    for a, b in zip(s_aot, s_jit):
        np.testing.assert_array_equal(a, b)
    st_a, fr_a = ext.cm_enc_pass(flat, pred.cfg, pred.perm, s_aot, cmstate.TABLES)
    st_j, fr_j = K.enc_pass(flat, pred.cfg, pred.perm, s_jit, K.TABLES)
    np.testing.assert_array_equal(st_a, st_j)
    np.testing.assert_array_equal(fr_a, fr_j)
    for a, b in zip(s_aot, s_jit):          # the state after the pass too
        np.testing.assert_array_equal(a, b)
    w_a = ext.rans_encode(st_a, fr_a, 24)
    w_j = K.rans.encode(st_j, fr_j, 24)
    assert w_a.dtype == np.uint32
    np.testing.assert_array_equal(w_a, w_j)
    s_aot = cmstate.new_state(pred.cfg, pred.warm, ext.cm_apply_counters)
    out = ext.cm_dec_pass(w_a, flat.size, pred.cfg, pred.perm, pred.inv, s_aot,
                          cmstate.TABLES)
    np.testing.assert_array_equal(out, flat)


@needs_compiler
def test_rans_encode_random(ext):
    from nacc.kernels.cpu import rans

    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 1000):
        freq = rng.integers(1, 1 << 20, n).astype(np.uint32)
        start = (rng.integers(0, 1 << 24, n) % ((1 << 24) - freq.astype(np.int64) + 1)
                 ).astype(np.uint32)
        np.testing.assert_array_equal(ext.rans_encode(start, freq, 24),
                                      rans.encode(start, freq, 24))


@needs_compiler
def test_predictor_paths_use_aot_and_match_jit(aot_cache, clip, monkeypatch):
    """CM.intervals / CM.decode / coder.encode_intervals: same results with the build as with
    NACC_AOT=0 (the JIT fallback), in both coding orders."""
    monkeypatch.setenv("NACC_CACHE", str(aot_cache))
    monkeypatch.delenv("NACC_AOT", raising=False)
    monkeypatch.setattr(aot, "_tried", False)
    monkeypatch.setattr(aot, "_loaded", None)
    assert aot.kernels() is not None, aot.status()
    for pred in (cm_mod.CM(1024, (8, 16)), cm_mod.CM(1024, (8, 16), order=1)):
        res = {}
        for mode in ("1", "0"):
            monkeypatch.setenv("NACC_AOT", mode)
            assert (aot.kernels() is None) == (mode == "0")
            start, freq = pred.intervals(clip)
            words = coder.encode_intervals(start, freq, pred.precision)
            res[mode] = (start, freq, words, pred.decode(words, len(clip)))
        for a, b in zip(res["1"], res["0"]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(res["1"][3], clip)


_CHILD = """
import sys, numpy as np
import nacc
from nacc.kernels.cpu import aot
a = np.load(sys.argv[1])[:40]
buf = nacc.compress(a)
assert (nacc.decompress(buf) == a).all()
print(aot.status().split(':')[0], 'numba' in sys.modules)
"""


@needs_compiler
def test_cli_path_without_numba(aot_cache):
    """With the build in the cache, compress + decompress never import numba; with
    NACC_AOT=0 the JIT kernels run instead."""
    env = dict(os.environ, NACC_CACHE=str(aot_cache))
    env.pop("NACC_AOT", None)

    def run(e):
        return subprocess.run([sys.executable, "-c", _CHILD, str(CLIP)], env=e, cwd=ROOT,
                              capture_output=True, text=True)

    r = run(env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["in", "use", "False"]
    r = run(dict(env, NACC_AOT="0"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["disabled", "(NACC_AOT=0)", "True"]


def test_failed_build_falls_back(tmp_path, monkeypatch, clip):
    """A recorded failed build is not retried; the JIT kernels run and give the same words."""
    monkeypatch.setenv("NACC_CACHE", str(tmp_path))
    monkeypatch.delenv("NACC_AOT", raising=False)
    monkeypatch.setattr(aot, "_tried", False)
    monkeypatch.setattr(aot, "_loaded", None)
    Path(aot.build_dir() + ".failed").write_text("no compiler\n")
    assert aot.kernels() is None
    assert "failed" in aot.status()
    pred = cm_mod.CM(1024, (8, 16))
    start, freq = pred.intervals(clip[:10])
    words = coder.encode_intervals(start, freq, pred.precision)
    np.testing.assert_array_equal(pred.decode(words, 10), clip[:10])
    assert not any(p.name.startswith("aot-") and p.is_dir() for p in tmp_path.iterdir())


def test_build_failure_recorded(tmp_path, monkeypatch):
    """A build that fails (here: no compiler on PATH) leaves a log and no extension."""
    monkeypatch.setenv("NACC_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(aot, "_tried", False)
    monkeypatch.setattr(aot, "_loaded", None)
    folder = aot.build_dir()
    ok, _ = aot._build_in_child(folder)
    assert not ok
    assert os.path.exists(folder + ".failed")
    assert not os.path.exists(aot._ext_path(folder))


def test_key_follows_sources():
    k = aot.key()
    assert k == aot.key() and len(k) == 20
    assert aot.build_dir().endswith(f"aot-{k}")


@needs_compiler
def test_checked_entry_points(ext, clip):
    """The wrappers call the extension for the compiled types and the JIT kernel otherwise
    (pycc does not check argument types itself; a wrong dtype must not reach it)."""
    calls = []

    class Recorder:
        __file__ = ext.__file__

        def __getattr__(self, name):
            calls.append(name)
            return getattr(ext, name)

    k = aot.CompiledKernels(Recorder())
    pred = cm_mod.CM(1024, (8, 16))
    flat = clip[:20].ravel()
    st = cmstate.new_state(pred.cfg, pred.warm, k.cm_apply_counters)
    start, freq = k.cm_enc_pass(flat, pred.cfg, pred.perm, st, cmstate.TABLES)
    words = k.rans_encode(start, freq, 24)
    st = cmstate.new_state(pred.cfg, pred.warm, k.cm_apply_counters)
    out = k.cm_dec_pass(words, np.int64(flat.size), pred.cfg, pred.perm, pred.inv, st,
                        cmstate.TABLES)
    np.testing.assert_array_equal(out, flat)
    assert calls == ["cm_apply_counters", "cm_enc_pass", "rans_encode", "cm_apply_counters",
                     "cm_dec_pass"]
    calls.clear()
    # other dtypes / layouts: the JIT kernels, same words
    w2 = k.rans_encode(start.astype(np.int64), freq, 24)
    w3 = k.rans_encode(np.repeat(start, 2)[::2], freq, 24)
    np.testing.assert_array_equal(w2, words)
    np.testing.assert_array_equal(w3, words)
    st = cmstate.new_state(pred.cfg, pred.warm, k.cm_apply_counters)
    calls.clear()
    s2, f2 = k.cm_enc_pass(flat.astype(np.int64), pred.cfg, pred.perm, st, cmstate.TABLES)
    np.testing.assert_array_equal(s2, start)
    np.testing.assert_array_equal(f2, freq)
    assert calls == []
