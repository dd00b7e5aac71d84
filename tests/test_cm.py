"""The ``cm`` predictor: exact tables, four identical paths, round trips on edge cases,
golden words, and the shipped prior."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import golden_bytes, golden_json, repeating_clips
from nacc import coder
from nacc.predictors import base, get
from nacc.predictors import cm as cm_mod

GOLDEN = Path(__file__).parent / "golden" / "cm-words.json"
TREE = "commavq-tree-v1"
PRIORS = ["none", "commavq-warm-v1", TREE, "commavq-v2", "commavq-v3", "commavq-v4",
          "commavq-v5"]


def _cdf(tables: np.ndarray, order) -> np.ndarray:
    """Cumulative tables in the interval layout: symbol order, or ``order`` (leaf order)."""
    t = tables.astype(np.int64)
    if order is not None:
        layout = np.empty_like(t)
        layout[:, order] = t            # column order[s] holds symbol s
        t = layout
    return np.concatenate([np.zeros((len(t), 1), np.int64), np.cumsum(t, 1)], 1)


def check_paths(pred, tokens: np.ndarray, generic: bool = True) -> np.ndarray:
    """Assert tables == stepper == intervals == decode; returns the words."""
    ref = np.concatenate(list(pred.tables(tokens)))
    base.check_table(ref, pred.vocab, pred.precision)
    st = pred.stepper()
    for i, x in enumerate(tokens.ravel()):
        np.testing.assert_array_equal(st.table(), ref[i], err_msg=f"step {i}")
        st.push(int(x))
    start, freq = pred.intervals(tokens)
    flat = tokens.ravel()
    n = np.arange(len(flat))
    np.testing.assert_array_equal(freq, ref[n, flat])
    pos = flat if pred.order is None else pred.order[flat]
    np.testing.assert_array_equal(start, _cdf(ref, pred.order)[n, pos])
    words = coder.encode_intervals(start, freq, pred.precision)
    np.testing.assert_array_equal(pred.decode(words, len(tokens)), tokens)
    if generic and pred.order is None:
        np.testing.assert_array_equal(base.Predictor.decode(pred, words, len(tokens)), tokens)
        np.testing.assert_array_equal(
            words, coder.encode_tables(flat, ref, pred.precision, backend="constriction"))
    return words


def roundtrip(pred, tokens: np.ndarray) -> int:
    start, freq = pred.intervals(tokens)
    words = coder.encode_intervals(start, freq, pred.precision)
    np.testing.assert_array_equal(pred.decode(words, len(tokens)), tokens)
    return int(words.nbytes)


# -- exactness: the four paths ---------------------------------------------------------------
@pytest.mark.parametrize("prior", PRIORS)
def test_four_paths_real_clip(dev_clip, prior):
    tokens = np.ascontiguousarray(dev_clip[:4]).astype(np.int32)
    check_paths(get("cm")(1024, (8, 16), prior=prior), tokens)


@pytest.mark.parametrize("vocab,shape", [(37, (5, 3, 5)), (2, (6, 2, 3)), (300, (1, 4, 4)),
                                         (1000, (3, 2, 4)), (65536, (2, 2, 2)), (5, (4, 1, 1))])
def test_four_paths_other_vocabularies(vocab, shape):
    rng = np.random.default_rng(vocab)
    tokens = rng.integers(0, vocab, size=shape).astype(np.int32)
    tokens[1:, 0, 0] = tokens[0, 0, 0]                     # some copies
    check_paths(get("cm")(vocab, shape[1:]), tokens)


def test_batching_does_not_change_intervals(dev_clip):
    """Encode = tables frame by frame = one step at a time (already covered) and the
    intervals of a prefix are the prefix of the intervals."""
    tokens = np.ascontiguousarray(dev_clip[:30]).astype(np.int32)
    pred = get("cm")(1024, (8, 16), prior=TREE)
    s_all, f_all = pred.intervals(tokens)
    s_pre, f_pre = pred.intervals(tokens[:7])
    np.testing.assert_array_equal(s_all[: s_pre.size], s_pre)
    np.testing.assert_array_equal(f_all[: f_pre.size], f_pre)


def test_stretch_squash_tables_facts():
    """Spot values of the integer tables the spec names (the golden test pins all of them)."""
    k = cm_mod.K
    assert k.SQUASH.dtype == np.int32 and k.SQUASH.shape == (4095,) and k.STRETCH.shape == (4096,)
    assert k.SQUASH[0] == 1 and k.SQUASH[2047] == 2047 and k.SQUASH[4094] == 4094
    assert k.STRETCH[0] == -2047 and k.STRETCH[2048] == 1 and k.STRETCH[4095] == 2047
    assert np.all(np.diff(k.SQUASH) >= 0) and np.all(np.diff(k.STRETCH) >= 0)
    assert k.RATES[0] == 43690 and k.RATES[255] == 255


# -- round trips on edge cases ----------------------------------------------------------------
@pytest.mark.parametrize("prior", PRIORS)
def test_edge_clips_roundtrip(dev_clip, prior):
    pred = get("cm")(1024, (8, 16), prior=prior)
    real = dev_clip.astype(np.int32)
    for tokens in (real[:1], real[:2], np.full((6, 8, 16), 517, np.int32),
                   np.zeros((3, 8, 16), np.int32), np.full((2, 8, 16), 1023, np.int32)):
        roundtrip(pred, np.ascontiguousarray(tokens))


@pytest.mark.parametrize("vocab,shape", [(2, (40, 3, 3)), (3, (10, 1, 7)), (1023, (10, 4, 4)),
                                         (4097, (5, 8, 16)), (65536, (4, 8, 16)),
                                         (1024, (3, 1, 1)), (50, (2, 33, 17))])
def test_any_vocab_and_shape_roundtrips(vocab, shape):
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, vocab, size=shape).astype(np.int32)
    tokens[shape[0] // 2:] = tokens[: shape[0] - shape[0] // 2]   # repeats
    roundtrip(get("cm")(vocab, shape[1:]), tokens)


def test_random_tokens_do_not_expand():
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 1024, size=(100, 8, 16)).astype(np.int32)
    nbytes = roundtrip(get("cm")(1024, (8, 16)), tokens)
    assert tokens.size * 10 / 8 / nbytes >= 0.99


def test_constant_clip_is_tiny():
    tokens = np.full((100, 8, 16), 3, np.int32)
    assert roundtrip(get("cm")(1024, (8, 16)), tokens) < 400


def test_real_clip_compresses(dev_clip):
    """Sanity bound on the rate of frames that the prior was never fitted on, coded as a clip
    of their own: 300-599 for the priors fitted on 0-299, 450-599 for commavq-v4 (0-449)."""
    for prior, first, floor in (("none", 300, 1.40), ("commavq-warm-v1", 300, 1.43),
                                (TREE, 300, 1.58), ("commavq-v2", 300, 1.62),
                                ("commavq-v3", 300, 1.68), ("commavq-v3", 450, 1.72),
                                ("commavq-v4", 450, 1.77)):
        tokens = np.ascontiguousarray(dev_clip[first:]).astype(np.int32)
        nbytes = roundtrip(get("cm")(1024, (8, 16), prior=prior), tokens)
        assert tokens.size * 10 / 8 / nbytes > floor, (prior, first)


# -- params, prior, golden words -------------------------------------------------------------
def test_params_rebuild_identical_predictor(small_clip):
    tokens = small_clip.astype(np.int32)
    for prior in PRIORS:
        a = get("cm")(1024, (8, 16), prior=prior)
        b = get("cm")(1024, (8, 16), **json.loads(json.dumps(a.params())))
        assert a.model_hash() == b.model_hash()
        for x, y in zip(a.intervals(tokens), b.intervals(tokens)):
            np.testing.assert_array_equal(x, y)


def test_prior_files_are_content_addressed():
    cfg = json.loads((Path(cm_mod.PRIOR_DIR) / "priors.json").read_text())
    fitted = {name: e.get("fitted_on", cfg["fitted_on"]) for name, e in cfg["priors"].items()}
    assert fitted == {"commavq-tree-v1": "commavq_dev.npy frames 0-299",
                      "commavq-v2": "commavq_dev.npy frames 0-299",
                      "commavq-warm-v1": "commavq_dev.npy frames 0-299",
                      "commavq-v3": "commavq_dev.npy frames 0-299",
                      "commavq-v4": "commavq_dev.npy frames 0-449",
                      "commavq-v5": "commavq_dev.npy frames 0-599"}
    for fname, digest in cfg["sha256"].items():
        data = (Path(cm_mod.PRIOR_DIR) / fname).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest and digest[:16] in fname
    hashes = set()
    for name in cfg["priors"]:
        pred = get("cm")(1024, (8, 16), prior=name)
        assert len(pred.model_hash()) == 32
        hashes.add(pred.model_hash())
    assert len(hashes) == len(cfg["priors"])
    assert get("cm")(1024, (8, 16), prior="none").model_hash() == b""
    assert get("cm")(1024, (8, 16)).params() == {"prior": "commavq-v5"}
    assert get("cm")(1000, (8, 16)).params() == {"prior": "none"}


def test_installed_package_ships_every_prior_file():
    """setup.cfg's data_files name exactly the files priors.json lists (an installed nacc
    must find every prior, the default included)."""
    import configparser

    root = Path(__file__).resolve().parent.parent
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    listed = setup["options.data_files"]["share/nacc/models/cm-prior"].split()
    cfg = json.loads((Path(cm_mod.PRIOR_DIR) / "priors.json").read_text())
    assert sorted(listed) == sorted(f"models/cm-prior/{f}" for f in ["priors.json", *cfg["sha256"]])


@pytest.mark.parametrize("prior", ["commavq-v4", "commavq-v5"])
def test_counts_are_capped(prior):
    """commavq-v4's and v5's counters carry counts of at most their count_cap (probabilities
    kept)."""
    cfg = json.loads((Path(cm_mod.PRIOR_DIR) / "priors.json").read_text())
    _, warm, _ = cm_mod.load_prior(prior, 1024)
    n = (warm["ht_counter"].astype(np.int64) ^ cm_mod.K0.SIGN) & 1023
    assert cfg["priors"][prior]["count_cap"] == 10 and n.max() == 10
    assert len(warm["ht_counter"]) > 400_000


def test_raw_warm_file_round_trip_and_damage():
    """pack_warm / unpack_warm give back the arrays (dtypes, shapes, values); a damaged file
    is a ValueError, and a prior file whose bytes changed is refused by its hash."""
    K0 = cm_mod.K0
    arrays = {"w": np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
              "k": np.arange(5, dtype=np.uint8), "v": np.array([-1, 7], np.int16),
              "c": np.array([1, 2**32 - 1], np.uint32)}
    data = K0.pack_warm(arrays)
    back = K0.unpack_warm(data)
    assert list(back) == list(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k], a)
    assert data[:8] == b"NACCCMW1" and len(data) % 16 == 0
    for bad in (b"NACCCMW2" + data[8:], data[:-16], data[:40]):
        with pytest.raises(ValueError):
            K0.unpack_warm(bad)
    with pytest.raises(ValueError):
        K0.pack_warm({"f": np.zeros(2, np.float32)})


def test_v5_raw_prior_equals_its_arrays():
    """commavq-v5's warm file is the raw format and loads the same arrays as an npz would
    (the state it builds does not depend on how the file stores them)."""
    cfg = json.loads((Path(cm_mod.PRIOR_DIR) / "priors.json").read_text())
    fname = cfg["priors"]["commavq-v5"]["warm"]
    assert fname.endswith(".cmw")
    raw = (Path(cm_mod.PRIOR_DIR) / fname).read_bytes()
    _, warm, _ = cm_mod.load_prior("commavq-v5", 1024)
    assert set(warm) == {"w", "apm", "mc", "cw", "capm", "ht_kind", "ht_value", "ht_node",
                         "ht_counter"}
    assert cm_mod.K0.pack_warm(warm) == raw


# -- checked buckets (parameter check) ------------------------------------------------------
@pytest.mark.parametrize("prior,htb", [("none", 24), ("none", 10), ("commavq-v2", 24),
                                       ("commavq-v5", 13)])
def test_checked_buckets_four_paths(dev_clip, prior, htb):
    """check=1: tables == stepper == intervals == decode, also with a table of 2**10 or 2**13
    counters, where buckets are claimed and evicted all the time (and a prior's counters
    evict each other); the null bucket is never written."""
    tokens = np.ascontiguousarray(dev_clip[:4]).astype(np.int32)
    pred = get("cm")(1024, (8, 16), prior=prior, check=1)
    pred.cfg[cm_mod.K0.C_HTB] = htb
    check_paths(pred, tokens)
    state = cm_mod.K.new_state(pred.cfg, pred.warm)
    cm_mod.K.enc_pass(tokens.ravel(), pred.cfg, pred.perm, state, cm_mod.K.TABLES)
    ht = state[0]
    assert len(ht) == (1 << htb) + 32 and not ht[1 << htb:].any()
    used = ht[: 1 << htb].reshape(-1, 32)
    claimed = used[:, 0] != 0
    assert claimed.any() and np.all(used[:, 0][claimed] & 1)     # check words are odd
    assert not used[~claimed, 1:].any()                          # unclaimed buckets untouched


def test_checked_buckets_change_the_words_and_are_recorded(small_clip):
    from nacc.errors import NaccError
    from nacc.kernels.triton import has_kernel

    tokens = small_clip.astype(np.int32)
    plain = get("cm")(1024, (8, 16), prior="none")
    checked = get("cm")(1024, (8, 16), prior="none", check=1)
    assert plain.params() == {"prior": "none"}
    assert checked.params() == {"prior": "none", "check": 1}
    assert get("cm")(1024, (8, 16), prior="none", check=0).params() == {"prior": "none"}
    again = get("cm")(1024, (8, 16), **json.loads(json.dumps(checked.params())))
    np.testing.assert_array_equal(again.intervals(tokens)[1], checked.intervals(tokens)[1])
    assert not np.array_equal(plain.intervals(tokens)[1], checked.intervals(tokens)[1])
    assert has_kernel(plain) and not has_kernel(checked)
    for bad in (2, -1, True, "1"):
        with pytest.raises(NaccError, match="check"):
            get("cm")(1024, (8, 16), check=bad)


# -- extra contexts and the 2-layer mixer (parameters xctx, mix2) -----------------------------
@pytest.mark.parametrize("prior,vocab,shape,kw", [
    ("none", 1024, (3, 8, 16), {"xctx": 255}),
    (TREE, 1024, (3, 8, 16), {"mix2": 1}),
    ("none", 1024, (3, 8, 16), {"xctx": 10, "mix2": 1, "check": 1}),
    ("none", 11, (4, 3, 5), {"xctx": 255, "mix2": 1}),
    ("none", 1500, (3, 4, 6), {"xctx": 8, "mix2": 1, "check": 1})])
def test_extra_contexts_and_two_layer_mixer_four_paths(dev_clip, prior, vocab, shape, kw):
    """xctx / mix2: tables == stepper == intervals == decode (also with the tree order, with
    checked buckets, and with trees of 4 and 11 levels)."""
    if vocab == 1024:
        tokens = np.ascontiguousarray(dev_clip[: shape[0]]).astype(np.int32)
    else:
        tokens = repeating_clips(vocab, shape[1:], vocab, [shape[0]])[0]
    check_paths(get("cm")(vocab, shape[1:], prior=prior, **kw), tokens)


def test_extra_contexts_and_mixer_are_recorded_and_refused_on_gpu(small_clip):
    from nacc.errors import NaccError
    from nacc.kernels.triton import has_kernel

    tokens = small_clip.astype(np.int32)
    plain = get("cm")(1024, (8, 16), prior="none").intervals(tokens)[1]
    for kw in ({"xctx": 8}, {"mix2": 1}, {"xctx": 3, "mix2": 1}):
        pred = get("cm")(1024, (8, 16), prior="none", **kw)
        assert pred.params() == {"prior": "none", **kw}
        again = get("cm")(1024, (8, 16), **json.loads(json.dumps(pred.params())))
        np.testing.assert_array_equal(again.intervals(tokens)[1], pred.intervals(tokens)[1])
        assert not np.array_equal(plain, pred.intervals(tokens)[1])
        assert not has_kernel(pred)
    assert get("cm")(1024, (8, 16), prior="none", xctx=0, mix2=0).params() == {"prior": "none"}
    for name, bad in (("xctx", 256), ("xctx", -1), ("xctx", True), ("mix2", 2), ("mix2", "1")):
        with pytest.raises(NaccError, match=name):
            get("cm")(1024, (8, 16), prior="none", **{name: bad})
    with pytest.raises(NaccError, match="no state for xctx / mix2"):
        get("cm")(1024, (8, 16), prior="commavq-v5", mix2=1)


def test_prior_recipe_fits_the_two_layer_mixer(dev_clip):
    """A warm state fitted with xctx / mix2 has their weights (shapes of new_state) and codes
    frames it was not fitted on exactly (encode == decode)."""
    from nacc.training import cm_prior

    K = cm_mod.K
    kw = {"xctx": 8, "mix2": 1}
    cfg = cm_mod.make_cfg(1024, (8, 16), **kw)
    perm = np.arange(1024)
    warm = cm_prior.fit_warm(dev_clip[:4], perm, cm_prior.ALL_KINDS, 10, kw)
    fresh = K.new_state(cfg)
    assert warm["w"].shape == fresh[1].shape == (10 * 152 + 10 * (128 + 33 + 8), 13)
    assert not np.array_equal(warm["w"], fresh[1])
    flat = np.ascontiguousarray(dev_clip[4:6]).astype(np.int32).ravel()
    s, f = K.enc_pass(flat, cfg, perm, K.new_state(cfg, warm), K.TABLES)
    words = coder.encode_intervals(s, f, 24)
    out = K.dec_pass(words, flat.size, cfg, perm, perm, K.new_state(cfg, warm), K.TABLES)
    np.testing.assert_array_equal(out, flat)


def test_unknown_prior_is_an_error():
    from nacc.errors import NaccError

    with pytest.raises(NaccError):
        get("cm")(1024, (8, 16), prior="nope")
    with pytest.raises(NaccError):
        get("cm")(512, (8, 16), prior=TREE)


def test_golden_words(dev_clip):
    """sha256 of the words of frames 0-19: any change of the arithmetic shows here.
    Regenerate on purpose only: NACC_REGEN_GOLDEN=1 pytest tests/test_cm.py"""
    tokens = np.ascontiguousarray(dev_clip[:20]).astype(np.int32)
    got = {}
    extra = [("none", {"check": 1}), ("commavq-v5", {"check": 1}), ("none", {"order": 1}),
             ("none", {"check": 1, "xctx": 10, "mix2": 1}), (TREE, {"xctx": 255, "mix2": 1})]
    for prior, kw in [(p, {}) for p in PRIORS] + extra:
        pred = get("cm")(1024, (8, 16), prior=prior, **kw)
        words = coder.encode_intervals(*pred.intervals(tokens), pred.precision)
        key = " ".join([prior] + [f"{k}={v}" for k, v in kw.items()])
        got[key] = hashlib.sha256(words.astype("<u4").tobytes()).hexdigest()
    k = cm_mod.K
    got["tables"] = hashlib.sha256(k.SQUASH.tobytes() + k.STRETCH.tobytes()
                                   + k.RATES.tobytes()).hexdigest()
    fresh = json.dumps(got, indent=1, sort_keys=True) + "\n"
    assert got == json.loads(golden_bytes(GOLDEN, fresh.encode()))


# -- a neural predictor's table as the external input (parameter model) -----------------------
NEURAL = Path(__file__).resolve().parent.parent / "models" / "commavq-dev-lstm"
GOLDEN_NEURAL = Path(__file__).parent / "golden" / "cm-neural-words.json"


@pytest.mark.parametrize("prior", ["none", "commavq-v2"])
def test_neural_input_four_paths_and_golden(prior, dev_clip):
    """cm with the shipped LSTM's tables mixed in: tables == stepper == intervals == decode
    on frames 300-302 (never seen by the model or the prior), and pinned words."""
    from nacc.kernels.triton import has_kernel

    tokens = np.ascontiguousarray(dev_clip[300:303]).astype(np.int32)
    pred = get("cm")(1024, (8, 16), prior=prior, model=str(NEURAL))
    words = check_paths(pred, tokens)
    plain = get("cm")(1024, (8, 16), prior=prior)
    assert pred.params() == {"prior": prior, "model": str(NEURAL)}
    assert pred.model_hash() not in (plain.model_hash(), pred.nn.model_hash())
    assert not has_kernel(pred) and has_kernel(plain)
    # the external input changes the tables (the final mixer is live)
    assert not np.array_equal(pred.intervals(tokens)[1], plain.intervals(tokens)[1])
    digest = hashlib.sha256(words.astype("<u4").tobytes()).hexdigest()
    assert golden_json(GOLDEN_NEURAL, prior, digest) == digest, \
        "golden words changed (NACC_REGEN_GOLDEN=1 on purpose)"


def test_neural_input_archive_round_trip_and_wrong_model(dev_clip, tmp_path):
    from nacc import codec, npyio
    from nacc.errors import NaccError

    segs = [("c.npy", npyio.from_array(dev_clip[300:302]))]
    opts = codec.Options("cm", (("model", str(NEURAL)),))
    archive = b"".join(codec.compress_segments(segs, opts))
    assert list(codec.decompress_archive(archive)) == [("c.npy", npyio.npy_bytes(segs[0][1]))]
    other = NEURAL.parent / "commavq-dev-transformer"
    with pytest.raises(NaccError, match="model"):
        list(codec.decompress_archive(archive, params_override={"model": str(other)}))
    with pytest.raises(NaccError, match="not a model folder"):
        get("cm")(1024, (8, 16), model=str(tmp_path))


def test_count_classes_are_the_spec_tables():
    """A(n) and Q(n) of the spec's node prediction for every count a counter can hold."""
    from nacc.kernels.cpu import cm as K

    a = [K._nb_a(np.int64(n)) for n in range(1024)]
    q = [K._nb_p(np.int64(n)) for n in range(1024)]
    assert a[:10] == [0, 1, 2, 3, 3, 4, 4, 4, 4, 5] and set(a[9:]) == {5}
    assert q[:17] == [0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3] and set(q[16:]) == {3}


# -- position-major coding order (parameter order) -------------------------------------------
def _order1_paths(pred, tokens: np.ndarray) -> np.ndarray:
    """order=1: the full tables of every token in coding order (the reference kernel) give
    the intervals of the encode path, and the words decode to the tokens; returns the words."""
    from nacc.kernels.cpu import cm as K

    flat, seg = cm_mod.coding_order(pred.cfg, tokens)
    assert seg[K.C_NFR] == len(tokens) and pred.cfg[K.C_NFR] == 0
    np.testing.assert_array_equal(cm_mod.frame_order(seg, flat, tokens.shape), tokens)
    ref = np.empty((flat.size, pred.vocab), np.int32)
    K.table_pass(flat, 0, flat.size, seg, pred.perm, K.new_state(seg, pred.warm), K.TABLES,
                 ref)
    base.check_table(ref, pred.vocab, pred.precision)
    start, freq = pred.intervals(tokens)
    n = np.arange(flat.size)
    np.testing.assert_array_equal(freq, ref[n, flat])
    pos = flat if pred.order is None else pred.order[flat]
    np.testing.assert_array_equal(start, _cdf(ref, pred.order)[n, pos])
    words = coder.encode_intervals(start, freq, pred.precision)
    np.testing.assert_array_equal(pred.decode(words, len(tokens)), tokens)
    return words


@pytest.mark.parametrize("prior", ["none", "commavq-v5"])
def test_order1_tables_intervals_decode(dev_clip, prior):
    tokens = np.ascontiguousarray(dev_clip[:5]).astype(np.int32)
    pred = get("cm")(1024, (8, 16), prior=prior, order=1)
    words = _order1_paths(pred, tokens)
    plain = get("cm")(1024, (8, 16), prior=prior)
    assert not np.array_equal(words, coder.encode_intervals(*plain.intervals(tokens), 24))


@pytest.mark.parametrize("vocab,shape", [(37, (5, 3, 5)), (2, (6, 2, 3)), (5, (4, 1, 1)),
                                         (300, (1, 4, 4))])
def test_order1_other_vocabularies(vocab, shape):
    rng = np.random.default_rng(vocab)
    tokens = rng.integers(0, vocab, size=shape).astype(np.int32)
    tokens[1:, 0, 0] = tokens[0, 0, 0]
    _order1_paths(get("cm")(vocab, shape[1:], order=1), tokens)


def test_order1_is_recorded_and_refuses_what_needs_frame_order(small_clip):
    from nacc.errors import NaccError
    from nacc.kernels.triton import has_kernel

    tokens = small_clip.astype(np.int32)
    pred = get("cm")(1024, (8, 16), prior="none", order=1)
    assert pred.params() == {"prior": "none", "order": 1}
    assert get("cm")(1024, (8, 16), prior="none", order=0).params() == {"prior": "none"}
    again = get("cm")(1024, (8, 16), **json.loads(json.dumps(pred.params())))
    np.testing.assert_array_equal(again.intervals(tokens)[1], pred.intervals(tokens)[1])
    assert not has_kernel(pred) and has_kernel(get("cm")(1024, (8, 16), prior="none"))
    with pytest.raises(NaccError, match="whole segment"):
        pred.stepper()
    with pytest.raises(NaccError, match="whole segment"):
        next(pred.tables(tokens))
    for bad in (2, -1, True, "1"):
        with pytest.raises(NaccError, match="order"):
            get("cm")(1024, (8, 16), order=bad)
    with pytest.raises(NaccError, match="order=1"):
        get("cm")(1024, (8, 16), order=1, model=str(NEURAL))


def test_order1_cli_round_trip(tmp_path, dev_clip):
    """``--param order=1`` through the CLI: recorded in the archive, decoded exactly."""
    from conftest import cli_in_process

    np.save(tmp_path / "c.npy", dev_clip[:12])
    r = cli_in_process(["compress", "-q", "--param", "order=1", "c.npy", "-o", "o1.nacc"],
                       tmp_path)
    assert r.exit_code == 0, r.output
    r = cli_in_process(["compress", "-q", "c.npy", "-o", "o0.nacc"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o1.nacc").read_bytes() != (tmp_path / "o0.nacc").read_bytes()
    r = cli_in_process(["decompress", "-q", "o1.nacc", "-o", "back.npy"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "back.npy").read_bytes() == (tmp_path / "c.npy").read_bytes()
