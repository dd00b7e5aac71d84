"""Tiny random integer models for kernel tests: every array the spec reads, random within
the bounds ``nacc.neural.modelfile.check_arrays`` enforces, with requantization shifts that
keep activations spread over the int8 range (so tables are far from uniform).  The arrays
are drawn layer-stacked under the names of model folders before packs and read by
``nacc.neural.packs.from_v2`` (which the tests thereby cover too)."""
from __future__ import annotations

import math

import numpy as np

from nacc.neural.config import HEAD_NEIGHBOURS, N_MATCH, N_SLOTS, make_config
from nacc.neural.intref import IntModel
from nacc.neural.packs import from_v2, stacked


def _lin(rng, n, k, x_std, out_std=40.0, w_max=40, bias=200):
    w = rng.integers(-w_max, w_max + 1, (n, k)).astype(np.int8)
    b = rng.integers(-bias, bias + 1, n).astype(np.int32)
    acc_std = max(1.0, math.sqrt(k) * (w_max / math.sqrt(3)) * x_std)
    m = rng.integers(2**30, 2**31, n).astype(np.int32)
    # rq(acc) ~ acc * m / 2**s ~ out_std: s = log2(acc_std * m / out_std)
    s = np.clip(np.round(np.log2(acc_std * m.astype(np.float64) / out_std)), 1, 62)
    return w, b, m, s.astype(np.int32)


def random_model(arch: str, vocab: int, frame_shape, seed: int = 0, **over) -> IntModel:
    """A random IntModel of the 'tiny' preset (``over``: config overrides)."""
    cfg = make_config(arch, vocab, frame_shape, preset="tiny", **over)
    rng = np.random.default_rng(seed)
    a: dict[str, np.ndarray] = {}
    h, w = cfg.frame_shape
    shapes = {"tf.emb_ctx": (vocab + 1, cfg.emb), "tf.emb_q": (vocab + 1, cfg.emb),
              "tf.row": (h, cfg.pos_emb), "tf.col": (w, cfg.pos_emb),
              "ls.emb": (vocab + 1, cfg.emb), "head.emb": (vocab + 1, cfg.head_emb)}

    def emb(name):
        a[name] = rng.integers(-100, 101, shapes[name]).astype(np.int8)

    def put(name, n, k, x_std, layers=None, **kw):
        ps = [_lin(rng, n, k, x_std, **kw) for _ in range(layers or 1)]
        for j, key in enumerate("wbms"):
            arr = np.stack([p[j] for p in ps]) if layers else ps[0][j]
            a[f"{name}.{key}"] = arr

    def lut(lo=-127, hi=127):
        x = np.arange(-128, 128)
        return np.clip(np.rint(hi * np.tanh(x / 50.0) + 0.3 * x), lo, hi).astype(np.int32)

    a["exp_logit"] = np.rint(2.0**16 * np.exp(-np.arange(1280) / 64.0)).astype(np.int32)
    d, hid = cfg.d_model, cfg.head_hidden
    if arch == "transformer":
        n_l, nh, r, e, pe = cfg.n_layers, cfg.n_heads, cfg.radius, cfg.emb, cfg.pos_emb
        for name in ("tf.emb_ctx", "tf.emb_q", "tf.row", "tf.col"):
            emb(name)
        a["exp_att"] = np.rint(2.0**16 * np.exp(-np.arange(512) / 32.0)).astype(np.int32)
        put("tf.in", d, e + 2 * pe, 58)
        for name, n, k in (("tf.q", d, d), ("tf.k", d, e), ("tf.v", d, e), ("tf.o", d, d),
                           ("tf.f1", cfg.d_ff, d), ("tf.f2", d, cfg.d_ff)):
            put(name, n, k, 50, layers=n_l)
        for ln in ("tf.ln1", "tf.ln2"):
            a[f"{ln}.g"] = rng.integers(20 << 16, 40 << 16, (n_l, d)).astype(np.int32)
            a[f"{ln}.b"] = rng.integers(-10, 11, (n_l, d)).astype(np.int32)
        a["tf.lnf.g"] = rng.integers(20 << 16, 40 << 16, d).astype(np.int32)
        a["tf.lnf.b"] = rng.integers(-10, 11, d).astype(np.int32)
        a["tf.att.m"] = rng.integers(2**30, 2**31, n_l).astype(np.int32)
        a["tf.att.s"] = np.full(n_l, 43, np.int32)
        a["tf.bt"] = rng.integers(-60, 61, (n_l, nh, cfg.k_frames)).astype(np.int32)
        a["tf.by"] = rng.integers(-60, 61, (n_l, nh, 2 * r + 1)).astype(np.int32)
        a["tf.bx"] = rng.integers(-60, 61, (n_l, nh, 2 * r + 1)).astype(np.int32)
        a["tf.add1"] = rng.integers(30000, 40000, (n_l, 2)).astype(np.int32)
        a["tf.add2"] = rng.integers(30000, 40000, (n_l, 2)).astype(np.int32)
        a["tf.act"] = np.stack([lut() for _ in range(n_l)])
    else:
        emb("ls.emb")
        put("ls.gates", 4 * d, cfg.n_window * cfg.emb + d, 58, out_std=30)
        x = np.arange(-128, 128)
        a["ls.sig"] = np.rint(128 / (1 + np.exp(-x / 16))).astype(np.int32)
        a["ls.tanh"] = np.rint(128 * np.tanh(x / 16)).astype(np.int32)
    emb("head.emb")
    k1 = d + len(HEAD_NEIGHBOURS) * cfg.head_emb + N_MATCH + cfg.n_motion
    put("head.l1", hid, k1, 50)
    a["head.act"] = lut()
    put("head.l2", vocab, hid, 50, out_std=120)
    put("head.cp", N_SLOTS, hid, 50, out_std=80)
    if cfg.subst:
        put("head.sg", N_SLOTS, hid, 50)
        w, _, m, s = _lin(rng, vocab, vocab, 30, out_std=60)
        a["head.sub.w"], a["head.sub.m"], a["head.sub.s"] = w, m, s
    if cfg.copy_bias:
        a["head.cb"] = rng.integers(-100, 101, vocab).astype(np.int32)
    if cfg.mix_head:
        put("head.mix", 1 + N_SLOTS, hid, 50, out_std=80)
        # kernel rows: a large diagonal, a few large entries, the rest small (some zero)
        ker = rng.integers(0, 2560, (vocab, vocab))
        ker[rng.random((vocab, vocab)) < 0.1] = rng.integers(64000, 576000)
        ker[np.arange(vocab), np.arange(vocab)] = rng.integers(1 << 21, (1 << 22) + 1, vocab)
        a["head.ker"] = ker.astype(np.uint32)
    return IntModel(cfg, from_v2(cfg, a))


def v2_arrays(im: IntModel) -> dict[str, np.ndarray]:
    """The weights of ``im`` under the names of model folders before packs (format
    ``nacc-int-v2``: layer arrays stacked on a first axis): what ``from_v2`` reads."""
    hd = im.head
    a: dict[str, np.ndarray] = {"head.emb": hd.emb, "head.act": hd.act,
                                "exp_logit": hd.exp_logit}

    def lin(name, p):
        a.update({f"{name}.{k}": x for k, x in zip("wbms", p)})

    lin("head.l1", hd.l1)
    lin("head.l2", hd.l2)
    lin("head.cp", hd.cp)
    if hd.cb is not None:
        a["head.cb"] = hd.cb
    if hd.sg is not None and hd.sub is not None:
        lin("head.sg", hd.sg)
        a.update({"head.sub.w": hd.sub.w, "head.sub.m": hd.sub.m, "head.sub.s": hd.sub.s})
    if hd.mix is not None and hd.ker is not None:
        lin("head.mix", hd.mix)
        a["head.ker"] = hd.ker
    if im.cfg.arch == "lstm":
        lp = im.lstm
        lin("ls.gates", lp.gates)
        a.update({"ls.emb": lp.emb, "ls.sig": lp.sig, "ls.tanh": lp.tanh})
        return a
    tf = im.tf
    lin("tf.in", tf.inp)
    a.update({"tf.emb_q": tf.emb_q, "tf.emb_ctx": tf.emb_ctx, "tf.row": tf.row,
              "tf.col": tf.col, "tf.lnf.g": tf.lnf.g, "tf.lnf.b": tf.lnf.b,
              "exp_att": tf.exp_att})
    for old, new in (("tf.ln1.g", "ln1.g"), ("tf.ln1.b", "ln1.b"), ("tf.ln2.g", "ln2.g"),
                     ("tf.ln2.b", "ln2.b"), ("tf.att.m", "att.m"), ("tf.att.s", "att.s"),
                     ("tf.bt", "bt"), ("tf.by", "by"), ("tf.bx", "bx"), ("tf.add1", "add1"),
                     ("tf.add2", "add2"), ("tf.act", "act")):
        a[old] = stacked(tf.layers, new)
    for name in ("q", "k", "v", "o", "f1", "f2"):
        for k in "wbms":
            a[f"tf.{name}.{k}"] = stacked(tf.layers, f"{name}.{k}")
    return a
