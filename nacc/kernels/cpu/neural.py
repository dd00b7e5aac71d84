"""numba kernels of the neural predictors' integer spec (see ``nacc.neural.intref``).

Same spec as the numpy reference, written as loops: a frame-level pass per frame
(``tf_frame`` / ``lstm_frame``) and a token-level head per token (``head_table``), fused
with rANS in ``encode_intervals`` and ``decode``. The head's motion counts travel as one
int64[MOTION_ROW] row per token (``cur_0..8, n_cur, prv_0..8, n_prv``): ``frame_motion``
computes the rows of a whole coded frame, the decoders carry one row with ``motion_start`` at each
frame start and ``motion_push`` after each token. All arithmetic is int64 on values that
the spec bounds below 2**31 where it says int32, so results are identical to the reference
for any batching or thread count. Weights come as the packs of ``nacc.neural.packs``
converted by ``pack`` (a ``KernelModel``: weight matrices transposed to (K, N) so that the
int32 accumulation loops run over contiguous outputs; a transformer's layers a tuple of
layer packs that the kernel iterates); the model's sizes and switches as one ``Dims``
(``dims``). The integer primitives ``_rq``,
``_c8``, ``_isqrt`` and ``_first_slot`` also serve the batched kernels of
``nacc.kernels.cpu.neural_lanes``.
"""
from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from nacc.kernels.cpu import rans
from nacc.neural.config import HEAD_NEIGHBOURS, LOGIT_CLAMP, MIX_BITS, MOTION_ROW
from nacc.neural.packs import LSTM, Head, Lin, Norm, Requant, Subst, TfLayer, Transformer

NB_DY = np.array([dy for dy, _ in HEAD_NEIGHBOURS], np.int64)
NB_DX = np.array([dx for _, dx in HEAD_NEIGHBOURS], np.int64)


class Dims(NamedTuple):
    """The sizes and switches of a model that the kernels read (from its ``ModelConfig``)."""
    arch: int               # 0 transformer, 1 lstm
    k: int                  # k_frames
    r: int                  # radius
    nh: int                 # n_heads
    pad: int
    precision: int
    mclamp: int             # motion_clamp
    subst: bool
    copy_max: bool
    mix: bool               # mix_head
    d: int                  # d_model


def dims(cfg) -> Dims:
    """``Dims`` of a ``ModelConfig``."""
    return Dims(0 if cfg.arch == "transformer" else 1, int(cfg.k_frames), int(cfg.radius),
                int(cfg.n_heads), int(cfg.pad), int(cfg.precision), int(cfg.motion_clamp),
                bool(cfg.subst), bool(cfg.copy_max), bool(cfg.mix_head), int(cfg.d_model))


@nb.njit(cache=True, nogil=True, inline="always")
def _rq(a, m, s):
    return (a * m + (np.int64(1) << (s - 1))) >> s


@nb.njit(cache=True, nogil=True, inline="always")
def _c8(v):
    return min(max(v, -127), 127)


@nb.njit(cache=True, nogil=True)
def _acc(x, wt, b, acc):
    """acc = W x + b in int32 (the spec bounds it below 2**31, so it never wraps);
    x int64[K], wt = W transposed, int32[K, N]; zero inputs are skipped."""
    k_in, n_out = wt.shape
    for n in range(n_out):
        acc[n] = b[n]
    for k in range(k_in):
        xk = np.int32(x[k])
        if xk != 0:
            for n in range(n_out):
                acc[n] += wt[k, n] * xk


@nb.njit(cache=True, nogil=True)
def _lin(x, p, out):
    """out = clamp8(rq(W x + b)) of a kernel ``Lin`` pack ``p`` (w transposed)."""
    wt, b, m, s = p
    n_out = wt.shape[1]
    acc = np.empty(n_out, np.int32)
    _acc(x, wt, b, acc)
    for n in range(n_out):
        out[n] = _c8(_rq(np.int64(acc[n]), np.int64(m[n]), np.int64(s[n])))


@nb.njit(cache=True, nogil=True)
def _logit_lin(x, p, out):
    """out = clamp(rq(W x + b), -LOGIT_CLAMP, LOGIT_CLAMP): a LIN in logit units (int64)."""
    wt, b, m, s = p
    n_out = wt.shape[1]
    acc = np.empty(n_out, np.int32)
    _acc(x, wt, b, acc)
    lim = np.int64(LOGIT_CLAMP)
    for n in range(n_out):
        out[n] = min(max(_rq(np.int64(acc[n]), np.int64(m[n]), np.int64(s[n])), -lim), lim)


@nb.njit(cache=True, nogil=True, inline="always")
def _first_slot(cand, j):
    """True when no candidate slot before ``j`` holds ``cand[j]`` (copy_max: only the first
    slot of a token adds a bonus)."""
    for k in range(j):
        if cand[k] == cand[j]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _isqrt(n):
    r = np.int64(np.sqrt(np.float64(n)))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@nb.njit(cache=True, nogil=True)
def _ln(x, nrm, out):
    g, b = nrm
    d = x.shape[0]
    sm = np.int64(0)
    for i in range(d):
        sm += x[i]
    var = np.int64(0)
    for i in range(d):
        c = d * x[i] - sm
        var += c * c
    r = _isqrt(var // d)
    for i in range(d):
        if r == 0:
            y = np.int64(b[i])
        else:
            c = d * x[i] - sm
            y = (c * np.int64(g[i]) + r * 32768) // (r * 65536) + np.int64(b[i])
        out[i] = _c8(y)


@nb.njit(cache=True, nogil=True)
def _add(x1, x2, a, out):
    for i in range(x1.shape[0]):
        out[i] = _c8((x1[i] * np.int64(a[0]) + x2[i] * np.int64(a[1]) + 32768) >> 16)


@nb.njit(cache=True, nogil=True)
def table_from_logits(z, expt, precision, out):
    v = z.shape[0]
    zmax = z[0]
    best = 0
    for i in range(v):
        if z[i] > zmax:
            zmax = z[i]
            best = i
    n_e = expt.shape[0]
    tot = np.int64(0)
    for i in range(v):
        tot += expt[min(zmax - z[i], n_e - 1)]
    room = (np.int64(1) << precision) - v
    acc = np.int64(0)
    for i in range(v):
        f = 1 + np.int64(expt[min(zmax - z[i], n_e - 1)]) * room // tot
        out[i] = f
        acc += f
    out[best] += np.int32((np.int64(1) << precision) - acc)


@nb.njit(cache=True, nogil=True)
def _add_hits(video, t, p, cnt):
    """cnt[k] += 1 for each shift k at which token p of frame t equals frame t-1."""
    _, h, w = video.shape
    if t < 1:
        return
    y = p // w
    x = p % w
    tok = video[t, y, x]
    for k in range(9):
        yy = y + k // 3 - 1
        xx = x + k % 3 - 1
        if 0 <= yy < h and 0 <= xx < w and video[t - 1, yy, xx] == tok:
            cnt[k] += 1


@nb.njit(cache=True, nogil=True)
def motion_start(mot, frame_no, hw):
    """At the start of frame ``frame_no``: the finished frame's counts become ``prv``."""
    for k in range(9):
        mot[10 + k] = mot[k]
        mot[k] = 0
    mot[9] = 0
    mot[19] = hw if frame_no >= 2 else 0


@nb.njit(cache=True, nogil=True)
def motion_push(video, t, p, mot):
    """After token p of frame t (local index into ``video``) is known."""
    _add_hits(video, t, p, mot[:9])
    mot[9] += 1


@nb.njit(cache=True, nogil=True)
def frame_motion(video, t, rows):
    """Motion rows (H*W, MOTION_ROW) of every token of frame t (reads frames t-2..t)."""
    _, h, w = video.shape
    hw = h * w
    mot = np.zeros(MOTION_ROW, np.int64)
    for p in range(hw):
        _add_hits(video, t - 1, p, mot[:9])
    motion_start(mot, t, hw)
    for p in range(hw):
        rows[p] = mot
        motion_push(video, t, p, mot)


@nb.njit(cache=True, nogil=True)
def _count_features(mot, off, clamp, xin, base):
    best = mot[off]
    for k in range(1, 9):
        best = max(best, mot[off + k])
    for k in range(9):
        xin[base + k] = min(best - mot[off + k], clamp)
    xin[base + 9] = min(best, clamp)
    xin[base + 10] = min(mot[off + 9] - best, clamp)


@nb.njit(cache=True, nogil=True)
def head_table(video, t, y, x, feat, hd, mot, dm, bufs, out):
    """Table of the token at (t, y, x) of ``video`` (only frame t-1 and the causal part of
    frame t are read) given its frame features ``feat`` (int64[D]) and motion row ``mot``
    (read when ``dm.mclamp > 0``); ``hd`` the head's kernel pack (``pack``); ``bufs`` =
    (xin, u, z) int64 scratch of the head's input, hidden and vocabulary sizes."""
    mclamp, pad, precision = dm.mclamp, dm.pad, dm.precision
    xin, u, z = bufs
    emb, act, expt, cbias = hd.emb, hd.act, hd.exp_logit, hd.cb
    _, h, w = video.shape
    d = feat.shape[0]
    e = emb.shape[1]
    n_nb = NB_DY.shape[0]
    cand = np.empty(n_nb + 9, np.int64)
    for i in range(d):
        xin[i] = feat[i]
    for j in range(n_nb):
        yy = y + NB_DY[j]
        xx = x + NB_DX[j]
        tok = pad
        if 0 <= yy < h and 0 <= xx < w:
            tok = video[t, yy, xx]
        cand[j] = tok
        for i in range(e):
            xin[d + j * e + i] = emb[tok, i]
    j = n_nb
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            yy = y + dy
            xx = x + dx
            tok = pad
            if t >= 1 and 0 <= yy < h and 0 <= xx < w:
                tok = video[t - 1, yy, xx]
            cand[j] = tok
            j += 1
    base = d + n_nb * e
    for mi in range(2):  # motion evidence: left, then upper neighbour
        ny = 0 if mi == 0 else -1
        nx = -1 if mi == 0 else 0
        cy = y + ny
        cx = x + nx
        for k9 in range(9):
            dy = k9 // 3 - 1
            dx = k9 % 3 - 1
            py = cy + dy
            px = cx + dx
            v = 0
            if (t >= 1 and 0 <= cy < h and 0 <= cx < w and 0 <= py < h and 0 <= px < w
                    and video[t, cy, cx] == video[t - 1, py, px]):
                v = 1
            xin[base + mi * 9 + k9] = v
    if mclamp > 0:
        _count_features(mot, 0, mclamp, xin, base + 18)
        _count_features(mot, 10, mclamp, xin, base + 29)
    _lin(xin, hd.l1, u)
    for i in range(u.shape[0]):
        u[i] = act[u[i] + 128]
    _logit_lin(u, hd.l2, z)
    n_c = hd.cp.w.shape[1]
    if dm.subst:
        _substitute(u, cand, pad, hd.sg, hd.sub, z)
    bon = np.empty(n_c, np.int64)
    _logit_lin(u, hd.cp, bon)
    for j in range(n_c):
        sc = cand[j]
        if sc == pad:
            continue
        if not dm.copy_max:
            z[sc] += bon[j] + cbias[sc]
            continue
        if _first_slot(cand, j):  # copy_max: the first slot holding sc adds its largest bonus
            best = bon[j]
            for k in range(j + 1, n_c):
                if cand[k] == sc and bon[k] > best:
                    best = bon[k]
            z[sc] += best + cbias[sc]
    if not dm.mix:
        table_from_logits(z, expt, precision, out)
        return
    ymix = np.empty(hd.mix.w.shape[1], np.int64)
    _logit_lin(u, hd.mix, ymix)
    mix_table(z, ymix, cand, pad, hd.ker, expt, precision, np.empty(z.shape[0], np.int64), out)


@nb.njit(cache=True, nogil=True)
def mix_table(z, ymix, cand, pad, ker, expt, precision, mix, out):
    """The mixture table of ``intref``'s head spec (``mix_head``): logits z int64[V],
    mixture logits ymix int64[16] (fresh, then the slots), candidates cand int64[15],
    kernel ker uint32[V, V] -> out int32[V]; ``mix`` is int64[V] scratch."""
    v = z.shape[0]
    n_e = expt.shape[0]
    zmax = z[0]
    for i in range(v):
        zmax = max(zmax, z[i])
    tot = np.int64(0)
    for i in range(v):
        tot += expt[min(zmax - z[i], n_e - 1)]
    a = (np.int64(1) << (16 + MIX_BITS)) // tot
    n_c = cand.shape[0]
    ymax = ymix[0]
    for k in range(n_c):
        if cand[k] != pad and ymix[k + 1] > ymax:
            ymax = ymix[k + 1]
    wsum = np.int64(expt[min(ymax - ymix[0], n_e - 1)])
    for k in range(n_c):
        if cand[k] != pad:
            wsum += expt[min(ymax - ymix[k + 1], n_e - 1)]
    w0 = (np.int64(expt[min(ymax - ymix[0], n_e - 1)]) << 16) // wsum
    for i in range(v):
        mix[i] = w0 * ((np.int64(expt[min(zmax - z[i], n_e - 1)]) * a) >> 16)
    for k in range(n_c):
        c = cand[k]
        if c == pad:
            continue
        wk = (np.int64(expt[min(ymax - ymix[k + 1], n_e - 1)]) << 16) // wsum
        if wk == 0:
            continue
        row = ker[c]
        for i in range(v):
            mix[i] += wk * np.int64(row[i])
    msum = np.int64(0)
    best = 0
    for i in range(v):
        msum += mix[i]
        if mix[i] > mix[best]:
            best = i
    room = (np.int64(1) << precision) - v
    acc = np.int64(0)
    for i in range(v):
        f = 1 + mix[i] * room // msum
        out[i] = f
        acc += f
    out[best] += np.int32((np.int64(1) << precision) - acc)


@nb.njit(cache=True, nogil=True)
def _substitute(u, cand, pad, sg, sub, z):
    """z[v] += rq(sum_j g[j] SUB[v, cand[j]]) with gates g = LIN(u; head.sg)."""
    sub_t, sub_m, sub_s = sub
    n_c = sg.w.shape[1]
    g = np.empty(n_c, np.int64)
    _lin(u, sg, g)
    vocab = z.shape[0]
    acc = np.zeros(vocab, np.int64)
    for j in range(n_c):
        if cand[j] != pad and g[j] != 0:
            row = sub_t[cand[j]]
            for v in range(vocab):
                acc[v] += g[j] * row[v]
    lim = np.int64(LOGIT_CLAMP)
    for v in range(vocab):
        z[v] += min(max(_rq(acc[v], np.int64(sub_m[v]), np.int64(sub_s[v])), -lim), lim)


@nb.njit(cache=True, nogil=True)
def tf_frame(video, t, k, r, nh, pad, tf, feat):
    """Transformer frame-level features of frame t (needs frames < t of video) -> feat
    int64[H*W, D]; ``tf`` the kernel pack of ``pack`` (its layers a tuple of packs)."""
    emb_q, row, col, emb_c, expa = tf.emb_q, tf.row, tf.col, tf.emb_ctx, tf.exp_att
    _, h, w = video.shape
    hw = h * w
    d = tf.inp.w.shape[1]
    e = emb_c.shape[1]
    dh = d // nh
    pe = row.shape[1]
    s = np.empty((hw, d), np.int64)
    xin = np.empty(e + 2 * pe, np.int64)
    for p in range(hw):
        y = p // w
        x = p % w
        tok = pad if t - 1 < 0 else video[t - 1, y, x]
        for i in range(e):
            xin[i] = emb_q[tok, i]
        for i in range(pe):
            xin[e + i] = row[y, i]
            xin[e + pe + i] = col[x, i]
        _lin(xin, tf.inp, s[p])
    kc = np.empty((k, hw, d), np.int64)
    vc = np.empty((k, hw, d), np.int64)
    ein = np.empty(e, np.int64)
    a = np.empty(d, np.int64)
    qv = np.empty(d, np.int64)
    o = np.empty(d, np.int64)
    tmp = np.empty(d, np.int64)
    dff = tf.layers[0].f1.w.shape[1]
    u = np.empty(dff, np.int64)
    nwin = k * (2 * r + 1) * (2 * r + 1)
    sc = np.empty(nwin, np.int64)
    wt = np.empty(nwin, np.int64)
    js = np.empty(nwin, np.int64)
    n_e = expa.shape[0]
    for ly in tf.layers:
        for dt in range(1, k + 1):
            for p in range(hw):
                tok = pad if t - dt < 0 else video[t - dt, p // w, p % w]
                for i in range(e):
                    ein[i] = emb_c[tok, i]
                _lin(ein, ly.k, kc[dt - 1, p])
                _lin(ein, ly.v, vc[dt - 1, p])
        for p in range(hw):
            y = p // w
            x = p % w
            _ln(s[p], ly.ln1, a)
            _lin(a, ly.q, qv)
            for hd in range(nh):
                nj = 0
                smax = np.int64(-(1 << 62))
                for dt in range(1, k + 1):
                    for yy in range(max(0, y - r), min(h, y + r + 1)):
                        for xx in range(max(0, x - r), min(w, x + r + 1)):
                            pp = yy * w + xx
                            acc = np.int64(0)
                            for i in range(hd * dh, (hd + 1) * dh):
                                acc += qv[i] * kc[dt - 1, pp, i]
                            v = (_rq(acc, np.int64(ly.att.m), np.int64(ly.att.s))
                                 + ly.bt[hd, dt - 1] + ly.by[hd, yy - y + r]
                                 + ly.bx[hd, xx - x + r])
                            sc[nj] = v
                            js[nj] = (dt - 1) * hw + pp
                            if v > smax:
                                smax = v
                            nj += 1
                z = np.int64(0)
                for j in range(nj):
                    wt[j] = expa[min(smax - sc[j], n_e - 1)]
                    z += wt[j]
                for i in range(hd * dh, (hd + 1) * dh):
                    num = np.int64(0)
                    for j in range(nj):
                        num += wt[j] * vc[js[j] // hw, js[j] % hw, i]
                    o[i] = _c8((2 * num + z) // (2 * z))
            _lin(o, ly.o, tmp)
            _add(s[p], tmp, ly.add1, s[p])
            _ln(s[p], ly.ln2, a)
            _lin(a, ly.f1, u)
            for i in range(dff):
                u[i] = ly.act[u[i] + 128]
            _lin(u, ly.f2, tmp)
            _add(s[p], tmp, ly.add2, s[p])
    for p in range(hw):
        _ln(s[p], tf.lnf, feat[p])


@nb.njit(cache=True, nogil=True)
def lstm_frame(video, t, k, r, pad, lp, hs, cs, feat):
    """LSTM frame-level step for frame t: updates state (hs, cs int64[H*W, D]) and writes
    feat = hs; ``lp`` the kernel pack of ``pack``."""
    emb, sig, tnh = lp.emb, lp.sig, lp.tanh
    _, h, w = video.shape
    hw = h * w
    d = hs.shape[1]
    e = emb.shape[1]
    nr = 2 * r + 1
    nwin = k * nr * nr
    xin = np.empty(nwin * e + d, np.int64)
    g = np.empty(4 * d, np.int64)
    for p in range(hw):
        y = p // w
        x = p % w
        j = 0
        for dt in range(1, k + 1):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    yy = y + dy
                    xx = x + dx
                    tok = pad
                    if t - dt >= 0 and 0 <= yy < h and 0 <= xx < w:
                        tok = video[t - dt, yy, xx]
                    for i in range(e):
                        xin[j * e + i] = emb[tok, i]
                    j += 1
        for i in range(d):
            xin[nwin * e + i] = hs[p, i]
        _lin(xin, lp.gates, g)
        for i in range(d):
            ig = np.int64(sig[g[i] + 128])
            fg = np.int64(sig[g[d + i] + 128])
            gg = np.int64(tnh[g[2 * d + i] + 128])
            og = np.int64(sig[g[3 * d + i] + 128])
            c = ((fg * cs[p, i] + 64) >> 7) + ((ig * gg + 8) >> 4)
            c = min(max(c, -32768), 32767)
            cs[p, i] = c
            tc = min(max((c + 32) >> 6, -128), 127)
            hs[p, i] = _c8((og * np.int64(tnh[tc + 128]) + 64) >> 7)
            feat[p, i] = hs[p, i]


@nb.njit(cache=True, nogil=True)
def _frame_feats(video, t, dm, ws, hs, cs, feat):
    """The frame-level pass of frame t for either architecture (``ws`` of ``pack``)."""
    if dm.arch == 0:
        tf_frame(video, t, dm.k, dm.r, dm.nh, dm.pad, ws.tf, feat)
    else:
        lstm_frame(video, t, dm.k, dm.r, dm.pad, ws.lstm, hs, cs, feat)


@nb.njit(cache=True, nogil=True)
def _head_bufs(hd, vocab):
    """Scratch (xin, u, z) of ``head_table`` for the head pack ``hd``."""
    k1, hidden = hd.l1.w.shape
    return (np.empty(k1, np.int64), np.empty(hidden, np.int64), np.empty(vocab, np.int64))


@nb.njit(cache=True, nogil=True)
def frame_tables(video, t, dm, ws, hs, cs, out):
    """Tables of frame t (H*W, V) into out; ``ws`` the model's kernel packs (``pack``);
    updates the lstm state."""
    hd = ws.head
    _, h, w = video.shape
    feat = np.empty((h * w, dm.d), np.int64)
    _frame_feats(video, t, dm, ws, hs, cs, feat)
    mot = np.zeros((h * w, MOTION_ROW), np.int64)
    if dm.mclamp > 0:
        frame_motion(video, t, mot)
    for p in range(h * w):
        head_table(video, t, p // w, p % w, feat[p], hd, mot[p], dm,
                   _head_bufs(hd, out.shape[1]), out[p])


@nb.njit(cache=True, nogil=True)
def encode_intervals(video, dm, ws):
    """(start, freq) of every token of video (T, H, W), all frames; ``ws`` as in
    ``frame_tables``."""
    d = dm.d
    t_n, h, w = video.shape
    n = t_n * h * w
    vocab = ws.head.l2.w.shape[1]
    start = np.empty(n, np.uint32)
    freq = np.empty(n, np.uint32)
    hs = np.zeros((h * w, d), np.int64)
    cs = np.zeros((h * w, d), np.int64)
    tabs = np.empty((h * w, vocab), np.int32)
    for t in range(t_n):
        frame_tables(video, t, dm, ws, hs, cs, tabs)
        for p in range(h * w):
            s = video[t, p // w, p % w]
            acc = 0
            for v in range(s):
                acc += tabs[p, v]
            start[t * h * w + p] = acc
            freq[t * h * w + p] = tabs[p, s]
    return start, freq


@nb.njit(cache=True, nogil=True)
def decode(words, t_n, h, w, dm, ws):
    """Decode t_n frames: frame-level pass once per frame, head + rANS per token; ``ws`` as
    in ``frame_tables``."""
    hd = ws.head
    d = dm.d
    vocab = hd.l2.w.shape[1]
    video = np.zeros((t_n, h, w), np.int32)
    hs = np.zeros((h * w, d), np.int64)
    cs = np.zeros((h * w, d), np.int64)
    feat = np.empty((h * w, d), np.int64)
    bufs = _head_bufs(hd, vocab)
    tab = np.empty(vocab, np.int32)
    mot = np.zeros(MOTION_ROW, np.int64)
    state, pos = rans.dec_init(words)
    for t in range(t_n):
        _frame_feats(video, t, dm, ws, hs, cs, feat)
        motion_start(mot, t, h * w)
        for p in range(h * w):
            y = p // w
            x = p % w
            head_table(video, t, y, x, feat[p], hd, mot, dm, bufs, tab)
            s, state, pos = rans.dec_table(state, pos, words, tab, dm.precision)
            video[t, y, x] = s
            motion_push(video, t, p, mot)
    return video


# ----------------------------------------------------------------------------- packing
class KernelModel(NamedTuple):
    """The weight packs of ``nacc.neural.packs`` as these kernels read them (``pack``)."""
    head: Head
    tf: Transformer
    lstm: LSTM


def _kernel_array(name, arr):
    """An array of a weight pack as the kernels read it: a LIN's weights (and SUB)
    transposed to (K, N) int32 (the accumulation loops then run over contiguous outputs),
    the mixture kernel uint32 (row c = code c), a 0-d array as an int, the rest int64."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return int(arr)
    if name == "w":
        return np.ascontiguousarray(arr.T, np.int32)
    if name == "ker":
        return np.ascontiguousarray(arr, np.uint32)
    return np.ascontiguousarray(arr, np.int64)


def _kernel_pack(x, name=""):
    """``x`` (a pack, a tuple of layer packs or an array) with every array converted by
    ``_kernel_array`` (by its field name)."""
    if x is None or isinstance(x, np.ndarray):
        return x if x is None else _kernel_array(name, x)
    if hasattr(x, "_fields"):
        return type(x)(*(_kernel_pack(getattr(x, f), f) for f in x._fields))
    return tuple(_kernel_pack(item, name) for item in x)


def _dummy_lin():
    return Lin(np.zeros((1, 1), np.int32), *(np.zeros(1, np.int64) for _ in range(3)))


def _dummy_head(hd, vocab):
    """``hd`` with its absent optional parts as small dummies of the right types (the
    kernels then compile one way for every config; ``Dims`` says what runs)."""
    one = np.zeros(1, np.int64)
    return hd._replace(
        cb=np.zeros(vocab, np.int64) if hd.cb is None else hd.cb,
        sg=_dummy_lin() if hd.sg is None else hd.sg,
        sub=Subst(np.zeros((1, 1), np.int32), one, one) if hd.sub is None else hd.sub,
        mix=_dummy_lin() if hd.mix is None else hd.mix,
        ker=np.zeros((1, 1), np.uint32) if hd.ker is None else hd.ker)


def _dummy_tf():
    z2 = np.zeros((1, 1), np.int64)
    z1 = np.zeros(1, np.int64)
    lin = _dummy_lin()
    layer = TfLayer(ln1=Norm(z1, z1), q=lin, k=lin, v=lin, att=Requant(0, 1), bt=z2, by=z2,
                    bx=z2, o=lin, add1=z1, ln2=Norm(z1, z1), f1=lin, act=z1, f2=lin, add2=z1)
    return Transformer(emb_q=z2, emb_ctx=z2, row=z2, col=z2, inp=lin, layers=(layer,),
                       lnf=Norm(z1, z1), exp_att=z1)


def _dummy_lstm():
    z1 = np.zeros(1, np.int64)
    return LSTM(emb=np.zeros((1, 1), np.int64), gates=_dummy_lin(), sig=z1, tanh=z1)


def pack(m) -> KernelModel:
    """The weight packs of an IntModel for the kernels: arrays converted (``_kernel_array``),
    absent optional parts and the other architecture's frame pass as dummies."""
    head = _dummy_head(_kernel_pack(m.head), m.cfg.vocab)
    if m.cfg.arch == "transformer":
        return KernelModel(head, _kernel_pack(m.tf), _dummy_lstm())
    return KernelModel(head, _dummy_tf(), _kernel_pack(m.lstm))
