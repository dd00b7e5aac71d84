"""Kernels of the ``gpt`` predictor (spec: the module docstring of ``nacc.gpt.intref``, A = 8).

The driver (``nacc.kernels.triton.gpt``) runs the model over *rows* (tokens of any lanes,
back to back: a window pass gives a lane all its window's rows, a KV-cache step one row) as
a short sequence of launches per layer:

* ``ln_quant_kernel``: ``QUANT(LN(x))`` of each row (the residual stream ``x`` int64, the
  LayerNorm in integers, its output quantized in the same program: int8 ``q``, ``mu``, ``eu``);
* ``quant_kernel``: ``QUANT`` of rows of int32 values (attention outputs, GELU outputs);
* ``lin_kernel``: ``LIN``'s product ``q @ w`` (int8 x int8 ``tl.dot``, int32 accumulator:
  ``|acc| < 127 * 127 * K < 2**31``) and its requantization in int64, then one epilogue:
  store (``EPI`` 0), residual ``x = clamp32(x + y)`` (1) or ``GELU`` through its table (2);
* ``qkv_kernel``: per row and head, ``QUANT`` of the query (kept for the attention) and of
  the key, written with the raw value into the lane's KV cache at the row's position;
* ``attention_kernel``: a block of query rows of one lane and head against keys
  ``0 .. position`` of its cache: int8 ``q . k`` (``tl.dot``), the two ``RQ`` of the
  scores, the max, weights ``EXPA[...]`` (a gather), ``Z``, and ``sum w v`` exactly: ``w``
  (<= 2**16) in three base-128 digits and ``v`` (int32) in five (the top one signed), fifteen
  int8 dots combined in int64, then ``(2 sum + Z) // (2 Z)``;
* ``table_kernel``: ``TABLE`` of logits rows (``EXPT`` gathers, precision 24): the full
  table (``MODE`` TABLES) or the interval of the row's known symbol (INTERVALS).

No float decides anything: the one float is the LayerNorm square root's first guess, which
integer comparisons then correct to the floor square root.  Triton's ``//`` truncates, so
floor divisions of signed values go through ``floordiv``.
"""
import triton
import triton.language as tl

from nacc.gpt.intref import AMB, FRAC, GELU_RANGE, GELU_STEP, TABLE_PRECISION

from .common import const, helper, vcumsum, vmax, vmin, vsum

AMB_ = const(AMB)
I32MAX = const(2**31 - 1)
GLIM = const(GELU_RANGE << FRAC)                  # GELU is the identity / zero beyond
GSTEP = const(GELU_STEP)
GMID = const(GELU_RANGE << 10)                    # GT index of 0
GHALF = const(1 << (GELU_STEP - 1))
GMASK = const((1 << GELU_STEP) - 1)
TOTAL = const(1 << TABLE_PRECISION)
TABLES_ = const(0)
INTERVALS_ = const(1)


@helper
def floordiv(num, den):
    """floor(num / den) for den > 0 (Triton's ``//`` truncates towards zero)."""
    q = num // den
    return tl.where(num - q * den < 0, q - 1, q)


@helper
def clamp32(v):
    return tl.minimum(tl.maximum(v, -I32MAX), I32MAX)


@helper
def rq(t, m, s):
    """``(t * m + 2**(s - 1)) >> s`` in int64 (``s >= 1``; an arithmetic shift floors)."""
    t = t.to(tl.int64)
    s = s.to(tl.int64)
    return (t * m.to(tl.int64) + ((s * 0 + 1) << (s - 1))) >> s


@helper
def bitlen(a):
    """bit_length of each entry of a 1-D block of non-negative int64 values: the count of
    shifts 0..63 that leave it non-zero (integer compares only)."""
    sh = tl.arange(0, 64).to(tl.int64)
    return vsum(((a[:, None] >> sh[None, :]) > 0).to(tl.int64), 1)


@helper
def quant_row(u, mask, A: tl.constexpr):
    """QUANT of each row of the int64 block ``u`` [R, C] (masked entries ignored): int8 q
    and the rows' ``m``, ``e`` (int64)."""
    a = vmax(tl.where(mask, tl.abs(u), 0), 1)
    e = tl.maximum(bitlen(a) - AMB_, 0)
    m = (a >> e) + 1
    sa = (m << e)[:, None]
    q = floordiv(u * (1 << A) + sa, 2 * sa)
    qm = (1 << (A - 1)) - 1
    q = tl.minimum(tl.maximum(q, -qm), qm)
    return q.to(tl.int8), m, e


@triton.jit
def ln_quant_kernel(x_ptr, g_ptr, b_ptr, q_ptr, mu_ptr, eu_ptr, M, D, EPS,
                    A: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    """``x`` int64 [M, D] -> ``QUANT(LN(x; g, b))``: ``q`` int8 [M, D], ``mu``/``eu`` int32 [M]."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    rm = rows < M
    cm = cols < D
    om = rm[:, None] & cm[None, :]
    x = tl.load(x_ptr + rows[:, None] * D + cols[None, :], mask=om, other=0).to(tl.int64)
    e = bitlen(vmax(tl.abs(x), 1)) - 20
    left = tl.maximum(-e, 0)
    right = tl.maximum(e, 0)
    xs = (x << left[:, None]) >> right[:, None]
    c = tl.where(om, xs - floordiv(vsum(xs, 1), D)[:, None], 0)
    var = vsum(c * c, 1) // D
    ve = tl.where(e >= 0, (left * 0 + EPS) >> (2 * right), (left * 0 + EPS) << (2 * left))
    n = var + ve
    r = tl.sqrt(n.to(tl.float64)).to(tl.int64)       # a guess; integer tests decide
    for _ in tl.static_range(4):
        r = tl.where(r * r > n, r - 1, r)
        r = tl.where((r + 1) * (r + 1) <= n, r + 1, r)
    g = tl.load(g_ptr + cols, mask=cm, other=0).to(tl.int64)
    b = tl.load(b_ptr + cols, mask=cm, other=0).to(tl.int64)
    safe = tl.maximum(r, 1)[:, None]
    y = tl.where((r > 0)[:, None], floordiv(2 * c * g[None, :] + safe, 2 * safe), 0)
    y = clamp32(y + b[None, :])
    q, m, ex = quant_row(y, om, A)
    tl.store(q_ptr + rows[:, None] * D + cols[None, :], q, mask=om)
    tl.store(mu_ptr + rows, m.to(tl.int32), mask=rm)
    tl.store(eu_ptr + rows, ex.to(tl.int32), mask=rm)


@triton.jit
def quant_kernel(u_ptr, q_ptr, mu_ptr, eu_ptr, M, K,
                 A: tl.constexpr, BR: tl.constexpr, BK: tl.constexpr):
    """``QUANT`` of each row of ``u`` int32 [M, K]: ``q`` int8 [M, K], ``mu``/``eu`` int32."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    rm = rows < M
    a = tl.full((BR,), 0, tl.int64)
    for k0 in range(0, K, BK):
        cols = k0 + tl.arange(0, BK)
        om = rm[:, None] & (cols < K)[None, :]
        u = tl.load(u_ptr + rows[:, None] * K + cols[None, :], mask=om, other=0).to(tl.int64)
        a = tl.maximum(a, vmax(tl.abs(u), 1))
    e = tl.maximum(bitlen(a) - AMB_, 0)
    m = (a >> e) + 1
    sa = (m << e)[:, None]
    qm = (1 << (A - 1)) - 1
    for k0 in range(0, K, BK):
        cols = k0 + tl.arange(0, BK)
        om = rm[:, None] & (cols < K)[None, :]
        u = tl.load(u_ptr + rows[:, None] * K + cols[None, :], mask=om, other=0).to(tl.int64)
        q = tl.minimum(tl.maximum(floordiv(u * (1 << A) + sa, 2 * sa), -qm), qm)
        tl.store(q_ptr + rows[:, None] * K + cols[None, :], q.to(tl.int8), mask=om)
    tl.store(mu_ptr + rows, m.to(tl.int32), mask=rm)
    tl.store(eu_ptr + rows, e.to(tl.int32), mask=rm)


@triton.jit
def lin_kernel(q_ptr, mu_ptr, eu_ptr, w_ptr, m_ptr, s_ptr, b_ptr, gt_ptr, out_ptr, M, N, K,
               A: tl.constexpr, EPI: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """``y = clamp32(RQ(acc * mu, m, s + A - 1 - eu) + b)`` with ``acc = q @ w`` (``q`` int8
    [M, K], ``w`` int8 [K, N]).  EPI 0: ``out`` int32 [M, N] = y; 1: ``out`` int64 [M, N]
    (the residual) = clamp32(out + y); 2: ``out`` int32 = GELU(y) (table ``gt``)."""
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
        x = tl.load(q_ptr + rm[:, None] * K + rk[None, :], mask=mm[:, None] & km[None, :],
                    other=0)
        w = tl.load(w_ptr + rk[:, None] * N + rn[None, :], mask=km[:, None] & nm[None, :],
                    other=0)
        acc += tl.dot(x, w, out_dtype=tl.int32)
    mu = tl.load(mu_ptr + rm, mask=mm, other=0).to(tl.int64)
    eu = tl.load(eu_ptr + rm, mask=mm, other=0).to(tl.int64)
    m = tl.load(m_ptr + rn, mask=nm, other=0)
    s = tl.load(s_ptr + rn, mask=nm, other=1).to(tl.int64)
    b = tl.load(b_ptr + rn, mask=nm, other=0).to(tl.int64)
    sh = tl.maximum(s[None, :] + (A - 1) - eu[:, None], 1)   # >= 1 by the importer's bounds
    y = clamp32(rq(acc.to(tl.int64) * mu[:, None], m[None, :], sh) + b[None, :])
    om = mm[:, None] & nm[None, :]
    ptr = out_ptr + rm[:, None] * N + rn[None, :]
    if EPI == 0:
        tl.store(ptr, y.to(tl.int32), mask=om)
    elif EPI == 1:
        res = tl.load(ptr, mask=om, other=0)
        tl.store(ptr, clamp32(res + y), mask=om)
    else:
        hc = tl.minimum(tl.maximum(y, -GLIM), GLIM - 1)
        j = (hc >> GSTEP) + GMID
        r = hc & GMASK
        t0 = tl.load(gt_ptr + j, mask=om, other=0).to(tl.int64)
        t1 = tl.load(gt_ptr + j + 1, mask=om, other=0).to(tl.int64)
        g = t0 + (((t1 - t0) * r + GHALF) >> GSTEP)
        g = tl.where(y >= GLIM, y, tl.where(y < -GLIM, 0, g))
        tl.store(ptr, g.to(tl.int32), mask=om)


@triton.jit
def qkv_kernel(qkv_ptr, rslot_ptr, rpos_ptr, qq_ptr, mq_ptr, eq_ptr,
               kq_ptr, km_ptr, ke_ptr, v_ptr, layer, NL, H, P, D, DH,
               A: tl.constexpr, BH: tl.constexpr, BDH: tl.constexpr):
    """Grid (rows,).  Row ``r`` of ``qkv`` int32 [M, 3D], every head: QUANT of the head's
    query -> ``qq`` int8 [M, D], ``mq``/``eq`` int32 [M, H]; QUANT of its key and its raw
    value -> the cache of lane slot ``rslot[r]`` at position ``rpos[r]`` (``kq`` int8 / ``v``
    int32 [slots, NL, H, P, DH], ``km``/``ke`` int32 [slots, NL, H, P])."""
    r = tl.program_id(0).to(tl.int64)
    hh = tl.arange(0, BH)
    di = tl.arange(0, BDH)
    hm = hh < H
    dm = hm[:, None] & (di < DH)[None, :]
    col = hh[:, None] * DH + di[None, :]
    base = qkv_ptr + r * 3 * D + col
    q = tl.load(base, mask=dm, other=0).to(tl.int64)
    k = tl.load(base + D, mask=dm, other=0).to(tl.int64)
    v = tl.load(base + 2 * D, mask=dm, other=0)
    qq, mq, eq = quant_row(q, dm, A)
    kq, mk, ek = quant_row(k, dm, A)
    tl.store(qq_ptr + r * D + col, qq, mask=dm)
    tl.store(mq_ptr + r * H + hh, mq.to(tl.int32), mask=hm)
    tl.store(eq_ptr + r * H + hh, eq.to(tl.int32), mask=hm)
    slot = tl.load(rslot_ptr + r).to(tl.int64)
    pos = tl.load(rpos_ptr + r).to(tl.int64)
    cell = ((slot * NL + layer) * H + hh) * P + pos
    tl.store(kq_ptr + cell[:, None] * DH + di[None, :], kq, mask=dm)
    tl.store(v_ptr + cell[:, None] * DH + di[None, :], v, mask=dm)
    tl.store(km_ptr + cell, mk.to(tl.int32), mask=hm)
    tl.store(ke_ptr + cell, ek.to(tl.int32), mask=hm)


@helper
def _scores(qq, mq, eq, kq_ptr, km_ptr, ke_ptr, cell0, k0, kend, di, dm, DH, att_m, att_s,
            A: tl.constexpr, BKEY: tl.constexpr):
    """Scores (int64 [BQ, BKEY], units 2**-10) of keys k0 .. k0 + BKEY - 1 and the key
    positions."""
    kk = k0 + tl.arange(0, BKEY)
    km_ = kk < kend
    kt = tl.load(kq_ptr + (cell0 + kk)[None, :] * DH + di[:, None],
                 mask=dm[:, None] & km_[None, :], other=0)
    dot = tl.dot(qq, kt, out_dtype=tl.int32)
    mk = tl.load(km_ptr + cell0 + kk, mask=km_, other=0)
    ek = tl.load(ke_ptr + cell0 + kk, mask=km_, other=0).to(tl.int64)
    t = rq(dot.to(tl.int64) * mq[:, None], mk[None, :], kk[None, :] * 0 + AMB_)
    sh = att_s + 2 * (A - 1) + 22 - AMB_ - eq[:, None] - ek[None, :]
    return rq(t, kk[None, :] * 0 + att_m, tl.maximum(sh, 1)), kk


@helper
def _digits_acc(out, w, v_ptr, cell0, kk, kvalid, di, dm, DH):
    """``out + sum_k w[:, k] * v[k, :]`` exactly (int64 [BQ, BDH]) for ``0 <= w <= 2**16`` and
    int32 ``v``: three base-128 digits of ``w`` times five of ``v`` (the top one signed),
    fifteen int8 dots."""
    v = tl.load(v_ptr + (cell0 + kk)[:, None] * DH + di[None, :],
                mask=kvalid[:, None] & dm[None, :], other=0)
    v0 = (v & 127).to(tl.int8)
    v1 = ((v >> 7) & 127).to(tl.int8)
    v2 = ((v >> 14) & 127).to(tl.int8)
    v3 = ((v >> 21) & 127).to(tl.int8)
    v4 = (v >> 28).to(tl.int8)
    for i in tl.static_range(3):
        wd = ((w >> (7 * i)) & 127).to(tl.int8)
        t = (tl.dot(wd, v0, out_dtype=tl.int32).to(tl.int64)
             + (tl.dot(wd, v1, out_dtype=tl.int32).to(tl.int64) << 7)
             + (tl.dot(wd, v2, out_dtype=tl.int32).to(tl.int64) << 14)
             + (tl.dot(wd, v3, out_dtype=tl.int32).to(tl.int64) << 21)
             + (tl.dot(wd, v4, out_dtype=tl.int32).to(tl.int64) << 28))
        out += t << (7 * i)
    return out


@triton.jit
def attention_kernel(qq_ptr, mq_ptr, eq_ptr, kq_ptr, km_ptr, ke_ptr, v_ptr, ea_ptr, o_ptr,
                     jrow_ptr, jn_ptr, jpos_ptr, jslot_ptr, layer, NL, H, P, D, DH, LENA,
                     att_m, att_s,
                     A: tl.constexpr, BQ: tl.constexpr, BKEY: tl.constexpr,
                     BDH: tl.constexpr):
    """Grid (jobs, heads, query blocks).  Job ``j``: rows ``jrow[j] ..`` (``jn[j]`` of them)
    at positions ``jpos[j] ..`` of lane slot ``jslot[j]``; each row attends to keys 0 .. its
    position of that slot's cache (its own key included) -> ``o`` int32 [M, D]."""
    j = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    n = tl.load(jn_ptr + j)
    qi = tl.program_id(2) * BQ + tl.arange(0, BQ)
    if tl.program_id(2) * BQ < n:
        row0 = tl.load(jrow_ptr + j).to(tl.int64)
        p0 = tl.load(jpos_ptr + j)
        slot = tl.load(jslot_ptr + j).to(tl.int64)
        qv = qi < n
        pq = p0 + qi
        di = tl.arange(0, BDH)
        dm = di < DH
        rows = row0 + qi
        qq = tl.load(qq_ptr + rows[:, None] * D + h * DH + di[None, :],
                     mask=qv[:, None] & dm[None, :], other=0)
        mq = tl.load(mq_ptr + rows * H + h, mask=qv, other=0).to(tl.int64)
        eq = tl.load(eq_ptr + rows * H + h, mask=qv, other=0).to(tl.int64)
        cell0 = ((slot * NL + layer) * H + h) * P
        kend = p0 + tl.minimum(tl.program_id(2) * BQ + BQ, n)     # keys of this block
        smax = tl.full((BQ,), -(1 << 62), tl.int64)
        for k0 in range(0, kend, BKEY):
            s, kk = _scores(qq, mq, eq, kq_ptr, km_ptr, ke_ptr, cell0, k0, kend, di, dm, DH,
                            att_m, att_s, A, BKEY)
            ok = (kk[None, :] <= pq[:, None]) & qv[:, None]
            smax = tl.maximum(smax, vmax(tl.where(ok, s, -(1 << 62)), 1))
        z = tl.full((BQ,), 0, tl.int64)
        num = tl.full((BQ, BDH), 0, tl.int64)
        for k0 in range(0, kend, BKEY):
            s, kk = _scores(qq, mq, eq, kq_ptr, km_ptr, ke_ptr, cell0, k0, kend, di, dm, DH,
                            att_m, att_s, A, BKEY)
            ok = (kk[None, :] <= pq[:, None]) & qv[:, None]
            idx = tl.minimum(tl.maximum(smax[:, None] - s, 0), LENA - 1)
            w = tl.load(ea_ptr + idx, mask=ok, other=0)
            z += vsum(w.to(tl.int64), 1)
            num = _digits_acc(num, w, v_ptr, cell0, kk, kk < kend, di, dm, DH)
        zz = tl.maximum(z, 1)[:, None]
        o = floordiv(2 * num + zz, 2 * zz)
        tl.store(o_ptr + rows[:, None] * D + h * DH + di[None, :], o.to(tl.int32),
                 mask=qv[:, None] & dm[None, :])


@triton.jit
def table_kernel(z_ptr, et_ptr, sym_ptr, tab_ptr, start_ptr, freq_ptr, NV, V, LENT,
                 MODE: tl.constexpr, BV: tl.constexpr):
    """``TABLE`` of logits row ``r`` (``z`` int32 [rows, NV], codes ``0 .. V-1``).  MODE
    TABLES: ``tab`` int32 [rows, V]; INTERVALS: ``start``/``freq`` int32 [rows] of the
    symbol ``sym[r]``."""
    r = tl.program_id(0).to(tl.int64)
    v = tl.arange(0, BV)
    vm = v < V
    z = tl.load(z_ptr + r * NV + v, mask=vm, other=-I32MAX).to(tl.int64)
    zmax = vmax(z, 0)
    d = tl.minimum((zmax - z + 32) >> 6, LENT - 1)
    e = tl.load(et_ptr + d, mask=vm, other=0).to(tl.int64)
    f = 1 + e * (TOTAL - V) // vsum(e, 0)
    f = tl.where(vm, f, 0)
    first = vmin(tl.where(vm & (z == zmax), v, BV), 0)
    f = tl.where(v == first, f + (TOTAL - vsum(f, 0)), f)
    if MODE == TABLES_:
        tl.store(tab_ptr + r * V + v, f.to(tl.int32), mask=vm)
    else:
        sym = tl.load(sym_ptr + r)
        cum = vcumsum(f)
        tl.store(start_ptr + r + tl.arange(0, 1),
                 vsum(tl.where(v == sym, cum - f, 0), 0).to(tl.int32) + tl.full((1,), 0, tl.int32))
        tl.store(freq_ptr + r + tl.arange(0, 1),
                 vsum(tl.where(v == sym, f, 0), 0).to(tl.int32) + tl.full((1,), 0, tl.int32))
