"""The gpt integer spec (nacc.gpt.intref): primitives against a scalar reading of the spec,
exact products, and one code path for the window pass, the KV-cache step and lanes."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nacc.gpt import intref as R

torch = pytest.importorskip("torch")

from gpt_models import TINY, tiny_checkpoint  # noqa: E402


def _scalar_quant(u, bits):
    a = max(abs(int(x)) for x in u)
    e = max(0, a.bit_length() - R.AMB)
    m = (a >> e) + 1
    sa = m << e
    qm = (1 << (bits - 1)) - 1
    return [min(max((int(x) * (1 << bits) + sa) // (2 * sa), -qm), qm) for x in u], m, e


def _scalar_ln(x, g, b, eps):
    import math

    d = len(x)
    e = max(abs(int(v)) for v in x).bit_length() - 20
    xs = [int(v) >> e if e >= 0 else int(v) << -e for v in x]
    mu = sum(xs) // d
    c = [v - mu for v in xs]
    var = sum(v * v for v in c) // d
    ve = eps >> (2 * e) if e >= 0 else eps << (-2 * e)
    sd = math.isqrt(var + ve)
    if sd == 0:
        return [int(v) for v in b]
    lim = 2**31 - 1
    return [min(max((2 * cv * int(gv) + sd) // (2 * sd) + int(bv), -lim), lim)
            for cv, gv, bv in zip(c, g, b)]


def test_primitives_match_a_scalar_reading_of_the_spec():
    rng = np.random.default_rng(5)
    for bits in (8, 12):
        for scale in (0, 3, 70000, 2**30):
            u = rng.integers(-scale, scale + 1, (4, 37))
            q, m, e = R.quant(u, bits)
            for row in range(4):
                sq, sm, se = _scalar_quant(u[row], bits)
                assert q[row].tolist() == sq and (m[row], e[row]) == (sm, se)
    for scale in (0, 5, 3000, 2**20, 2**30):
        x = rng.integers(-scale, scale + 1, (3, 24))
        g = rng.integers(-2**17, 2**17, 24)
        b = rng.integers(-2**16, 2**16, 24)
        y = R.layernorm(x, g, b, 42950)
        for row in range(3):
            assert y[row].tolist() == _scalar_ln(x[row], g, b, 42950)


def test_layernorm_and_gelu_follow_the_float_functions():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, (5, 64))
    y = R.layernorm(np.rint(x * 65536).astype(np.int64), np.full(64, 65536),
                    np.zeros(64, np.int64), 42950) / 65536
    ref = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    assert np.abs(y - ref).max() < 1e-4
    tables = R.make_tables()
    h = np.linspace(-10, 10, 2001)
    g = R.gelu(np.rint(h * 65536).astype(np.int64), tables.gelu) / 65536
    assert np.abs(g - R.gelu_float(h)).max() < 3e-5
    assert R.gelu(np.array([9 << 16, -(9 << 16)]), tables.gelu).tolist() == [9 << 16, 0]


def test_spec_tables_are_pinned():
    """The exp and GELU tables (stored in every model folder) as this nacc builds them."""
    t = R.make_tables()
    assert (len(t.exp_att), len(t.exp_tab), len(t.gelu)) == (12068, 17746, 16385)
    digest = hashlib.sha256(b"".join(a.astype("<i4").tobytes() for a in t)).hexdigest()
    assert digest == PINNED_TABLES


GOLDEN_8 = "5fa7122525a3ff692cf07124419f00082d13af539e50c118a8b2138792697670"
GOLDEN_12 = "3f49538d344d1a2e932593dffe2d8193a6baf1ea4980f0e9e7e3f44de9635a44"
PINNED_TABLES = "92c25b558946d14f90b7910f3dbb4638810e473b9048bdf962e80c47087db41b"


@pytest.mark.parametrize("bits", [8, 12])
def test_intdot_is_exact_at_the_bounds(bits):
    rng = np.random.default_rng(bits)
    qm = (1 << (bits - 1)) - 1
    for k in (5, 1024, 1500, 4096):
        w = rng.choice([-127, 127], (k, 9)).astype(np.int8)
        q = rng.choice([-qm, qm], (3, k))
        q[0] = qm * np.sign(w[:, 0].astype(np.int64))   # the largest sum a column reaches
        got = R.IntDot(w, bits)(q)
        assert np.array_equal(got, q.astype(np.int64) @ w.astype(np.int64))


def test_table_contract():
    rng = np.random.default_rng(0)
    z = rng.integers(-2**22, 2**22, (6, 1024))
    z[1] = 0
    z[2, 5] = 2**30
    t = R.table_from_logits(z, R.make_tables().exp_tab)
    assert t.dtype == np.int32 and t.min() >= 1
    assert (t.astype(np.int64).sum(1) == 2**24).all()
    assert t[1].max() - t[1].min() <= 1 + 1023 and t[2, 5] > 2**24 - 2048


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from nacc.gpt.importer import import_gpt
    from nacc.gpt.modelfile import load_model

    d = tmp_path_factory.mktemp("gpt")
    import_gpt(tiny_checkpoint(d / "m.bin"), d / "model", heads=4)
    return load_model(d / "model")[0], d / "m.bin"


def test_window_pass_step_and_lanes_are_identical(tiny_model):
    model, _ = tiny_model
    run = R.Runner(model)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, TINY.n_vocab, 70)
    whole = run.feed(ids, R.Cache(TINY))
    cache = R.Cache(TINY)
    steps = np.concatenate([run.feed(ids[i:i + 1], cache) for i in range(len(ids))])
    assert np.array_equal(whole, steps)
    cache = R.Cache(TINY)                               # a prefix in one pass, then steps
    parts = [run.feed(ids[:40], cache)] + [run.feed(ids[i:i + 1], cache) for i in range(40, 70)]
    assert np.array_equal(whole, np.concatenate(parts))
    from nacc.kernels.cpu.gpt import attend_rows, gemm_i8

    fast = R.Runner(model, small=gemm_i8, attend=attend_rows)    # the CPU path's kernels
    cache = R.Cache(TINY)
    fast_steps = [fast.feed(ids[:30], cache)] + [fast.feed(ids[i:i + 1], cache)
                                                 for i in range(30, 70)]
    assert np.array_equal(whole, np.concatenate(fast_steps))
    limbs = R.Runner(model)
    limbs.ONE_LIMB = 0                                  # the two-limb path gives the same
    assert np.array_equal(whole, limbs.feed(ids, R.Cache(TINY)))
    other = rng.integers(0, TINY.n_vocab, 25)
    c1, c2 = R.Cache(TINY), R.Cache(TINY)
    a, b = run.feed_lanes([(ids, c1, None), (other, c2, [3, 24])])
    assert np.array_equal(a, whole)
    assert np.array_equal(b, run.feed(other, R.Cache(TINY))[[3, 24]])


def test_integer_logits_follow_the_float_model(tiny_model):
    from nacc.gpt import torch_ref as TR

    model, ckpt = tiny_model
    ids = np.random.default_rng(4).integers(0, TINY.n_vocab, 64)
    zi = R.Runner(model).feed(ids, R.Cache(TINY)) / 65536
    zf = TR.load_checkpoint(TINY, ckpt)(torch.as_tensor(ids)[None])[0].detach().numpy()
    assert np.abs(zi - zf).max() < 0.02 * zf.std() + 0.01


def random_model(cfg: R.GPTConfig, seed: int) -> R.Model:
    """Integer weights drawn within the spec's bounds (no float model, no torch)."""
    rng = np.random.default_rng(seed)

    def arr(name, shape, dtype):
        if name.endswith("_w"):
            return rng.integers(-127, 128, shape).astype(np.int8)
        if name.endswith("_m"):
            return rng.integers(1 << 15, 1 << 16, shape).astype(np.int32)
        if name.endswith("_s"):
            return rng.integers(21, 25, shape).astype(np.int32)
        if name.endswith("_g"):
            return rng.integers(1 << 15, 1 << 17, shape).astype(np.int32)
        return rng.integers(-(1 << 15), 1 << 15, shape).astype(np.int32)   # b, wte, wpe

    top = R.Top(*(arr(k, s, d) for k, (s, d) in R.top_shapes(cfg).items()))
    layers = tuple(R.Layer(*(arr(k, s, d) for k, (s, d) in R.layer_shapes(cfg).items()))
                   for _ in range(cfg.n_layer))
    return R.Model(cfg, top, layers, R.make_tables())


@pytest.mark.parametrize("bits, pinned", [(8, GOLDEN_8), (12, GOLDEN_12)])
def test_golden_logits_of_a_random_integer_model(bits, pinned):
    """Pinned results of the spec on integer weights: another backend must reproduce them."""
    cfg = TINY._replace(act_bits=bits)
    run = R.Runner(random_model(cfg, 11))
    ids = np.random.default_rng(12).integers(0, cfg.n_vocab, 40)
    z = run.feed(ids, R.Cache(cfg))
    tab = run.tables(z)
    digest = hashlib.sha256(z.astype("<i8").tobytes() + tab.astype("<i4").tobytes())
    assert digest.hexdigest() == pinned


def test_integer_kernel_of_few_rows_equals_blas():
    from nacc.kernels.cpu.gpt import gemm_i8

    rng = np.random.default_rng(7)
    for bits in (8, 12):
        qm = (1 << (bits - 1)) - 1
        w = rng.integers(-127, 128, (4096, 40)).astype(np.int8)
        w[:, 0] = 127
        q = rng.integers(-qm, qm + 1, (5, 4096))
        q[0] = qm
        out = np.empty((5, 40), np.int32)
        gemm_i8(q.astype(np.int32), w, out)
        assert np.array_equal(out, R.IntDot(w, bits)(q))
        assert np.array_equal(R.IntDot(w, bits, gemm_i8)(q), R.IntDot(w, bits)(q))
