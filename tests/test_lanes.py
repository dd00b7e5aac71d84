"""Lanes: the archive pipeline's batches and the batched neural kernels.

Batched inference must give exactly the tables of the numpy reference (``intref``) for any
mix of lanes (unequal lengths, lanes that end early), and the archive pipeline the same
bytes for any lanes per batch, thread count, frame-shape mix and solid grouping.  Models
here are random integer models that follow the spec's shapes and bounds (no torch)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_without
from nacc import codec, npyio
from nacc.errors import NaccError
from nacc.kernels.cpu import neural_lanes as L
from nacc.kernels.cpu import rans
from nacc.neural import intref, packs, synth
from nacc.neural.config import make_config
from nacc.neural.modelfile import ModelError, expected_shapes, load_model, save_arrays, save_model
from nacc.predictors.base import get

ROOT = Path(__file__).resolve().parent.parent
V = 24
SHAPE = (3, 4)

VARIANTS = {
    "transformer": ("transformer", dict(k_frames=2)),
    "lstm-k2": ("lstm", dict(k_frames=2)),
    "transformer-motion-subst-copybias": ("transformer", dict(motion_clamp=3, subst=True,
                                                              copy_bias=True)),
    "lstm-motion-subst-copymax": ("lstm", dict(motion_clamp=2, subst=True, copy_bias=True,
                                               copy_max=True)),
    "transformer-mix-copymax": ("transformer", dict(motion_clamp=2, copy_bias=True,
                                                    copy_max=True, mix_head=True)),
}


def random_model(arch: str, seed: int, vocab: int = V, shape=SHAPE, **over) -> intref.IntModel:
    """A random integer model with the shapes and bounds ``load_model`` accepts; its
    requantization scales keep activations spread over the int8 range."""
    cfg = make_config(arch, vocab, shape, preset="tiny", **over)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, shp in expected_shapes(cfg).items():   # named by field path (packs.flatten)
        shp = tuple(16 if s is None else s for s in shp)
        parent, field = name.rsplit(".", 1)
        if field in ("w", "row", "col") or "emb" in field:
            a = rng.integers(-127, 128, shp)
        elif field == "m":
            a = rng.integers(2**30, 2**31, shp)
        elif field == "s":
            w = arrays.get(parent + ".w")
            k = w.shape[-1] if w is not None else 16     # att: the score of dh terms
            a = np.full(shp, 31) + int(np.log2(k * 60)) + rng.integers(-2, 1, shp)
        elif field == "b":
            a = rng.integers(-3000, 3000, shp)
        elif field == "act":
            a = np.sort(rng.integers(-20, 128, shp), axis=-1)
        elif field in ("sig", "tanh"):
            a = np.sort(rng.integers(-128 if field == "tanh" else 0, 129, shp), axis=-1)
        elif field.startswith("exp_"):
            a = np.rint(2.0**16 * np.exp(-np.arange(shp[0]) / 4.0))
        elif field in ("add1", "add2"):
            a = rng.integers(20000, 50000, shp)
        elif field == "g":
            a = rng.integers(2**16, 2**18, shp)
        elif field == "cb":
            a = rng.integers(-200, 200, shp)
        elif field == "ker":                    # mixture kernel: 0..2**16-1, diagonal large
            a = rng.integers(0, 3000, shp)
            a[np.arange(shp[0]), np.arange(shp[0])] = rng.integers(20000, 65536, shp[0])
        else:                                   # bt / by / bx
            a = rng.integers(-40, 40, shp)
        arrays[name] = np.asarray(a, np.int32 if name != "head.emb" else np.int8)
    return intref.IntModel(cfg, packs.unflatten(cfg.arch, arrays))


def _videos(vocab, lengths, seed, shape=SHAPE):
    cfg = synth.SynthConfig(vocab=vocab, law_seed=seed)
    return [synth.corpus(1, (n, *shape), seed + k, cfg)[0].astype(np.int32)
            for k, n in enumerate(lengths)]


@pytest.fixture(scope="module", params=list(VARIANTS))
def model(request):
    arch, over = VARIANTS[request.param]
    return random_model(arch, seed=len(request.param), **over)


def test_lanes_equal_reference(model):
    """Lanes of unequal lengths (one ends after a frame) coded together give the tables,
    intervals and decoded tokens of the numpy reference coded one by one."""
    videos = _videos(V, (4, 1, 6), seed=3)
    lm = L.LaneModel(model)
    refs = [intref.all_tables(model, v) for v in videos]
    for v, ref in zip(videos, refs):
        assert np.array_equal(lm.tables(v), ref)
    got = lm.intervals(videos)
    words = []
    for v, ref, (start, freq) in zip(videos, refs, got):
        s_ref = np.empty(v.size, np.uint32)
        f_ref = np.empty(v.size, np.uint32)
        rans.intervals_from_tables(ref.reshape(-1, V), v.reshape(-1), s_ref, f_ref, 0)
        assert np.array_equal(start, s_ref) and np.array_equal(freq, f_ref)
        words.append(rans.encode(start, freq, 24))
    dec = lm.decode([(w, len(v)) for w, v in zip(words, videos)])
    assert all(np.array_equal(d, v) for d, v in zip(dec, videos))
    alone = [lm.decode([(w, len(v))])[0] for w, v in zip(words, videos)]
    assert all(np.array_equal(d, v) for d, v in zip(alone, videos))


def test_lower_precision_model_decodes():
    """A model whose tables total 2**20 (coded shifted to 24 bits) decodes in lanes."""
    im = random_model("lstm", seed=5, precision=20)
    videos = _videos(V, (3, 2), seed=4)
    lm = L.LaneModel(im)
    ints = lm.intervals(videos)
    from nacc import coder

    words = [coder.encode_intervals(s, f, 20) for s, f in ints]
    dec = lm.decode([(w, len(v)) for w, v in zip(words, videos)])
    assert all(np.array_equal(d, v) for d, v in zip(dec, videos))


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lanes-model")
    save_model(random_model("transformer", seed=11, motion_clamp=2, copy_max=True), folder)
    return folder


def _segments(videos):
    return [(f"s{k}.npy", npyio.from_array(v.astype(np.int16))) for k, v in enumerate(videos)]


def test_codec_neural_batches_identical(model_folder):
    """The archive of a neural predictor is byte-identical for every lanes per batch,
    thread count and solid grouping's decode batching, and equals the archive of the
    per-token stepper path (the contract's decode order)."""
    videos = _videos(V, (3, 5, 1, 4, 2), seed=6)
    segs = _segments(videos)
    originals = [npyio.npy_bytes(n) for _, n in segs]
    for solid in (1, 2):
        archives = set()
        for lanes in (None, 1, 2):
            for threads in (1, 2):
                opts = codec.Options("transformer", (("model", str(model_folder)),), V,
                                     solid=solid, lanes=lanes)
                archives.add(b"".join(codec.compress_segments(segs, opts, threads)))
        assert len(archives) == 1
        archive = archives.pop()
        for lanes in (None, 1, 3):
            out = list(codec.decompress_archive(archive, threads=2, lanes=lanes))
            assert [d for _, d in out] == originals
    # one lane coded through the stepper (per-token kernels) gives the same words
    pred = get("transformer")(V, SHAPE, model=str(model_folder))
    start, freq = pred.intervals(videos[1])
    st = pred.stepper()
    flat = videos[1].reshape(-1)
    for i, s in enumerate(flat):
        tab = st.table()
        assert int(tab[:s].sum()) == start[i] and tab[s] == freq[i]
        st.push(int(s))


def test_codec_mixed_shapes_and_codings():
    """Segments of two frame shapes interleaved, one of them random (stored uniform):
    batches follow the runs of one predictor key, and the bytes do not depend on it."""
    rng = np.random.default_rng(2)
    videos = [rng.integers(0, 40, (3, 2, 5)), _videos(40, (4,), 1, (4, 4))[0],
              _videos(40, (2,), 2, (2, 5))[0], _videos(40, (3,), 3, (2, 5))[0],
              _videos(40, (5,), 4, (4, 4))[0]]
    segs = _segments(videos)
    archives = {b"".join(codec.compress_segments(
        segs, codec.Options("prevframe", vocab=40, lanes=lanes), threads))
        for lanes in (None, 1, 2) for threads in (1, 3)}
    assert len(archives) == 1
    archive = archives.pop()
    expect = [(n, npyio.npy_bytes(x)) for n, x in segs]
    for lanes in (None, 1, 2):
        assert list(codec.decompress_archive(archive, 2, lanes=lanes)) == expect


def test_batches_follow_predictor_runs():
    keys = ["a", "a", "a", "b", "a", "a"]
    assert codec._batches(keys, lambda k: 2, 1) == [[0, 1], [2], [3], [4, 5]]
    assert codec._batches(keys, lambda k: 8, 2) == [[0, 1], [2], [3], [4], [5]]


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_float_products_exact_at_bound(arch):
    """Every product of the shipped models equals the integer product for the input that
    reaches its bound (x = sign of each output's weights times the input bound), at the
    largest K the model uses, and for random inputs: the float product always, and the
    int8 VNNI product, which ``__call__`` uses wherever the host has it."""
    im, _ = load_model(ROOT / "models" / f"commavq-dev-{arch}")
    lm = L.LaneModel(im)
    gemms = [lm.head.f, lm.head.out]
    if arch == "lstm":
        gemms.append(lm.ls.h)
        if lm.ls.gates is not None:
            gemms.append(lm.ls.gates)
    else:
        for group in (lm.tf.q, lm.tf.o, lm.tf.f1, lm.tf.f2):
            gemms += [g for g, _, _, _ in group]
    rng = np.random.default_rng(0)
    ks = []
    for g in gemms:
        w = g.w.astype(np.int64)
        x_max = g.bound // max(1, int(np.abs(w).sum(0).max()))
        worst = (np.sign(w).T * x_max).astype(np.int64)            # one row per output
        rand = rng.integers(-x_max, x_max + 1, (64, w.shape[0]))
        for x in (worst, rand):
            ref = x @ w
            assert np.array_equal(g.float_product(x).astype(np.int64), ref)
            assert np.array_equal(g(x).astype(np.int64), ref)
            if g.int8 is not None:
                assert np.array_equal(g.int8(x).astype(np.int64), ref)
        assert g.dtype == np.float32 and g.bound < 2**24
        assert (g.int8 is not None) == L.int8gemm.AVAILABLE     # all are int8 x int8
        ks.append(w.shape[0])
    # the largest K: head.out (hidden 128) for the transformer, ls.gates (3 x 3 window of
    # 24-wide embeddings plus d_model 96) for the lstm where the int8 path takes it whole
    want = 128 if arch == "transformer" else (312 if L.int8gemm.AVAILABLE else 128)
    assert max(ks) == want


def _float_only(lm: L.LaneModel) -> L.LaneModel:
    """The same model with every int8 product switched off (the path of hosts without
    AVX-512 VNNI): float GEMMs and attention scores, the lstm window tables, the
    per-position decode loop."""
    gemms = [lm.head.f, lm.head.out]
    if lm.arch == "lstm":
        gemms.append(lm.ls.h)
        lm.ls.gates = None
    else:
        lm.tf.att_int8 = False
        for group in (lm.tf.q, lm.tf.o, lm.tf.f1, lm.tf.f2):
            gemms += [g for g, _, _, _ in group]
    for g in gemms:
        g.int8 = None
    return lm


def test_float_path_equals_reference(model):
    """With the int8 products off, the batched kernels still give the reference tables,
    the same intervals as the default path, and decode lanes of unequal lengths."""
    videos = _videos(V, (3, 1, 4), seed=8)
    fast, slow = L.LaneModel(model), _float_only(L.LaneModel(model))
    assert slow.head.out.int8 is None
    for v in videos[:2]:
        assert np.array_equal(slow.tables(v), intref.all_tables(model, v))
    got, want = slow.intervals(videos), fast.intervals(videos)
    words = []
    for (s1, f1), (s2, f2) in zip(got, want):
        assert np.array_equal(s1, s2) and np.array_equal(f1, f2)
        words.append(rans.encode(s1, f1, 24))
    dec = slow.decode([(wd, len(v)) for wd, v in zip(words, videos)])
    assert all(np.array_equal(d, v) for d, v in zip(dec, videos))


@pytest.mark.skipif(not L.int8gemm.AVAILABLE, reason="host without AVX-512 VNNI")
@pytest.mark.parametrize("dh, k, hw", [(16, 2, 128), (6, 1, 12), (5, 3, 7)])
def test_int8_attention_scores_exact(dh, k, hw):
    """The int8 score product (keys packed per job and head, K = dh padded to a multiple
    of 4, N = K*H*W padded to 16) equals the integer products Q_h . Kc_h, extremes
    included."""
    rng = np.random.default_rng(dh)
    nh, n_j, vocab = 3, 2, 11
    qv = rng.integers(-127, 128, (n_j * hw, nh * dh))
    qv[0] = 127
    qv[1] = -127
    kt = rng.integers(-127, 128, (vocab + 1, nh * dh)).astype(np.int8)
    kt[0] = 127
    kt[1] = -127
    ctx = rng.integers(0, vocab + 1, (n_j, k, hw)).astype(np.int32)
    ctx[0, 0, :2] = (0, 1)
    k4, n16 = -(-dh // 4), -(-(k * hw) // 16)
    out = np.empty((n_j, nh, hw, 16 * n16), np.int32)
    L.tf_scores_int8(qv, ctx, kt, nh, np.full((n_j, nh, hw, 4 * k4), 77, np.uint8),
                     np.empty((n_j, nh, n16 * k4 * 64), np.int8),
                     np.empty((n_j, nh, 16 * n16), np.int32), out)
    q = qv.reshape(n_j, hw, nh, dh).astype(np.int64)
    keys = kt.astype(np.int64)[ctx.reshape(n_j, k * hw)].reshape(n_j, k * hw, nh, dh)
    want = np.einsum("jphi,jchi->jhpc", q, keys)
    assert np.array_equal(out[..., :k * hw], want)
    assert (out[..., k * hw:] == 0).all()


def test_gemm_switches_to_float64():
    """A product whose bound passes 2**24 (K = 1100 terms of 127 x 127) runs in float64 and
    stays exact; a bound past 2**53 is refused."""
    w = np.full((1100, 3), 127)
    w[::3, 1] = -127
    g = L.Gemm(w, 127)
    assert g.dtype == np.float64 and g.bound == 1100 * 127 * 127
    x = np.full((2, 1100), 127)
    x[1, ::2] = -127
    x[1, 1] = 126
    assert np.array_equal(g(x).astype(np.int64), x @ w)
    assert L.Gemm(w[:1000], 127).dtype == np.float32          # 1000 * 16129 < 2**24
    with pytest.raises(ValueError, match="too large"):
        L.Gemm(np.full((1, 1), 2**50), 127)


def test_model_folder_checked(tmp_path):
    """A model folder whose arrays do not fit its config, or break the spec's bounds, is
    refused with a ModelError naming the array."""
    im = random_model("lstm", seed=1)
    save_model(im, tmp_path / "ok")
    assert load_model(tmp_path / "ok")[0].cfg.arch == "lstm"
    a = packs.flatten(im.weights)
    cases = {"head.act": np.zeros(255, np.int32), "lstm.gates.w": a["lstm.gates.w"][:, :-1],
             "head.l2.s": np.zeros(V, np.int32), "head.emb": np.full((V + 1, 4), 300),
             "lstm.gates.b": np.full(a["lstm.gates.b"].shape, 2**31 - 2**16),
             "head.exp_logit": np.zeros(8, np.int32)}
    for name, bad in cases.items():
        broken = dict(a)
        broken[name] = np.asarray(bad)
        save_arrays(im.cfg, broken, tmp_path / name)
        with pytest.raises(ModelError, match=name.split(".w")[0].split(".b")[0]):
            load_model(tmp_path / name)
    missing = {k: x for k, x in a.items() if k != "lstm.sig"}
    save_arrays(im.cfg, missing, tmp_path / "missing")
    with pytest.raises(ModelError, match="lack lstm.sig"):
        load_model(tmp_path / "missing")
    extra = dict(a, **{"head.cb": np.zeros(V, np.int32)})     # the config has no copy_bias
    save_arrays(im.cfg, extra, tmp_path / "extra")
    with pytest.raises(ModelError, match="weights hold head.cb, which the config does not use"):
        load_model(tmp_path / "extra")
    assert issubclass(ModelError, NaccError)


_NO_TORCH = cli_without("torch")


def test_neural_archive_without_torch(model_folder, tmp_path):
    """Compressing and decompressing with a model folder imports no torch."""
    np.save(tmp_path / "c.npy", _videos(V, (3,), 9)[0].astype(np.int16))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-c", _NO_TORCH]
    r = subprocess.run(run + ["compress", "c.npy", "--predictor", "lstm", "--model",
                              str(model_folder)], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 1 and "a transformer model, not lstm" in r.stderr
    r = subprocess.run(run + ["compress", "c.npy", "--predictor", "transformer", "--model",
                              str(model_folder), "--vocab", str(V)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (tmp_path / "c.npy").rename(tmp_path / "orig.npy")
    r = subprocess.run(run + ["decompress", "c.npy.nacc"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.npy").read_bytes() == (tmp_path / "orig.npy").read_bytes()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_parent(tmp_path):
    """Killing ``compress -T 2`` (SIGKILL, no cleanup possible) ends its workers too."""
    rng = np.random.default_rng(0)
    for k in range(8):
        np.save(tmp_path / f"s{k}.npy", rng.integers(0, 1024, (2000, 8, 16)).astype(np.int16))
    proc = subprocess.Popen([sys.executable, "-m", "nacc.cli", "compress", str(tmp_path),
                             "-T", "2", "-o", str(tmp_path / "out.nacc"),
                             "--param", "prior=none"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.05)
        workers = _children(proc.pid)
    if proc.poll() is not None:
        pytest.skip("compress finished before its workers could be seen")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and " Z " not in Path(f"/proc/{w}/stat").read_text()]
    assert not alive, f"workers {alive} outlived their parent"
