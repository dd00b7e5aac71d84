"""Export a trained (QAT) torch model to the integer model of ``nacc.neural.intref``.

Model folders are written and read by ``nacc.neural.modelfile`` (numpy only; its
``save_model`` / ``load_model`` are re-exported here for the training code).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nacc.neural.config import COPY_BIAS_MAX, HEAD_NEIGHBOURS, MIX_BITS, N_MATCH
from nacc.neural.intref import IntModel
from nacc.neural.modelfile import ModelError, load_model, save_model  # noqa: F401
from nacc.training.model import LSTM_GATE_SCALE, NeuralModel


def quant_multiplier(f: float) -> tuple[int, int]:
    """(M, S) with f ~= M * 2**-S, M in [2**30, 2**31), 1 <= S <= 62 (M = 0 for f = 0)."""
    if f <= 0:
        if f == 0:
            return 0, 1
        raise ValueError("negative requantization factor")
    mant, e = math.frexp(f)
    m = int(round(mant * 2**31))
    if m == 2**31:
        m //= 2
        e += 1
    s = 31 - e
    if s > 62:
        m >>= s - 62
        s = 62
    if s < 1:
        raise ValueError(f"requantization factor {f} too large")
    return m, s


def _np(t):
    return t.detach().double().cpu().numpy()


def export_linear(lin, sx: np.ndarray, s_out: float, acc_bound: int = 2**31):
    w = _np(lin.float_weight())
    b = _np(lin.bias) if lin.bias is not None else np.zeros(w.shape[0])
    weff = w * sx[None, :]
    s = np.maximum(np.abs(weff).max(1) / 127.0, 1e-12)
    wq = np.clip(np.rint(weff / s[:, None]), -127, 127).astype(np.int8)
    bq = np.rint(b / s)
    lim = acc_bound - 1 - 127 * 127 * w.shape[1]
    if lim <= 0:
        raise ValueError("layer too wide for int32 accumulators")
    bq = np.clip(bq, -lim, lim).astype(np.int32)
    ms = [quant_multiplier(float(si / s_out)) for si in s]
    m = np.array([x[0] for x in ms], np.int32)
    sh = np.array([x[1] for x in ms], np.int32)
    return wq, bq, m, sh


def _emb(e):
    w = _np(e.weight)
    return np.clip(np.rint(w / e.scale), -127, 127).astype(np.int8)


def _lut(fn, s_in, s_out, lo=-127, hi=127):
    x = np.arange(-128, 128) * s_in
    return np.clip(np.rint(fn(x) / s_out), lo, hi).astype(np.int32)


def _gelu(x):
    return _np(F.gelu(torch.from_numpy(x)))


def _exp_table(frac: int, rng: float):
    n = int(math.ceil(rng * 2**frac))
    return np.rint(2.0**16 * np.exp(-np.arange(n) / 2.0**frac)).astype(np.int32)


def _ln(ln, s_y):
    g = np.rint(_np(ln.weight) / s_y * 2**16).astype(np.int32)
    b = np.rint(_np(ln.bias) / s_y).astype(np.int32)
    return g, b


def _add(s1, s2, s_y):
    return np.array([round(s1 / s_y * 2**16), round(s2 / s_y * 2**16)], np.int32)


def _put(out, name, p):
    for key, arr in zip("wbms", p):
        out[f"{name}.{key}"] = arr


def _stack_put(out, name, ps):
    for j, key in enumerate("wbms"):
        out[f"{name}.{key}"] = np.stack([p[j] for p in ps])


def export(model: NeuralModel) -> IntModel:
    """Integer model from a trained torch model (its observers give the scales)."""
    cfg = model.cfg
    a: dict[str, np.ndarray] = {}
    a["exp_logit"] = _exp_table(cfg.logit_frac, cfg.logit_range)
    # Any: nn.Module attribute access is typed Tensor | Module, these are our own modules
    fr: Any = model.frame
    if cfg.arch == "transformer":
        d, e, L, nh = cfg.d_model, cfg.emb, cfg.n_layers, cfg.n_heads
        dh = d // nh
        a["exp_att"] = _exp_table(cfg.att_frac, cfg.att_range)
        a["tf.emb_ctx"] = _emb(fr.emb_ctx)
        a["tf.emb_q"] = _emb(fr.emb_q)
        a["tf.row"] = _emb(fr.row)
        a["tf.col"] = _emb(fr.col)
        sx = np.concatenate([np.full(e, fr.emb_q.scale), np.full(cfg.pos_emb, fr.row.scale),
                             np.full(cfg.pos_emb, fr.col.scale)])
        _put(a, "tf.in", export_linear(fr.inp, sx, fr.fq_in.scale))
        s_res = fr.fq_in.scale
        keys: dict[str, list] = {k: [] for k in ("q", "k", "v", "o", "f1", "f2")}
        ln1, ln2, add1, add2, act, att_m, att_s = [], [], [], [], [], [], []
        se = np.full(e, fr.emb_ctx.scale)
        for l in range(L):
            ln1.append(_ln(fr.ln1[l], fr.fq_ln1[l].scale))
            keys["q"].append(export_linear(fr.q[l], np.full(d, fr.fq_ln1[l].scale),
                                           fr.fq_q[l].scale))
            keys["k"].append(export_linear(fr.k[l], se, fr.fq_k[l].scale))
            keys["v"].append(export_linear(fr.v[l], se, fr.fq_v[l].scale))
            mm, ss = quant_multiplier(fr.fq_q[l].scale * fr.fq_k[l].scale / math.sqrt(dh)
                                      * 2**cfg.att_frac)
            att_m.append(mm)
            att_s.append(ss)
            keys["o"].append(export_linear(fr.o[l], np.full(d, fr.fq_v[l].scale), fr.fq_o[l].scale))
            add1.append(_add(s_res, fr.fq_o[l].scale, fr.fq_res1[l].scale))
            s_res = fr.fq_res1[l].scale
            ln2.append(_ln(fr.ln2[l], fr.fq_ln2[l].scale))
            keys["f1"].append(export_linear(fr.f1[l], np.full(d, fr.fq_ln2[l].scale),
                                            fr.fq_f1[l].scale))
            act.append(_lut(_gelu, fr.fq_f1[l].scale, fr.fq_act[l].scale))
            keys["f2"].append(export_linear(fr.f2[l], np.full(cfg.d_ff, fr.fq_act[l].scale),
                                            fr.fq_f2[l].scale))
            add2.append(_add(s_res, fr.fq_f2[l].scale, fr.fq_res2[l].scale))
            s_res = fr.fq_res2[l].scale
        for k, ps in keys.items():
            _stack_put(a, f"tf.{k}", ps)
        a["tf.ln1.g"] = np.stack([x[0] for x in ln1])
        a["tf.ln1.b"] = np.stack([x[1] for x in ln1])
        a["tf.ln2.g"] = np.stack([x[0] for x in ln2])
        a["tf.ln2.b"] = np.stack([x[1] for x in ln2])
        a["tf.add1"] = np.stack(add1)
        a["tf.add2"] = np.stack(add2)
        a["tf.act"] = np.stack(act)
        a["tf.att.m"] = np.array(att_m, np.int32)
        a["tf.att.s"] = np.array(att_s, np.int32)
        q = 2.0**cfg.att_frac
        a["tf.bt"] = np.rint(_np(fr.bt) * q).astype(np.int32)
        a["tf.by"] = np.rint(_np(fr.by) * q).astype(np.int32)
        a["tf.bx"] = np.rint(_np(fr.bx) * q).astype(np.int32)
        a["tf.lnf.g"], a["tf.lnf.b"] = _ln(fr.lnf, fr.fq_out.scale)
        f_scale = fr.fq_out.scale
    else:
        d = cfg.d_model
        a["ls.emb"] = _emb(fr.emb)
        sx = np.concatenate([np.full(cfg.n_window * cfg.emb, fr.emb.scale), np.full(d, 1 / 128)])
        _put(a, "ls.gates", export_linear(fr.gates, sx, LSTM_GATE_SCALE))
        a["ls.sig"] = _lut(lambda x: 1 / (1 + np.exp(-x)), 1 / 16, 1 / 128, 0, 128)
        a["ls.tanh"] = _lut(np.tanh, 1 / 16, 1 / 128, -128, 128)
        f_scale = 1 / 128
    hd: Any = model.head
    a["head.emb"] = _emb(hd.emb)
    sx = np.concatenate([np.full(cfg.d_model, f_scale),
                         np.full(len(HEAD_NEIGHBOURS) * cfg.head_emb, hd.emb.scale),
                         np.ones(N_MATCH + cfg.n_motion)])
    _put(a, "head.l1", export_linear(hd.l1, sx, hd.fq_pre.scale))
    a["head.act"] = _lut(_gelu, hd.fq_pre.scale, hd.fq_act.scale)
    _put(a, "head.l2", export_linear(hd.l2, np.full(cfg.head_hidden, hd.fq_act.scale),
                                     2.0**-cfg.logit_frac))
    _put(a, "head.cp", export_linear(hd.cp, np.full(cfg.head_hidden, hd.fq_act.scale),
                                     2.0**-cfg.logit_frac))
    if cfg.subst:
        _put(a, "head.sg", export_linear(hd.sg, np.full(cfg.head_hidden, hd.fq_act.scale),
                                         hd.fq_g.scale))
        sub_w, _, sub_m, sub_s = export_linear(hd.sub, np.full(cfg.vocab, hd.fq_g.scale),
                                               2.0**-cfg.logit_frac)
        a["head.sub.w"], a["head.sub.m"], a["head.sub.s"] = sub_w, sub_m, sub_s
    if cfg.copy_bias:
        a["head.cb"] = np.clip(np.rint(_np(hd.cb) * 2.0**cfg.logit_frac),
                               -COPY_BIAS_MAX, COPY_BIAS_MAX).astype(np.int32)
    if cfg.mix_head:
        _put(a, "head.mix", export_linear(hd.mix, np.full(cfg.head_hidden, hd.fq_act.scale),
                                          2.0**-cfg.logit_frac))
        a["head.ker"] = kernel_table(_np(hd.kernel()))
    return IntModel(cfg, a)


def kernel_table(kern: np.ndarray) -> np.ndarray:
    """uint32 KER of the spec from the float kernel (rows summing to 1):
    ``round(2**MIX_BITS K[c, v])``, and at least 1 at each row's largest entry (a row's
    largest probability is at least 1/V, so this only guards the spec's bound)."""
    q = np.clip(np.rint(kern * 2.0**MIX_BITS), 0, 2**MIX_BITS)
    rows = np.arange(len(q))
    best = kern.argmax(1)
    q[rows, best] = np.maximum(q[rows, best], 1)
    return q.astype(np.uint32)
