"""numba kernels of the ``cm`` predictor (context mixing over a binary code tree).

The arithmetic is specified in the docstring of ``nacc/predictors/cm.py``; this module
implements it.  Every quantity is an int64 holding a value in the range stated there (no
wrap-around is relied on; hashes are masked to 32 bits after every step).  The model state is
a tuple of numpy arrays ``S = (ht, w, apm, mc, cw, capm)`` (see ``new_state``) and the fixed
tables ``TB = (squash, stretch, rates)``; the scratch of one token is the tuple
``WK = (ctx, bkt, xs, infos, xc, cinfo)`` (``_work``; ``W`` is the frame width, as in the
spec); the paths of the predictor share them:

* ``enc_pass``   -- encode: tokens in, (start, freq) of every token out (one fused loop).
* ``dec_pass``   -- decode: rANS words in, tokens out (fused: predict, decode, update).
* ``table_pass`` -- the full V-entry table of every token of a range (reference / tests).
* ``step_table`` / ``step_push`` -- one token at a time (stepper).
* ``ext_pass`` / ``ext_tables`` / ``ext_step_table`` / ``ext_push`` / ``ext_dec_step`` --
  the same with an external table per token (a neural predictor's) mixed in by the final
  2-input mixer (spec section "External input"); its state is ``w2`` (``new_ext_weights``).
  The external tables come from the caller in symbol order, each summing to 2**24.

All of them call the same ``_setup``, ``_copy_p``, ``_node_p`` and ``_code_token``; without an
external table (``E`` from ``_no_ext``) the final mixer is skipped.
``X`` (the last argument of ``_code_token`` and what it calls) is 1, or None where the
config uses neither xctx nor mix2: ``enc_pass`` / ``dec_pass`` then run a specialization that
holds none of their code (``X is not None`` is a compile-time constant), so that the default
loop pays nothing for them.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from nacc.kernels.cpu import cmstate as _cmstate
from nacc.kernels.cpu import rans
from nacc.kernels.cpu.cmstate import (  # noqa: F401  (numba-free part, re-exported)
    _SQ,
    BUCKET,
    C_APMR,
    C_APMW,
    C_B,
    C_CANDMASK,
    C_CCMASK,
    C_CHECK,
    C_COPY,
    C_CTXMASK,
    C_H,
    C_HTB,
    C_LIMIT,
    C_LR,
    C_MIX2,
    C_MLIMIT,
    C_NCFG,
    C_NFR,
    C_ORDER,
    C_V,
    C_W,
    C_WINIT,
    C_XCTX,
    CI_AI,
    CI_N,
    CI_PM,
    CI_SEL,
    CI_SLOT,
    GROUP,
    H1,
    H2,
    H3,
    I_AI,
    I_BIT,
    I_LOCAL,
    I_M2P,
    I_M2ROW,
    I_M2S,
    I_N,
    I_NCPU,
    I_ONM,
    I_PM,
    I_SEL,
    I_SEL2,
    M32,
    NCAND,
    NCAPM,
    NCC,
    NCIN,
    NCSEL,
    NCTX,
    NIN,
    NM2,
    NSEL1,
    NSEL2,
    NSMALL,
    NX,
    ONE,
    PREC,
    RATES,
    RECENT,
    SIGN,
    SQUASH,
    STRETCH,
    TABLES,
    X_CACTX,
    X_CAND,
    X_CL,
    X_COPY,
    X_CSEL,
    X_CU,
    X_LA,
    X_N,
    X_NCPU,
    X_NX,
    X_POS,
    X_RC,
    X_SCTX,
    X_TREE,
    X_XTREE,
    apm_init,
    rate_table,
    squash_table,
    stretch_table,
)


def new_state(cfg: np.ndarray, warm=None):
    """Fresh model state for config ``cfg`` (see the spec for the initial values); ``warm``
    (a dict of arrays, see ``models/cm-prior``) replaces the initial values with a prior."""
    return _cmstate.new_state(cfg, warm, apply_counters)


# ---------------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _squash(d, sq):
    if d > 2047:
        d = 2047
    if d < -2047:
        d = -2047
    return np.int64(sq[d + 2047])


@nb.njit(cache=True, nogil=True, inline="always")
def _hmix(h, v):
    h = ((h ^ (v & M32)) * H1) & M32
    return h ^ (h >> 15)


@nb.njit(cache=True, nogil=True, inline="always")
def _tok(hist, t, y, x, i, H, W, ts, ps):
    """Token at (t, y, x) if it precedes the current index i in coding order, else -1; its
    index is t * ts + (y * W + x) * ps (t at most the current frame)."""
    if t < 0 or y < 0 or y >= H or x < 0 or x >= W:
        return -1
    j = t * ts + (y * W + x) * ps
    if j >= i:
        return -1
    return np.int64(hist[j])


@nb.njit(cache=True, nogil=True, inline="always")
def _ctr_update(e, y, limit, rates):
    """Counter e (22-bit p in the high bits, 10-bit count), bit y -> new e."""
    p = e >> 10
    n = e & 1023
    p += (((y << 22) - p) * rates[n]) >> 16
    if n < limit:
        n += 1
    return (p << 10) | n


@nb.njit(cache=True, nogil=True, inline="always")
def _clampw(v):
    if v > 16777215:
        return 16777215
    if v < -16777215:
        return -16777215
    return v


@nb.njit(cache=True, nogil=True, inline="always")
def _apm_p(apm, actx, pm, st):
    """APM: (p12 of the interpolation, index of the nearer bucket)."""
    s2 = st[pm] + 2048
    lo = s2 >> 7
    wt = s2 & 127
    base = actx * 33 + lo
    pa = (np.int64(apm[base]) * (128 - wt) + np.int64(apm[base + 1]) * wt) >> 11
    return pa, base + (wt >> 6)


@nb.njit(cache=True, nogil=True, inline="always")
def _final_p(pm, pa, aw):
    return _clamp12((pm * (4 - aw) + pa * aw) >> 2)


@nb.njit(cache=True, nogil=True, inline="always")
def _clamp12(p):
    """``p`` clamped to 1..4095: a 12-bit probability, never 0 nor 1."""
    if p < 1:
        return np.int64(1)
    if p > 4095:
        return np.int64(4095)
    return np.int64(p)


@nb.njit(cache=True, nogil=True, inline="always")
def _ctx_hash(kind, value):
    if kind == 0:
        return _hmix(H2, 0)
    return _hmix(_hmix(((kind + 1) * H2) & M32, kind), value + 1)


@nb.njit(cache=True, nogil=True, inline="always")
def _setup(hist, i, cfg, perm, ctx, X):
    """Context of token i into ctx (int64[X_N], layout X_*; the spec's section "Context")."""
    H = cfg[C_H]
    W = cfg[C_W]
    hw = H * W
    if cfg[C_ORDER]:    # position-major: i = pos * T + t (T = cfg[C_NFR] frames)
        ps = cfg[C_NFR]
        ts = 1
        pos = i // ps
        t = i - pos * ps
    else:               # raster-then-frame: i = t * hw + pos
        ps = 1
        ts = hw
        t = i // hw
        pos = i - t * hw
    y = pos // W
    x = pos - y * W
    off = pos * ps      # token (k, y, x) is hist[off + k * ts]
    a = _tok(hist, t - 1, y, x, i, H, W, ts, ps)
    a2 = _tok(hist, t - 2, y, x, i, H, W, ts, ps)
    a3 = _tok(hist, t - 3, y, x, i, H, W, ts, ps)
    l = _tok(hist, t, y, x - 1, i, H, W, ts, ps)
    u = _tok(hist, t, y - 1, x, i, H, W, ts, ps)
    ul = _tok(hist, t, y - 1, x - 1, i, H, W, ts, ps)
    ur = _tok(hist, t, y - 1, x + 1, i, H, W, ts, ps)
    pal = _tok(hist, t - 1, y, x - 1, i, H, W, ts, ps)
    pau = _tok(hist, t - 1, y - 1, x, i, H, W, ts, ps)
    pul = _tok(hist, t - 1, y - 1, x - 1, i, H, W, ts, ps)
    pur = _tok(hist, t - 1, y - 1, x + 1, i, H, W, ts, ps)
    cl = 1 if (l >= 0 and l == pal) else 0
    cu = 1 if (u >= 0 and u == pau) else 0
    cul = 1 if (ul >= 0 and ul == pul) else 0
    cur = 1 if (ur >= 0 and ur == pur) else 0
    aa = 1 if (a >= 0 and a == a2) else 0
    # run: frames before t-1 over which position (y, x) kept the value a (at most 15)
    run = 0
    if a >= 0:
        k = t - 2
        while k >= 0 and run < 15 and hist[off + k * ts] == a:
            run += 1
            k -= 1
    rq = run if run < 3 else 3
    # b: the last value at (y, x) before frame t-1 that differs from a (-1 if none)
    b = -1
    if a >= 0:
        k = t - 2 - run
        if k >= 0:
            b = hist[off + k * ts]
    # rc: copies among the RECENT tokens before i (j is a copy if hist[j] == hist[j - hw]);
    # position-major: among the RECENT frames before t at (y, x)
    nc = 0
    if cfg[C_ORDER]:
        k0 = t - RECENT
        if k0 < 1:
            k0 = 1
        for k in range(k0, t):
            if hist[off + k] == hist[off + k - 1]:
                nc += 1
    else:
        j0 = i - RECENT
        if j0 < hw:
            j0 = hw
        for j in range(j0, i):
            if hist[j] == hist[j - hw]:
                nc += 1
    rc = 0 if nc <= 2 else (1 if nc <= 6 else (2 if nc <= 11 else 3))
    la = perm[a] if a >= 0 else -1
    # tree context hashes
    ctx[X_TREE + 0] = _ctx_hash(0, 0)
    ctx[X_TREE + 1] = _ctx_hash(1, a)
    ctx[X_TREE + 2] = _ctx_hash(2, pos)
    ctx[X_TREE + 3] = _ctx_hash(3, a2)
    ctx[X_TREE + 4] = _ctx_hash(4, a3)
    ctx[X_TREE + 5] = _ctx_hash(5, la >> 3)
    ctx[X_TREE + 6] = _ctx_hash(6, la >> 5)
    # match candidates (leaf indices)
    ctx[X_CAND + 0] = la
    ctx[X_CAND + 1] = perm[l] if l >= 0 else -1
    ctx[X_CAND + 2] = perm[u] if u >= 0 else -1
    ctx[X_CAND + 3] = perm[b] if b >= 0 else -1
    ctx[X_SCTX] = (cl + 2 * cu + 4 * aa) * 4 + rc
    ctx[X_CL] = cl
    ctx[X_CU] = cu
    ctx[X_RC] = rc
    # copy node
    ctx[X_CSEL] = ((rq * 2 + cl) * 2 + cu) * 4 + rc
    ctx[X_CACTX] = rq * 8 + cl * 4 + cu * 2 + aa
    ctx[X_COPY + 0] = _hmix((11 * H2) & M32,
                            ((((cl * 2 + cu) * 2 + cul) * 2 + cur) * 2 + aa) * 4 + rc)
    ctx[X_COPY + 1] = _hmix((12 * H2) & M32, pos + 1)
    if X is not None:
        par = -1
        pab = -1
        if cfg[C_XCTX]:
            par = _tok(hist, t - 1, y, x + 1, i, H, W, ts, ps)
            pab = _tok(hist, t - 1, y + 1, x, i, H, W, ts, ps)
        _setup_more(cfg, ctx, a, a2, l, u, pos, la, par, pab)


@nb.njit(cache=True, nogil=True, inline="always")
def _setup_more(cfg, ctx, a, a2, l, u, pos, la, par, pab):
    """The context slots of the parameters xctx / mix2 (not in the X = None path); par, pab:
    the previous frame's right and below neighbours (read only when xctx is set)."""
    ctx[X_POS] = pos
    ctx[X_LA] = la
    xm = cfg[C_XCTX]
    ctx[X_NX] = 0
    if xm:
        _xhash(ctx, xm, 0, a, l, -1)
        _xhash(ctx, xm, 1, a, u, -1)
        _xhash(ctx, xm, 2, l, u, -1)
        _xhash(ctx, xm, 3, a, pos, -1)
        _xhash(ctx, xm, 4, a, a2, -1)
        _xhash(ctx, xm, 5, a, par, -1)
        _xhash(ctx, xm, 6, a, pab, -1)
        _xhash(ctx, xm, 7, a, l, u)


@nb.njit(cache=True, nogil=True, inline="always")
def _xhash(ctx, xm, j, v1, v2, v3):
    """Extra context j when bit j of xm is set: the hash of (v1, v2, v3) appended to the
    enabled ones (ctx[X_XTREE + n], n = ctx[X_NX] counts them)."""
    if (xm >> j) & 1:
        n = ctx[X_NX]
        ctx[X_XTREE + n] = _hmix(_hmix(_ctx_hash(NCTX + j, v1), v2 + 1), v3 + 1)
        ctx[X_NX] = n + 1


@nb.njit(cache=True, nogil=True)
def apply_counters(ht, kinds, values, nodes, counters, cfg):
    """Write prior counters: entry j is tree context kinds[j] with value values[j], at the
    node nodes[j] = 2**d + prefix (depth d, prefix the d leading leaf bits)."""
    mask = (np.int64(1) << (cfg[C_HTB] - 5)) - 1
    chk = cfg[C_CHECK]
    for j in range(kinds.shape[0]):
        node = nodes[j]
        d = 0
        while (node >> (d + 1)) > 0:
            d += 1
        prefix = node - (1 << d)
        g = d // GROUP
        dd = d - g * GROUP
        local = (1 << dd) | (prefix & ((1 << dd) - 1))
        ch = _ctx_hash(kinds[j], values[j])
        ht[_tree_bucket(ht, ch, g, prefix >> dd, mask, chk, True) + local] = counters[j]


def read_counters(ht, cfg, kind: int, values):
    """(values, nodes, counters) of every non-zero counter of tree context ``kind`` for the
    given context values (used to build priors)."""
    B = int(cfg[C_B])
    mask = np.int64((1 << (int(cfg[C_HTB]) - 5)) - 1)
    chk = np.int64(cfg[C_CHECK])
    vals, nodes, ctrs = [], [], []
    for v in values:
        ch = _ctx_hash(np.int64(kind), np.int64(v))
        for d in range(B):
            g, dd = divmod(d, GROUP)
            for prefix in range(1 << d):
                local = (1 << dd) | (prefix & ((1 << dd) - 1))
                j = int(_tree_bucket(ht, ch, np.int64(g), np.int64(prefix >> dd), mask, chk,
                                     False)) + local
                if ht[j]:
                    vals.append(v)
                    nodes.append((1 << d) + prefix)
                    ctrs.append(ht[j])
    return (np.array(vals, np.int64), np.array(nodes, np.int64), np.array(ctrs, np.uint32))


@nb.njit(cache=True, nogil=True, inline="always")
def _bucket(ch, g, prefix, mask):
    h = _hmix(_hmix(ch, g + 1), prefix + 1)
    return ((h * H3) & M32 & mask) * BUCKET


@nb.njit(cache=True, nogil=True, inline="always")
def _check_word(h):
    """The check word of bucket hash h in checked mode (never 0: 0 marks an empty bucket)."""
    return ((h * H2) & M32) | 1


@nb.njit(cache=True, nogil=True, inline="always")
def _checked_slot(ht, h, mask, claim):
    """Checked mode: of the bucket pair (j, j ^ BUCKET), j = ((h * H3) & M32 & mask) * BUCKET,
    the one whose slot 0 holds h's check word; else, with ``claim``, the one whose slot 1
    counts fewer updates (j on a tie), emptied, its check word set; else the null bucket
    (index (mask + 1) * BUCKET, never written)."""
    j0 = ((h * H3) & M32 & mask) * BUCKET
    j1 = j0 ^ BUCKET
    c = _check_word(h)
    if np.int64(ht[j0]) == c:
        return j0
    if np.int64(ht[j1]) == c:
        return j1
    if not claim:
        return (mask + 1) * BUCKET
    n0 = (np.int64(ht[j0 + 1]) ^ SIGN) & 1023
    n1 = (np.int64(ht[j1 + 1]) ^ SIGN) & 1023
    j = j0 if n0 <= n1 else j1
    for k in range(1, BUCKET):
        ht[j + k] = 0
    ht[j] = c
    return j


@nb.njit(cache=True, nogil=True, inline="always")
def _tree_bucket(ht, ch, g, prefix, mask, chk, claim):
    """First counter of the bucket of tree context hash ch, group g, group prefix ``prefix``:
    plain (chk == 0) or checked (``_checked_slot``, claiming when ``claim``)."""
    if chk == 0:
        return _bucket(ch, g, prefix, mask)
    return _checked_slot(ht, _hmix(_hmix(ch, g + 1), prefix + 1), mask, claim)


@nb.njit(cache=True, nogil=True, inline="always")
def _xbuckets(cfg, ht, ctx, bkt, g, gp, mask, claim):
    """Buckets of the extra contexts (parameter xctx) into bkt[NCTX + j], after the 7 tree
    contexts' (in j order, claiming like them when ``claim``)."""
    for j in range(ctx[X_NX]):
        bkt[NCTX + j] = _tree_bucket(ht, ctx[X_XTREE + j], g, gp, mask, cfg[C_CHECK], claim)


@nb.njit(cache=True, nogil=True, inline="always")
def _copy_slot(ht, c, mask, chk, claim):
    """Counter index of copy context hash c: slot 0 of its bucket (plain) or slot 1 of its
    checked bucket."""
    if chk == 0:
        return ((c * H3) & M32 & mask) * BUCKET
    return _checked_slot(ht, c, mask, claim) + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _copy_p(cfg, S, TB, ctx, mask, xc, cinfo):
    """P(token == previous-frame token) in 12 bits; fills xc / cinfo for the update."""
    ht = S[0]
    cw = S[4]
    capm = S[5]
    st = TB[1]
    ccmask = cfg[C_CCMASK]
    chk = cfg[C_CHECK]
    for k in range(NCC):
        j = _copy_slot(ht, ctx[X_COPY + k], mask, chk, False)
        cinfo[CI_SLOT + k] = j
        if (ccmask >> k) & 1:
            e = np.int64(ht[j]) ^ SIGN
            xc[k] = st[e >> 20]
        else:
            xc[k] = 0
    xc[NCC] = 256
    sel = ctx[X_CSEL]
    dot = np.int64(0)
    for k in range(NCIN):
        dot += np.int64(cw[sel, k]) * xc[k]
    pm = _squash(dot >> 16, TB[0])
    pa, ai = _apm_p(capm, ctx[X_CACTX], pm, st)
    cinfo[CI_SEL] = sel
    cinfo[CI_AI] = ai
    cinfo[CI_PM] = pm
    return _final_p(pm, pa, cfg[C_APMW])


@nb.njit(cache=True, nogil=True, inline="always")
def _copy_update(y, cfg, S, TB, ctx, mask, xc, cinfo):
    ht = S[0]
    cw = S[4]
    capm = S[5]
    rates = TB[2]
    ccmask = cfg[C_CCMASK]
    chk = cfg[C_CHECK]
    for k in range(NCC):
        if (ccmask >> k) & 1:
            j = cinfo[CI_SLOT + k]
            if chk:     # the prediction read the null bucket on a miss: claim one now
                j = _copy_slot(ht, ctx[X_COPY + k], mask, chk, True)
            e = np.int64(ht[j]) ^ SIGN
            ht[j] = _ctr_update(e, y, cfg[C_LIMIT], rates) ^ SIGN
    sel = cinfo[CI_SEL]
    err = ((y << 12) - cinfo[CI_PM]) * cfg[C_LR]
    for k in range(NCIN):
        cw[sel, k] = _clampw(np.int64(cw[sel, k]) + ((xc[k] * err) >> 14))
    ai = cinfo[CI_AI]
    v = np.int64(capm[ai])
    capm[ai] = v + (((y << 16) - v) >> cfg[C_APMR])


@nb.njit(cache=True, nogil=True, inline="always")
def _nb_a(n):
    """A(n) of the spec (n >= 0): n for n <= 2, 3 for n <= 4, 4 for n <= 8, else 5."""
    return np.int64(min(n, 2) + (n > 2) + (n > 4) + (n > 8))


@nb.njit(cache=True, nogil=True, inline="always")
def _nb_p(n):
    """Q(n) of the spec (n >= 0): 0 if n == 0, 1 if n <= 3, 2 if n <= 15, else 3."""
    return np.int64((n > 0) + (n > 3) + (n > 15))


@nb.njit(cache=True, nogil=True, inline="always")
def _node_p(d, prefix, cfg, S, TB, bkt, ctx, xin, info, X):
    """P(bit = 1) in 12 bits at the tree node of depth d whose leaves start with the d bits
    ``prefix``.  Fills xin[NIN] and info (weight sets, APM index, p_mix, slot, on-path mask)."""
    ht = S[0]
    w = S[1]
    apm = S[2]
    mc = S[3]
    st = TB[1]
    B = cfg[C_B]
    g = d // GROUP
    dd = d - g * GROUP
    local = (1 << dd) | (prefix & ((1 << dd) - 1))
    ctxmask = cfg[C_CTXMASK]
    candmask = cfg[C_CANDMASK]
    na = 0
    npos = 0
    for k in range(NCTX):
        if (ctxmask >> k) & 1:
            e = np.int64(ht[bkt[k] + local]) ^ SIGN
            xin[k] = st[e >> 20]
            if k == 1:
                na = e & 1023
            elif k == 2:
                npos = e & 1023
        else:
            xin[k] = 0
    on = 0
    onm = 0
    sctx = ctx[X_SCTX]
    for m in range(NCAND):
        cj = ctx[X_CAND + m]
        xin[NCTX + m] = 0
        if cj >= 0 and ((candmask >> m) & 1) and (cj >> (B - d)) == prefix:
            onm |= 1 << m
            if m < 3:
                on |= 1 << m
            e = np.int64(mc[(m * NSMALL + sctx) * B + d]) ^ SIGN
            s = st[e >> 20]
            if (cj >> (B - 1 - d)) & 1:
                xin[NCTX + m] = s
            else:
                xin[NCTX + m] = -s
    xin[NCTX + NCAND] = 256
    sel = (((d * 8 + on) * 2 + ctx[X_CL]) * 2 + ctx[X_CU]) * 4 + ctx[X_RC]
    sel2 = B * NSEL1 + (d * 6 + _nb_a(na)) * 4 + _nb_p(npos)
    nk = NIN
    if X is not None:
        nk = _xin_more(ht, st, bkt, ctx, xin, local)
    dot = np.int64(0)
    for k in range(nk):
        dot += (np.int64(w[sel, k]) + np.int64(w[sel2, k])) * xin[k]
    pm = _squash(dot >> 16, TB[0])
    info[I_PM] = pm
    if X is not None:
        if cfg[C_MIX2]:
            pm = _mix2_p(d, on, dot, cfg, w, ctx, xin, info, TB)
    info[I_SEL] = sel
    info[I_SEL2] = sel2
    info[I_LOCAL] = local
    pa, ai = _apm_p(apm, d * 8 + on, pm, st)
    info[I_AI] = ai
    info[I_ONM] = onm
    return _final_p(pm, pa, cfg[C_APMW])


@nb.njit(cache=True, nogil=True, inline="always")
def _clamp_d(v):
    if v > 2047:
        return np.int64(2047)
    if v < -2047:
        return np.int64(-2047)
    return np.int64(v)


@nb.njit(cache=True, nogil=True, inline="always")
def _xin_more(ht, st, bkt, ctx, xin, local):
    """The inputs of the extra contexts (parameter xctx) into xin[NIN..]; returns the number
    of mixer inputs, NIN + their count (not in the X = None path)."""
    nk = NIN + ctx[X_NX]
    for k in range(NIN, nk):
        xin[k] = st[(np.int64(ht[bkt[NCTX - NIN + k] + local]) ^ SIGN) >> 20]
    return nk


@nb.njit(cache=True, nogil=True, inline="always")
def _mix2_p(d, on, dot0, cfg, w, ctx, xin, info, TB):
    """The 2-layer mixer (parameter mix2): first-layer mixer 0 is the sel + sel2 mix (its
    dot product dot0), mixers 1 and 2 use the weight set of (d, pos) and of (d, cluster of
    a); the final mixer of (d, on) mixes their clamped logits.  Returns p_mix (12 bits)."""
    B = cfg[C_B]
    r1 = B * (NSEL1 + NSEL2)
    r2 = r1 + B * cfg[C_H] * cfg[C_W]
    rf = r2 + B * 33
    sh = B - 5 if B > 5 else 0
    info[I_M2ROW + 1] = r1 + d * cfg[C_H] * cfg[C_W] + ctx[X_POS]
    info[I_M2ROW + 2] = r2 + d * 33 + (ctx[X_LA] >> sh) + 1
    info[I_M2ROW] = rf + d * 8 + on
    nk = NIN + ctx[X_NX]
    s = _clamp_d(dot0 >> 16)
    info[I_M2S] = s
    dotf = np.int64(w[rf + d * 8 + on, 0]) * s + np.int64(w[rf + d * 8 + on, NM2]) * 256
    for j in range(1, NM2):
        r = info[I_M2ROW + j]
        dj = np.int64(0)
        for k in range(nk):
            dj += np.int64(w[r, k]) * xin[k]
        s = _clamp_d(dj >> 16)
        info[I_M2S + j] = s
        info[I_M2P + j] = _squash(s, TB[0])
        dotf += np.int64(w[rf + d * 8 + on, j]) * s
    pf = _squash(dotf >> 16, TB[0])
    info[I_M2P] = pf
    return pf


@nb.njit(cache=True, nogil=True, inline="always")
def _node_update_more(y, cfg, ht, w, rates, bkt, ctx, xin, info):
    """The updates of the extra contexts' counters and of the 2-layer mixer, after
    ``_node_update``'s others (not in the X = None path); their weight columns in the sel /
    sel2 rows are updated with the others."""
    local = info[I_LOCAL]
    for k in range(NCTX, NCTX + ctx[X_NX]):
        j = bkt[k] + local
        ht[j] = _ctr_update(np.int64(ht[j]) ^ SIGN, y, cfg[C_LIMIT], rates) ^ SIGN
    nk = NIN + ctx[X_NX]
    if not cfg[C_MIX2]:
        return
    lr = cfg[C_LR]
    for j in range(1, NM2):
        r = info[I_M2ROW + j]
        err = ((y << 12) - info[I_M2P + j]) * lr
        for k in range(nk):
            w[r, k] = _clampw(np.int64(w[r, k]) + ((xin[k] * err) >> 14))
    rf = info[I_M2ROW]
    err = ((y << 12) - info[I_M2P]) * lr
    for j in range(NM2):
        w[rf, j] = _clampw(np.int64(w[rf, j]) + ((info[I_M2S + j] * err) >> 14))
    w[rf, NM2] = _clampw(np.int64(w[rf, NM2]) + ((256 * err) >> 14))


@nb.njit(cache=True, nogil=True, inline="always")
def _node_update(d, y, cfg, S, TB, bkt, ctx, xin, info, X):
    ht = S[0]
    w = S[1]
    apm = S[2]
    mc = S[3]
    rates = TB[2]
    B = cfg[C_B]
    limit = cfg[C_LIMIT]
    ctxmask = cfg[C_CTXMASK]
    local = info[I_LOCAL]
    for k in range(NCTX):
        if (ctxmask >> k) & 1:
            j = bkt[k] + local
            e = np.int64(ht[j]) ^ SIGN
            ht[j] = _ctr_update(e, y, limit, rates) ^ SIGN
    onm = info[I_ONM]
    sctx = ctx[X_SCTX]
    for m in range(NCAND):
        if (onm >> m) & 1:
            cj = ctx[X_CAND + m]
            hit = 1 if ((cj >> (B - 1 - d)) & 1) == y else 0
            j = (m * NSMALL + sctx) * B + d
            e = np.int64(mc[j]) ^ SIGN
            mc[j] = _ctr_update(e, hit, cfg[C_MLIMIT], rates) ^ SIGN
    sel = info[I_SEL]
    sel2 = info[I_SEL2]
    err = ((y << 12) - info[I_PM]) * cfg[C_LR]
    nk = NIN
    if X is not None:
        nk += ctx[X_NX]
    for k in range(nk):
        dw = (xin[k] * err) >> 14
        w[sel, k] = _clampw(np.int64(w[sel, k]) + dw)
        w[sel2, k] = _clampw(np.int64(w[sel2, k]) + dw)
    if X is not None:
        _node_update_more(y, cfg, ht, w, rates, bkt, ctx, xin, info)
    ai = info[I_AI]
    v = np.int64(apm[ai])
    apm[ai] = v + (((y << 16) - v) >> cfg[C_APMR])


@nb.njit(cache=True, nogil=True, inline="always")
def _n_leaves(lo, size, V, ax):
    """Leaves of the range [lo, lo + size) that can carry tree mass: index < V, not ax."""
    r = V - lo
    if r < 0:
        r = 0
    if r > size:
        r = size
    if ax >= lo and ax < lo + size:
        r -= 1
    return r


@nb.njit(cache=True, nogil=True, inline="always")
def _split(M, p, nl, nr):
    """Mass of the right child of a node of mass M (left gets M - right)."""
    if nr == 0:
        return np.int64(0)
    if nl == 0:
        return M
    right = (M * p) >> 12
    if right < nr:
        right = nr
    if right > M - nl:
        right = M - nl
    return right


@nb.njit(cache=True, nogil=True, inline="always")
def _copy_mass(pc, V):
    mc_ = pc << (PREC - 12)
    if mc_ > ONE - (V - 1):
        mc_ = ONE - (V - 1)
    return mc_


EXT_LR0 = 15        # the final mixer's learning rate starts (EXT_LR0 + 1) times the others'
EXT_LRN = 64        # ... and decays to theirs as 1 + EXT_LR0 * EXT_LRN // (EXT_LRN + n)


def new_ext_weights(cfg: np.ndarray) -> np.ndarray:
    """Initial state of the final mixer: int32 (B + 1, 4) rows (65536, 0, 0, 0): weights
    of the cm input, the external input and the bias, then the row's update count."""
    w2 = np.zeros((int(cfg[C_B]) + 1, 4), np.int32)
    w2[:, 0] = 65536
    return w2


@nb.njit(cache=True, nogil=True)
def _no_ext(B):
    """E of a run without an external table."""
    return (np.zeros(0, np.int32), np.zeros((B + 1, 4), np.int32),
            np.zeros(1, np.int64), np.zeros((B + 1, 4), np.int64))


@nb.njit(cache=True, nogil=True)
def _ext_work(B):
    """Scratch of the external input: (cum over leaves, final-mixer inputs per row)."""
    return np.zeros((1 << B) + 1, np.int64), np.zeros((B + 1, 4), np.int64)


@nb.njit(cache=True, nogil=True, inline="always")
def _ext_cum(ext, perm, B, cum):
    """cum[j] = external mass of the leaves before leaf j."""
    for j in range(cum.shape[0]):
        cum[j] = 0
    for s in range(ext.shape[0]):
        cum[perm[s] + 1] = ext[s]
    for j in range(1, cum.shape[0]):
        cum[j] += cum[j - 1]


@nb.njit(cache=True, nogil=True, inline="always")
def _ext_mix(p, pn, row, TB, E):
    """Final mixer: P(1) in 1..4095 from p (cm) and pn (external) with weights w2[row] (row:
    the depth, or B for the copy node); remembers inputs and output in x2[row]."""
    w2 = E[1]
    x2 = E[3]
    st = TB[1]
    x0 = np.int64(st[p])
    x1 = np.int64(st[pn])
    dot = np.int64(w2[row, 0]) * x0 + np.int64(w2[row, 1]) * x1 + np.int64(w2[row, 2]) * 256
    q = _clamp12(_squash(dot >> 16, TB[0]))
    x2[row, 0] = x0
    x2[row, 1] = x1
    x2[row, 2] = q
    return q


@nb.njit(cache=True, nogil=True, inline="always")
def _ext_update(row, y, cfg, E):
    w2 = E[1]
    x2 = E[3]
    n = np.int64(w2[row, 3])
    err = ((y << 12) - x2[row, 2]) * cfg[C_LR] * (EXT_LR0 * EXT_LRN // (EXT_LRN + n) + 1)
    w2[row, 0] = _clampw(np.int64(w2[row, 0]) + ((x2[row, 0] * err) >> 14))
    w2[row, 1] = _clampw(np.int64(w2[row, 1]) + ((x2[row, 1] * err) >> 14))
    w2[row, 2] = _clampw(np.int64(w2[row, 2]) + ((256 * err) >> 14))
    if n < 65535:
        w2[row, 3] = n + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _ext_node_p(lo, size, ax, cum):
    """External P(bit = 1) in 1..4095 of the node over leaves [lo, lo + 2 size), the copy
    leaf ax left out; 2048 when the node holds no external mass."""
    left = cum[lo + size] - cum[lo]
    right = cum[lo + 2 * size] - cum[lo + size]
    if ax >= lo and ax < lo + size:
        left -= cum[ax + 1] - cum[ax]
    elif ax >= lo + size and ax < lo + 2 * size:
        right -= cum[ax + 1] - cum[ax]
    if left + right == 0:
        return np.int64(2048)
    return _clamp12((right << 12) // (left + right))


@nb.njit(cache=True, nogil=True, inline="always")
def _ext_copy_p(ax, cum):
    return _clamp12((cum[ax + 1] - cum[ax]) >> (PREC - 12))


@nb.njit(cache=True, nogil=True, inline="always")
def _token_setup(i, cfg, hist, perm, S, TB, WK, E, X):
    """What every path does first for token i: its context into ``WK``, the external cum
    when ``E`` holds a table, and the copy node's prediction.  Returns ``(ax, cmass, mask)``:
    the copy leaf (-1 without a copy node), its mass (0 without) and the hash mask."""
    ctx, xc, cinfo = WK[0], WK[4], WK[5]
    B = cfg[C_B]
    mask = (np.int64(1) << (cfg[C_HTB] - 5)) - 1
    has_ext = E[0].shape[0] > 0
    _setup(hist, i, cfg, perm, ctx, X)
    ax = ctx[X_CAND] if cfg[C_COPY] else -1
    if has_ext:
        _ext_cum(E[0], perm, B, E[2])
    cmass = np.int64(0)
    if ax >= 0:
        pc = _copy_p(cfg, S, TB, ctx, mask, xc, cinfo)
        if has_ext:
            pc = _ext_mix(pc, _ext_copy_p(ax, E[2]), B, TB, E)
        cmass = _copy_mass(pc, cfg[C_V])
    return ax, cmass, mask


@nb.njit(cache=True, nogil=True)
def _code_token(i, sym_leaf, q, mode, cfg, hist, perm, S, TB, WK, E, X):
    """Code token i.  mode 0: its leaf is sym_leaf (encode); mode 1: found from the rANS
    quantile q (decode).  Updates the state.  Returns (leaf, start, freq).

    One walk down the tree: a node's combined mass is its tree mass plus the copy mass when
    the copy leaf ax lies below it, so only the nodes on the coded path are predicted.
    ``E``: the external table with the final mixer's state and scratch, or none
    (``_no_ext``)."""
    ctx, bkt, xs, infos, xc, cinfo = WK
    B = cfg[C_B]
    V = cfg[C_V]
    has_ext = E[0].shape[0] > 0
    chk = cfg[C_CHECK]
    ax, cmass, mask = _token_setup(i, cfg, hist, perm, S, TB, WK, E, X)
    start = np.int64(0)
    M = np.int64(ONE)
    prefix = 0
    for d in range(B):
        if d % GROUP == 0:
            for k in range(NCTX):
                bkt[k] = _tree_bucket(S[0], ctx[X_TREE + k], d // GROUP, prefix, mask, chk,
                                      False)
            if X is not None:
                _xbuckets(cfg, S[0], ctx, bkt, d // GROUP, prefix, mask, False)
        size = np.int64(1) << (B - 1 - d)
        lo = prefix * 2 * size
        p = _node_p(d, prefix, cfg, S, TB, bkt, ctx, xs[d], infos[d], X)
        if has_ext:
            pn = _ext_node_p(lo, size, ax, E[2])
            p = _ext_mix(p, pn, d, TB, E)
        inside = ax >= 0 and (ax >> (B - d)) == prefix
        mt = M - cmass if inside else M
        right = _split(mt, p, _n_leaves(lo, size, V, ax), _n_leaves(lo + size, size, V, ax))
        left = mt - right
        if inside:
            if (ax >> (B - 1 - d)) & 1:
                right += cmass
            else:
                left += cmass
        if mode == 0:
            y = (sym_leaf >> (B - 1 - d)) & 1
        else:
            y = 1 if q >= start + left else 0
        if y:
            start += left
            M = right
        else:
            M = left
        infos[d, I_BIT] = y
        prefix = prefix * 2 + y
    if ax >= 0:
        _copy_update(1 if prefix == ax else 0, cfg, S, TB, ctx, mask, xc, cinfo)
        if has_ext:
            _ext_update(B, 1 if prefix == ax else 0, cfg, E)
    if prefix != ax:
        # tree updates along the path, in depth order
        for d in range(B):
            if d % GROUP == 0:
                for k in range(NCTX):
                    bkt[k] = _tree_bucket(S[0], ctx[X_TREE + k], d // GROUP,
                                          prefix >> (B - d), mask, chk, True)
                if X is not None:
                    _xbuckets(cfg, S[0], ctx, bkt, d // GROUP, prefix >> (B - d), mask, True)
            _node_update(d, infos[d, I_BIT], cfg, S, TB, bkt, ctx, xs[d], infos[d], X)
            if has_ext:
                _ext_update(d, infos[d, I_BIT], cfg, E)
    return prefix, start, M


@nb.njit(cache=True, nogil=True)
def _work(B):
    """Scratch WK of a token: ctx[X_NCPU], bkt[NCTX + NX], xs[B, NIN + NX],
    infos[B, I_NCPU], xc[NCIN], cinfo[CI_N]."""
    return (np.zeros(X_NCPU, np.int64), np.zeros(NCTX + NX, np.int64),
            np.zeros((B, NIN + NX), np.int64), np.zeros((B, I_NCPU), np.int64),
            np.zeros(NCIN, np.int64), np.zeros(CI_N, np.int64))


@nb.njit(cache=True, nogil=True)
def enc_pass(tokens, cfg, perm, S, TB):
    """(start, freq) uint32 of every token (tokens: int32 flat, coding order)."""
    n = tokens.shape[0]
    start = np.empty(n, np.uint32)
    freq = np.empty(n, np.uint32)
    if cfg[C_XCTX] or cfg[C_MIX2]:
        _enc_loop(tokens, cfg, perm, S, TB, start, freq, 1)
    else:       # a specialization without the code of xctx / mix2
        _enc_loop(tokens, cfg, perm, S, TB, start, freq, None)
    return start, freq


@nb.njit(cache=True, nogil=True)
def _enc_loop(tokens, cfg, perm, S, TB, start, freq, X):
    WK = _work(cfg[C_B])
    E = _no_ext(cfg[C_B])
    for i in range(tokens.shape[0]):
        _, s0, f0 = _code_token(i, perm[tokens[i]], 0, 0, cfg, tokens, perm, S, TB, WK, E, X)
        start[i] = s0
        freq[i] = f0


@nb.njit(cache=True, nogil=True)
def dec_pass(words, n, cfg, perm, inv, S, TB):
    """Decode n tokens from rANS words (fused predict / decode / update)."""
    out = np.zeros(n, np.int32)
    if cfg[C_XCTX] or cfg[C_MIX2]:
        _dec_loop(words, cfg, perm, inv, S, TB, out, 1)
    else:       # a specialization without the code of xctx / mix2
        _dec_loop(words, cfg, perm, inv, S, TB, out, None)
    return out


@nb.njit(cache=True, nogil=True)
def _dec_loop(words, cfg, perm, inv, S, TB, out, X):
    WK = _work(cfg[C_B])
    E = _no_ext(cfg[C_B])
    state, pos = rans.dec_init(words)
    for i in range(out.shape[0]):
        q = rans.dec_quantile(state, PREC)
        leaf, s0, f0 = _code_token(i, 0, q, 1, cfg, out, perm, S, TB, WK, E, X)
        out[i] = inv[leaf]
        state, pos = rans.dec_advance(state, pos, words, s0, f0, PREC)


@nb.njit(cache=True, nogil=True)
def _full_table(i, cfg, hist, perm, S, TB, WK, masses, out, E, X):
    """Full table of token i (the state is not changed)."""
    ctx, bkt, xs, infos, xc, cinfo = WK
    B = cfg[C_B]
    V = cfg[C_V]
    has_ext = E[0].shape[0] > 0
    ax, cmass, mask = _token_setup(i, cfg, hist, perm, S, TB, WK, E, X)
    masses[1] = ONE - cmass
    for d in range(B):
        g = d // GROUP
        size = np.int64(1) << (B - 1 - d)
        for prefix in range(1 << d):
            node = (1 << d) | prefix
            M = masses[node]
            lo = prefix * 2 * size
            nl = _n_leaves(lo, size, V, ax)
            nr = _n_leaves(lo + size, size, V, ax)
            if nl + nr == 0:
                masses[2 * node] = 0
                masses[2 * node + 1] = 0
                continue
            gp = prefix >> (d - g * GROUP)
            for k in range(NCTX):
                bkt[k] = _tree_bucket(S[0], ctx[X_TREE + k], g, gp, mask, cfg[C_CHECK], False)
            if X is not None:
                _xbuckets(cfg, S[0], ctx, bkt, g, gp, mask, False)
            p = _node_p(d, prefix, cfg, S, TB, bkt, ctx, xs[0], infos[0], X)
            if has_ext:
                pn = _ext_node_p(lo, size, ax, E[2])
                p = _ext_mix(p, pn, d, TB, E)
            right = _split(M, p, nl, nr)
            masses[2 * node] = M - right
            masses[2 * node + 1] = right
    for s in range(V):
        out[s] = masses[(1 << B) + perm[s]]
    if ax >= 0:
        for s in range(V):
            if perm[s] == ax:
                out[s] = cmass


@nb.njit(cache=True, nogil=True)
def table_pass(tokens, i0, i1, cfg, perm, S, TB, out):
    """Tables of tokens i0..i1-1 into out[(i1-i0), V], updating the state with them."""
    B = cfg[C_B]
    WK = _work(B)
    E = _no_ext(B)
    masses = np.zeros(2 << B, np.int64)
    for i in range(i0, i1):
        _full_table(i, cfg, tokens, perm, S, TB, WK, masses, out[i - i0], E, 1)
        _code_token(i, perm[tokens[i]], 0, 0, cfg, tokens, perm, S, TB, WK, E, 1)


@nb.njit(cache=True, nogil=True)
def step_table(hist, i, cfg, perm, S, TB, out):
    """Full table of token i (hist holds the tokens before i); the state is not changed."""
    B = cfg[C_B]
    WK = _work(B)
    masses = np.zeros(2 << B, np.int64)
    _full_table(i, cfg, hist, perm, S, TB, WK, masses, out, _no_ext(B), 1)


@nb.njit(cache=True, nogil=True)
def step_push(hist, i, cfg, perm, S, TB):
    """Update the state with token i = hist[i]; returns (start, freq) of its interval."""
    B = cfg[C_B]
    _, s0, f0 = _code_token(i, perm[hist[i]], 0, 0, cfg, hist, perm, S, TB, _work(B), _no_ext(B),
                            1)
    return s0, f0


# -- with an external table per token (final 2-input mixer, state w2) ------------------------
@nb.njit(cache=True, nogil=True)
def ext_pass(tokens, i0, i1, cfg, perm, S, TB, ext, w2, start, freq):
    """(start, freq) of tokens i0..i1-1 into start/freq[i0:i1]; ext[(i1-i0), V] holds their
    external tables.  Updates S and w2."""
    B = cfg[C_B]
    WK = _work(B)
    cum, x2 = _ext_work(B)
    for i in range(i0, i1):
        E = (ext[i - i0], w2, cum, x2)
        _, s0, f0 = _code_token(i, perm[tokens[i]], 0, 0, cfg, tokens, perm, S, TB, WK, E, 1)
        start[i] = s0
        freq[i] = f0


@nb.njit(cache=True, nogil=True)
def ext_tables(tokens, i0, i1, cfg, perm, S, TB, ext, w2, out):
    """Tables of tokens i0..i1-1 into out[(i1-i0), V] (external tables ext[(i1-i0), V]),
    updating S and w2 with them."""
    B = cfg[C_B]
    WK = _work(B)
    cum, x2 = _ext_work(B)
    masses = np.zeros(2 << B, np.int64)
    for i in range(i0, i1):
        E = (ext[i - i0], w2, cum, x2)
        _full_table(i, cfg, tokens, perm, S, TB, WK, masses, out[i - i0], E, 1)
        _code_token(i, perm[tokens[i]], 0, 0, cfg, tokens, perm, S, TB, WK, E, 1)


@nb.njit(cache=True, nogil=True)
def ext_step_table(hist, i, cfg, perm, S, TB, ext_row, w2, out):
    """Full table of token i with external table ext_row; the state is not changed."""
    B = cfg[C_B]
    cum, x2 = _ext_work(B)
    masses = np.zeros(2 << B, np.int64)
    _full_table(i, cfg, hist, perm, S, TB, _work(B), masses, out, (ext_row, w2, cum, x2),
                1)


@nb.njit(cache=True, nogil=True)
def ext_push(hist, i, cfg, perm, S, TB, ext_row, w2):
    """Update S and w2 with token i = hist[i] (external table ext_row)."""
    B = cfg[C_B]
    cum, x2 = _ext_work(B)
    _code_token(i, perm[hist[i]], 0, 0, cfg, hist, perm, S, TB, _work(B),
                (ext_row, w2, cum, x2), 1)


@nb.njit(cache=True, nogil=True)
def ext_dec_step(words, dec, out, i, cfg, perm, inv, S, TB, ext_row, w2):
    """Decode token i into out[i] (external table ext_row), updating S and w2; ``dec`` =
    uint64[2] (rANS state, words left), from ``ext_dec_init``, advanced in place."""
    B = cfg[C_B]
    cum, x2 = _ext_work(B)
    state = dec[0]
    q = rans.dec_quantile(state, PREC)
    leaf, s0, f0 = _code_token(i, 0, q, 1, cfg, out, perm, S, TB, _work(B),
                               (ext_row, w2, cum, x2), 1)
    out[i] = inv[leaf]
    state, pos = rans.dec_advance(state, np.int64(dec[1]), words, s0, f0, PREC)
    dec[0] = state
    dec[1] = np.uint64(pos)


@nb.njit(cache=True, nogil=True)
def ext_dec_init(words):
    """The ``dec`` array of ``ext_dec_step``."""
    state, pos = rans.dec_init(words)
    dec = np.zeros(2, np.uint64)
    dec[0] = state
    dec[1] = np.uint64(pos)
    return dec
