"""Kernels of the ``transformer`` and ``lstm`` predictors (spec: ``nacc.neural.intref``;
CPU mirror: ``nacc.kernels.cpu.neural_lanes``, whose packed token tables they read).

The driver (``nacc.kernels.triton.neural``) runs a model as a short sequence of launches
over *jobs* (lane, frame t) -- the frame-level pass of one frame of many lanes together --
and *rows* (job, position p) -- the token head:

* ``lin_kernel``: LIN, an int8 x int8 -> int32 matrix product (``tl.dot``, exact in any
  tiling: every partial sum is an integer below 2**31) plus an int32 addend and the bias,
  then one epilogue: the raw accumulators (int32), ``clamp8(rq(.))``, a lookup table after
  it, or the residual ``ADD`` with a second input;
* ``layer_norm_kernel``: LN of rows (exact floor square root: a float guess corrected by
  integer comparisons);
* ``attention_kernel``: the transformer's windowed attention of one head for a block of
  query positions of one job: scores ``Q . Kc`` as an int8 dot against every key of the
  job's previous frames (keys outside the radius masked), the integer softmax weights
  ``EXPA[...]`` (up to 2**16) split into three int8 digits so the value sum is three exact
  int8 dots;
* ``lstm_cell_kernel``: the lstm gates (window token tables + the h product) and the cell;
* ``head_hidden_kernel``: the head's hidden layer (F part + neighbour tables + match and
  motion evidence);
* ``head_table_kernel``: logits, substitution, copy bonus and ``TABLE`` of one row per
  program, then per MODE: write the table (TABLES), the interval of the known token
  (INTERVALS), or one rANS decode step of the row's lane with the decoded token written back
  (DECODE; with motion counts, the lane's running counts are updated too).

No float decides a value: the only floats are the square root's first guess and nothing
else.  ``//`` in Triton truncates, so floor divisions of signed values are corrected
explicitly (``floordiv``).
"""
import triton
import triton.language as tl

from nacc.neural.config import LOGIT_CLAMP, MIX_BITS, MOTION_ROW

from .common import const, helper, vcumsum, vmax, vmin, vsum
from .rans import advance, quantile

ZLIM = const(LOGIT_CLAMP)                          # the head's logit clamp
MIXB = const(MIX_BITS)                             # the mixture's fixed-point bits
MROW = const(MOTION_ROW)                           # a token's motion row (20 entries)


@helper
def rq(a, m, s):
    """(a * m + 2**(s-1)) >> s in int64 (arithmetic shift: floor)."""
    a = a.to(tl.int64)
    s = s.to(tl.int64)
    return (a * m.to(tl.int64) + ((s * 0 + 1) << (s - 1))) >> s


@helper
def clamp8(v):
    return tl.minimum(tl.maximum(v, -127), 127)


@helper
def floordiv(num, den):
    """floor(num / den) for den > 0 (Triton's ``//`` truncates towards zero)."""
    q = num // den
    return tl.where(num - q * den < 0, q - 1, q)


# ----------------------------------------------------------------------------- LIN
@triton.jit
def lin_kernel(x_ptr, w_ptr, add_ptr, b_ptr, m_ptr, s_ptr, lut_ptr, res_ptr, out_ptr,
               M, N, K, a1, a2,
               HAS_ADD: tl.constexpr, OUT: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """``x`` int8 [M, K], ``w`` int8 [N, K] (row-major), ``add`` int32 [M, N] (HAS_ADD),
    ``b`` int32 [N]: ``acc = x @ w.T + add + b``.  OUT 0: ``out`` int32 = acc; 1: int8
    ``clamp8(rq(acc, m, s))``; 2: ``lut[that + 128]``; 3: ``ADD(res, that; a1, a2)``."""
    pid_m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mm = rm < M
    nm = rn < N
    acc = tl.full((BM, BN), 0, tl.int32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        km = rk < K
        x = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=mm[:, None] & km[None, :],
                    other=0)
        w = tl.load(w_ptr + rn[None, :] * K + rk[:, None], mask=nm[None, :] & km[:, None],
                    other=0)
        acc += tl.dot(x, w, out_dtype=tl.int32)
    b = tl.load(b_ptr + rn, mask=nm, other=0)
    a = acc.to(tl.int64) + b.to(tl.int64)[None, :]
    om = mm[:, None] & nm[None, :]
    if HAS_ADD:
        a += tl.load(add_ptr + rm[:, None] * N + rn[None, :], mask=om, other=0).to(tl.int64)
    if OUT == 0:
        tl.store(out_ptr + rm[:, None] * N + rn[None, :], a.to(tl.int32), mask=om)
    else:
        m = tl.load(m_ptr + rn, mask=nm, other=0)
        s = tl.load(s_ptr + rn, mask=nm, other=1)
        y = clamp8(rq(a, m[None, :], s[None, :]))
        if OUT == 2:
            y = tl.load(lut_ptr + y + 128, mask=om, other=0).to(tl.int64)
        if OUT == 3:
            r = tl.load(res_ptr + rm[:, None] * N + rn[None, :], mask=om, other=0).to(tl.int64)
            y = clamp8((r * a1 + y * a2 + 32768) >> 16)
        tl.store(out_ptr + rm[:, None] * N + rn[None, :], y.to(tl.int8), mask=om)


# ----------------------------------------------------------------------------- LN
@triton.jit
def layer_norm_kernel(x_ptr, g_ptr, b_ptr, out_ptr, M, D,
                      BR: tl.constexpr, BD: tl.constexpr):
    """LN of every row of ``x`` int8 [M, D] -> ``out`` int8 (spec primitive LN)."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    rm = rows < M
    cm = cols < D
    om = rm[:, None] & cm[None, :]
    x = tl.load(x_ptr + rows[:, None] * D + cols[None, :], mask=om, other=0).to(tl.int64)
    sm = vsum(x, 1)
    c = tl.where(om, D * x - sm[:, None], 0)
    var = vsum(c * c, 1) // D
    r = tl.sqrt(var.to(tl.float64)).to(tl.int64)      # a guess; the integer tests decide
    r = tl.where(r * r > var, r - 1, r)
    r = tl.where(r * r > var, r - 1, r)
    r = tl.where((r + 1) * (r + 1) <= var, r + 1, r)
    r = tl.where((r + 1) * (r + 1) <= var, r + 1, r)
    g = tl.load(g_ptr + cols, mask=cm, other=0).to(tl.int64)
    b = tl.load(b_ptr + cols, mask=cm, other=0).to(tl.int64)
    den = tl.maximum(r, 1) * 65536
    y = floordiv(c * g[None, :] + (r * 32768)[:, None], den[:, None])
    y = tl.where((r == 0)[:, None], 0, y) + b[None, :]
    tl.store(out_ptr + rows[:, None] * D + cols[None, :], clamp8(y).to(tl.int8), mask=om)


# ----------------------------------------------------------------------------- attention
@helper
def _att_scores(q, kt_ptr, ctx_ptr, bt_ptr, by_ptr, bx_ptr, j, hd, k0, y, x, di, dmask,
                HW, W, D, DH, KF, R, att_m, att_s, BKEY: tl.constexpr):
    """Scores (int64 [BQ, BKEY]) of keys k0..k0+BKEY-1 of job j, head hd, their validity
    and tokens."""
    nk = KF * HW
    kk = k0 + tl.arange(0, BKEY)
    km = kk < nk
    dt0 = kk // HW
    pk = kk % HW
    yk = pk // W
    xk = pk % W
    tok = tl.load(ctx_ptr + j * nk + kk, mask=km, other=0).to(tl.int64)
    kt = tl.load(kt_ptr + tok[None, :] * D + hd * DH + di[:, None],
                 mask=dmask[:, None] & km[None, :], other=0)
    raw = tl.dot(q, kt, out_dtype=tl.int32)
    ddy = yk[None, :] - y[:, None]
    ddx = xk[None, :] - x[:, None]
    valid = km[None, :] & (ddy <= R) & (ddy >= -R) & (ddx <= R) & (ddx >= -R)
    bias = (tl.load(bt_ptr + hd * KF + dt0, mask=km, other=0)[None, :].to(tl.int64)
            + tl.load(by_ptr + hd * (2 * R + 1) + ddy + R, mask=valid, other=0).to(tl.int64)
            + tl.load(bx_ptr + hd * (2 * R + 1) + ddx + R, mask=valid, other=0).to(tl.int64))
    s = rq(raw, att_m, att_s) + bias
    return s, valid, tok, km


@triton.jit
def attention_kernel(q_ptr, ctx_ptr, kt_ptr, vt_ptr, bt_ptr, by_ptr, bx_ptr, exp_ptr, out_ptr,
                     HW, W, D, DH, KF, R, NE, att_m, att_s,
                     BQ: tl.constexpr, BKEY: tl.constexpr, BDH: tl.constexpr):
    """Grid (jobs, heads, query blocks).  ``q`` int8 [jobs * HW, D] (this layer's queries),
    ``ctx`` int32 [jobs, KF, HW] (tokens of frames t-1..t-KF, pad id before frame 0),
    ``kt`` / ``vt`` int8 [V+1, D] (keys and values of every token), ``bt`` [heads, KF],
    ``by`` / ``bx`` [heads, 2R+1] int32 position biases, ``exp`` int32 [NE] -> ``out`` int8
    [jobs * HW, D] (columns of head hd)."""
    j = tl.program_id(0).to(tl.int64)
    hd = tl.program_id(1).to(tl.int64)
    qp = tl.program_id(2).to(tl.int64) * BQ + tl.arange(0, BQ)
    qm = qp < HW
    di = tl.arange(0, BDH)
    dmask = di < DH
    y = qp // W
    x = qp % W
    q = tl.load(q_ptr + (j * HW + qp)[:, None] * D + hd * DH + di[None, :],
                mask=qm[:, None] & dmask[None, :], other=0)
    nk = KF * HW
    smax = tl.full((BQ,), -(1 << 62), tl.int64)
    for k0 in range(0, nk, BKEY):
        s, valid, tok, km = _att_scores(q, kt_ptr, ctx_ptr, bt_ptr, by_ptr, bx_ptr, j, hd, k0,
                                        y, x, di, dmask, HW, W, D, DH, KF, R, att_m, att_s,
                                        BKEY)
        smax = tl.maximum(smax, vmax(tl.where(valid, s, -(1 << 62)), 1))
    wsum = tl.full((BQ,), 0, tl.int64)
    num = tl.full((BQ, BDH), 0, tl.int64)
    for k0 in range(0, nk, BKEY):
        s, valid, tok, km = _att_scores(q, kt_ptr, ctx_ptr, bt_ptr, by_ptr, bx_ptr, j, hd, k0,
                                        y, x, di, dmask, HW, W, D, DH, KF, R, att_m, att_s,
                                        BKEY)
        e = tl.load(exp_ptr + tl.minimum(smax[:, None] - s, NE - 1), mask=valid, other=0)
        wsum += vsum(e.to(tl.int64), 1)
        vv = tl.load(vt_ptr + tok[:, None] * D + hd * DH + di[None, :],
                     mask=km[:, None] & dmask[None, :], other=0)
        # e <= 2**16: three base-128 digits, each an int8, so the sum is three int8 dots
        e_hi = (e >> 14).to(tl.int8)
        e_mid = ((e >> 7) & 127).to(tl.int8)
        e_lo = (e & 127).to(tl.int8)
        num += (tl.dot(e_hi, vv, out_dtype=tl.int32).to(tl.int64) * 16384
                + tl.dot(e_mid, vv, out_dtype=tl.int32).to(tl.int64) * 128
                + tl.dot(e_lo, vv, out_dtype=tl.int32).to(tl.int64))
    den = tl.maximum(2 * wsum, 1)
    o = clamp8(floordiv(2 * num + wsum[:, None], den[:, None]))
    tl.store(out_ptr + (j * HW + qp)[:, None] * D + hd * DH + di[None, :], o.to(tl.int8),
             mask=qm[:, None] & dmask[None, :])


# ----------------------------------------------------------------------------- lstm
@triton.jit
def lstm_cell_kernel(ctx_ptr, tab_ptr, hacc_ptr, m_ptr, s_ptr, sig_ptr, tanh_ptr, h_ptr, c_ptr,
                     ROWS, HW, W, D, KF, R, PAD,
                     BR: tl.constexpr, BD: tl.constexpr):
    """One lstm step for rows (job, p): gates = ``hacc`` (int32 [rows, 4D]: bias + the h
    product) + the window's token table rows ``tab`` (int32 [n_window, V+1, 4D]); then the
    cell of the spec.  ``h`` int8 and ``c`` int32 [rows, D] are updated in place."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    rm = rows < ROWS
    cm = cols < D
    om = rm[:, None] & cm[None, :]
    j = rows // HW
    p = rows % HW
    y = p // W
    x = p % W
    h = HW // W
    d4 = 4 * D
    base = rows[:, None] * d4 + cols[None, :]
    gi = tl.load(hacc_ptr + base, mask=om, other=0).to(tl.int64)
    gf = tl.load(hacc_ptr + base + D, mask=om, other=0).to(tl.int64)
    gg = tl.load(hacc_ptr + base + 2 * D, mask=om, other=0).to(tl.int64)
    go = tl.load(hacc_ptr + base + 3 * D, mask=om, other=0).to(tl.int64)
    n_side = 2 * R + 1
    for slot in range(0, KF * n_side * n_side):
        dt = slot // (n_side * n_side)
        dy = (slot // n_side) % n_side - R
        dx = slot % n_side - R
        yy = y + dy
        xx = x + dx
        inside = rm & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < W)
        tok = tl.load(ctx_ptr + (j * KF + dt) * HW + yy * W + xx, mask=inside, other=0)
        tok = tl.where(inside, tok, PAD).to(tl.int64)
        tb = tab_ptr + (slot * (PAD + 1) + tok)[:, None] * d4 + cols[None, :]
        gi += tl.load(tb, mask=om, other=0).to(tl.int64)
        gf += tl.load(tb + D, mask=om, other=0).to(tl.int64)
        gg += tl.load(tb + 2 * D, mask=om, other=0).to(tl.int64)
        go += tl.load(tb + 3 * D, mask=om, other=0).to(tl.int64)
    ig = tl.load(sig_ptr + clamp8(rq(gi, tl.load(m_ptr + cols, mask=cm, other=0)[None, :],
                                     tl.load(s_ptr + cols, mask=cm, other=1)[None, :])) + 128,
                 mask=om, other=0).to(tl.int64)
    fg = tl.load(sig_ptr + clamp8(rq(gf, tl.load(m_ptr + D + cols, mask=cm, other=0)[None, :],
                                     tl.load(s_ptr + D + cols, mask=cm, other=1)[None, :]))
                 + 128, mask=om, other=0).to(tl.int64)
    tg = tl.load(tanh_ptr + clamp8(rq(gg, tl.load(m_ptr + 2 * D + cols, mask=cm, other=0)[None, :],
                                      tl.load(s_ptr + 2 * D + cols, mask=cm, other=1)[None, :]))
                 + 128, mask=om, other=0).to(tl.int64)
    og = tl.load(sig_ptr + clamp8(rq(go, tl.load(m_ptr + 3 * D + cols, mask=cm, other=0)[None, :],
                                     tl.load(s_ptr + 3 * D + cols, mask=cm, other=1)[None, :]))
                 + 128, mask=om, other=0).to(tl.int64)
    cptr = c_ptr + rows[:, None] * D + cols[None, :]
    c = tl.load(cptr, mask=om, other=0).to(tl.int64)
    c = ((fg * c + 64) >> 7) + ((ig * tg + 8) >> 4)
    c = tl.minimum(tl.maximum(c, -32768), 32767)
    tc = tl.minimum(tl.maximum((c + 32) >> 6, -128), 127)
    th = tl.load(tanh_ptr + tc + 128, mask=om, other=0).to(tl.int64)
    hv = clamp8((og * th + 64) >> 7)
    tl.store(cptr, c.to(tl.int32), mask=om)
    tl.store(h_ptr + rows[:, None] * D + cols[None, :], hv.to(tl.int8), mask=om)


# ----------------------------------------------------------------------------- head
@helper
def _tok(vid_ptr, lane, t, yy, xx, T, H, W, PAD, mask):
    """Tokens of frame t (scalar or vector) of ``lane`` at (yy, xx); pad id off the frame,
    before frame 0 or where ``mask`` is False."""
    # (a scalar comparison is broadcast first: the interpreter cannot mask with a
    # vector & 0-d bool)
    inside = mask & (t + yy * 0 >= 0) & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    v = tl.load(vid_ptr + ((lane * T + t) * H + yy) * W + xx, mask=inside, other=0)
    return tl.where(inside, v, PAD).to(tl.int64)


@triton.jit
def head_hidden_kernel(vid_ptr, jobs_ptr, fpart_ptr, mot_ptr, nbo_ptr, nbt_ptr, evw_ptr,
                       m1_ptr, s1_ptr, act_ptr, u_ptr,
                       P0, NP, T, H, W, V, HID, NEV, MCLAMP,
                       MOT_BY_LANE: tl.constexpr, BH: tl.constexpr):
    """Hidden layer u (int8 [rows, HID]) of the head, one row (job j, position P0 + r) per
    program: ``fpart`` int32 [jobs, H*W, HID] (F part + bias) + neighbour token tables
    ``nbt`` int32 [6, V+1, HID] (offsets ``nbo`` int32 [6, 2]) + evidence columns ``evw``
    int32 [NEV = 18 (+ 22), HID]; motion rows ``mot`` int32 (MOTION_ROW per row, or per lane when
    MOT_BY_LANE) read when MCLAMP > 0."""
    row = tl.program_id(0).to(tl.int64)
    j = row // NP
    r = row % NP
    p = P0 + r
    lane = tl.load(jobs_ptr + 2 * j).to(tl.int64)
    t = tl.load(jobs_ptr + 2 * j + 1).to(tl.int64)
    y = p // W
    x = p % W
    hw = H * W
    hh = tl.arange(0, BH)
    hm = hh < HID
    acc = tl.load(fpart_ptr + (j * hw + p) * HID + hh, mask=hm, other=0).to(tl.int64)
    sl = tl.arange(0, 8)
    sm = sl < 6
    ndy = tl.load(nbo_ptr + 2 * sl, mask=sm, other=0)
    ndx = tl.load(nbo_ptr + 2 * sl + 1, mask=sm, other=0)
    nt = _tok(vid_ptr, lane, t, y + ndy, x + ndx, T, H, W, V, sm)
    acc += vsum(tl.load(nbt_ptr + ((sl * (V + 1) + nt) * HID)[:, None] + hh[None, :],
                        mask=sm[:, None] & hm[None, :], other=0).to(tl.int64))
    # evidence columns: 18 match flags (left, then upper neighbour; 3x3 shifts row-major)
    c = tl.arange(0, 64)
    mi = c // 9
    k = c % 9
    cy = y - mi
    cx = x + mi - 1
    py = cy + k // 3 - 1
    px = cx + k % 3 - 1
    ok = (c < 18) & (t + c * 0 >= 1) & (cy >= 0) & (cy < H) & (cx >= 0) & (cx < W) \
        & (py >= 0) & (py < H) & (px >= 0) & (px < W)
    cur = tl.load(vid_ptr + ((lane * T + t) * H + cy) * W + cx, mask=ok, other=0)
    prv = tl.load(vid_ptr + ((lane * T + t - 1) * H + py) * W + px, mask=ok, other=-1)
    ev = tl.where(ok & (cur == prv), 1, 0).to(tl.int64)
    if MCLAMP > 0:
        if MOT_BY_LANE:
            mrow = mot_ptr + lane * MROW
        else:
            mrow = mot_ptr + row * MROW
        m16 = tl.arange(0, 16)
        best0 = vmax(tl.load(mrow + m16, mask=m16 < 9, other=0).to(tl.int64))
        best1 = vmax(tl.load(mrow + 10 + m16, mask=m16 < 9, other=0).to(tl.int64))
        q = c - 18
        grp = q // 11
        kk = q % 11
        inm = (c >= 18) & (c < 40)
        cnt = tl.load(mrow + grp * 10 + tl.minimum(kk, 9), mask=inm, other=0).to(tl.int64)
        best = tl.where(grp == 0, best0, best1)
        feat = tl.where(kk < 9, best - cnt, tl.where(kk == 9, best, cnt - best))
        ev = tl.where(inm, tl.minimum(feat, MCLAMP), ev)
    evw = tl.load(evw_ptr + c[:, None] * HID + hh[None, :], mask=(c < NEV)[:, None] & hm[None, :],
                  other=0).to(tl.int64)
    acc += vsum(ev[:, None] * evw)
    m1 = tl.load(m1_ptr + hh, mask=hm, other=0)
    s1 = tl.load(s1_ptr + hh, mask=hm, other=1)
    u = tl.load(act_ptr + clamp8(rq(acc, m1, s1)) + 128, mask=hm, other=0)
    tl.store(u_ptr + row * HID + hh, u.to(tl.int8), mask=hm)


@triton.jit
def head_table_kernel(zf_ptr, vid_ptr, jobs_ptr, cdy_ptr, cdx_ptr, om_ptr, os_ptr,
                      subt_ptr, subm_ptr, subs_ptr, cb_ptr, exp_ptr, ker_ptr,
                      tab_ptr, toff_ptr, start_ptr, freq_ptr,
                      words_ptr, woff_ptr, rst_ptr, rpos_ptr, mot_ptr,
                      P0, NP, T, H, W, V, NOUT, NE, P, SHIFT, MCLAMP,
                      MODE: tl.constexpr, SUBST: tl.constexpr, COPY_MAX: tl.constexpr,
                      MIX: tl.constexpr, BV: tl.constexpr):
    """The table of row (job j, position P0 + r), one row per program, from ``zf`` int32
    [rows, NOUT] (the accumulators of head.l2 | head.cp [| head.sg] [| head.mix] with their
    biases): logits, substitution (SUBST), copy bonus over the 15 candidate slots (offsets
    ``cdy``, ``cdx`` int32 [16]; slots 6.. read frame t-1), ``TABLE`` or (MIX) the mixture
    table over the kernel ``ker`` int32 [V, V].  MODE TABLES: ``tab`` int32
    [rows, V]; INTERVALS: start/freq at ``toff[lane] + t * H*W + p``; DECODE: one rANS step
    of the lane (``rst``/``rpos`` by lane), the token written into ``vid``, and with
    MCLAMP > 0 the lane's motion row ``mot`` (cur_0..8, n_cur) advanced."""
    row = tl.program_id(0).to(tl.int64)
    j = row // NP
    p = P0 + row % NP
    lane = tl.load(jobs_ptr + 2 * j).to(tl.int64)
    t = tl.load(jobs_ptr + 2 * j + 1).to(tl.int64)
    y = p // W
    x = p % W
    v = tl.arange(0, BV)
    vm = v < V
    lim = ZLIM
    zrow = zf_ptr + row * NOUT
    z = rq(tl.load(zrow + v, mask=vm, other=0), tl.load(om_ptr + v, mask=vm, other=0),
           tl.load(os_ptr + v, mask=vm, other=1))
    z = tl.minimum(tl.maximum(z, -lim), lim)
    sl = tl.arange(0, 16)
    slm = sl < 15
    cdy = tl.load(cdy_ptr + sl, mask=slm, other=0)
    cdx = tl.load(cdx_ptr + sl, mask=slm, other=0)
    cand = _tok(vid_ptr, lane, t - (sl >= 6).to(tl.int64), y + cdy, x + cdx, T, H, W, V, slm)
    real = slm & (cand != V)
    bon = rq(tl.load(zrow + V + sl, mask=slm, other=0), tl.load(om_ptr + V + sl, mask=slm, other=0),
             tl.load(os_ptr + V + sl, mask=slm, other=1))
    bon = tl.minimum(tl.maximum(bon, -lim), lim)
    hit = real[:, None] & (cand[:, None] == v[None, :])           # [16, BV]
    if SUBST:
        g = clamp8(rq(tl.load(zrow + V + 15 + sl, mask=slm, other=0),
                      tl.load(om_ptr + V + 15 + sl, mask=slm, other=0),
                      tl.load(os_ptr + V + 15 + sl, mask=slm, other=1)))
        sub = tl.load(subt_ptr + cand[:, None] * V + v[None, :], mask=real[:, None] & vm[None, :],
                      other=0).to(tl.int64)
        acc = vsum(tl.where(real[:, None], g[:, None] * sub, 0))
        zs = rq(acc, tl.load(subm_ptr + v, mask=vm, other=0),
                tl.load(subs_ptr + v, mask=vm, other=1))
        z += tl.minimum(tl.maximum(zs, -lim), lim)
    cbv = tl.load(cb_ptr + v, mask=vm, other=0).to(tl.int64)
    if COPY_MAX:
        none = -(1 << 40)
        best = vmax(tl.where(hit, bon[:, None], none))
        z += tl.where(best > none, best + cbv, 0)
    else:
        z += vsum(tl.where(hit, bon[:, None], 0)) + vsum(hit.to(tl.int64)) * cbv
    zmax = vmax(tl.where(vm, z, -(1 << 62)))
    e = tl.load(exp_ptr + tl.minimum(zmax - z, NE - 1), mask=vm, other=0).to(tl.int64)
    tot = vsum(e)
    one = (t * 0 + 1) << P
    if MIX:
        # the mixture table: logits y of fresh (column XO) and the slots (XO + 1 + slot)
        xo = V + 15 + (15 if SUBST else 0)
        y0 = rq(tl.load(zrow + xo).to(tl.int64), tl.load(om_ptr + xo).to(tl.int64),
                tl.load(os_ptr + xo).to(tl.int64))
        y0 = tl.minimum(tl.maximum(y0, -lim), lim)
        yc = rq(tl.load(zrow + xo + 1 + sl, mask=slm, other=0),
                tl.load(om_ptr + xo + 1 + sl, mask=slm, other=0),
                tl.load(os_ptr + xo + 1 + sl, mask=slm, other=1))
        yc = tl.minimum(tl.maximum(yc, -lim), lim)
        ymax = tl.maximum(y0, vmax(tl.where(real, yc, -(1 << 62))))
        w0 = tl.load(exp_ptr + tl.minimum(ymax - y0, NE - 1)).to(tl.int64)
        wc = tl.where(real, tl.load(exp_ptr + tl.minimum(ymax - yc, NE - 1), mask=real,
                                    other=0), 0).to(tl.int64)
        wsum = w0 + vsum(wc)
        w0 = (w0 << 16) // wsum
        wc = (wc << 16) // wsum
        ker = tl.load(ker_ptr + cand[:, None] * V + v[None, :], mask=real[:, None] & vm[None, :],
                      other=0).to(tl.int64)
        mix = (w0 * ((e * ((one * 0 + (1 << (16 + MIXB))) // tot)) >> 16)
               + vsum(wc[:, None] * ker))
        mix = tl.where(vm, mix, 0)
        mmax = vmax(mix)
        first = vmin(tl.where(vm & (mix == mmax), v, BV))
        f = tl.where(vm, 1 + mix * (one - V) // vsum(mix), 0)
    else:
        # TABLE(z)
        first = vmin(tl.where(vm & (z == zmax), v, BV))
        f = tl.where(vm, 1 + e * (one - V) // tot, 0)
    f += tl.where(v == first, one - vsum(f), 0)
    if MODE == 0:
        tl.store(tab_ptr + row * V + v, f.to(tl.int32), mask=vm)
    else:
        hw = H * W
        if MODE == 1:
            sym = tl.load(vid_ptr + ((lane * T + t) * H + y) * W + x).to(tl.int64)
            out = tl.load(toff_ptr + lane) + t * hw + p
            tl.store(start_ptr + out, vsum(tl.where(v < sym, f, 0)).to(tl.int32))
            tl.store(freq_ptr + out, vsum(tl.where(v == sym, f, 0)).to(tl.int32))
        else:
            woff = tl.load(woff_ptr + lane)
            state = tl.load(rst_ptr + lane).to(tl.uint64, bitcast=True)
            pos = tl.load(rpos_ptr + lane)
            qn = quantile(state, SHIFT)
            cum = vcumsum(f)
            sym = tl.minimum(vsum((vm & (cum <= qn)).to(tl.int64)), V - 1)
            start = vsum(tl.where(v < sym, f, 0))
            freq = vsum(tl.where(v == sym, f, 0))
            state, pos = advance(state, pos, words_ptr, woff, start, freq, SHIFT, p >= 0)
            tl.store(rst_ptr + lane, state.to(tl.int64, bitcast=True))
            tl.store(rpos_ptr + lane, pos)
            tl.store(vid_ptr + ((lane * T + t) * H + y) * W + x, sym.to(tl.int32))
            if MCLAMP > 0:
                # motion_push: the 3x3 shifts (row-major) of frame t-1 that equal sym
                k = tl.arange(0, 16)
                km = k < 9
                py = y + k // 3 - 1
                px = x + k % 3 - 1
                ok = km & (t + k * 0 >= 1) & (py >= 0) & (py < H) & (px >= 0) & (px < W)
                prv = tl.load(vid_ptr + ((lane * T + t - 1) * H + py) * W + px, mask=ok,
                              other=-1)
                inc = tl.where(ok & (prv == sym), 1, 0) + tl.where(k == 9, 1, 0)
                mrow = mot_ptr + lane * MROW + k
                mv = tl.load(mrow, mask=k < 10, other=0)
                tl.store(mrow, mv + inc.to(tl.int32), mask=k < 10)
