"""Torch models (training only) with quantization-aware training (fake quant).

Every tensor that becomes an integer in the exported model passes through an :class:`FQ`
(observer + fake quant): its scale is tracked during float training (EMA of the max
absolute value) and, once ``qat`` is switched on, values are rounded to that grid with a
straight-through gradient.  Weights are fake-quantized per output channel exactly as the
exporter will quantize them (see :class:`QLinear`).  Floats here never decide a table: the
exporter (``nacc.training.export``) turns the trained weights and scales into integers, and
only the integer model (``nacc.neural.intref`` / ``nacc.kernels.cpu.neural``) codes.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nacc.neural.config import (
    HEAD_NEIGHBOURS,
    MATCH_NEIGHBOURS,
    N_MATCH,
    N_SLOTS,
    PREV_CANDIDATES,
    ModelConfig,
)

LSTM_GATE_SCALE = 1.0 / 16  # gate pre-activations: int8 in units of 1/16
LSTM_C_FRAC = 10            # cell state: integer in units of 2**-10, clamped to +-32
LSTM_H_SCALE = 1.0 / 128    # hidden state: int8 in units of 1/128


def round_ste(x):
    return x + (torch.round(x) - x).detach()


class _QuantSTE(torch.autograd.Function):
    """``clamp(round(x / step), -qmax, qmax) * step`` (no clamp when ``qmax`` is None) with
    the identity gradient (straight-through), in place of ``x + (q - x).detach()``: the same
    values in fewer passes over the tensor, which matters for the attention scores."""

    @staticmethod
    def forward(ctx, x, step, qmax):
        q = torch.div(x, step).round_()
        if qmax is not None:
            q.clamp_(-qmax, qmax)
        return q.mul_(step)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def fake_quant(x, scale, qmax=127):
    return _QuantSTE.apply(x, scale, qmax)


def step_quant(x, step):
    """Round to a grid of ``step`` (no clamp), straight-through."""
    return _QuantSTE.apply(x, step, None)


class FQ(nn.Module):
    """Per-tensor symmetric int8 observer + fake quantizer (or a fixed scale)."""

    def __init__(self, fixed_scale: float | None = None, momentum: float = 0.05):
        super().__init__()
        self.fixed = fixed_scale
        self.momentum = momentum
        self.amax: torch.Tensor
        self.register_buffer("amax", torch.tensor(0.0))
        self.qat = False
        self.observe = True

    @property
    def scale(self) -> float:
        if self.fixed is not None:
            return self.fixed
        return max(float(self.amax), 1e-6) / 127.0

    def forward(self, x):
        if self.fixed is None and self.training and (self.observe or float(self.amax) == 0.0):
            with torch.no_grad():
                m = x.detach().abs().max()
                if float(self.amax) == 0.0:
                    self.amax.copy_(m)
                else:
                    self.amax.mul_(1 - self.momentum).add_(self.momentum * m)
        if self.qat:
            return fake_quant(x, self.scale)
        return x


class QLinear(nn.Module):
    """Linear layer on int8 inputs with per-element input scales ``sx`` (a concatenation of
    tensors with different scales is one input).  Weight w[n, k] is quantized as
    ``round(w * sx[k] / S[n])`` with ``S[n] = max_k |w[n, k] sx[k]| / 127``; the bias as
    ``round(b / S[n])``."""

    def __init__(self, k: int, n: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, k) / math.sqrt(k))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None
        self.qat = False

    def float_weight(self):
        """The float weight w[n, k] that the exporter quantizes."""
        return self.weight

    def effective_weight(self, sx):
        w = self.float_weight()
        if not self.qat:
            return w
        sx = sx.to(w.device)
        weff = w * sx[None, :]
        s = (weff.detach().abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
        wq = torch.clamp(round_ste(weff / s), -127, 127) * s / sx[None, :]
        return wq

    def forward(self, x, sx):
        return F.linear(x, self.effective_weight(sx), self.bias)


class SubTable(QLinear):
    """The head's V x V substitution table, ``weight[v, c] = SUB[c, v]``.  Its float weight
    is the full table (tied symmetric: ``(W + W^T) / 2``) plus, with ``rank`` > 0, a product
    of per-code embeddings ``A B^T`` (tied: its symmetric part), which shares what is
    learned about one code with the codes near it in the embedding: a small corpus shows
    few substitutions of each pair.  The exporter quantizes the sum like any QLinear."""

    def __init__(self, vocab: int, tied: bool, rank: int = 0):
        super().__init__(vocab, vocab, bias=False)
        self.tied = tied
        with torch.no_grad():
            self.weight.zero_()
        self.rank = rank
        if rank > 0:
            self.emb_a = nn.Parameter(torch.randn(vocab, rank) * 0.1)
            self.emb_b = nn.Parameter(torch.randn(vocab, rank) * 0.1)

    def float_weight(self):
        w = self.weight
        if self.rank > 0:
            w = w + self.emb_a @ self.emb_b.t()
        return 0.5 * (w + w.t()) if self.tied else w


class QEmbedding(nn.Module):
    """Embedding table quantized per tensor (scale = max |w| / 127)."""

    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, d) * 0.5)
        self.qat = False

    @property
    def scale(self) -> float:
        return max(float(self.weight.detach().abs().max()), 1e-6) / 127.0

    def forward(self, idx):
        w = fake_quant(self.weight, self.scale) if self.qat else self.weight
        return F.embedding(idx, w)


def _scales(*parts):
    """Per-element input scale vector of a concatenation: parts = (scale, width) pairs."""
    return torch.cat([torch.full((w,), float(s)) for s, w in parts])


def pad_video(x, cfg: ModelConfig, k: int, r: int):
    """(B, T, H, W) -> (B, k + T, H + 2r, W + 2r) with the pad id around and before."""
    return F.pad(x, (r, r, r, r, k, 0), value=cfg.pad)


def shifted(xp, k, r, t_n, h, w, dt, dy, dx):
    """View of a padded video (B, k+T, H+2r, W+2r, ...) giving element (t-dt, y+dy, x+dx)
    at (t, y, x)."""
    return xp[:, k - dt:k - dt + t_n, r + dy:r + dy + h, r + dx:r + dx + w]


def match_features(x, cfg: ModelConfig):
    """(B, T, H, W, N_MATCH) 0/1: neighbour (ny, nx) of the current frame equals the token
    of the previous frame at (y + ny + dy, x + nx + dx), for each shift (dy, dx); pad never
    matches."""
    b, t_n, h, w = x.shape
    xp = pad_video(x, cfg, 1, 3)
    out = []
    for ny, nx in MATCH_NEIGHBOURS:
        cur = shifted(xp, 1, 3, t_n, h, w, 0, ny, nx)
        for dy, dx in PREV_CANDIDATES:
            prv = shifted(xp, 1, 3, t_n, h, w, 1, ny + dy, nx + dx)
            out.append((cur == prv) & (cur != cfg.pad))
    return torch.stack(out, -1)


def _count_features(cnt, n, clamp):
    """Per shift min(best - count, clamp), then min(best, clamp), min(n - best, clamp)."""
    best = cnt.amax(-1, keepdim=True)
    return torch.cat([(best - cnt).clamp_max(clamp), best.clamp_max(clamp),
                      (n[..., None] - best).clamp_max(clamp)], -1)


def motion_features(x, cfg: ModelConfig):
    """(B, T, H, W, N_MOTION) motion counts of the head (integer valued; spec in intref):
    matches of the tokens coded so far in the frame with the previous frame at each shift,
    and of the whole previous frame with the one before."""
    b, t_n, h, w = x.shape
    xp = pad_video(x, cfg, 1, 1)
    hit = torch.stack([(x == shifted(xp, 1, 1, t_n, h, w, 1, dy, dx))
                       for dy, dx in PREV_CANDIDATES], -1).flatten(2, 3).long()  # B T HW 9
    cur = hit.cumsum(2) - hit
    n_cur = torch.arange(h * w, device=x.device).expand(b, t_n, h * w)
    tot = hit.sum(2)
    prv = torch.cat([torch.zeros_like(tot[:, :1]), tot[:, :-1]], 1)[:, :, None].expand_as(cur)
    n_prv = (torch.arange(t_n, device=x.device) >= 2).long() * (h * w)
    n_prv = n_prv[None, :, None].expand(b, t_n, h * w)
    c = cfg.motion_clamp
    out = torch.cat([_count_features(cur, n_cur, c), _count_features(prv, n_prv, c)], -1)
    return out.view(b, t_n, h, w, -1).float()


class TokenHead(nn.Module):
    """Token-level head: frame features F, embeddings of the decoded causal neighbours and
    18 motion-evidence bits (neighbour == previous frame at a shift), optionally motion
    counts (``cfg.motion_clamp``) -> hidden layer -> logits over V, plus a learned copy
    bonus added to the logit of each candidate token (the 6 neighbours and the previous
    frame's 3x3 window), and optionally (``cfg.subst``) a substitution table: each
    candidate ``c`` adds its gate times the learned row ``SUB[c, :]`` to all V logits
    (symmetric unless ``cfg.subst_tied`` is off), and (``cfg.copy_bias``) a learned per-code
    term ``CB[c]`` added with each candidate's bonus.  With ``cfg.copy_max`` a code held by
    several slots gets the largest of their bonuses (plus ``CB`` once) instead of the sum.
    With ``cfg.mix_head`` the output is not the softmax of those logits but the log of a
    mixture: weight ``pi_0`` on that softmax ("fresh") and ``pi_j`` on row ``K[c_j]`` of a
    learned V x V kernel for each candidate slot ``j`` holding code ``c_j`` (``pi``: a
    softmax of 16 logits of the hidden layer, pad slots excluded; ``K``: row softmax of a
    table trained like the substitution table) -- the form of a copy process whose copies
    are sometimes replaced by similar codes."""

    def __init__(self, cfg: ModelConfig, f_width: int):
        super().__init__()
        self.cfg = cfg
        self.emb = QEmbedding(cfg.vocab + 1, cfg.head_emb)
        n_in = f_width + len(HEAD_NEIGHBOURS) * cfg.head_emb + N_MATCH + cfg.n_motion
        self.l1 = QLinear(n_in, cfg.head_hidden)
        self.fq_pre = FQ()
        self.fq_act = FQ()
        self.l2 = QLinear(cfg.head_hidden, cfg.vocab)
        self.cp = QLinear(cfg.head_hidden, N_SLOTS)  # copy bonus per candidate slot
        if cfg.subst:
            self.sg = QLinear(cfg.head_hidden, N_SLOTS)  # substitution gate per slot
            self.fq_g = FQ()
            # weight[v, c] = SUB[c, v]; tied symmetric: c -> v as likely a substitution as v -> c
            self.sub = SubTable(cfg.vocab, cfg.subst_tied, cfg.subst_emb)
        self.dropout = 0.0  # training only (NeuralModel.set_dropout)
        if cfg.copy_bias:
            # per-code logit term of a copied candidate: a copy's mass should not follow the
            # code's own (prior) logit
            self.cb = nn.Parameter(torch.zeros(cfg.vocab))
        if cfg.mix_head:
            # mixture weights: fresh, then the candidate slots; zero init (equal weights)
            self.mix = QLinear(cfg.head_hidden, 1 + N_SLOTS)
            with torch.no_grad():
                self.mix.weight.zero_()
            # kernel logits: row c's softmax is the distribution of a token copied from c
            self.kern = SubTable(cfg.vocab, cfg.subst_tied, cfg.subst_emb)

    def forward(self, f, f_scale, x):
        cfg = self.cfg
        b, t_n, h, w = x.shape
        xp = pad_video(x, cfg, 0, 2)
        nb = [shifted(xp, 0, 2, t_n, h, w, 0, dy, dx) for dy, dx in HEAD_NEIGHBOURS]
        e = self.emb(torch.stack(nb, dim=-1)).flatten(-2)
        parts = [f, e, match_features(x, cfg).float()]
        if cfg.n_motion:
            parts.append(motion_features(x, cfg))
        sx = _scales((f_scale, f.shape[-1]), (self.emb.scale, e.shape[-1]),
                     (1.0, N_MATCH + cfg.n_motion))
        a = self.fq_pre(self.l1(torch.cat(parts, dim=-1), sx))
        a = self.fq_act(F.gelu(a))
        if self.dropout > 0:
            a = F.dropout(a, self.dropout, self.training)
        sa = _scales((self.fq_act.scale, a.shape[-1]))
        logits = self.l2(a, sa)
        bonus = self.cp(a, sa)
        xq = pad_video(x, cfg, 1, 1)
        prev = [shifted(xq, 1, 1, t_n, h, w, 1, dy, dx) for dy, dx in PREV_CANDIDATES]
        cand = torch.stack(nb + prev, dim=-1)  # pad id V: no bonus (dropped column)
        if cfg.subst:
            # sum over the slots of gate * SUB[candidate, :], as a weighted embedding bag over
            # the table's rows (the pad id's row is zero): the same values as the dense
            # product (one-hot gated rows) x table, without the N x V x V work
            g = self.fq_g(self.sg(a, sa))
            wt = self.sub.effective_weight(_scales((self.fq_g.scale, cfg.vocab))).t()
            wt = torch.cat([wt, wt.new_zeros(1, cfg.vocab)])
            n_s = cand.shape[-1]
            sub = F.embedding_bag(cand.reshape(-1, n_s), wt, mode="sum",
                                  per_sample_weights=g.reshape(-1, n_s))
            logits = logits + sub.view(*g.shape[:-1], cfg.vocab)
        cb = logits.new_zeros(cfg.vocab + 1)
        if cfg.copy_bias:
            q = step_quant(self.cb, 2.0 ** -cfg.logit_frac) if self.cp.qat else self.cb
            cb = torch.cat([q, q.new_zeros(1)])
        ext = torch.cat([logits, torch.zeros_like(logits[..., :1])], -1)
        if cfg.copy_max:
            # each distinct candidate code once, with its largest bonus: per slot the max over
            # the slots holding the same code, added by the first of them only (slot-sized
            # work; a scatter-max over the V logits is far slower to differentiate)
            same = cand[..., :, None] == cand[..., None, :]
            best = bonus[..., None, :].masked_fill(~same, -1e9).amax(-1)
            n_s = cand.shape[-1]
            earlier = torch.ones(n_s, n_s, dtype=torch.bool, device=x.device).tril(-1)
            first = ~(same & earlier).any(-1)
            ext = ext.scatter_add(-1, cand, torch.where(first, best + cb[cand], 0.0))
        else:
            ext = ext.scatter_add(-1, cand, bonus + cb[cand])
        if not cfg.mix_head:
            return ext[..., :cfg.vocab]
        return self._mixture(ext[..., :cfg.vocab], a, sa, cand)

    def kernel(self):
        """(V, V) float: row c is the mixture component of a candidate holding code c."""
        return torch.softmax(self.kern.float_weight(), -1)

    def _mixture(self, z, a, sa, cand):
        """log p(v) of p = pi_0 softmax(z) + sum_j pi_j K[cand_j] (pi over the non-pad
        slots: a softmax of the mixture logits, in nats like ``z``)."""
        cfg = self.cfg
        y = self.mix(a, sa)
        if self.mix.qat:
            y = step_quant(y, 2.0 ** -cfg.logit_frac)
        off = torch.cat([torch.zeros_like(cand[..., :1], dtype=torch.bool), cand == cfg.pad], -1)
        pi = torch.softmax(y.masked_fill(off, float("-inf")), -1)
        kern = torch.cat([self.kernel(), z.new_zeros(1, cfg.vocab)])
        n_s = cand.shape[-1]
        copied = F.embedding_bag(cand.reshape(-1, n_s), kern, mode="sum",
                                 per_sample_weights=pi[..., 1:].reshape(-1, n_s))
        p = pi[..., :1] * torch.softmax(z, -1) + copied.view(z.shape)
        return torch.log(p.clamp_min(2.0 ** -40))


def window_index(cfg: ModelConfig):
    """For query p = (y, x) and key p' = (y', x') of one frame: row / column offset index
    (y' - y + r, x' - x + r, clipped) and whether p' lies in the (2r+1)^2 window of p."""
    h, w = cfg.frame_shape
    r = cfg.radius
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    dy = yy[None, :] - yy[:, None]
    dx = xx[None, :] - xx[:, None]
    valid = (dy.abs() <= r) & (dx.abs() <= r)
    return (dy + r).clamp(0, 2 * r), (dx + r).clamp(0, 2 * r), valid


class TransformerFrame(nn.Module):
    """Frame-level pass: queries at every position of frame t attend to a (2r+1)^2 window in
    each of the K previous frames, with a factorized relative position bias
    (frame offset + row offset + column offset) per head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, e, L, nh = cfg.d_model, cfg.emb, cfg.n_layers, cfg.n_heads
        h, w = cfg.frame_shape
        nr = 2 * cfg.radius + 1
        self.emb_ctx = QEmbedding(cfg.vocab + 1, e)
        self.emb_q = QEmbedding(cfg.vocab + 1, e)
        self.row = QEmbedding(h, cfg.pos_emb)
        self.col = QEmbedding(w, cfg.pos_emb)
        self.inp = QLinear(e + 2 * cfg.pos_emb, d)
        self.fq_in = FQ()
        self.ln1 = nn.ModuleList([nn.LayerNorm(d) for _ in range(L)])
        self.fq_ln1 = nn.ModuleList([FQ() for _ in range(L)])
        self.q = nn.ModuleList([QLinear(d, d) for _ in range(L)])
        self.k = nn.ModuleList([QLinear(e, d) for _ in range(L)])
        self.v = nn.ModuleList([QLinear(e, d) for _ in range(L)])
        self.fq_q = nn.ModuleList([FQ() for _ in range(L)])
        self.fq_k = nn.ModuleList([FQ() for _ in range(L)])
        self.fq_v = nn.ModuleList([FQ() for _ in range(L)])
        self.bt = nn.Parameter(torch.zeros(L, nh, cfg.k_frames))
        self.by = nn.Parameter(torch.zeros(L, nh, nr))
        self.bx = nn.Parameter(torch.zeros(L, nh, nr))
        self.o = nn.ModuleList([QLinear(d, d) for _ in range(L)])
        self.fq_o = nn.ModuleList([FQ() for _ in range(L)])
        self.fq_res1 = nn.ModuleList([FQ() for _ in range(L)])
        self.ln2 = nn.ModuleList([nn.LayerNorm(d) for _ in range(L)])
        self.fq_ln2 = nn.ModuleList([FQ() for _ in range(L)])
        self.f1 = nn.ModuleList([QLinear(d, cfg.d_ff) for _ in range(L)])
        self.fq_f1 = nn.ModuleList([FQ() for _ in range(L)])
        self.fq_act = nn.ModuleList([FQ() for _ in range(L)])
        self.f2 = nn.ModuleList([QLinear(cfg.d_ff, d) for _ in range(L)])
        self.fq_f2 = nn.ModuleList([FQ() for _ in range(L)])
        self.fq_res2 = nn.ModuleList([FQ() for _ in range(L)])
        self.lnf = nn.LayerNorm(d)
        self.fq_out = FQ()
        with torch.no_grad():
            self.by[:, :, cfg.radius] = 1.0
            self.bx[:, :, cfg.radius] = 1.0
            self.bt[:, :, 0] = 1.0

    @property
    def out_scale(self):
        return self.fq_out.scale

    def forward(self, x):
        cfg = self.cfg
        b, t_n, h, w = x.shape
        k = cfg.k_frames
        d, nh = cfg.d_model, cfg.n_heads
        dh = d // nh
        xp = pad_video(x, cfg, k, 0)  # pad frames before frame 0; no spatial padding
        ectx = self.emb_ctx(xp)
        prev = xp[:, k - 1:k - 1 + t_n]
        rows = self.row.weight if not self.row.qat else fake_quant(self.row.weight, self.row.scale)
        cols = self.col.weight if not self.col.qat else fake_quant(self.col.weight, self.col.scale)
        pe = torch.cat([rows[:, None, :].expand(h, w, -1), cols[None, :, :].expand(h, w, -1)], -1)
        q0 = torch.cat([self.emb_q(prev), pe.expand(b, t_n, h, w, -1)], -1)
        sx = _scales((self.emb_q.scale, cfg.emb), (self.row.scale, cfg.pos_emb),
                     (self.col.scale, cfg.pos_emb))
        s = self.fq_in(self.inp(q0, sx))
        hw = h * w
        iy, ix, valid = (z.to(x.device) for z in window_index(cfg))
        for l in range(cfg.n_layers):
            a = self.fq_ln1[l](self.ln1[l](s))
            sa = _scales((self.fq_ln1[l].scale, d))
            qq = self.fq_q[l](self.q[l](a, sa)).view(b, t_n, hw, nh, dh).permute(0, 1, 3, 2, 4)
            se = _scales((self.emb_ctx.scale, cfg.emb))
            kk = self.fq_k[l](self.k[l](ectx, se))
            vv = self.fq_v[l](self.v[l](ectx, se))
            kw = torch.stack([kk[:, k - dt:k - dt + t_n] for dt in range(1, k + 1)], 2)
            vw = torch.stack([vv[:, k - dt:k - dt + t_n] for dt in range(1, k + 1)], 2)
            kw = kw.reshape(b, t_n, k * hw, nh, dh).permute(0, 1, 3, 4, 2)  # b t nh dh J
            vw = vw.reshape(b, t_n, k * hw, nh, dh).permute(0, 1, 3, 2, 4)  # b t nh J dh
            bias = (self.bt[l][:, None, :, None]
                    + (self.by[l][:, iy] + self.bx[l][:, ix])[:, :, None, :])
            bias = bias.reshape(nh, hw, k * hw)
            # the scale folded into the (smaller) query; exact when dh is a power of 2
            sc = torch.matmul(qq * (1 / math.sqrt(dh)), kw)  # b t nh hw J
            if self.q[l].qat:
                sc = step_quant(sc, 2.0 ** -cfg.att_frac)
                bias = step_quant(bias, 2.0 ** -cfg.att_frac)
            p = torch.softmax(sc + bias.masked_fill(~valid.repeat(1, k), float("-inf")), -1)
            att = torch.matmul(p, vw).permute(0, 1, 3, 2, 4).reshape(b, t_n, h, w, d)
            if self.q[l].qat:
                att = fake_quant(att, self.fq_v[l].scale)
            o = self.fq_o[l](self.o[l](att, _scales((self.fq_v[l].scale, d))))
            s = self.fq_res1[l](s + o)
            m = self.fq_ln2[l](self.ln2[l](s))
            u = self.fq_f1[l](self.f1[l](m, _scales((self.fq_ln2[l].scale, d))))
            u = self.fq_act[l](F.gelu(u))
            u = self.fq_f2[l](self.f2[l](u, _scales((self.fq_act[l].scale, cfg.d_ff))))
            s = self.fq_res2[l](s + u)
        return self.fq_out(self.lnf(s))


class LSTMFrame(nn.Module):
    """Frame-level pass: one LSTM cell per position, stepped once per frame; its input is the
    (2r+1)^2 window around the position in each of the K previous frames."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = QEmbedding(cfg.vocab + 1, cfg.emb)
        self.gates = QLinear(cfg.n_window * cfg.emb + cfg.d_model, 4 * cfg.d_model)
        with torch.no_grad():
            assert self.gates.bias is not None
            self.gates.bias[cfg.d_model:2 * cfg.d_model] = 1.0  # forget gate

    @property
    def out_scale(self):
        return LSTM_H_SCALE

    def forward(self, x):
        cfg = self.cfg
        b, t_n, h, w = x.shape
        k, r, d = cfg.k_frames, cfg.radius, cfg.d_model
        xp = pad_video(x, cfg, k, r)
        e = self.emb(xp)
        win = torch.cat([shifted(e, k, r, t_n, h, w, dt, dy, dx)
                         for dt, dy, dx in cfg.window_offsets()], -1)
        sx = _scales((self.emb.scale, win.shape[-1]), (LSTM_H_SCALE, d))
        wt = self.gates.effective_weight(sx)
        wx, wh = wt[:, :win.shape[-1]], wt[:, win.shape[-1]:]
        gx = F.linear(win, wx, self.gates.bias)
        qat = self.gates.qat
        hs = torch.zeros(b, h, w, d, device=x.device)
        cs = torch.zeros(b, h, w, d, device=x.device)
        out = []
        for t in range(t_n):
            g = gx[:, t] + F.linear(hs, wh)
            if qat:
                g = fake_quant(g, LSTM_GATE_SCALE)
            gi, gf, gg, go = g.split(d, -1)
            i, f, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go)
            gg = torch.tanh(gg)
            if qat:
                i, f, o, gg = (step_quant(z, 1 / 128) for z in (i, f, o, gg))
            cs = f * cs + i * gg
            if qat:
                cs = torch.clamp(step_quant(cs, 2.0 ** -LSTM_C_FRAC), -32, 32)
                tc = torch.tanh(torch.clamp(step_quant(cs, 1 / 16), -8, 127 / 16))
                tc = step_quant(tc, 1 / 128)
                hs = fake_quant(o * tc, LSTM_H_SCALE)
            else:
                hs = o * torch.tanh(cs)
            out.append(hs)
        return torch.stack(out, 1)


class NeuralModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.frame = TransformerFrame(cfg) if cfg.arch == "transformer" else LSTMFrame(cfg)
        self.head = TokenHead(cfg, cfg.d_model)

    def forward(self, x):
        """x: (B, T, H, W) long -> logits (B, T, H, W, V)."""
        f = self.frame(x)
        if self.head.dropout > 0:
            f = F.dropout(f, self.head.dropout, self.training)
        return self.head(f, self.frame.out_scale, x)

    def set_dropout(self, p: float):
        """Dropout (training mode only) on the frame features and the head's hidden layer."""
        self.head.dropout = float(p)

    def set_qat(self, on: bool):
        for m in self.modules():
            if isinstance(m, (FQ, QLinear, QEmbedding)):
                m.qat = on

    def set_observe(self, on: bool):
        for m in self.modules():
            if isinstance(m, FQ):
                m.observe = on
