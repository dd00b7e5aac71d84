"""Neural predictors: integer export, identical tables on every path, model folders."""
import dataclasses
import hashlib
import json
from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import golden_json
from nacc.errors import NaccError
from nacc.kernels.cpu import rans
from nacc.neural import intref, packs, synth
from nacc.neural.config import DEFAULT_HEAD, ModelConfig, make_config
from nacc.neural.modelfile import expected_shapes, save_arrays
from nacc.predictors.base import check_table, get
from nacc.training.export import export, load_model, quant_multiplier, save_model
from nacc.training.train import TrainConfig, int_bits, train
from neural_models import random_model, v2_arrays

V = 32
SHAPE = (3, 4)
SCFG = synth.SynthConfig(vocab=V)


def _videos():
    return synth.corpus(2, (10, *SHAPE), 3, SCFG)


# (arch, config overrides): the plain head, and the head with motion counts and the
# substitution table (lstm with K = 1: the stepper keeps one frame, so the previous frame's
# motion counts must come from its carried state)
VARIANTS = {
    "transformer": ("transformer", dict(k_frames=2)),
    "lstm": ("lstm", dict(k_frames=2)),
    "transformer-motion-subst": ("transformer", dict(k_frames=2, motion_clamp=3, subst=True)),
    "lstm-motion-subst": ("lstm", dict(k_frames=1, motion_clamp=3, subst=True)),
    "transformer-untied-copybias": ("transformer", dict(k_frames=2, subst=True,
                                                        subst_tied=False, copy_bias=True)),
    "lstm-copymax": ("lstm", dict(k_frames=1, copy_bias=True, copy_max=True)),
    "lstm-subst-copymax": ("lstm", dict(k_frames=2, motion_clamp=3, subst=True, subst_emb=4,
                                        copy_bias=True, copy_max=True)),
    # the presets' head (DEFAULT_HEAD): the mixture; and the mixture over subst logits
    "lstm-defaults-head": ("lstm", dict(k_frames=1, motion_clamp=3, subst_emb=4, copy_bias=True,
                                        copy_max=True, mix_head=True)),
    "transformer-mix-subst": ("transformer", dict(k_frames=2, subst=True, subst_emb=4,
                                                  mix_head=True)),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def model(request, tmp_path_factory):
    """A small random integer model of each variant (``tests/neural_models.py``: no torch,
    no training), saved to a model folder: (arch, folder, IntModel, videos)."""
    arch, over = VARIANTS[request.param]
    im = random_model(arch, V, SHAPE, seed=len(request.param), **over)
    folder = tmp_path_factory.mktemp(request.param)
    save_model(im, folder)
    return arch, folder, im, _videos()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run (torch) of the presets' head with the substitution table
    (the exporter's work): (IntModel, training stats)."""
    cfg = make_config("transformer", V, SHAPE, preset="tiny", motion_clamp=3, subst=True,
                      subst_emb=4, copy_bias=True, copy_max=True, mix_head=True)
    _, im, stats = train(cfg, _videos(), TrainConfig(steps=12, batch_size=2, clip_len=5,
                                                     qat_frac=0.5, eval_every=100), quiet=True)
    return im, stats


def test_quant_multiplier():
    for f in [1e-9, 3.7e-5, 0.01, 0.5, 1.0, 3.3, 1000.0]:
        m, s = quant_multiplier(f)
        assert 2**30 <= m < 2**31 and 1 <= s <= 62
        assert abs(m * 2.0**-s / f - 1) < 1e-9


def test_all_paths_identical(model):
    arch, folder, im, vids = model
    pred = get(arch)(V, SHAPE, model=str(folder))
    v = vids[1]
    ref = intref.all_tables(im, v)  # numpy reference, all frames at once
    check_table(ref, V, pred.precision)
    tabs = np.stack(list(pred.tables(v)))  # numba, frame by frame
    assert np.array_equal(ref, tabs)
    # batching: the tables of a prefix do not depend on what follows
    assert np.array_equal(intref.all_tables(im, v[:4]), ref[:4])
    # decode order, token by token
    st = pred.stepper()
    flat = v.reshape(-1)
    steps = []
    for s in flat:
        steps.append(st.table())
        st.push(int(s))
    assert np.array_equal(np.stack(steps), ref.reshape(-1, V))
    # encode fast path (all frames) and fused decode
    start, freq = pred.intervals(v)
    s_ref = np.empty(flat.size, np.uint32)
    f_ref = np.empty(flat.size, np.uint32)
    rans.intervals_from_tables(ref.reshape(-1, V), flat, s_ref, f_ref, 0)
    assert np.array_equal(start, s_ref) and np.array_equal(freq, f_ref)
    words = rans.encode(start, freq, pred.precision)
    assert np.array_equal(pred.decode(words, len(v)), v)


def test_export_fills_the_optional_parts(trained):
    """A trained model's export holds the substitution table, the copy term and the
    mixture kernel non-trivially, in the exporter's packs."""
    im, _ = trained
    hd = im.head
    assert hd.sub is not None and hd.sg is not None and hd.cb is not None
    assert np.abs(hd.sub.w).max() > 0 and np.abs(hd.sg.w).max() > 0 and np.abs(hd.cb).max() > 0
    assert hd.ker is not None and hd.ker.dtype == np.uint32 and hd.ker.max(1).min() >= 1
    assert len(im.tf.layers) == im.cfg.n_layers
    assert set(packs.flatten(im.weights)) == set(expected_shapes(im.cfg))


def test_optional_head_parts(model, tmp_path):
    """Motion counts are the same integers in training (torch) and in the spec; old configs
    keep the optional parts off; a folder lacking a part its config needs, or breaking a
    bound, is refused; the folder's format decides what loads."""
    import torch

    from nacc.training.model import motion_features

    _, _, im, vids = model
    cfg = im.cfg
    a = packs.flatten(im.weights)
    old = ModelConfig.from_json({"arch": cfg.arch, "vocab": V, "frame_shape": SHAPE})
    assert old.n_motion == 0 and not old.subst and not old.copy_bias and old.subst_tied
    assert not old.copy_max
    if cfg.motion_clamp:
        v = vids[0]
        ref = intref.motion_features(v, cfg)
        assert ref.max() == cfg.motion_clamp and ref[2:, :, -1].max() > 0
        got = motion_features(torch.from_numpy(v.astype(np.int64))[None], cfg)[0]
        assert np.array_equal(got.reshape(ref.shape).numpy().astype(np.int64), ref)
    assert ("head.sub.w" in a) == ("head.sg.w" in a) == cfg.subst
    if cfg.copy_bias:
        save_arrays(cfg, {k: x for k, x in a.items() if k != "head.cb"}, tmp_path)
        with pytest.raises(NaccError, match="lack head.cb"):
            load_model(tmp_path)
    else:
        assert "head.cb" not in a
    assert not old.mix_head
    if cfg.mix_head:
        ker = a["head.ker"]
        assert ker.dtype == np.uint32 and ker.max(1).min() >= 1
        save_arrays(cfg, dict(a, **{"head.ker": np.zeros_like(ker)}), tmp_path / "zero-row")
        with pytest.raises(NaccError, match="head.ker has a row without a positive entry"):
            load_model(tmp_path / "zero-row")
        low = dict(a, **{"head.exp_logit": a["head.exp_logit"] // 2})
        save_arrays(cfg, low, tmp_path / "low-exp")
        with pytest.raises(NaccError, match=r"exp_logit\[0\] must be 2\*\*16"):
            load_model(tmp_path / "low-exp")
    else:
        assert "head.ker" not in a and "head.mix.w" not in a
    # the folder's format: v3 names the arrays by field path; the same weights under the
    # names of v2 (layers stacked) load to the same packs, with the hash of their file; a
    # mix model of nacc-int-v1 (a coarser mixture) is refused, an unknown format too
    save_model(im, tmp_path / "fmt")
    info = json.loads((tmp_path / "fmt" / "config.json").read_text())
    assert info["format"] == "nacc-int-v3"
    assert load_model(tmp_path / "fmt")[0].cfg == cfg
    old_names = v2_arrays(im)
    for fmt in ("nacc-int-v1", "nacc-int-v2", "nacc-int-v9", None):
        folder = tmp_path / f"fmt-{fmt}"
        save_arrays(cfg, old_names, folder)
        info = json.loads((folder / "config.json").read_text())
        info["format"] = fmt
        (folder / "config.json").write_text(json.dumps(info))
        if fmt == "nacc-int-v2" or (fmt == "nacc-int-v1" and not cfg.mix_head):
            got, digest = load_model(folder)
            assert got.cfg == cfg
            assert digest == hashlib.sha256((folder / info["weights"]).read_bytes()).digest()
            flat = packs.flatten(got.weights)
            assert sorted(flat) == sorted(a)
            assert all(np.array_equal(flat[k], a[k]) and flat[k].dtype == a[k].dtype
                       for k in a)
            continue
        with pytest.raises(NaccError, match="train it again" if fmt == "nacc-int-v1"
                           else "is not one this nacc reads"):
            load_model(folder)
    # a v3 folder labelled v2 lacks the old names
    info = json.loads((tmp_path / "fmt" / "config.json").read_text())
    info["format"] = "nacc-int-v2"
    (tmp_path / "fmt" / "config.json").write_text(json.dumps(info))
    with pytest.raises(NaccError, match="lack exp_logit"):
        load_model(tmp_path / "fmt")


def test_mix_table_exact():
    """The mixture table of the spec on hand-made numbers: the fresh part, each on slot's
    kernel row, a pad slot off (its large logit ignored), weights normalized to 2**16, the
    remainder to the largest mass; a fresh tail far below 2**-16 keeps its share (MIX_BITS
    fixed-point); numba equals numpy."""
    from nacc.kernels.cpu.neural import mix_table
    from nacc.neural.config import MIX_BITS

    assert MIX_BITS == 22
    exp = np.array([65536, 32768, 16384, 0], np.int32)        # EXP[d] = 2**(16-d), 3+: 0
    v, pad = 4, 4
    ker = np.array([[3840000, 320000, 0, 0], [0, 1 << 22, 0, 0], [0, 0, 64, 0],
                    [640, 640, 640, 640]], np.uint32)
    z = np.zeros((1, v), np.int64)             # fresh: uniform, A = 2**38 // 2**18, q = 2**20
    y = np.zeros((1, 16), np.int64)
    y[0, :4] = [1, 0, 2, 5]                    # fresh, slots 0 (code 0), 1 (code 1), 2 (pad)
    cand = np.full((1, 15), pad, np.int64)
    cand[0, :2] = [0, 1]
    # ymax = 2 (slot 2 is off): w = 2**15 (fresh), 2**14 (code 0), 2**16 (code 1), sum
    # 114688, normalized n = 2**16 w // 114688 = 18724, 9362, 37449;
    # m = [18724 2**20 + 9362 3840000, 18724 2**20 + 9362 320000 + 37449 2**22,
    #      18724 2**20, 18724 2**20]
    want = np.array([13268, 42894, 4687, 4687], np.int32)
    got = intref.mix_table(z, y, cand, ker, exp, 16, pad)
    assert np.array_equal(got[0], want) and want.sum() == 1 << 16
    out = np.empty(v, np.int32)
    mix_table(z[0], y[0], cand[0], pad, ker, exp, 16, np.empty(v, np.int64), out)
    assert np.array_equal(out, want)
    # fresh only (every slot pad), three codes at EXP = 1 beside one at 2**16:
    # A = 2**38 // 65539 = 4194112, q = [4194112, 63, 63, 63] (at 16 bits they would be 0)
    exp = np.array([65536, 1, 1, 0], np.int32)
    z = np.array([[0, -1, -1, -1]], np.int64)
    y = np.zeros((1, 16), np.int64)
    cand = np.full((1, 15), pad, np.int64)
    want = np.array([16776457, 253, 253, 253], np.int32)
    assert np.array_equal(intref.mix_table(z, y, cand, ker, exp, 24, pad)[0], want)
    mix_table(z[0], y[0], cand[0], pad, ker, exp, 24, np.empty(v, np.int64), out)
    assert np.array_equal(out, want)


def test_mix_kernel_start_and_export():
    """The kernel starts from copy counts: log(stays + 1) on the diagonal, log of the
    discounted symmetric substitution counts plus the symmetrized back-off elsewhere (hand
    computed); KERNEL_STAY / KERNEL_OTHER without counts; its export rounds 2**22 K with
    a positive entry per row."""
    from nacc.training.export import kernel_table
    from nacc.training.train import KERNEL_DISCOUNT, KERNEL_OTHER, KERNEL_STAY, kernel_start

    assert KERNEL_DISCOUNT == 0.4
    # 0 stays 4 times and becomes 1 once, 1 stays twice; 2 is never a source.  No pair is
    # two substitutions apart, so each row backs off uniformly: b = 0.4 * seen + 1 over
    # the 2 other codes, (1.4, 1.4, 1) / 2, symmetrized
    n = np.array([[4, 1, 0], [1, 2, 0], [0, 0, 0]])
    want = np.log(np.array([[5.0, 0.6 + 0.7, 0.6], [1.3, 3.0, 0.6], [0.6, 0.6, 1.0]]))
    assert np.allclose(kernel_start(n, 3), want, rtol=0, atol=1e-6)
    assert kernel_start(n, 3).dtype == np.float32
    assert np.array_equal(kernel_start(None, 2), np.array([[KERNEL_STAY, KERNEL_OTHER],
                                                           [KERNEL_OTHER, KERNEL_STAY]]))
    q = kernel_table(np.array([[1.0, 0.0], [0.25, 0.75], [1e-9, 1e-9]]))
    assert q.dtype == np.uint32
    assert np.array_equal(q, np.array([[1 << 22, 0], [1 << 20, 3 << 20], [1, 0]]))


def test_mix_kernel_start_backs_off_through_neighbours():
    """A chain 0 - 1 - 2 of substitutions: the pair (0, 2), never seen, gets KERNEL_HOP of
    0's (and of 2's) back-off, the unrelated code 3 the rest; the start is symmetric."""
    from nacc.training.train import KERNEL_DISCOUNT, KERNEL_HOP, kernel_start

    n = np.zeros((4, 4), np.int64)
    n[0, 1] = n[1, 2] = 2
    k = kernel_start(n, 4).astype(np.float64)
    b = KERNEL_DISCOUNT + 1  # one seen pair each for codes 0 and 2
    assert np.array_equal(k, k.T)
    assert np.isclose(np.exp(k[0, 2]), b * (KERNEL_HOP + (1 - KERNEL_HOP) / 3), rtol=1e-6)
    # code 3 backs off uniformly (b = 1), as does code 1 (its two neighbours' two-step
    # substitutions lead back to itself)
    assert np.isclose(np.exp(k[0, 3]), 0.5 * (b * (1 - KERNEL_HOP) / 3 + 1 / 3), rtol=1e-6)
    assert np.isclose(np.exp(k[0, 1]), 1 - KERNEL_DISCOUNT + 0.5 * (
        b * (1 - KERNEL_HOP) / 3 + (2 * KERNEL_DISCOUNT + 1) / 3), rtol=1e-6)


def test_thread_count_invariant(model):
    arch, folder, im, vids = model
    pred = get(arch)(V, SHAPE, model=str(folder))
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = np.stack(list(pred.tables(vids[0])))
    finally:
        numba.set_num_threads(n)
    assert np.array_equal(one, np.stack(list(pred.tables(vids[0]))))


def test_quantization_cost_small(trained):
    _, stats = trained
    assert abs(stats["val_bits_int"] - stats["val_bits_float"]) < 0.03 * stats["val_bits_float"]


def test_model_folder_hash(model, tmp_path):
    arch, folder, im, _ = model
    pred = get(arch)(V, SHAPE, model=str(folder))
    info = json.loads((folder / "config.json").read_text())
    data = (folder / info["weights"]).read_bytes()
    assert pred.model_hash() == hashlib.sha256(data).digest()
    assert info["weights"] == f"weights-{info['sha256'][:16]}.npz"
    assert pred.params() == {"model": str(folder)}
    # tampered weights are refused
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(info))
    (bad / info["weights"]).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(NaccError, match="sha256"):
        get(arch)(V, SHAPE, model=str(bad))
    with pytest.raises(NaccError, match="frames"):
        get(arch)(V, (5, 5), model=str(folder)).intervals(np.zeros((1, 5, 5), np.int32))
    with pytest.raises(NaccError):
        get(arch)(V + 1, SHAPE, model=str(folder))
    other = "lstm" if arch == "transformer" else "transformer"
    with pytest.raises(NaccError):
        get(other)(V, SHAPE, model=str(folder))
    with pytest.raises(NaccError):
        get(arch)(V, SHAPE, model=str(tmp_path / "none"))
    m2, h2 = load_model(folder)
    assert h2 == pred.model_hash()


def test_train_reproducible_and_resume(tmp_path):
    cfg = make_config("lstm", V, SHAPE, preset="tiny")
    vids = _videos()
    tc = TrainConfig(steps=6, batch_size=2, clip_len=4, eval_every=100, ckpt_every=3)
    _, _, a = train(cfg, vids, tc, out=tmp_path / "a", quiet=True)
    _, _, b = train(cfg, vids, tc, out=tmp_path / "b", quiet=True)
    assert a["sha256"] == b["sha256"]  # same seed, same model, bit for bit
    train(cfg, vids, tc, out=tmp_path / "c", quiet=True, stop_at=3)  # 'interrupted'
    _, _, c = train(cfg, vids, tc, out=tmp_path / "c", quiet=True, resume=True)
    assert c["sha256"] == a["sha256"]


def test_train_stream(tmp_path):
    """A stream of new videos per step: step s trains on the stream's videos of step s only
    (reproducible and resumable like a corpus); the given videos all validate."""
    cfg = make_config("lstm", V, SHAPE, preset="tiny")
    asked = []

    def stream(step):
        asked.append(step)
        return synth.stream(step, 2, (10, *SHAPE), 1, SCFG)

    tc = TrainConfig(steps=6, batch_size=2, clip_len=4, eval_every=100, ckpt_every=3)
    _, _, a = train(cfg, _videos(), tc, out=tmp_path / "a", quiet=True, stream=stream)
    assert asked == list(range(6))
    train(cfg, _videos(), tc, out=tmp_path / "b", quiet=True, stream=stream, stop_at=3)
    _, _, b = train(cfg, _videos(), tc, out=tmp_path / "b", quiet=True, stream=stream,
                    resume=True)
    assert b["sha256"] == a["sha256"] and asked[6:] == list(range(6))
    assert a["val_bits_int"] == int_bits(load_model(tmp_path / "a")[0], _videos())


def test_train_patience_stops():
    """With nothing to learn (lr 0) the first evaluation stays the best: training stops
    ``patience`` evaluations later and keeps it."""
    cfg = make_config("lstm", V, SHAPE, preset="tiny", motion_clamp=3, subst=True)
    tc = TrainConfig(steps=20, batch_size=2, clip_len=4, lr=0.0, qat_frac=1.0, eval_every=2,
                     patience=2)
    _, im, st = train(cfg, _videos(), tc, quiet=True)
    assert st["stopped_at"] == 6 and st["best_step"] == 2 and im is not None


def test_table_param_groups():
    """By default the head's per-code tables (copy term, full table and its embedding
    factors) get their own optimizer group, lr x100 and Adam eps 1e-3 (SGD-like steps);
    table_lr_mult 1 with Adam's own eps 1e-8 keeps one group."""
    import torch

    from nacc.training.model import NeuralModel
    from nacc.training.train import _param_groups

    cfg = make_config("lstm", V, SHAPE, preset="tiny", subst=True, subst_emb=2, copy_bias=True)
    model = NeuralModel(cfg)
    tc = TrainConfig()
    assert (tc.table_lr_mult, tc.table_eps) == (100.0, 1e-3)
    rest, tables = _param_groups(model, tc)
    h = model.head
    assert [id(p) for p in tables["params"]] == [id(h.cb), id(h.sub.weight), id(h.sub.emb_a),
                                                 id(h.sub.emb_b)]
    assert (tables["lr_mult"], tables["eps"]) == (100.0, 1e-3)
    n = sum(1 for _ in model.parameters())
    assert len(rest["params"]) == n - 4
    opt = torch.optim.AdamW(_param_groups(model, tc), lr=1e-3)
    assert [g["eps"] for g in opt.param_groups] == [1e-8, 1e-3]
    one = list(_param_groups(model, TrainConfig(table_lr_mult=1.0, table_eps=1e-8)))
    assert len(one) == n and all(isinstance(p, torch.nn.Parameter) for p in one)
    # the mixture head's kernel (full table and factors): a group of its own, fast like the
    # tables, without weight decay (also with plain Adam for the tables)
    mixed = NeuralModel(make_config("lstm", V, SHAPE, preset="tiny", mix_head=True,
                                    subst_emb=2, copy_bias=True))
    k = mixed.head.kern
    kern_ids = [id(k.weight), id(k.emb_a), id(k.emb_b)]
    rest, tables, kern = _param_groups(mixed, tc)
    assert [id(p) for p in tables["params"]] == [id(mixed.head.cb)]
    assert [id(p) for p in kern["params"]] == kern_ids
    assert (kern["lr_mult"], kern["eps"], kern["weight_decay"]) == (100.0, 1e-3, 0.0)
    rest, kern = _param_groups(mixed, TrainConfig(table_lr_mult=1.0, table_eps=1e-8))
    assert [id(p) for p in kern["params"]] == kern_ids and kern == {"params": kern["params"],
                                                                    "weight_decay": 0.0}
    assert len(rest["params"]) == sum(1 for _ in mixed.parameters()) - 3
    opt = torch.optim.AdamW(_param_groups(mixed, tc), lr=1e-3, weight_decay=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.01, 0.0]


def test_cli_train(tmp_path):
    from click.testing import CliRunner

    from nacc.cli.train import train as train_cmd

    v = _videos()[0]
    np.save(tmp_path / "d.npy", v)
    out = tmp_path / "m"
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--arch", "lstm", "--out", str(out),
                                       "--steps", "3", "--batch-size", "2", "--clip-len", "4",
                                       "--preset", "tiny", "--vocab", str(V), "-q"])
    assert r.exit_code == 0, r.output
    pred = get("lstm")(V, SHAPE, model=str(out))
    check_table(next(pred.tables(v)), V, pred.precision)
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--arch", "lstm", "--out", str(out),
                                       "--steps", "5", "--batch-size", "2", "--clip-len", "4",
                                       "--preset", "tiny", "--vocab", str(V), "-q", "--resume",
                                       "-f"])     # -f: m exists (the finished first run)
    assert r.exit_code == 0, r.output
    # head options reach the model config
    out2 = tmp_path / "m2"
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--arch", "transformer",
                                       "--out", str(out2), "--steps", "2", "--batch-size", "2",
                                       "--clip-len", "4", "--preset", "tiny", "--vocab", str(V),
                                       "-q", "--motion-clamp", "4", "--subst", "--untied-subst",
                                       "--copy-bias", "--copy-max"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out2 / "config.json").read_text())
    assert ((cfg["motion_clamp"], cfg["subst"], cfg["subst_tied"], cfg["copy_bias"],
             cfg["copy_max"]) == (4, True, False, True, True))
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--out", str(tmp_path / "m3"),
                                       "--untied-subst", "--no-subst", "--no-mix", "-q"])
    assert r.exit_code == 2 and "need --subst or --mix" in r.output
    # defaults: the arch's preset (every head option on), TrainConfig's own defaults
    out4 = tmp_path / "m4"
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--arch", "lstm", "--out",
                                       str(out4), "--steps", "2", "--vocab", str(V), "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads((out4 / "config.json").read_text())
    assert {k: info[k] for k in DEFAULT_HEAD} == DEFAULT_HEAD and info["k_frames"] == 2
    want = dataclasses.asdict(TrainConfig(steps=2))
    assert info["train"] == want
    assert (want["schedule"], want["qat_frac"], want["dropout"], want["patience"],
            want["eval_every"], TrainConfig().steps) == ("plateau", 1.0, 0.1, 6, 100, 3000)
    assert (want["table_lr_mult"], want["table_eps"], want["lr"], want["subst_init"],
            want["weight_decay"]) == (100.0, 1e-3, 1e-3, 1.0, 0.01)
    # flag pairs switch each option off
    out5 = tmp_path / "m5"
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--arch", "lstm", "--out",
                                       str(out5), "--steps", "2", "--vocab", str(V), "-q",
                                       "--no-mix", "--no-copy-bias", "--no-copy-max",
                                       "--motion-clamp", "0", "--schedule", "cosine",
                                       "--table-lr-mult", "1", "--table-eps", "1e-8"])
    assert r.exit_code == 0, r.output
    info = json.loads((out5 / "config.json").read_text())
    assert ((info["mix_head"], info["copy_bias"], info["copy_max"], info["motion_clamp"],
             info["train"]["schedule"], info["train"]["table_lr_mult"],
             info["train"]["table_eps"]) == (False, False, False, 0, "cosine", 1.0, 1e-8))
    # the default head mixes (DEFAULT_HEAD above); --subst-emb needs --subst or --mix
    r = CliRunner().invoke(train_cmd, [str(tmp_path / "d.npy"), "--out", str(tmp_path / "m6"),
                                       "--subst-emb", "4", "--no-mix", "-q"])
    assert r.exit_code == 2 and "need --subst or --mix" in r.output


def test_subst_embedding_bag_and_low_rank_export():
    """The head's substitution term (an embedding bag over the table's rows) equals the
    dense product of the gated one-hot rows with the table; with subst_emb the exported
    table is the quantized full + low-rank sum, tied symmetric before quantization."""
    import torch
    import torch.nn.functional as tF

    from nacc.training.export import export_linear
    from nacc.training.model import NeuralModel, _scales

    cfg = make_config("transformer", V, SHAPE, preset="tiny", subst=True, subst_emb=4)
    m = NeuralModel(cfg)
    with torch.no_grad():
        m.head.sub.weight.normal_()
    w = m.head.sub.float_weight()
    lo = m.head.sub.emb_a @ m.head.sub.emb_b.t() + m.head.sub.weight
    assert torch.allclose(w, 0.5 * (lo + lo.t())) and torch.equal(w, w.t())
    g = torch.randn(7, 15)
    cand = torch.randint(0, V + 1, (7, 15))
    sx = _scales((0.01, V))
    wt = torch.cat([m.head.sub.effective_weight(sx).t(), torch.zeros(1, V)])
    bag = tF.embedding_bag(cand, wt, mode="sum", per_sample_weights=g)
    rows = torch.zeros(7, V + 1).scatter_add(-1, cand, g)[:, :V]
    assert torch.allclose(bag, m.head.sub(rows, sx), atol=1e-5)
    m(torch.randint(0, V, (1, 3, *SHAPE)))  # the observers see activations
    m.set_qat(True)
    im = export(m)
    wq, _, _, _ = export_linear(m.head.sub, np.full(V, m.head.fq_g.scale), 2.0**-cfg.logit_frac)
    assert im.head.sub is not None and np.array_equal(im.head.sub.w, wq)


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "models").glob("commavq-dev-*"))
GOLDEN = Path(__file__).resolve().parent / "golden" / "neural_words.json"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_models_golden(folder, dev_clip):
    """Shipped models load, code frames 300-302 of the dev clip (never their training frames)
    losslessly, and give the exact words recorded in the golden file (set
    NACC_REGEN_GOLDEN=1 to rewrite it on purpose after a deliberate spec change)."""
    info = json.loads((folder / "config.json").read_text())
    pred = get(info["arch"])(info["vocab"], tuple(info["frame_shape"]), model=str(folder))
    v = np.ascontiguousarray(dev_clip[300:303], np.int32)
    start, freq = pred.intervals(v)
    words = rans.encode(start, freq, pred.precision)
    assert np.array_equal(pred.decode(words, len(v)), v)
    digest = hashlib.sha256(words.tobytes()).hexdigest()
    key = f"{folder.name}:{info['sha256'][:16]}:frames300-302"
    assert golden_json(GOLDEN, key, digest, indent=2) == digest, \
        f"golden words for {key} missing or changed"


def _counts_by_loops(videos, vocab):
    """substitution_counts spelled out token by token (the reference of its contract)."""
    from nacc.neural.config import PREV_CANDIDATES

    n = np.zeros((vocab, vocab), np.int64)
    for v in videos:
        t_n, h, w = v.shape
        for t in range(t_n):
            src = None
            if t > 0:
                hits = [sum(1 for y in range(h) for x in range(w)
                            if 0 <= y + dy < h and 0 <= x + dx < w
                            and v[t - 1, y + dy, x + dx] == v[t, y, x])
                        for dy, dx in PREV_CANDIDATES]
                if 4 * max(hits) >= h * w:
                    src = PREV_CANDIDATES[int(np.argmax(hits))]
            for y in range(h):
                for x in range(w):
                    s = int(v[t, y, x])
                    a = -1
                    if src is not None and 0 <= y + src[0] < h and 0 <= x + src[1] < w:
                        a = int(v[t - 1, y + src[0], x + src[1]])
                    if a == s:
                        continue  # a copy: neither it nor its neighbours count
                    for b in ([a] if a >= 0 else []) + ([int(v[t, y, x - 1])] if x else []) \
                            + ([int(v[t, y - 1, x])] if y else []):
                        if b != s:
                            n[b, s] += 1
                            n[s, b] += 1
    return n


def test_substitution_counts_exact():
    """Counts of (source, token) pairs: the previous frame at the frame's best shift, and
    the left / upper neighbours of tokens that are not a copy; a hand-checked case, then
    the vectorised count against the token-by-token one on synthetic videos."""
    from nacc.training.train import substitution_counts

    f0 = np.array([[0, 1, 2], [3, 4, 5]])
    f1 = np.array([[6, 0, 1], [7, 3, 4]])  # f0 moved right (shift (0, -1)) plus new codes
    f1[1, 2] = 5                            # 4 -> 5: a substitution of its source
    n = substitution_counts([np.stack([f0, f1])], 8)
    assert (n == n.T).all() and not n.diagonal().any()
    got = {(int(a), int(b)): int(n[a, b]) for a, b in zip(*np.nonzero(np.triu(n)))}
    # frame 0: its left and upper pairs; frame 1: 6 and 7 have no source (off the frame),
    # 7 has 6 above it; 5 is new, with source 4 and neighbours 3 (left) and 1 (up)
    want = {(0, 1): 1, (1, 2): 1, (3, 4): 1, (4, 5): 2, (0, 3): 1, (1, 4): 1, (2, 5): 1,
            (6, 7): 1, (3, 5): 1, (1, 5): 1}
    assert got == want
    assert (n == _counts_by_loops([np.stack([f0, f1])], 8)).all()
    vids = synth.corpus(3, (6, 4, 5), 7, synth.SynthConfig(vocab=12, p_sub=0.5))
    assert (substitution_counts(vids, 12) == _counts_by_loops(vids, 12)).all()


def _copy_counts_by_loops(videos, vocab):
    """copy_counts spelled out token by token (the reference of its contract)."""
    from nacc.neural.config import PREV_CANDIDATES

    n = np.zeros((vocab, vocab), np.int64)
    for v in videos:
        t_n, h, w = v.shape
        for t in range(1, t_n):
            hits = [sum(1 for y in range(h) for x in range(w)
                        if 0 <= y + dy < h and 0 <= x + dx < w
                        and v[t - 1, y + dy, x + dx] == v[t, y, x])
                    for dy, dx in PREV_CANDIDATES]
            if 4 * max(hits) < h * w:
                continue
            dy, dx = PREV_CANDIDATES[int(np.argmax(hits))]
            for y in range(h):
                for x in range(w):
                    if not (0 <= y + dy < h and 0 <= x + dx < w):
                        continue
                    a, s = int(v[t - 1, y + dy, x + dx]), int(v[t, y, x])
                    near = ([int(v[t, y, x - 1])] if x else []) \
                        + ([int(v[t, y - 1, x])] if y else [])
                    if a == s or s not in near:
                        n[a, s] += 1
    return n


def test_copy_counts_exact():
    """(previous-frame source, token) counts: stays on the diagonal, substitutions off it
    unless the token equals its left or upper neighbour; a hand-checked case, then the
    vectorised count against the token-by-token one on synthetic videos."""
    from nacc.training.train import copy_counts

    f0 = np.array([[0, 1, 2], [3, 4, 5]])
    f1 = np.array([[6, 0, 1], [7, 3, 4]])  # f0 moved right (shift (0, -1)) plus new codes
    f1[1, 2] = 5                            # 4 -> 5: a substitution of its source
    f2 = f1.copy()
    f2[0, 2] = 0                            # 1 -> 0: equals its left neighbour, not counted
    n = copy_counts([np.stack([f0, f1, f2])], 8)
    got = {(int(a), int(b)): int(n[a, b]) for a, b in zip(*np.nonzero(n))}
    # frame 1 (shift (0, -1)): the sources of (0, 1), (0, 2), (1, 1), (1, 2) are 0, 1, 3,
    # 4: three stays and 4 -> 5; frame 2 (shift (0, 0)): 6, 0, 7, 3 and 5 stay, and
    # 1 -> 0 at (0, 2) is left out (0 is its left neighbour)
    want = {(0, 0): 2, (1, 1): 1, (3, 3): 2, (4, 5): 1, (6, 6): 1, (7, 7): 1, (5, 5): 1}
    assert got == want
    assert (n == _copy_counts_by_loops([np.stack([f0, f1, f2])], 8)).all()
    vids = synth.corpus(3, (6, 4, 5), 7, synth.SynthConfig(vocab=12, p_sub=0.5))
    assert (copy_counts(vids, 12) == _copy_counts_by_loops(vids, 12)).all()


def test_substitution_prior_keeps_clear_pairs():
    """Only pairs met clearly more often than independence predicts get a value, the
    smoothed log ratio log((n + 1) / (E + 1)); the rest, and the diagonal, are 0."""
    from nacc.training.train import substitution_prior

    c = np.full((6, 6), 4, np.int64)
    np.fill_diagonal(c, 0)
    c[1, 2] = c[2, 1] = 40
    p = substitution_prior(c)
    r = c.sum(1).astype(np.float64)
    e12 = r[1] * r[2] / r.sum()
    assert p.dtype == np.float32 and (p == p.T).all()
    assert np.count_nonzero(p) == 2 and p[1, 2] == np.float32(np.log(41 / (e12 + 1)))
    assert not substitution_prior(np.zeros((3, 3), np.int64)).any()


def test_train_subst_init_starts_from_corpus_pairs():
    """With subst_init the full table starts at subst_init x substitution_prior of the
    training videos (lr 0 keeps it there); 0 leaves it at zero."""
    from nacc.training.model import NeuralModel  # noqa: F401  (torch)
    from nacc.training.train import split_corpus, substitution_counts, substitution_prior

    cfg = make_config("lstm", V, SHAPE, preset="tiny", subst=True)
    vids = synth.corpus(4, (10, *SHAPE), 3, synth.SynthConfig(vocab=V, p_sub=0.6))
    tc = TrainConfig(steps=2, batch_size=2, clip_len=4, lr=0.0, eval_every=100, subst_init=2.0)
    model, _, _ = train(cfg, vids, tc, quiet=True)
    want = 2.0 * substitution_prior(substitution_counts(split_corpus(vids, 0.1)[0], V))
    assert np.count_nonzero(want) > 0
    assert np.array_equal(model.head.sub.weight.detach().numpy(), want)
    model, _, _ = train(cfg, vids, dataclasses.replace(tc, subst_init=0.0), quiet=True)
    assert not model.head.sub.weight.detach().numpy().any()


def test_train_mix_kernel_starts_from_copy_counts():
    """The mixture head's kernel starts at kernel_start(copy_counts) of the training videos
    (lr 0 keeps it there); subst_init 0 leaves it at the constant start."""
    from nacc.training.train import copy_counts, kernel_start, split_corpus

    cfg = make_config("lstm", V, SHAPE, preset="tiny", mix_head=True, subst_emb=2)
    vids = synth.corpus(4, (10, *SHAPE), 3, synth.SynthConfig(vocab=V, p_sub=0.6))
    tc = TrainConfig(steps=2, batch_size=2, clip_len=4, lr=0.0, eval_every=100)
    model, _, _ = train(cfg, vids, tc, quiet=True)
    want = kernel_start(copy_counts(split_corpus(vids, 0.1)[0], V), V)
    assert np.array_equal(model.head.kern.weight.detach().numpy(), want)
    model, _, _ = train(cfg, vids, dataclasses.replace(tc, subst_init=0.0), quiet=True)
    assert np.array_equal(model.head.kern.weight.detach().numpy(), kernel_start(None, V))


def test_cli_train_set_and_weight_decay(tmp_path):
    """--set KEY=VALUE overrides a model configuration field; an unknown key is a usage
    error that names the known ones; --weight-decay reaches the training config."""
    from click.testing import CliRunner

    from nacc.cli.train import train as train_cmd

    np.save(tmp_path / "d.npy", _videos()[0])
    base = [str(tmp_path / "d.npy"), "--arch", "lstm", "--steps", "2", "--vocab", str(V), "-q"]
    r = CliRunner().invoke(train_cmd, base + ["--out", str(tmp_path / "m"), "--set",
                                              "head_hidden=24", "--set", "subst=false",
                                              "--weight-decay", "0.5"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (info["head_hidden"], info["subst"], info["train"]["weight_decay"]) == (24, False, 0.5)
    r = CliRunner().invoke(train_cmd, base + ["--out", str(tmp_path / "m2"), "--set", "hidden=3"])
    assert r.exit_code == 2 and "'hidden=3'" in r.output and "head_hidden" in r.output
    r = CliRunner().invoke(train_cmd, base + ["--out", str(tmp_path / "m2"), "--set",
                                              "head_hidden=wide"])
    assert r.exit_code == 2 and "head_hidden must be of type int" in r.output
    assert not (tmp_path / "m2").exists()
