"""Integer inference spec of the neural predictors, and its pure-numpy reference.

Everything below is integer arithmetic on the model's weight packs (``nacc.neural.packs``:
each array named by its field, e.g. ``head.l1`` is the pack ``Lin(w, b, m, s)``); no float
ever decides a table.  ``nacc.kernels.cpu.neural``
implements the same spec with numba; the tests assert both give identical tables.

Primitives (all intermediate values exact in int64; every accumulator is bounded by
``K * 127 * 127 + |bias| < 2**31`` at export, so int32 and int64 accumulation agree)

* ``rq(a, M, S) = (a * M + 2**(S-1)) >> S``: fixed-point requantization, ``M`` an int32
  multiplier in ``[2**30, 2**31)`` (or 0), ``1 <= S <= 62``, ``>>`` arithmetic (floor).
* ``clamp8(v) = min(max(v, -127), 127)``.
* ``LIN(x; W, b, M, S)``: ``x`` int8[K], ``W`` int8[N, K], ``b`` int32[N];
  ``a[n] = b[n] + sum_k W[n, k] x[k]``; output ``clamp8(rq(a[n], M[n], S[n]))``.
  An input that is a concatenation of several int8 tensors is just one longer ``x``.
* ``LUT(x; L) = L[x + 128]``: an int8 (or int32) table of 256 entries, used for GELU,
  sigmoid and tanh; tables are computed at export and stored in the weights.
* ``LN(x; G, B)`` (layer norm, D = len(x)): ``c = D * x - sum(x)``;
  ``r = isqrt(sum(c * c) // D)`` (floor square root); output
  ``clamp8(floor((c * G + r * 2**15) / (r * 2**16)) + B)``, or ``clamp8(B)`` when ``r = 0``.
* ``ADD(x1, x2; A1, A2) = clamp8((x1 * A1 + x2 * A2 + 2**15) >> 16)`` (residual sum).
* ``TABLE(z)`` for integer logits ``z[V]`` (units ``2**-logit_frac`` nats):
  ``e[v] = EXP[min(max(z) - z[v], LEN - 1)]`` (``EXP[d] = round(2**16 exp(-d 2**-logit_frac))``,
  stored); ``f[v] = 1 + e[v] * (2**P - V) // sum(e)``; the remainder ``2**P - sum(f)``
  (in ``0..V-1``) goes to the first ``v`` with ``z[v] = max(z)``.  So every table has
  ``V`` int32 entries ``>= 1`` summing to exactly ``2**P``.

Token head (both architectures), for the token at ``(t, y, x)``:
``x_in = F[t, y, x] ++ EH[n_1] ++ ... ++ EH[n_6] ++ match`` where ``n_i`` are the tokens of
frame ``t`` at offsets ``(0,-1), (-1,-1), (-1,0), (-1,1), (0,-2), (-2,0)`` (the pad id ``V``
off the frame) and ``match`` 18 values 0/1 (motion evidence): for the left then the upper
neighbour ``(ny, nx)`` and each shift ``(dy, dx)`` of the 3x3 window (row-major), 1 when the
neighbour is in the frame and equals the token of frame ``t-1`` at
``(y + ny + dy, x + nx + dx)`` (0 off the frame or before frame 0);
``u = LUT(LIN(x_in; head.l1); head.act)``;
``z[v] = clamp(rq(a[v], M[v], S[v]), -2**24, 2**24)`` with ``a`` the accumulator of
``LIN(u; head.l2)``; copy bonus: ``c[j]`` likewise from ``LIN(u; head.cp)`` for 15 candidate
slots, the 6 neighbours above then the 3x3 window of frame ``t-1`` around ``(y, x)``
(row-major); for each slot in order whose token ``s`` is not the pad id, ``z[s] += c[j]``.
The table is ``TABLE(z)``.

Two optional parts of the head (config fields; off in older models, whose tables are
unchanged):

* ``motion_clamp = D > 0``: ``x_in`` gets 22 more values after ``match``.  With
  ``hit(t, p, k) = 1`` when ``t >= 1``, the shifted position is in the frame, and the token
  of frame ``t`` at raster position ``p = (y, x)`` equals the token of frame ``t-1`` at
  ``(y + dy_k, x + dx_k)`` (shift ``k`` of the 3x3 window, row-major), the counts are
  ``cur_k = sum_{p' < p} hit(t, p', k)`` (tokens already coded in the frame, ``n_cur = p``)
  and ``prv_k = sum_{all p'} hit(t-1, p', k)`` (0 for ``t = 0``; ``n_prv = H*W`` when
  ``t >= 2``, else 0).  Each group ``(cnt, n)`` gives, with ``b = max_k cnt_k``:
  ``min(b - cnt_k, D)`` for the 9 shifts, then ``min(b, D)``, ``min(n - b, D)``; the
  current frame's group first.
* ``subst``: substitution table ``SUB`` (int8 ``head.sub.w[v, c]``, per-``v`` ``M, S``) and
  gates ``g = LIN(u; head.sg)`` (int8, one per candidate slot).  ``acc[v] = sum_j g[j]
  SUB[v, s_j]`` over the slots ``j`` (same 15 as the copy bonus) whose token ``s_j`` is not
  the pad id; ``z[v] += clamp(rq(acc[v], M[v], S[v]), -2**24, 2**24)``, added after the
  ``LIN(u; head.l2)`` term and before the copy bonus.  ``|acc| <= 15 * 127 * 127``.
  ``subst_tied`` only shapes training (a symmetric float table); the spec is the same.
* ``copy_bias``: a per-code term ``CB`` (int32 ``head.cb[V]``, logit units, ``|CB| <=
  2**20``): each candidate slot ``j`` whose token ``s`` is not the pad id adds
  ``c[j] + CB[s]`` to ``z[s]`` instead of ``c[j]`` (so a copied code's mass need not follow
  its own logit).
* ``copy_max``: each distinct token ``s`` among the non-pad candidate slots adds
  ``max_{j: s_j = s} c[j] + CB[s]`` to ``z[s]`` once (``CB = 0`` without ``copy_bias``),
  instead of the sum over its slots.
* ``mix_head``: the table is a mixture instead of ``TABLE(z)``.  Mixture logits ``y[k]``,
  ``k = 0..15`` (fresh, then the 15 candidate slots): ``clamp(rq(a, M, S), -2**24,
  2**24)`` of ``LIN(u; head.mix)``'s accumulators; slot ``k >= 1`` is *on* when its token
  ``s_k`` is not the pad id, ``k = 0`` always.  With ``ymax`` the largest ``y`` of the on
  slots, ``w[k] = EXP[min(ymax - y[k], LEN - 1)]`` when on, else 0, and the normalized
  weights ``n[k] = w[k] * 2**16 // sum(w)``.  Fresh part: ``e[v] = EXP[min(max(z) - z[v],
  LEN - 1)]``, ``A = 2**(16 + B) // sum(e)``, ``q[v] = (e[v] * A) >> 16`` with ``B =
  MIX_BITS = 22`` (so ``sum(q) <= 2**B``).  Kernel ``KER`` (``head.ker[c, v]``, integers in
  ``[0, 2**B]``, every row with a positive entry; about ``2**B K[c, v]``):
  ``m[v] = n[0] q[v] + sum_{on k} n[k] KER[s_k, v]``;
  ``f[v] = 1 + m[v] * (2**P - V) // sum(m)`` and the remainder ``2**P - sum(f)`` goes to
  the first ``v`` of largest ``m[v]``.  Bounds: ``sum(n) <= 2**16`` and ``q, KER <=
  2**B``, so ``m <= 2**38`` and ``m * 2**P < 2**62``: int64 throughout.  ``sum(m) > 0``:
  such models have ``EXP[0] = 2**16``, so the largest ``w`` is ``2**16`` and its ``n`` at
  least ``2**16 // 16`` (a kernel row has a positive entry; ``q`` of the largest logit is
  ``A >= 2**B // V >= 1``).  Model folders of format ``nacc-int-v1`` had a coarser mixture
  (``B = 16``, weights not normalized) and are refused for mix models.

Frame-level pass ``F[t]`` (int8 [H*W, D]): depends only on frames ``< t``; frames before 0
are all pad tokens.

* transformer: ``s = LIN(EQ[X[t-1, y, x]] ++ ROW[y] ++ COL[x]; in)``; per layer ``l``:
  ``a = LN(s)``, ``Q = LIN(a; q)``; keys/values of every token ``u`` of frames
  ``t-1..t-K``: ``Kc = LIN(EC[u]; k)``, ``Vc = LIN(EC[u]; v)``; for head ``h`` and each key
  ``j = (dt, y', x')`` with ``|y'-y| <= r, |x'-x| <= r`` (inside the frame):
  ``s_j = rq(Q_h . Kc_j,h, Ma, Sa) + BT[h, dt-1] + BY[h, y'-y+r] + BX[h, x'-x+r]``
  (factorized position bias); ``w_j = EXPA[min(max_j s_j - s_j, LENA - 1)]``;
  ``o_h = clamp8(floor((2 sum_j w_j Vc_j,h + W) / (2 W)))`` with ``W = sum_j w_j``;
  ``s = ADD(s, LIN(o; o))``; ``s = ADD(s, LIN(LUT(LIN(LN(s); f1); act); f2))``.
  Finally ``F = LN(s; lnf)``.
* lstm: per position, state ``h`` int8 (units 1/128) and ``c`` (units 2**-10), zero at
  frame 0; input ``EC`` of the ``(2r+1)^2`` window (pad id off the frame) in each of frames
  ``t-1..t-K``, then ``h``: ``g = LIN(window ++ h; gates)`` (int8, units 1/16), split into
  ``gi, gf, gg, go``; ``i, f, o = LUT(., SIG)`` (``round(128 sigmoid(v/16))``),
  ``g = LUT(gg, TANH)`` (``round(128 tanh(v/16))``);
  ``c = clamp((f c + 64) >> 7 + (i g + 8) >> 4, -2**15, 2**15 - 1)``;
  ``h = clamp8((o * TANH[clamp((c + 32) >> 6, -128, 127) + 128] + 64) >> 7)``; ``F[t] = h``.

The reference below computes ``F`` for all frames at once (the transformer vectorised over
frames; the lstm loops over frames) and the head for all tokens at once.  Its dot products
use float64 matmuls, which are exact here: every term and partial sum is an integer below
2**53.
"""
from __future__ import annotations

import numpy as np

from nacc.neural.config import (
    HEAD_NEIGHBOURS,
    LOGIT_CLAMP,
    MATCH_NEIGHBOURS,
    MIX_BITS,
    PREV_CANDIDATES,
    ModelConfig,
)
from nacc.neural.packs import LSTM, Head, Transformer, Weights

I64 = np.int64


def rq(a, m, s):
    a = np.asarray(a, I64)
    m = np.asarray(m, I64)
    s = np.asarray(s, I64)
    return (a * m + (np.int64(1) << (s - 1))) >> s


def clamp8(v):
    return np.clip(v, -127, 127)


def idot(x, w):
    """Exact integer x @ w.T via float64 (|sums| < 2**53 by construction)."""
    return np.rint(x.astype(np.float64) @ w.astype(np.float64).T).astype(I64)


def lin_acc(x, p):
    """Accumulators of LIN: p = (W, b, M, S)."""
    return idot(x, p[0]) + p[1].astype(I64)


def lin(x, p, lut=None):
    y = clamp8(rq(lin_acc(x, p), p[2], p[3]))
    if lut is not None:
        y = lut.astype(I64)[y + 128]
    return y


def isqrt(n):
    """Floor square root of a non-negative int64 array (< 2**52), exactly."""
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(I64)
    r = np.where(r * r > n, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= n, r + 1, r)
    return r


def layer_norm(x, g, b):
    x = x.astype(I64)
    d = x.shape[-1]
    c = d * x - x.sum(-1, keepdims=True)
    r = isqrt((c * c).sum(-1, keepdims=True) // d)
    rs = np.maximum(r, 1)
    y = (c * g.astype(I64) + rs * (1 << 15)) // (rs * (1 << 16))
    y = np.where(r == 0, 0, y) + b.astype(I64)
    return clamp8(y)


def add(x1, x2, a):
    return clamp8((x1.astype(I64) * int(a[0]) + x2.astype(I64) * int(a[1]) + (1 << 15)) >> 16)


def table(z, exp, precision):
    """TABLE(z) over the last axis; returns int32."""
    z = z.astype(I64)
    v = z.shape[-1]
    zmax = z.max(-1, keepdims=True)
    e = exp.astype(I64)[np.minimum(zmax - z, len(exp) - 1)]
    tot = e.sum(-1, keepdims=True)
    f = 1 + e * ((1 << precision) - v) // tot
    rem = (1 << precision) - f.sum(-1)
    best = np.argmax(z, axis=-1)
    np.put_along_axis(f, best[..., None], np.take_along_axis(f, best[..., None], -1)
                      + rem[..., None], -1)
    return f.astype(np.int32)


class IntModel:
    """An integer model: its config and its weight packs (``nacc.neural.packs.Weights``)."""

    def __init__(self, cfg: ModelConfig, weights: Weights):
        self.cfg = cfg
        self.weights = weights

    @property
    def head(self) -> Head:
        return self.weights.head

    @property
    def tf(self) -> Transformer:
        """The transformer frame pass (a transformer model)."""
        assert isinstance(self.weights.frame, Transformer)
        return self.weights.frame

    @property
    def lstm(self) -> LSTM:
        """The lstm frame pass (an lstm model)."""
        assert isinstance(self.weights.frame, LSTM)
        return self.weights.frame

    def copy_bias(self) -> np.ndarray:
        """int64 [V]: the head's per-code copy term (zeros when the config has none)."""
        if self.cfg.copy_bias and self.head.cb is not None:
            return self.head.cb.astype(I64)
        return np.zeros(self.cfg.vocab, I64)


# ----------------------------------------------------------------------------- head
def neighbours(video, cfg: ModelConfig):
    """(T, H, W, 6) tokens of the head's causal neighbours (pad id off the frame)."""
    t_n, h, w = video.shape
    p = np.full((t_n, h + 2, w + 4), cfg.pad, I64)
    p[:, 2:, 2:w + 2] = video
    return np.stack([p[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w] for dy, dx in HEAD_NEIGHBOURS], -1)


def prev_candidates(video, cfg: ModelConfig):
    """(T, H, W, 9) tokens of the previous frame's 3x3 window (pad id off the frame and
    before frame 0)."""
    t_n, h, w = video.shape
    p = np.full((t_n + 1, h + 2, w + 2), cfg.pad, I64)
    p[1:, 1:h + 1, 1:w + 1] = video
    return np.stack([p[:t_n, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                     for dy, dx in PREV_CANDIDATES], -1)


def match_features(video, cfg: ModelConfig):
    """(T, H, W, 18) 0/1 motion evidence (see the head spec above)."""
    t_n, h, w = video.shape
    p = np.full((t_n + 1, h + 6, w + 6), cfg.pad, I64)
    p[1:, 3:h + 3, 3:w + 3] = video
    out = []
    for ny, nx in MATCH_NEIGHBOURS:
        cur = p[1:, 3 + ny:3 + ny + h, 3 + nx:3 + nx + w]
        for dy, dx in PREV_CANDIDATES:
            prv = p[:t_n, 3 + ny + dy:3 + ny + dy + h, 3 + nx + dx:3 + nx + dx + w]
            out.append(((cur == prv) & (cur != cfg.pad)).astype(I64))
    return np.stack(out, -1)


def _count_features(cnt, n, clamp):
    best = cnt.max(-1, keepdims=True)
    return np.concatenate([np.minimum(best - cnt, clamp), np.minimum(best, clamp),
                           np.minimum(n[..., None] - best, clamp)], -1)


def motion_features(video, cfg: ModelConfig):
    """(T, H*W, 22) motion counts (see the head spec above; ``cfg.motion_clamp > 0``)."""
    t_n, h, w = video.shape
    p = np.full((t_n + 1, h + 2, w + 2), cfg.pad, I64)
    p[1:, 1:h + 1, 1:w + 1] = video
    hit = np.stack([video == p[:t_n, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                    for dy, dx in PREV_CANDIDATES], -1).reshape(t_n, h * w, -1).astype(I64)
    cur = np.cumsum(hit, 1) - hit
    n_cur = np.broadcast_to(np.arange(h * w, dtype=I64), (t_n, h * w))
    tot = hit.sum(1)
    prv = np.broadcast_to(np.concatenate([np.zeros_like(tot[:1]), tot[:-1]])[:, None], cur.shape)
    n_prv = np.broadcast_to(np.where(np.arange(t_n) >= 2, h * w, 0)[:, None], (t_n, h * w))
    c = cfg.motion_clamp
    return np.concatenate([_count_features(cur, n_cur, c), _count_features(prv, n_prv, c)], -1)


def _logit_units(u, p):
    return np.clip(rq(lin_acc(u, p), p[2], p[3]), -LOGIT_CLAMP, LOGIT_CLAMP)


def head_hidden(m: IntModel, f, nb, match):
    """The head's hidden layer u int64 [N, head_hidden] from f: int [N, D] frame features,
    nb: int [N, 6] neighbour tokens, match: int [N, 18 (+ 22 motion counts)]."""
    eh = m.head.emb.astype(I64)[nb].reshape(*nb.shape[:-1], -1)
    x = np.concatenate([f.astype(I64), eh, match], -1)
    return lin(x, m.head.l1, m.head.act)


def head_logits(m: IntModel, u, nb, prev):
    """u: int [N, head_hidden] the head's hidden layer (head_hidden); nb: int [N, 6]
    neighbour tokens; prev: int [N, 9] previous-frame candidates -> z int64 [N, V]."""
    hd = m.head
    z = _logit_units(u, hd.l2)
    bonus = _logit_units(u, hd.cp)
    cand = np.concatenate([nb, prev], -1)
    v = z.shape[-1]
    rows = np.arange(len(z))
    if m.cfg.subst:
        assert hd.sg is not None and hd.sub is not None
        g = lin(u, hd.sg)
        gated = np.zeros((len(z), v + 1), I64)  # gated sum of the candidates' one-hots
        for j in range(cand.shape[1]):
            np.add.at(gated, (rows, cand[:, j]), g[:, j])
        sub = (hd.sub.w, np.zeros(v, I64), hd.sub.m, hd.sub.s)
        z = z + _logit_units(gated[:, :v], sub)
    cb = np.concatenate([m.copy_bias(), np.zeros(1, I64)])
    ext = np.concatenate([z, np.zeros((len(z), 1), I64)], -1)
    if m.cfg.copy_max:
        none = -(I64(1) << 40)
        best = np.full_like(ext, none)
        for j in range(cand.shape[1]):
            np.maximum.at(best, (rows, cand[:, j]), bonus[:, j])
        ext += np.where(best > none, best + cb[None, :], 0)
    else:
        for j in range(cand.shape[1]):  # in slot order; duplicates add up
            np.add.at(ext, (rows, cand[:, j]), bonus[:, j] + cb[cand[:, j]])
    return ext[:, :v]


# ----------------------------------------------------------------------------- frames
def transformer_features(m: IntModel, video):
    """F for every frame of video (T, H, W) -> int64 (T, H*W, D)."""
    cfg, tf = m.cfg, m.tf
    t_n, h, w = video.shape
    k, r, d, nh = cfg.k_frames, cfg.radius, cfg.d_model, cfg.n_heads
    dh = d // nh
    hw = h * w
    xp = np.concatenate([np.full((k, h, w), cfg.pad, I64), video.astype(I64)]).reshape(k + t_n, hw)
    prev = xp[k - 1:k - 1 + t_n]
    yy, xx = np.divmod(np.arange(hw), w)
    q0 = np.concatenate([tf.emb_q.astype(I64)[prev],
                         np.broadcast_to(tf.row.astype(I64)[yy], (t_n, hw, cfg.pos_emb)),
                         np.broadcast_to(tf.col.astype(I64)[xx], (t_n, hw, cfg.pos_emb))], -1)
    s = lin(q0, tf.inp)
    ec = tf.emb_ctx.astype(I64)[xp]  # (k+T, hw, E)
    dy = yy[None, :] - yy[:, None]
    dx = xx[None, :] - xx[:, None]
    valid = (np.abs(dy) <= r) & (np.abs(dx) <= r)  # (query, key)
    iy, ix = np.clip(dy + r, 0, 2 * r), np.clip(dx + r, 0, 2 * r)
    expa = tf.exp_att.astype(I64)
    for ly in tf.layers:
        at = lin(layer_norm(s, *ly.ln1), ly.q)
        kc = lin(ec, ly.k)
        vc = lin(ec, ly.v)
        o = np.empty((t_n, hw, d), I64)
        for hd in range(nh):
            sl = slice(hd * dh, (hd + 1) * dh)
            bias = (ly.bt[hd][None, :, None].astype(I64)
                    + (ly.by[hd][iy] + ly.bx[hd][ix])[:, None, :])  # (hw, k, hw)
            scores = []
            vals = []
            for dt in range(1, k + 1):
                kk = kc[k - dt:k - dt + t_n, :, sl]
                raw = np.einsum("tpi,tqi->tpq", at[:, :, sl].astype(np.float64),
                                kk.astype(np.float64))
                sc = rq(np.rint(raw).astype(I64), ly.att.m, ly.att.s)
                scores.append(sc + bias[None, :, dt - 1, :])
                vals.append(vc[k - dt:k - dt + t_n, :, sl])
            sc = np.concatenate(scores, -1)  # (T, hw, k*hw)
            vm = np.tile(valid, (1, k))[None]
            smax = np.where(vm, sc, np.iinfo(I64).min).max(-1, keepdims=True)
            wgt = np.where(vm, expa[np.minimum(smax - np.where(vm, sc, smax), len(expa) - 1)], 0)
            vv = np.concatenate(vals, 1)  # (T, k*hw, dh)
            num = np.rint(np.einsum("tpj,tji->tpi", wgt.astype(np.float64),
                                    vv.astype(np.float64))).astype(I64)
            z = wgt.sum(-1, keepdims=True)
            o[:, :, sl] = clamp8((2 * num + z) // (2 * z))
        s = add(s, lin(o, ly.o), ly.add1)
        u = lin(layer_norm(s, *ly.ln2), ly.f1, ly.act)
        s = add(s, lin(u, ly.f2), ly.add2)
    return layer_norm(s, *tf.lnf)


def lstm_window(m: IntModel, video, t):
    """(H*W, n_window * E) window embeddings for frame t of video."""
    cfg = m.cfg
    _, h, w = video.shape
    r = cfg.radius
    emb = m.lstm.emb.astype(I64)
    parts = []
    for dt, dy, dx in cfg.window_offsets():
        tok = np.full((h, w), cfg.pad, I64)
        if t - dt >= 0:
            src = np.full((h + 2 * r, w + 2 * r), cfg.pad, I64)
            src[r:r + h, r:r + w] = video[t - dt]
            tok = src[r + dy:r + dy + h, r + dx:r + dx + w]
        parts.append(emb[tok.reshape(-1)])
    return np.concatenate(parts, -1)


def lstm_step(m: IntModel, win, hs, cs):
    d = m.cfg.d_model
    g = lin(np.concatenate([win, hs], -1), m.lstm.gates)
    sig, tnh = m.lstm.sig.astype(I64), m.lstm.tanh.astype(I64)
    i, f, gg, o = (g[:, j * d:(j + 1) * d] for j in range(4))
    i, f, o, gg = sig[i + 128], sig[f + 128], sig[o + 128], tnh[gg + 128]
    cs = np.clip(((f * cs + 64) >> 7) + ((i * gg + 8) >> 4), -(1 << 15), (1 << 15) - 1)
    tc = np.clip((cs + 32) >> 6, -128, 127)
    hs = clamp8((o * tnh[tc + 128] + 64) >> 7)
    return hs, cs


def lstm_features(m: IntModel, video):
    t_n, h, w = video.shape
    d = m.cfg.d_model
    hs = np.zeros((h * w, d), I64)
    cs = np.zeros((h * w, d), I64)
    out = np.empty((t_n, h * w, d), I64)
    for t in range(t_n):
        hs, cs = lstm_step(m, lstm_window(m, video, t), hs, cs)
        out[t] = hs
    return out


def features(m: IntModel, video):
    if m.cfg.arch == "transformer":
        return transformer_features(m, video)
    return lstm_features(m, video)


def all_tables(m: IntModel, video, frames=None):
    """Tables of every token of video (T, H, W): int32 (T, H*W, V) (or the given frames)."""
    video = np.asarray(video, I64)
    f = features(m, video)
    nb = neighbours(video, m.cfg).reshape(len(video), -1, len(HEAD_NEIGHBOURS))
    pv = prev_candidates(video, m.cfg).reshape(len(video), -1, len(PREV_CANDIDATES))
    mt = match_features(video, m.cfg).reshape(len(video), -1, pv.shape[-1] * 2)
    if m.cfg.motion_clamp > 0:
        mt = np.concatenate([mt, motion_features(video, m.cfg)], -1)
    frames = range(len(video)) if frames is None else frames
    out = []
    for t in frames:
        u = head_hidden(m, f[t], nb[t], mt[t])
        z = head_logits(m, u, nb[t], pv[t])
        hd = m.head
        if m.cfg.mix_head:
            assert hd.mix is not None and hd.ker is not None
            y = _logit_units(u, hd.mix)
            cand = np.concatenate([nb[t], pv[t]], -1)
            out.append(mix_table(z, y, cand, hd.ker, hd.exp_logit, m.cfg.precision, m.cfg.pad))
        else:
            out.append(table(z, hd.exp_logit, m.cfg.precision))
    return np.stack(out)


def mix_table(z, y, cand, ker, exp, precision, pad):
    """The mixture table of the head spec (``mix_head``): z int [N, V] logits, y int
    [N, 16] mixture logits, cand int [N, 15] candidate tokens, ker [V, V] -> int32 [N, V]."""
    z = z.astype(I64)
    y = y.astype(I64)
    n, v = z.shape
    exp = exp.astype(I64)
    last = len(exp) - 1
    e = exp[np.minimum(z.max(-1, keepdims=True) - z, last)]
    q = (e * ((I64(1) << (16 + MIX_BITS)) // e.sum(-1, keepdims=True))) >> 16
    on = np.concatenate([np.ones((n, 1), bool), cand != pad], -1)
    ymax = np.where(on, y, np.iinfo(I64).min).max(-1, keepdims=True)
    w = np.where(on, exp[np.minimum(ymax - np.where(on, y, ymax), last)], 0)
    w = (w << 16) // w.sum(-1, keepdims=True)
    kx = np.concatenate([ker.astype(I64), np.zeros((1, v), I64)])  # the pad id's row: 0
    mix = w[:, :1] * q
    for k in range(cand.shape[1]):
        mix += w[:, k + 1:k + 2] * kx[cand[:, k]]
    f = 1 + mix * ((I64(1) << precision) - v) // mix.sum(-1, keepdims=True)
    rem = (I64(1) << precision) - f.sum(-1)
    f[np.arange(n), np.argmax(mix, -1)] += rem
    return f.astype(np.int32)


def code_length_bits(m: IntModel, video) -> np.ndarray:
    """Ideal code length (bits) of every token under the integer tables."""
    tabs = all_tables(m, video)
    v = np.asarray(video, I64).reshape(len(video), -1)
    f = np.take_along_axis(tabs, v[..., None], -1)[..., 0].astype(np.float64)
    return (m.cfg.precision - np.log2(f)).reshape(-1)
