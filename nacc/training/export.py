"""The exporter: a trained (QAT) torch model -> the integer weight packs of
``nacc.neural.packs`` (the model of ``nacc.neural.intref``).

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
from nacc.neural.packs import LSTM, Head, Lin, Norm, Requant, Subst, TfLayer, Transformer, Weights
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


def export_linear(lin, sx: np.ndarray, s_out: float, acc_bound: int = 2**31) -> Lin:
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
    return Lin(wq, bq, m, sh)


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


def _ln(ln, s_y) -> Norm:
    g = np.rint(_np(ln.weight) / s_y * 2**16).astype(np.int32)
    b = np.rint(_np(ln.bias) / s_y).astype(np.int32)
    return Norm(g, b)


def _add(s1, s2, s_y):
    return np.array([round(s1 / s_y * 2**16), round(s2 / s_y * 2**16)], np.int32)


def export(model: NeuralModel) -> IntModel:
    """Integer model from a trained torch model (its observers give the scales)."""
    cfg = model.cfg
    # Any: nn.Module attribute access is typed Tensor | Module, these are our own modules
    fr: Any = model.frame
    frame: Transformer | LSTM
    if cfg.arch == "transformer":
        d, e, nh = cfg.d_model, cfg.emb, cfg.n_heads
        dh = d // nh
        sx = np.concatenate([np.full(e, fr.emb_q.scale), np.full(cfg.pos_emb, fr.row.scale),
                             np.full(cfg.pos_emb, fr.col.scale)])
        inp = export_linear(fr.inp, sx, fr.fq_in.scale)
        s_res = fr.fq_in.scale
        se = np.full(e, fr.emb_ctx.scale)
        q = 2.0**cfg.att_frac
        layers = []
        for l in range(cfg.n_layers):
            mm, ss = quant_multiplier(fr.fq_q[l].scale * fr.fq_k[l].scale / math.sqrt(dh)
                                      * 2**cfg.att_frac)
            add1 = _add(s_res, fr.fq_o[l].scale, fr.fq_res1[l].scale)
            s_res = fr.fq_res1[l].scale
            add2 = _add(s_res, fr.fq_f2[l].scale, fr.fq_res2[l].scale)
            s_res = fr.fq_res2[l].scale
            layers.append(TfLayer(
                ln1=_ln(fr.ln1[l], fr.fq_ln1[l].scale),
                q=export_linear(fr.q[l], np.full(d, fr.fq_ln1[l].scale), fr.fq_q[l].scale),
                k=export_linear(fr.k[l], se, fr.fq_k[l].scale),
                v=export_linear(fr.v[l], se, fr.fq_v[l].scale),
                att=Requant(np.array(mm, np.int32), np.array(ss, np.int32)),
                bt=np.rint(_np(fr.bt[l]) * q).astype(np.int32),
                by=np.rint(_np(fr.by[l]) * q).astype(np.int32),
                bx=np.rint(_np(fr.bx[l]) * q).astype(np.int32),
                o=export_linear(fr.o[l], np.full(d, fr.fq_v[l].scale), fr.fq_o[l].scale),
                add1=add1, ln2=_ln(fr.ln2[l], fr.fq_ln2[l].scale),
                f1=export_linear(fr.f1[l], np.full(d, fr.fq_ln2[l].scale), fr.fq_f1[l].scale),
                act=_lut(_gelu, fr.fq_f1[l].scale, fr.fq_act[l].scale),
                f2=export_linear(fr.f2[l], np.full(cfg.d_ff, fr.fq_act[l].scale),
                                 fr.fq_f2[l].scale),
                add2=add2))
        frame = Transformer(emb_q=_emb(fr.emb_q), emb_ctx=_emb(fr.emb_ctx), row=_emb(fr.row),
                            col=_emb(fr.col), inp=inp, layers=tuple(layers),
                            lnf=_ln(fr.lnf, fr.fq_out.scale),
                            exp_att=_exp_table(cfg.att_frac, cfg.att_range))
        f_scale = fr.fq_out.scale
    else:
        d = cfg.d_model
        sx = np.concatenate([np.full(cfg.n_window * cfg.emb, fr.emb.scale), np.full(d, 1 / 128)])
        frame = LSTM(emb=_emb(fr.emb), gates=export_linear(fr.gates, sx, LSTM_GATE_SCALE),
                     sig=_lut(lambda x: 1 / (1 + np.exp(-x)), 1 / 16, 1 / 128, 0, 128),
                     tanh=_lut(np.tanh, 1 / 16, 1 / 128, -128, 128))
        f_scale = 1 / 128
    hd: Any = model.head
    sx = np.concatenate([np.full(cfg.d_model, f_scale),
                         np.full(len(HEAD_NEIGHBOURS) * cfg.head_emb, hd.emb.scale),
                         np.ones(N_MATCH + cfg.n_motion)])
    s_act = np.full(cfg.head_hidden, hd.fq_act.scale)
    s_logit = 2.0**-cfg.logit_frac
    head = Head(emb=_emb(hd.emb), l1=export_linear(hd.l1, sx, hd.fq_pre.scale),
                act=_lut(_gelu, hd.fq_pre.scale, hd.fq_act.scale),
                l2=export_linear(hd.l2, s_act, s_logit), cp=export_linear(hd.cp, s_act, s_logit),
                exp_logit=_exp_table(cfg.logit_frac, cfg.logit_range))
    if cfg.subst:
        sub_w, _, sub_m, sub_s = export_linear(hd.sub, np.full(cfg.vocab, hd.fq_g.scale),
                                               s_logit)
        head = head._replace(sg=export_linear(hd.sg, s_act, hd.fq_g.scale),
                             sub=Subst(sub_w, sub_m, sub_s))
    if cfg.copy_bias:
        head = head._replace(cb=np.clip(np.rint(_np(hd.cb) * 2.0**cfg.logit_frac),
                                        -COPY_BIAS_MAX, COPY_BIAS_MAX).astype(np.int32))
    if cfg.mix_head:
        head = head._replace(mix=export_linear(hd.mix, s_act, s_logit),
                             ker=kernel_table(_np(hd.kernel())))
    return IntModel(cfg, Weights(head, frame))


def kernel_table(kern: np.ndarray) -> np.ndarray:
    """uint32 KER of the spec from the float kernel (rows summing to 1):
    ``round(2**MIX_BITS K[c, v])``, and at least 1 at each row's largest entry (a row's
    largest probability is at least 1/V, so this only guards the spec's bound)."""
    q = np.clip(np.rint(kern * 2.0**MIX_BITS), 0, 2**MIX_BITS)
    rows = np.arange(len(q))
    best = kern.argmax(1)
    q[rows, best] = np.maximum(q[rows, best], 1)
    return q.astype(np.uint32)
