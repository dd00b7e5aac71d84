"""Kernel of the ``cm`` predictor (spec: ``nacc/predictors/cm.py``; CPU reference:
``nacc/kernels/cpu/cm.py``, whose functions this module mirrors one for one).

The work of one token is a short walk down a binary tree with a few table look-ups per
node: little parallelism inside a lane.  So here a program holds ``LANES`` lanes (one
segment each, one thread each with ``num_warps=1``) and every quantity of the CPU code is a
vector over the lanes; all lanes process token ``i`` together (the same position, so the
same neighbour coordinates), and per-lane branches become masks.  Lanes are padded to a
multiple of LANES with state of their own, so loads need no masks; stores are masked by
``act`` (the lane has a token ``i``).

Per-lane memory: the model state (``ht`` u32 stored as int32 bit patterns, ``w``, ``apm``,
``mc``, ``cw``, ``capm``; lane-major, one stride each) and an int64 scratch area
``scr[slot, lane]`` (slot-major, so a warp's accesses are contiguous) holding the CPU's
work arrays: ``ctx``, ``bkt``, per depth the mixer inputs ``xs`` and ``info``, the copy
node's ``xc``/``cinfo``, and the node masses of a full table.  A lane's scratch and state
are touched by the thread(s) holding that lane; Triton may replicate a lane over several
threads or change layouts between a store and a later load, so a barrier (one warp: cheap)
separates the phases that write and then read the same memory: context, buckets, mixer
inputs, node info, updates, node masses, tokens.
"""
import triton
import triton.language as tl

from nacc.kernels.cpu import cm as K

from .common import const, helper, vmax
from .rans import advance, quantile

PREC = const(K.PREC)
ONE = const(1 << K.PREC)
NCTX = const(K.NCTX)
NCAND = const(K.NCAND)
NIN = const(K.NIN)
NCC = const(K.NCC)
NCIN = const(K.NCIN)
BUCKET = const(K.BUCKET)
GROUP = const(K.GROUP)
NSMALL = const(K.NSMALL)
RECENT = const(K.RECENT)
NSEL1 = const(K.NSEL1)
H1 = const(K.H1)
H2 = const(K.H2)
H3 = const(K.H3)
C_V = const(K.C_V)
C_B = const(K.C_B)
C_H = const(K.C_H)
C_W = const(K.C_W)
C_HTB = const(K.C_HTB)
C_LIMIT = const(K.C_LIMIT)
C_LR = const(K.C_LR)
C_APMR = const(K.C_APMR)
C_MLIMIT = const(K.C_MLIMIT)
C_CTXMASK = const(K.C_CTXMASK)
C_CANDMASK = const(K.C_CANDMASK)
C_APMW = const(K.C_APMW)
C_COPY = const(K.C_COPY)
C_CCMASK = const(K.C_CCMASK)
NCTXSLOT = const(32)        # ctx slots (the CPU uses X_N = 24)
X_TREE = const(K.X_TREE)    # the ctx / info / cinfo slot layout of kernels/cpu/cmstate.py
X_CAND = const(K.X_CAND)
X_SCTX = const(K.X_SCTX)
X_CL = const(K.X_CL)
X_CU = const(K.X_CU)
X_RC = const(K.X_RC)
X_CSEL = const(K.X_CSEL)
X_CACTX = const(K.X_CACTX)
X_COPY = const(K.X_COPY)
I_SEL = const(K.I_SEL)
I_SEL2 = const(K.I_SEL2)
I_AI = const(K.I_AI)
I_PM = const(K.I_PM)
I_LOCAL = const(K.I_LOCAL)
I_ONM = const(K.I_ONM)
I_BIT = const(K.I_BIT)
I_N = const(K.I_N)
CI_SEL = const(K.CI_SEL)
CI_AI = const(K.CI_AI)
CI_PM = const(K.CI_PM)
CI_SLOT = const(K.CI_SLOT)
M32 = const(0xFFFFFFFF)
SIGN = const(0x80000000)


# -- scratch ------------------------------------------------------------------------------
@helper
def _sget(scr, NLP, lane, slot):
    return tl.load(scr + slot * NLP + lane)


@helper
def _sput(scr, NLP, lane, slot, v, m):
    tl.store(scr + slot * NLP + lane, v.to(tl.int64), mask=m)


@helper
def _ldu(ptr):
    """u32 stored as an int32 bit pattern -> int64 in [0, 2**32)."""
    return tl.load(ptr).to(tl.uint32, bitcast=True).to(tl.int64)


@helper
def _stu(ptr, v, m):
    tl.store(ptr, v.to(tl.uint32).to(tl.int32, bitcast=True), mask=m)


@helper
def _band(a, b):
    """a & b for booleans where one may be a scalar (the interpreter rejects a mask made of
    a vector & a scalar)."""
    return (a.to(tl.int32) & b.to(tl.int32)) != 0


# -- arithmetic helpers (CPU: _squash, _hmix, _ctr_update, _clampw, _apm_p, _final_p) -------
@helper
def _squash(d, sq_ptr):
    d = tl.minimum(tl.maximum(d, -2047), 2047)
    return tl.load(sq_ptr + d + 2047).to(tl.int64)


@helper
def _stretch(p, st_ptr):
    return tl.load(st_ptr + p).to(tl.int64)


@helper
def _hmix(h, v):
    v = v + h * 0                     # int64 like h (v may be a scalar of another type)
    h = ((h ^ (v & M32)) * H1) & M32
    return h ^ (h >> 15)


@helper
def _ctr_update(e, y, limit, rt_ptr):
    p = e >> 10
    n = e & 1023
    p += (((y << 22) - p) * tl.load(rt_ptr + n).to(tl.int64)) >> 16
    n = tl.where(n < limit, n + 1, n)
    return (p << 10) | n


@helper
def _clampw(v):
    return tl.minimum(tl.maximum(v, -16777215), 16777215)


@helper
def _apm_p(apm, actx, pm, st_ptr):
    s2 = _stretch(pm, st_ptr) + 2048
    lo = s2 >> 7
    wt = s2 & 127
    base = actx * 33 + lo
    a0 = tl.load(apm + base).to(tl.int64)
    a1 = tl.load(apm + base + 1).to(tl.int64)
    pa = (a0 * (128 - wt) + a1 * wt) >> 11
    return pa, base + (wt >> 6)


@helper
def _final_p(pm, pa, aw):
    p = (pm * (4 - aw) + pa * aw) >> 2
    return tl.minimum(tl.maximum(p, 1), 4095)


@helper
def _bucket(ch, g, prefix, mask):
    h = _hmix(_hmix(ch, g + 1), prefix + 1)
    return ((h * H3) & M32 & mask) * BUCKET


# -- context (CPU: _tok, _setup) --------------------------------------------------------------
@helper
def _tok(tok, t, y, x, i, H, W, act):
    """Token at (t, y, x) of every lane if it precedes i, else -1 (t, y, x, i scalars)."""
    ok = (t >= 0) & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    j = (t * H + y) * W + x
    ok = ok & (j < i)
    v = tl.load(tok + tl.where(ok, j, 0), mask=_band(act, ok), other=0).to(tl.int64)
    return tl.where(ok, v, -1)


@helper
def _permv(perm_ptr, a):
    return tl.where(a >= 0, tl.load(perm_ptr + tl.where(a >= 0, a, 0)).to(tl.int64), -1)


@helper
def _setup(tok, i, H, W, perm_ptr, scr, NLP, lane, act):
    hw = H * W
    t = i // hw
    r = i - t * hw
    y = r // W
    x = r - y * W
    a = _tok(tok, t - 1, y, x, i, H, W, act)
    a2 = _tok(tok, t - 2, y, x, i, H, W, act)
    a3 = _tok(tok, t - 3, y, x, i, H, W, act)
    lt = _tok(tok, t, y, x - 1, i, H, W, act)
    u = _tok(tok, t, y - 1, x, i, H, W, act)
    ul = _tok(tok, t, y - 1, x - 1, i, H, W, act)
    ur = _tok(tok, t, y - 1, x + 1, i, H, W, act)
    pal = _tok(tok, t - 1, y, x - 1, i, H, W, act)
    pau = _tok(tok, t - 1, y - 1, x, i, H, W, act)
    pul = _tok(tok, t - 1, y - 1, x - 1, i, H, W, act)
    pur = _tok(tok, t - 1, y - 1, x + 1, i, H, W, act)
    cl = ((lt >= 0) & (lt == pal)).to(tl.int64)
    cu = ((u >= 0) & (u == pau)).to(tl.int64)
    cul = ((ul >= 0) & (ul == pul)).to(tl.int64)
    cur = ((ur >= 0) & (ur == pur)).to(tl.int64)
    aa = ((a >= 0) & (a == a2)).to(tl.int64)
    pos = y * W + x
    # run: frames before t-1 over which (y, x) kept the value a (at most 15)
    run = (a * 0)
    alive = a >= 0
    for s in tl.static_range(15):
        kk = t - 2 - s
        okk = kk >= 0
        v = tl.load(tok + tl.where(okk, (kk * H + y) * W + x, 0),
                    mask=_band(act & alive, okk), other=0).to(tl.int64)
        alive = _band(alive & (v == a), okk)
        run += alive.to(tl.int64)
    rq = tl.minimum(run, 3)
    # b: the last value at (y, x) before frame t-1 that differs from a (-1 if none)
    kb = t - 2 - run
    okb = (a >= 0) & (kb >= 0)
    b = tl.load(tok + tl.where(okb, (kb * H + y) * W + x, 0), mask=act & okb,
                other=0).to(tl.int64)
    b = tl.where(okb, b, -1)
    # rc: copies among the RECENT tokens before i (j is a copy if tok[j] == tok[j - hw])
    j0 = tl.maximum(i - RECENT, hw)
    nc = (a * 0)
    for s in tl.static_range(RECENT):
        j = i - RECENT + s
        okj = j >= j0
        v1 = tl.load(tok + tl.where(okj, j, 0), mask=_band(act, okj), other=0)
        v0 = tl.load(tok + tl.where(okj, j - hw, 0), mask=_band(act, okj), other=0)
        nc += _band(v1 == v0, okj).to(tl.int64)
    rc = tl.where(nc <= 2, 0, tl.where(nc <= 6, 1, tl.where(nc <= 11, 2, 3)))
    la = _permv(perm_ptr, a)
    m = lane >= 0
    z = a * 0
    _sput(scr, NLP, lane, X_TREE + 0, _hmix(z + H2, z), m)
    _sput(scr, NLP, lane, X_TREE + 1, _hmix(_hmix(z + ((2 * H2) & M32), z + 1), a + 1), m)
    _sput(scr, NLP, lane, X_TREE + 2, _hmix(_hmix(z + ((3 * H2) & M32), z + 2), pos + 1), m)
    _sput(scr, NLP, lane, X_TREE + 3, _hmix(_hmix(z + ((4 * H2) & M32), z + 3), a2 + 1), m)
    _sput(scr, NLP, lane, X_TREE + 4, _hmix(_hmix(z + ((5 * H2) & M32), z + 4), a3 + 1), m)
    _sput(scr, NLP, lane, X_TREE + 5,
          _hmix(_hmix(z + ((6 * H2) & M32), z + 5), (la >> 3) + 1), m)
    _sput(scr, NLP, lane, X_TREE + 6,
          _hmix(_hmix(z + ((7 * H2) & M32), z + 6), (la >> 5) + 1), m)
    _sput(scr, NLP, lane, X_CAND + 0, la, m)
    _sput(scr, NLP, lane, X_CAND + 1, _permv(perm_ptr, lt), m)
    _sput(scr, NLP, lane, X_CAND + 2, _permv(perm_ptr, u), m)
    _sput(scr, NLP, lane, X_CAND + 3, _permv(perm_ptr, b), m)
    _sput(scr, NLP, lane, X_SCTX, (cl + 2 * cu + 4 * aa) * 4 + rc, m)
    _sput(scr, NLP, lane, X_CL, cl, m)
    _sput(scr, NLP, lane, X_CU, cu, m)
    _sput(scr, NLP, lane, X_RC, rc, m)
    _sput(scr, NLP, lane, X_CSEL, ((rq * 2 + cl) * 2 + cu) * 4 + rc, m)
    _sput(scr, NLP, lane, X_CACTX, rq * 8 + cl * 4 + cu * 2 + aa, m)
    _sput(scr, NLP, lane, X_COPY + 0, _hmix(z + ((11 * H2) & M32),
                                    ((((cl * 2 + cu) * 2 + cul) * 2 + cur) * 2 + aa) * 4 + rc), m)
    _sput(scr, NLP, lane, X_COPY + 1, _hmix(z + ((12 * H2) & M32), z + pos + 1), m)
    tl.debug_barrier()


# -- copy node (CPU: _copy_p, _copy_update) ---------------------------------------------------
@helper
def _copy_p(scr, NLP, lane, XC0, CI0, ht, cw, capm, sq_ptr, st_ptr, mask, ccmask, aw, m):
    dot = (lane * 0)
    for k in tl.static_range(NCC):
        j = ((_sget(scr, NLP, lane, X_COPY + k) * H3) & M32 & mask) * BUCKET
        _sput(scr, NLP, lane, CI0 + CI_SLOT + k, j, m)
        xk = (dot * 0)
        if (ccmask >> k) & 1:
            e = _ldu(ht + j) ^ SIGN
            xk = _stretch(e >> 20, st_ptr)
        _sput(scr, NLP, lane, XC0 + k, xk, m)
    _sput(scr, NLP, lane, XC0 + NCC, (dot * 0) + 256, m)
    tl.debug_barrier()
    sel = _sget(scr, NLP, lane, X_CSEL)
    for k in tl.static_range(NCIN):
        dot += tl.load(cw + sel * NCIN + k).to(tl.int64) * _sget(scr, NLP, lane, XC0 + k)
    pm = _squash(dot >> 16, sq_ptr)
    pa, ai = _apm_p(capm, _sget(scr, NLP, lane, X_CACTX), pm, st_ptr)
    _sput(scr, NLP, lane, CI0 + CI_SEL, sel, m)
    _sput(scr, NLP, lane, CI0 + CI_AI, ai, m)
    _sput(scr, NLP, lane, CI0 + CI_PM, pm, m)
    tl.debug_barrier()
    return _final_p(pm, pa, aw)


@helper
def _copy_update(y, scr, NLP, lane, XC0, CI0, ht, cw, capm, rt_ptr, limit, lr, apmr, ccmask,
                 m):
    for k in tl.static_range(NCC):
        if (ccmask >> k) & 1:
            j = _sget(scr, NLP, lane, CI0 + CI_SLOT + k)
            e = _ldu(ht + j) ^ SIGN
            _stu(ht + j, _ctr_update(e, y, limit, rt_ptr) ^ SIGN, m)
    sel = _sget(scr, NLP, lane, CI0 + CI_SEL)
    err = ((y << 12) - _sget(scr, NLP, lane, CI0 + CI_PM)) * lr
    for k in tl.static_range(NCIN):
        ptr = cw + sel * NCIN + k
        v = _clampw(tl.load(ptr).to(tl.int64) + ((_sget(scr, NLP, lane, XC0 + k) * err) >> 14))
        tl.store(ptr, v.to(tl.int32), mask=m)
    ai = _sget(scr, NLP, lane, CI0 + CI_AI)
    v = tl.load(capm + ai).to(tl.int64)
    tl.store(capm + ai, (v + (((y << 16) - v) >> apmr)).to(tl.int32), mask=m)
    tl.debug_barrier()


# -- tree nodes (CPU: _nb_a, _nb_p, _node_p, _node_update) ------------------------------------
@helper
def _nb_a(n):
    return tl.where(n <= 2, n, tl.where(n <= 4, 3, tl.where(n <= 8, 4, 5)))


@helper
def _nb_p(n):
    return tl.where(n == 0, 0, tl.where(n <= 3, 1, tl.where(n <= 15, 2, 3)))


@helper
def _node_p(d, prefix, B, scr, NLP, lane, BKT0, XS, INFO, ht, w, apm, mc, sq_ptr, st_ptr,
            ctxmask, candmask, aw, m):
    """P(bit 1) of the node at depth d (scalar) with per-lane ``prefix``; writes the mixer
    inputs to slots XS.. and the update info to INFO.. (masked by m)."""
    g = d // GROUP
    dd = d - g * GROUP
    local = (1 << dd) | (prefix & ((1 << dd) - 1))
    na = (prefix * 0)
    npos = (prefix * 0)
    for k in tl.static_range(NCTX):
        xk = (prefix * 0)
        if (ctxmask >> k) & 1:
            e = _ldu(ht + _sget(scr, NLP, lane, BKT0 + k) + local) ^ SIGN
            xk = _stretch(e >> 20, st_ptr)
            if k == 1:
                na = e & 1023
            if k == 2:
                npos = e & 1023
        _sput(scr, NLP, lane, XS + k, xk, m)
    on = (prefix * 0)
    onm = (prefix * 0)
    sctx = _sget(scr, NLP, lane, X_SCTX)
    for mm in tl.static_range(NCAND):
        cj = _sget(scr, NLP, lane, X_CAND + mm)
        hit = _band((cj >= 0) & ((cj >> (B - d)) == prefix), ((candmask >> mm) & 1) != 0)
        onm = onm | tl.where(hit, 1 << mm, 0)
        if mm < 3:
            on = on | tl.where(hit, 1 << mm, 0)
        e = _ldu(mc + (mm * NSMALL + sctx) * B + d) ^ SIGN
        s = _stretch(e >> 20, st_ptr)
        xk = tl.where(hit, tl.where(((cj >> (B - 1 - d)) & 1) != 0, s, -s), 0)
        _sput(scr, NLP, lane, XS + NCTX + mm, xk, m)
    _sput(scr, NLP, lane, XS + NCTX + NCAND, (prefix * 0) + 256, m)
    tl.debug_barrier()
    sel = (((d * 8 + on) * 2 + _sget(scr, NLP, lane, X_CL)) * 2
           + _sget(scr, NLP, lane, X_CU)) * 4 + _sget(scr, NLP, lane, X_RC)
    sel2 = B * NSEL1 + (d * 6 + _nb_a(na)) * 4 + _nb_p(npos)
    dot = (prefix * 0)
    for k in tl.static_range(NIN):
        wk = tl.load(w + sel * NIN + k).to(tl.int64) + tl.load(w + sel2 * NIN + k).to(tl.int64)
        dot += wk * _sget(scr, NLP, lane, XS + k)
    pm = _squash(dot >> 16, sq_ptr)
    pa, ai = _apm_p(apm, d * 8 + on, pm, st_ptr)
    _sput(scr, NLP, lane, INFO + I_SEL, sel, m)
    _sput(scr, NLP, lane, INFO + I_SEL2, sel2, m)
    _sput(scr, NLP, lane, INFO + I_AI, ai, m)
    _sput(scr, NLP, lane, INFO + I_PM, pm, m)
    _sput(scr, NLP, lane, INFO + I_LOCAL, local, m)
    _sput(scr, NLP, lane, INFO + I_ONM, onm, m)
    tl.debug_barrier()
    return _final_p(pm, pa, aw)


@helper
def _node_update(d, y, B, scr, NLP, lane, BKT0, XS, INFO, ht, w, apm, mc, rt_ptr, limit,
                 mlimit, lr, apmr, ctxmask, m):
    local = _sget(scr, NLP, lane, INFO + I_LOCAL)
    for k in tl.static_range(NCTX):
        if (ctxmask >> k) & 1:
            j = _sget(scr, NLP, lane, BKT0 + k) + local
            e = _ldu(ht + j) ^ SIGN
            _stu(ht + j, _ctr_update(e, y, limit, rt_ptr) ^ SIGN, m)
    onm = _sget(scr, NLP, lane, INFO + I_ONM)
    sctx = _sget(scr, NLP, lane, X_SCTX)
    for mm in tl.static_range(NCAND):
        cj = _sget(scr, NLP, lane, X_CAND + mm)
        hit = (((cj >> (B - 1 - d)) & 1) == y).to(tl.int64)
        j = (mm * NSMALL + sctx) * B + d
        e = _ldu(mc + j) ^ SIGN
        _stu(mc + j, _ctr_update(e, hit, mlimit, rt_ptr) ^ SIGN, m & (((onm >> mm) & 1) != 0))
    sel = _sget(scr, NLP, lane, INFO + I_SEL)
    sel2 = _sget(scr, NLP, lane, INFO + I_SEL2)
    err = ((y << 12) - _sget(scr, NLP, lane, INFO + I_PM)) * lr
    for k in tl.static_range(NIN):
        dw = (_sget(scr, NLP, lane, XS + k) * err) >> 14
        p1 = w + sel * NIN + k
        tl.store(p1, _clampw(tl.load(p1).to(tl.int64) + dw).to(tl.int32), mask=m)
        p2 = w + sel2 * NIN + k
        tl.store(p2, _clampw(tl.load(p2).to(tl.int64) + dw).to(tl.int32), mask=m)
    ai = _sget(scr, NLP, lane, INFO + I_AI)
    v = tl.load(apm + ai).to(tl.int64)
    tl.store(apm + ai, (v + (((y << 16) - v) >> apmr)).to(tl.int32), mask=m)
    tl.debug_barrier()


@helper
def _n_leaves(lo, size, V, ax):
    r = tl.minimum(tl.maximum(V - lo, 0), size)
    return r - ((ax >= lo) & (ax < lo + size)).to(tl.int64)


@helper
def _split(M, p, nl, nr):
    right = (M * p) >> 12
    right = tl.minimum(tl.maximum(right, nr), M - nl)
    return tl.where(nr == 0, 0, tl.where(nl == 0, M, right))


@helper
def _copy_mass(pc, V):
    return tl.minimum(pc << (PREC - 12), ONE - (V - 1))


@helper
def _set_buckets(d, prefix, scr, NLP, lane, BKT0, mask, m):
    """bkt[k] of the group of depth d for the path through ``prefix`` (its d bits)."""
    g = d // GROUP
    gp = prefix >> (d - g * GROUP)
    for k in tl.static_range(NCTX):
        _sput(scr, NLP, lane, BKT0 + k, _bucket(_sget(scr, NLP, lane, k), g, gp, mask), m)
    tl.debug_barrier()


# -- one token (CPU: _code_token, _full_table) -------------------------------------------------
@helper
def _code_token(leaf_in, q, DECODING: tl.constexpr, B, V, scr, NLP, lane, BKT0, XS0, INFO0,
                XC0, CI0, ht, w, apm, mc, cw, capm, sq_ptr, st_ptr, rt_ptr, mask, limit,
                mlimit, lr, apmr, ctxmask, candmask, ccmask, aw, copy, act):
    """Code the current token of every lane (its context already in scratch): one walk down
    the tree keeping combined masses (tree mass plus the copy mass when the copy leaf ax lies
    below the node), then the updates of active lanes.  Returns (leaf, start, freq)."""
    ax = tl.where(copy != 0, _sget(scr, NLP, lane, 8), -1)
    has_ax = ax >= 0
    axs = tl.where(has_ax, ax, 0)
    pc = _copy_p(scr, NLP, lane, XC0, CI0, ht, cw, capm, sq_ptr, st_ptr, mask, ccmask, aw,
                 act)
    cmass = tl.where(has_ax, _copy_mass(pc, V), 0)
    start = ax * 0
    M = ax * 0 + ONE
    prefix = ax * 0
    for d in range(0, B):
        if d % GROUP == 0:
            _set_buckets(d, prefix, scr, NLP, lane, BKT0, mask, act)
        size = ax * 0 + (1 << (B - 1 - d))
        lo = prefix * 2 * size
        p = _node_p(d, prefix, B, scr, NLP, lane, BKT0, XS0 + d * NIN, INFO0 + d * I_N, ht, w,
                    apm, mc, sq_ptr, st_ptr, ctxmask, candmask, aw, act)
        inside = has_ax & ((axs >> (B - d)) == prefix)
        mt = tl.where(inside, M - cmass, M)
        right = _split(mt, p, _n_leaves(lo, size, V, ax), _n_leaves(lo + size, size, V, ax))
        left = mt - right
        axbit = (axs >> (B - 1 - d)) & 1
        right = tl.where(inside & (axbit != 0), right + cmass, right)
        left = tl.where(inside & (axbit == 0), left + cmass, left)
        if DECODING:
            y = (q >= start + left).to(tl.int64)
        else:
            y = (leaf_in >> (B - 1 - d)) & 1
        start += tl.where(y != 0, left, 0)
        M = tl.where(y != 0, right, left)
        _sput(scr, NLP, lane, INFO0 + d * I_N + I_BIT, y, act)
        prefix = prefix * 2 + y
    tl.debug_barrier()
    _copy_update((prefix == ax).to(tl.int64), scr, NLP, lane, XC0, CI0, ht, cw, capm, rt_ptr,
                 limit, lr, apmr, ccmask, act & has_ax)
    walk = act & (prefix != ax)
    # tree updates along the path, in depth order
    for d in range(0, B):
        if d % GROUP == 0:
            _set_buckets(d, prefix >> (B - d), scr, NLP, lane, BKT0, mask, walk)
        y = _sget(scr, NLP, lane, INFO0 + d * I_N + I_BIT)
        _node_update(d, y, B, scr, NLP, lane, BKT0, XS0 + d * NIN, INFO0 + d * I_N, ht, w, apm,
                     mc, rt_ptr, limit, mlimit, lr, apmr, ctxmask, walk)
    return prefix, start, M


@helper
def _full_table(B, V, scr, NLP, lane, BKT0, XS0, INFO0, XC0, CI0, MS0, ht, w, apm, mc, cw,
                capm, sq_ptr, st_ptr, perm_ptr, tab, mask, ctxmask, candmask, ccmask, aw, copy,
                act):
    """Full V-entry table of the current token of every lane into ``tab`` (lane rows)."""
    ax = tl.where(copy != 0, _sget(scr, NLP, lane, 8), -1)
    has_ax = ax >= 0
    pc = _copy_p(scr, NLP, lane, XC0, CI0, ht, cw, capm, sq_ptr, st_ptr, mask, ccmask, aw,
                 act)
    cmass = tl.where(has_ax, _copy_mass(pc, V), 0)
    _sput(scr, NLP, lane, MS0 + 1, ONE - cmass, act)
    for d in range(0, B):
        size = (ax * 0) + (1 << (B - 1 - d))
        for pr in range(0, 1 << d):
            prefix = (ax * 0) + pr
            node = (1 << d) | pr
            M = _sget(scr, NLP, lane, MS0 + node)
            lo = prefix * 2 * size
            nl = _n_leaves(lo, size, V, ax)
            nr = _n_leaves(lo + size, size, V, ax)
            _set_buckets(d, prefix, scr, NLP, lane, BKT0, mask, act)
            p = _node_p(d, prefix, B, scr, NLP, lane, BKT0, XS0, INFO0, ht, w, apm, mc, sq_ptr,
                        st_ptr, ctxmask, candmask, aw, act)
            right = _split(M, p, nl, nr)
            empty = (nl + nr) == 0
            _sput(scr, NLP, lane, MS0 + 2 * node, tl.where(empty, 0, M - right), act)
            _sput(scr, NLP, lane, MS0 + 2 * node + 1, tl.where(empty, 0, right), act)
            tl.debug_barrier()
    for s in range(0, V):
        ps = tl.load(perm_ptr + s).to(tl.int64)
        f = _sget(scr, NLP, lane, MS0 + (1 << B) + ps)
        f = tl.where(has_ax & (ps == ax), cmass, f)
        tl.store(tab + s, f.to(tl.int32), mask=act)


@triton.jit
def cm_kernel(tok_ptr, toff_ptr, tlen_ptr, cfg_ptr, perm_ptr, inv_ptr, sq_ptr, st_ptr, rt_ptr,
              ht_ptr, w_ptr, apm_ptr, mc_ptr, cw_ptr, capm_ptr, HTS, WS, APMS, MCS, CWS, CAPMS,
              scr, NLP, tab_ptr, start_ptr, freq_ptr, words_ptr, woff_ptr, rst_ptr, rpos_ptr,
              i0, i1, MODE: tl.constexpr, LANES: tl.constexpr):
    lane = (tl.program_id(0) * LANES + tl.arange(0, LANES)).to(tl.int64)
    NLP = NLP.to(tl.int64)
    V = tl.load(cfg_ptr + C_V)
    B = tl.load(cfg_ptr + C_B)
    H = tl.load(cfg_ptr + C_H)
    W = tl.load(cfg_ptr + C_W)
    mask = (tl.full([], 1, tl.int64) << (tl.load(cfg_ptr + C_HTB) - 5)) - 1
    limit = tl.load(cfg_ptr + C_LIMIT)
    mlimit = tl.load(cfg_ptr + C_MLIMIT)
    lr = tl.load(cfg_ptr + C_LR)
    apmr = tl.load(cfg_ptr + C_APMR)
    ctxmask = tl.load(cfg_ptr + C_CTXMASK)
    candmask = tl.load(cfg_ptr + C_CANDMASK)
    ccmask = tl.load(cfg_ptr + C_CCMASK)
    aw = tl.load(cfg_ptr + C_APMW)
    copy = tl.load(cfg_ptr + C_COPY)
    # scratch slots (slot-major): ctx, bkt, xs[B][NIN], info[B][8], xc, cinfo, masses
    BKT0 = NCTXSLOT
    XS0 = BKT0 + NCTX
    INFO0 = XS0 + B * NIN
    XC0 = INFO0 + B * I_N
    CI0 = XC0 + NCIN
    MS0 = CI0 + CI_SLOT + NCC
    toff = tl.load(toff_ptr + lane)
    tlen = tl.load(tlen_ptr + lane).to(tl.int64)
    tok = tok_ptr + toff
    ht = ht_ptr + lane * HTS
    w = w_ptr + lane * WS
    apm = apm_ptr + lane * APMS
    mc = mc_ptr + lane * MCS
    cw = cw_ptr + lane * CWS
    capm = capm_ptr + lane * CAPMS
    if MODE == 2:
        woff = tl.load(woff_ptr + lane)
        state = tl.load(rst_ptr + lane).to(tl.uint64, bitcast=True)
        pos = tl.load(rpos_ptr + lane)
    end = tl.minimum(i1.to(tl.int64), vmax(tlen))
    for i in range(i0.to(tl.int64), end):
        act = i < tlen
        _setup(tok, i, H, W, perm_ptr, scr, NLP, lane, act)
        if MODE == 0 or MODE == 3:
            row = lane * (i1 - i0).to(tl.int64) + (i - i0)
            _full_table(B, V, scr, NLP, lane, BKT0, XS0, INFO0, XC0, CI0, MS0, ht, w, apm, mc,
                        cw, capm, sq_ptr, st_ptr, perm_ptr, tab_ptr + row * V,
                        mask, ctxmask, candmask, ccmask, aw, copy, act)
        if MODE != 3:
            if MODE == 2:
                q = quantile(state, 0)
                leaf, start, freq = _code_token(q * 0, q, True, B, V, scr, NLP, lane, BKT0,
                                                XS0, INFO0, XC0, CI0, ht, w, apm, mc, cw,
                                                capm, sq_ptr, st_ptr, rt_ptr, mask, limit,
                                                mlimit, lr, apmr, ctxmask, candmask, ccmask,
                                                aw, copy, act)
                x = tl.load(inv_ptr + leaf, mask=act, other=0)
                tl.store(tok + i, x.to(tl.int32), mask=act)
                state, pos = advance(state, pos, words_ptr, woff, start, freq, 0, act)
            else:
                xt = tl.load(tok + i, mask=act, other=0)
                leaf_in = tl.load(perm_ptr + xt).to(tl.int64)
                leaf, start, freq = _code_token(leaf_in, leaf_in * 0, False, B, V, scr, NLP,
                                                lane, BKT0, XS0, INFO0, XC0, CI0, ht, w,
                                                apm, mc, cw, capm, sq_ptr, st_ptr, rt_ptr, mask,
                                                limit, mlimit, lr, apmr, ctxmask, candmask,
                                                ccmask, aw, copy, act)
                if MODE == 1:
                    tl.store(start_ptr + toff + i, start.to(tl.int32), mask=act)
                    tl.store(freq_ptr + toff + i, freq.to(tl.int32), mask=act)
        tl.debug_barrier()
    if MODE == 2:
        tl.store(rst_ptr + lane, state.to(tl.int64, bitcast=True))
        tl.store(rpos_ptr + lane, pos)
