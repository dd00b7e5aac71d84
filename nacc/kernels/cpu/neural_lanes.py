"""Batched CPU inference of the neural predictors: many lanes (segments) in lockstep.

The integer spec is ``nacc.neural.intref`` (module docstring); this module computes the same
tables for a batch of *lanes* (token videos of one model) at once: the frame-level pass of
one frame of every lane together, and the token head of the current token of every lane
together.  Encoding knows every token, so it runs the head over whole frames (and the
transformer's frame pass over many frames) at a time.

Three exact rewrites of the spec make the batch fast; each gives the very integers the spec
defines, so the tables do not depend on the batch size, the lanes in a batch, their lengths
or the thread count:

* *Token tables.*  A LIN whose input is the embedding of a token depends on the token only:
  the transformer's keys and values ``LIN(EC[u]; k)``, ``LIN(EC[u]; v)`` are rows of
  (V+1)-row tables (pad id included), and the accumulator part of every embedding input
  (``EQ[X]`` and the row / column embeddings of ``tf.in``, ``EH[n_j]`` of ``head.l1``, the
  ``EC`` window of ``ls.gates``) is a row of a precomputed int64 table of
  ``sum_k W[n, k] E[v, k]``.
* *Split accumulators.*  A LIN over a concatenated input has the accumulator
  ``b + sum over the parts``; integer addition is associative, so the parts (a table row,
  a matrix product, the 0/1 motion evidence) may be summed in any order.
* *Float products of integers.*  The remaining products of int8-range vectors with int8
  weights run as float matrix products (numpy / BLAS).  Every partial sum of such a product
  is an integer of magnitude at most ``max_n sum_k |W[n, k]| * max|x|``; ``Gemm`` checks at
  pack time that this bound is below 2**24 (float32) or else 2**53 (float64), so any
  blocking, summation order or fused multiply-add gives the exact integer, and the
  conversion back to int64 is exact.  Where the host has AVX-512 VNNI, the products
  (the attention scores included, with each job's keys packed as weights) run as int8
  products in int32 (``nacc.kernels.cpu.int8gemm``), exact in any order as well.

Decoding a frame on the int8 path is one numba call (``decode_frame_int8``: per position
the hidden rows of all lanes, their product, the tables and the rANS steps).  Large work
arrays are reused from call to call (``Scratch``).

The decoders run the rANS decoder of ``nacc.kernels.cpu.rans`` per lane, at 24 bits, on
tables of total ``2**P`` shifted left by ``24 - P`` (as ``nacc.coder`` encodes them).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba as nb
import numpy as np

from nacc.kernels.cpu import int8gemm, rans
from nacc.kernels.cpu.neural import _c8, _first_slot, _isqrt, _rq, mix_table
from nacc.neural.config import HEAD_NEIGHBOURS, LOGIT_CLAMP, MATCH_NEIGHBOURS, PREV_CANDIDATES
from nacc.spec import CODER_PRECISION

I64 = np.int64
# offsets (dy, dx) of the head's causal neighbours and of the previous frame's window
NB_OFFSETS = np.array(HEAD_NEIGHBOURS, I64)
PREV_OFFSETS = np.array(PREV_CANDIDATES, I64)
MATCH_OFFSETS = np.array(MATCH_NEIGHBOURS, I64)
N_CAND = len(HEAD_NEIGHBOURS) + len(PREV_CANDIDATES)
# motion row of a token: cur_0..8, n_cur, prv_0..8, n_prv (see motion_start / motion_push)
MOTION_ROW = 2 * (len(PREV_CANDIDATES) + 1)
# rows of one head chunk when encoding (bounds the float logits buffer: rows * (V + 30))
ENCODE_ROWS = 512


# ----------------------------------------------------------------------------- packing
class Gemm:
    """``x @ W`` for integer ``x`` with ``|x| <= x_max``, exact through a float product or,
    where the host has AVX-512 VNNI and ``x``, ``W`` fit int8, an int8 product.

    ``w`` is an integer (K, N) array; the float type is float32 when every partial sum is
    bounded below 2**24, else float64 (bound below 2**53; larger is refused).  ``int8`` is
    the ``nacc.kernels.cpu.int8gemm.Packed`` weights, or None (float product only).  Both
    give the integer product; ``__call__`` uses the int8 one when there is one."""

    def __init__(self, w: np.ndarray, x_max: int):
        w = np.asarray(w, I64)
        self.bound = int(np.abs(w).sum(axis=0).max(initial=0)) * int(x_max)
        if self.bound < 2**24:
            self.dtype = np.float32
        elif self.bound < 2**53:
            self.dtype = np.float64
        else:
            raise ValueError(f"product bound {self.bound} too large for an exact float GEMM")
        self.w = np.ascontiguousarray(w, self.dtype)
        self.int8 = None
        if (int8gemm.AVAILABLE and x_max <= 127 and w.size
                and -128 <= w.min() and w.max() <= 127
                and 255 * int(np.abs(w).sum(axis=0).max()) < 2**31):
            self.int8 = int8gemm.Packed(w)

    def float_product(self, x: np.ndarray) -> np.ndarray:
        """Float result (integer-valued, exact); ``x`` integer or already of ``dtype``."""
        return np.asarray(x, self.dtype) @ self.w

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The exact product, int32 (int8 path) or integer-valued float."""
        if self.int8 is not None:
            return self.int8(x)
        return self.float_product(x)


def _lin_arrays(a: dict, name: str, layer: int | None = None):
    """(W int64 (N, K), b, M, S int64 (N,)) of a LIN of the weights file."""
    def get(k):
        arr = a[f"{name}.{k}"]
        return np.asarray(arr if layer is None else arr[layer], I64)
    return get("w"), get("b"), get("m"), get("s")


def _lut_max(lut) -> int:
    return int(np.abs(np.asarray(lut, I64)).max(initial=0))


@dataclass
class HeadPack:
    """The token head: l1 split into the frame-feature product (``f``), neighbour tables
    and evidence columns; l2, cp (and sg) fused into one output product."""
    f: Gemm                 # (D, hidden): F part of head.l1
    b1: np.ndarray          # (hidden,)
    nb_tab: np.ndarray      # int32 (6, V+1, hidden): neighbour slot j, token v
    ev_w: np.ndarray        # int32 (18 + n_motion, hidden): match and motion columns
    m1: np.ndarray
    s1: np.ndarray
    act: np.ndarray         # int64 (256,)
    out: Gemm               # (hidden, V + 15 [+ 15] [+ 16]): l2 | cp [| sg] [| mix]
    out_b: np.ndarray
    out_m: np.ndarray
    out_s: np.ndarray
    exp: np.ndarray         # int32 exp_logit (entries <= 2**16)
    cbias: np.ndarray       # int64 (V,) copy term (zeros without copy_bias)
    sub_t: np.ndarray       # int64 (V+1, V): row s = SUB[:, s] (dummy (1, 1) without subst)
    sub_m: np.ndarray
    sub_s: np.ndarray
    subst: bool
    copy_max: bool
    mclamp: int
    mix: bool               # mixture table (mix_head): out also holds head.mix's 16 columns
    ker: np.ndarray         # uint32 (V, V) mixture kernel (dummy (1, 1) without mix_head)


@dataclass
class TransformerPack:
    q_tok: np.ndarray       # int64 (V+1, D): EQ part of tf.in
    q_pos: np.ndarray       # int64 (H*W, D): row + column part of tf.in, plus its bias
    in_m: np.ndarray
    in_s: np.ndarray
    ln1g: np.ndarray        # int64 (L, D) ...
    ln1b: np.ndarray
    q: list                 # per layer: (Gemm, b, m, s)
    kt_f: np.ndarray        # float32 (L, V+1, D): keys LIN(EC[v]; k), for the score product
    kt_i: np.ndarray        # the same as int8 (the int8 score product)
    vt_i: np.ndarray        # int32 (or int64) (L, V+1, D): values LIN(EC[v]; v)
    att_m: np.ndarray       # int64 (L,)
    att_s: np.ndarray
    bt: np.ndarray          # int64 (L, heads, K)
    by: np.ndarray          # int64 (L, heads, 2r+1)
    bx: np.ndarray
    exp_att: np.ndarray
    o: list
    add1: np.ndarray        # int64 (L, 2)
    ln2g: np.ndarray
    ln2b: np.ndarray
    f1: list
    act: np.ndarray         # int64 (L, 256)
    f2: list
    add2: np.ndarray
    lnfg: np.ndarray
    lnfb: np.ndarray
    att_int8: bool          # scores through the int8 VNNI product (else a float32 one)


@dataclass
class LSTMPack:
    w_win: np.ndarray       # int64 (4D, n_window * E): the EC window part of ls.gates
    h: Gemm                 # (D, 4D): h part of ls.gates
    emb: np.ndarray         # int64 (V+1, E): the EC embedding
    gates: Gemm | None      # (n_window * E + D, 4D): all of ls.gates (int8 path), or None
    g_b: np.ndarray
    g_m: np.ndarray
    g_s: np.ndarray
    sig: np.ndarray
    tanh: np.ndarray
    _gate_tab: np.ndarray | None = None

    @property
    def gate_tab(self) -> np.ndarray:
        """int32 (n_window, V+1, 4D): the window part of ls.gates for every token per
        window slot (built on first use: the int8 path does not need it)."""
        if self._gate_tab is None:
            e = self.emb.shape[1]
            n_win = self.w_win.shape[1] // e
            self._gate_tab = np.ascontiguousarray(np.stack(
                [_token_table(self.emb, self.w_win[:, j * e:(j + 1) * e])
                 for j in range(n_win)]), np.int32)
        return self._gate_tab


def _token_table(emb: np.ndarray, w_part: np.ndarray) -> np.ndarray:
    """int64 (rows, N): ``sum_k w_part[n, k] emb[v, k]`` for every embedding row v (a float64
    product: int8-range terms, fewer than 2**38 of them, so every partial sum is exact)."""
    e = np.asarray(emb, np.float64)
    return np.ascontiguousarray(e @ np.asarray(w_part, np.float64).T).astype(I64)


def pack_head(m) -> HeadPack:
    cfg, a = m.cfg, m.a
    d, eh, n_nb = cfg.d_model, cfg.head_emb, len(HEAD_NEIGHBOURS)
    w1, b1, m1, s1 = _lin_arrays(a, "head.l1")
    emb = np.asarray(a["head.emb"], I64)
    nb_tab = np.stack([_token_table(emb, w1[:, d + j * eh:d + (j + 1) * eh])
                       for j in range(n_nb)])
    outs = [_lin_arrays(a, "head.l2"), _lin_arrays(a, "head.cp")]
    if cfg.subst:
        outs.append(_lin_arrays(a, "head.sg"))
    if cfg.mix_head:
        outs.append(_lin_arrays(a, "head.mix"))
    act = np.asarray(a["head.act"], I64)
    if cfg.subst:
        sub_t = np.ascontiguousarray(np.asarray(a["head.sub.w"], I64).T)
        sub_t = np.concatenate([sub_t, np.zeros((1, cfg.vocab), I64)])   # pad row
        sub_m, sub_s = np.asarray(a["head.sub.m"], I64), np.asarray(a["head.sub.s"], I64)
    else:
        sub_t, sub_m, sub_s = np.zeros((1, 1), I64), np.zeros(1, I64), np.ones(1, I64)
    return HeadPack(
        f=Gemm(w1[:, :d].T, 127), b1=b1, nb_tab=np.ascontiguousarray(nb_tab, np.int32),
        ev_w=np.ascontiguousarray(w1[:, d + n_nb * eh:].T, np.int32), m1=m1, s1=s1, act=act,
        out=Gemm(np.concatenate([w for w, _, _, _ in outs]).T, _lut_max(act)),
        out_b=np.concatenate([b for _, b, _, _ in outs]),
        out_m=np.concatenate([x for _, _, x, _ in outs]),
        out_s=np.concatenate([x for _, _, _, x in outs]),
        exp=np.asarray(a["exp_logit"], np.int32), cbias=np.ascontiguousarray(m.copy_bias()),
        sub_t=sub_t, sub_m=sub_m, sub_s=sub_s, subst=bool(cfg.subst),
        copy_max=bool(cfg.copy_max), mclamp=int(cfg.motion_clamp), mix=bool(cfg.mix_head),
        ker=np.ascontiguousarray(a["head.ker"] if cfg.mix_head else np.zeros((1, 1)),
                                 np.uint32))


def _token_lin(emb: np.ndarray, lin) -> np.ndarray:
    """int64 (V+1, N): the LIN applied to every embedding row (int8 outputs)."""
    w, b, mm, ss = lin
    acc = _token_table(emb, w) + b
    return np.clip(_rq_np(acc, mm, ss), -127, 127)


def _rq_np(a, m, s):
    a, m, s = np.asarray(a, I64), np.asarray(m, I64), np.asarray(s, I64)
    return (a * m + (np.int64(1) << (s - 1))) >> s


def _layer_gemm(a, name, layer, x_max=127):
    w, b, mm, ss = _lin_arrays(a, name, layer)
    return (Gemm(w.T, x_max), b, mm, ss)


def pack_transformer(m) -> TransformerPack:
    cfg, a = m.cfg, m.a
    h, w = cfg.frame_shape
    e, pe, n_l = cfg.emb, cfg.pos_emb, cfg.n_layers
    w_in, b_in, in_m, in_s = _lin_arrays(a, "tf.in")
    yy, xx = np.divmod(np.arange(h * w), w)
    row = _token_table(a["tf.row"], w_in[:, e:e + pe])
    col = _token_table(a["tf.col"], w_in[:, e + pe:e + 2 * pe])
    emb_c = np.asarray(a["tf.emb_ctx"], I64)
    acts = np.asarray(a["tf.act"], I64)
    # the attention's value sums: at most n_window keys of weight <= max(exp_att) times 127
    value_bound = cfg.n_window * int(np.abs(np.asarray(a["exp_att"], I64)).max()) * 127
    value_type = np.int32 if value_bound < 2**31 else I64
    kt = np.stack([_token_lin(emb_c, _lin_arrays(a, "tf.k", l)) for l in range(n_l)])
    return TransformerPack(
        q_tok=_token_table(a["tf.emb_q"], w_in[:, :e]),
        q_pos=np.ascontiguousarray(row[yy] + col[xx] + b_in), in_m=in_m, in_s=in_s,
        ln1g=np.asarray(a["tf.ln1.g"], I64), ln1b=np.asarray(a["tf.ln1.b"], I64),
        q=[_layer_gemm(a, "tf.q", l) for l in range(n_l)],
        kt_f=kt.astype(np.float32), kt_i=kt.astype(np.int8),
        vt_i=np.stack([_token_lin(emb_c, _lin_arrays(a, "tf.v", l))
                       for l in range(n_l)]).astype(value_type),
        att_m=np.asarray(a["tf.att.m"], I64), att_s=np.asarray(a["tf.att.s"], I64),
        bt=np.asarray(a["tf.bt"], I64), by=np.asarray(a["tf.by"], I64),
        bx=np.asarray(a["tf.bx"], I64), exp_att=np.asarray(a["exp_att"], I64),
        o=[_layer_gemm(a, "tf.o", l) for l in range(n_l)],
        add1=np.asarray(a["tf.add1"], I64),
        ln2g=np.asarray(a["tf.ln2.g"], I64), ln2b=np.asarray(a["tf.ln2.b"], I64),
        f1=[_layer_gemm(a, "tf.f1", l) for l in range(n_l)], act=acts,
        f2=[_layer_gemm(a, "tf.f2", l, _lut_max(acts[l])) for l in range(n_l)],
        add2=np.asarray(a["tf.add2"], I64),
        lnfg=np.asarray(a["tf.lnf.g"], I64), lnfb=np.asarray(a["tf.lnf.b"], I64),
        att_int8=int8gemm.AVAILABLE)


def pack_lstm(m) -> LSTMPack:
    cfg, a = m.cfg, m.a
    e = cfg.emb
    w, b, mm, ss = _lin_arrays(a, "ls.gates")
    emb = np.asarray(a["ls.emb"], I64)
    n_win = cfg.n_window
    gates = Gemm(w.T, max(127, _lut_max(emb)))
    return LSTMPack(w_win=w[:, :n_win * e], h=Gemm(w[:, n_win * e:].T, 127), emb=emb,
                    gates=gates if gates.int8 is not None else None,
                    g_b=b, g_m=mm, g_s=ss, sig=np.asarray(a["ls.sig"], I64),
                    tanh=np.asarray(a["ls.tanh"], I64))


# ----------------------------------------------------------------------------- primitives
@nb.njit(cache=True, nogil=True)
def requant(acc, b, m, s, out):
    """out = clamp8(rq(acc + b)) per row; ``acc`` an exact (float or int) product."""
    for r in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            out[r, n] = _c8(_rq(np.int64(acc[r, n]) + b[n], m[n], s[n]))


@nb.njit(cache=True, nogil=True)
def requant_lut(acc, b, m, s, lut, out):
    """out = LUT(clamp8(rq(acc + b)))."""
    for r in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            out[r, n] = _lut8(lut, _c8(_rq(np.int64(acc[r, n]) + b[n], m[n], s[n])))


@nb.njit(cache=True, nogil=True)
def add_requant(x1, acc, b, m, s, a, out):
    """out = ADD(x1, clamp8(rq(acc + b)); a): a residual sum after a LIN."""
    a1 = np.int64(a[0])
    a2 = np.int64(a[1])
    for r in range(x1.shape[0]):
        for n in range(x1.shape[1]):
            x2 = _c8(_rq(np.int64(acc[r, n]) + b[n], m[n], s[n]))
            out[r, n] = _c8((x1[r, n] * a1 + x2 * a2 + 32768) >> 16)


@nb.njit(cache=True, nogil=True)
def layer_norm(x, g, b, out):
    """LN of every row of x (spec primitive LN)."""
    d = x.shape[1]
    for r in range(x.shape[0]):
        sm = np.int64(0)
        for i in range(d):
            sm += x[r, i]
        var = np.int64(0)
        for i in range(d):
            c = d * x[r, i] - sm
            var += c * c
        rt = _isqrt(var // d)
        den = rt * 65536
        inv = 1.0 / np.float64(max(den, 1))
        for i in range(d):
            if rt == 0:
                y = np.int64(b[i])
            else:
                y = _floor_div((d * x[r, i] - sm) * np.int64(g[i]) + rt * 32768, den, inv) + b[i]
            out[r, i] = _c8(y)


# ----------------------------------------------------------------------------- frame pass
@nb.njit(cache=True, nogil=True)
def gather_context(videos, jobs, k, pad, out):
    """out[j, dt - 1] = frame ``t - dt`` of lane ``lane`` (pad id before frame 0) for each
    job ``(lane, t)``; out int32 (n_jobs, K, H*W)."""
    _, _, h, w = videos.shape
    for j in range(jobs.shape[0]):
        lane, t = jobs[j, 0], jobs[j, 1]
        for dt in range(1, k + 1):
            for p in range(h * w):
                out[j, dt - 1, p] = pad if t - dt < 0 else videos[lane, t - dt, p // w, p % w]


@nb.njit(cache=True, nogil=True)
def tf_embed(ctx, q_tok, q_pos, m, s, out):
    """Transformer input rows: clamp8(rq(EQ part of frame t-1's token + position part))."""
    n_j, _, hw = ctx.shape
    d = q_tok.shape[1]
    for r in range(n_j * hw):
        tok = ctx[r // hw, 0, r % hw]
        p = r % hw
        for i in range(d):
            out[r, i] = _c8(_rq(q_tok[tok, i] + q_pos[p, i], m[i], s[i]))


@nb.njit(cache=True, nogil=True, inline="always")
def _floor_div(num, den, inv):
    """floor(num / den) for den > 0 and |num| < 2**52, given inv = 1.0 / den: the float
    quotient is off by at most one, and the integer remainder corrects it exactly."""
    q = np.int64(np.floor(np.float64(num) * inv))
    rem = num - q * den
    if rem < 0:
        q -= 1
    elif rem >= den:
        q += 1
    return q


@nb.njit(cache=True, nogil=True)
def tf_softmax_values(scores, ctx, vt, att_m, att_s, bt, by, bx, exp_att, w, r, out):
    """Windowed attention of one layer (spec: transformer, per head) for every query row
    (job j, position p) -> out[j * H*W + p]: ``scores`` (n_jobs, heads, H*W, K*H*W) hold
    the products ``Q_h . Kc_h`` of every query with every key of the job's previous frames
    ``ctx`` (column ``dt * H*W + p``; more columns may follow); only the keys within the
    radius are used.  ``vt`` int32 (V+1, D) value rows."""
    n_j, nh, hw, _ = scores.shape
    k = ctx.shape[1]
    h = hw // w
    dh = out.shape[1] // nh
    side = 2 * r + 1
    n_win = k * side * side
    n_e1 = np.uint64(exp_att.shape[0] - 1)
    bias = np.empty((nh, n_win), np.int64)      # bt + by + bx of each window slot
    for hd in range(nh):
        for dt in range(k):
            for dy in range(side):
                for dx in range(side):
                    bias[hd, (dt * side + dy) * side + dx] = bt[hd, dt] + by[hd, dy] + bx[hd, dx]
    sc = np.empty(n_win, np.int64)
    tk = np.empty(n_win, np.int64)
    col = np.empty(n_win, np.int64)
    slot = np.empty(n_win, np.int64)
    num = np.empty(dh, vt.dtype)
    for row in range(n_j * hw):
        j = row // hw
        p = row % hw
        y = p // w
        x = p % w
        y0, y1 = max(0, y - r), min(h, y + r + 1)
        x0, x1 = max(0, x - r), min(w, x + r + 1)
        nj = 0                      # the keys within the radius, shared by the heads
        for dt in range(k):
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    c = dt * hw + yy * w + xx
                    col[nj] = c
                    tk[nj] = ctx[j, dt, c - dt * hw]
                    slot[nj] = (dt * side + yy - y + r) * side + xx - x + r
                    nj += 1
        for hd in range(nh):
            srow = scores[j, hd, p]
            brow = bias[hd]
            smax = np.int64(-(1 << 62))
            for jj in range(nj):
                v = _rq(np.int64(srow[col[jj]]), att_m, att_s) + brow[slot[jj]]
                sc[jj] = v
                smax = max(smax, v)
            z = np.int64(0)
            for i in range(dh):
                num[i] = 0
            for jj in range(nj):
                e = exp_att[min(np.uint64(smax - sc[jj]), n_e1)]
                z += e
                e_v = vt.dtype.type(e)
                vrow = vt[tk[jj], hd * dh:(hd + 1) * dh]
                for i in range(dh):
                    num[i] += e_v * vrow[i]
            den = 2 * z
            inv = 1.0 / np.float64(den)
            for i in range(dh):
                out[row, hd * dh + i] = _c8(_floor_div(2 * np.int64(num[i]) + z, den, inv))


@nb.njit(cache=True, nogil=True)
def tf_scores_int8(qv, ctx, kt, nh, xu, wp, corr, out):
    """``out[j, hd, p, c] = Q_h[j, p] . Kc_h[key c of job j]`` through the int8 VNNI product:
    per job and head the keys ``kt[ctx[j]]`` (int8 range, (V+1, D)) are packed as the
    weights of ``int8gemm.matmul_into`` (K = D / heads, N = K*H*W padded to 16) and the
    queries ``qv`` (int8 range) travel offset by 128 in ``xu`` (n_j, heads, H*W, 4 * k4).
    ``wp`` (n_j, heads, n16 * k4 * 64) int8 and ``corr`` (n_j, heads, 16 * n16) int32 are
    scratch; ``out`` (n_j, heads, H*W, 16 * n16) int32."""
    n_j, k, hw = ctx.shape
    d = qv.shape[1]
    dh = d // nh
    k4 = xu.shape[3] // 4
    n16 = out.shape[3] // 16
    nk = k * hw
    for j in range(n_j):
        for hd in range(nh):
            lo = hd * dh
            for p in range(hw):
                for i in range(dh):
                    xu[j, hd, p, i] = qv[j * hw + p, lo + i] + 128
            w = wp[j, hd]
            cr = corr[j, hd]
            w[:] = 0
            cr[:] = 0
            for c in range(nk):         # packed as [block][k // 4][16 outputs][4 k]
                tok = ctx[j, c // hw, c % hw]
                base = (c // 16) * k4 * 64 + (c % 16) * 4
                sm = np.int32(0)
                for kk in range(dh):
                    v = kt[tok, lo + kk]
                    w[base + (kk // 4) * 64 + kk % 4] = v
                    sm += v
                cr[c] = 128 * sm
            int8gemm.matmul_into(xu[j, hd], w, k4, n16, cr, out[j, hd])


class Scratch:
    """Work arrays reused from call to call (per thread): a fresh large array costs page
    faults on first touch, more than the products that fill it."""

    def __init__(self):
        self._local = threading.local()

    def __call__(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """An array of that shape and type, contents undefined."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        a = bufs.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = bufs[name] = np.empty(shape, dtype)
        return a


def _no_scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    return np.empty(shape, dtype)


def tf_attention(tp: TransformerPack, layer: int, qv, ctx, w, r, n_heads, out,
                 buf=_no_scratch):
    """Attention output o (int64 (rows, D)) of one layer for query rows ``qv``; ``buf``
    gives the work arrays (see ``Scratch``)."""
    n_j, k, hw = ctx.shape
    d = qv.shape[1]
    dh = d // n_heads
    if tp.att_int8:
        k4 = -(-dh // 4)
        n16 = -(-(k * hw) // 16)
        xu = buf("att.xu", (n_j, n_heads, hw, 4 * k4), np.uint8)   # padding: any value
        wp = buf("att.wp", (n_j, n_heads, n16 * k4 * 64), np.int8)
        corr = buf("att.corr", (n_j, n_heads, 16 * n16), np.int32)
        scores = buf("att.scores", (n_j, n_heads, hw, 16 * n16), np.int32)
        tf_scores_int8(qv, ctx, tp.kt_i[layer], n_heads, xu, wp, corr, scores)
    else:
        q = np.asarray(qv, np.float32).reshape(n_j, hw, n_heads, dh).transpose(0, 2, 1, 3)
        keys = tp.kt_f[layer][ctx.reshape(n_j, k * hw)]              # (n_j, K*H*W, D)
        keys = keys.reshape(n_j, k * hw, n_heads, dh).transpose(0, 2, 3, 1)
        scores = buf("att.scores_f", (n_j, n_heads, hw, k * hw), np.float32)
        np.matmul(q, keys, out=scores)  # exact: |Q_h . Kc_h| <= dh * 127 * 127 < 2**24
    tf_softmax_values(scores, ctx, tp.vt_i[layer], tp.att_m[layer], tp.att_s[layer],
                      tp.bt[layer], tp.by[layer], tp.bx[layer], tp.exp_att, w, r, out)


def tf_features(tp: TransformerPack, ctx, w, r, n_heads, buf=_no_scratch):
    """Frame features F (int64 (n_jobs * H*W, D)) of the transformer for jobs whose
    previous frames are ``ctx`` (int32 (n_jobs, K, H*W)); ``buf``: see ``Scratch``."""
    rows = ctx.shape[0] * ctx.shape[2]
    d = tp.q_tok.shape[1]
    s = buf("tf.s", (rows, d), I64)
    tf_embed(ctx, tp.q_tok, tp.q_pos, tp.in_m, tp.in_s, s)
    a = buf("tf.a", (rows, d), I64)
    o = buf("tf.o", (rows, d), I64)
    qv = buf("tf.qv", (rows, d), I64)
    for l in range(len(tp.q)):
        layer_norm(s, tp.ln1g[l], tp.ln1b[l], a)
        g, b, mm, ss = tp.q[l]
        requant(g(a), b, mm, ss, qv)
        tf_attention(tp, l, qv, ctx, w, r, n_heads, o, buf)
        g, b, mm, ss = tp.o[l]
        add_requant(s, g(o), b, mm, ss, tp.add1[l], s)
        layer_norm(s, tp.ln2g[l], tp.ln2b[l], a)
        g, b, mm, ss = tp.f1[l]
        u = buf("tf.u", (rows, b.shape[0]), I64)
        requant_lut(g(a), b, mm, ss, tp.act[l], u)
        g, b, mm, ss = tp.f2[l]
        add_requant(s, g(u), b, mm, ss, tp.add2[l], s)
    f = np.empty_like(s)
    layer_norm(s, tp.lnfg, tp.lnfb, f)
    return f


@nb.njit(cache=True, nogil=True, inline="always")
def _lut8(lut, v):
    """``lut[v + 128]`` for ``-128 <= v <= 127`` (an unsigned index: no wraparound test)."""
    return lut[np.uint64(v + 128)]


@nb.njit(cache=True, nogil=True, inline="always")
def _cell(qi, qf, qg, qo, sig, tanh, c_prev):
    """The lstm cell update of the spec for one unit from its four requantized gate
    pre-activations (int8 range): ``(c, h)``."""
    ig = _lut8(sig, qi)
    fg = _lut8(sig, qf)
    gg = _lut8(tanh, qg)
    og = _lut8(sig, qo)
    c = ((fg * c_prev + 64) >> 7) + ((ig * gg + 8) >> 4)
    c = min(max(c, -32768), 32767)
    tc = min(max((c + 32) >> 6, -128), 127)
    return c, _c8((og * _lut8(tanh, tc) + 64) >> 7)


@nb.njit(cache=True, nogil=True, inline="always")
def _window_token(ctx, j, dt, yy, xx, h, w, pad):
    """Token at (yy, xx) of context frame ``dt`` of job ``j``: ``pad`` outside the frame."""
    if 0 <= yy < h and 0 <= xx < w:
        return ctx[j, dt, yy * w + xx]
    return pad


@nb.njit(cache=True, nogil=True)
def lstm_cell(ctx, gate_tab, hacc, g_b, g_m, g_s, sig, tanh, w, r, hs, cs):
    """One lstm step for every row (job j = row // (H*W)): gates = window table rows + the
    h product ``hacc`` + bias, then the cell update of the spec; updates hs, cs in place."""
    n_j, k, hw = ctx.shape
    h = hw // w
    d = hs.shape[1]
    pad = gate_tab.shape[1] - 1
    gq = np.empty(4 * d, np.int64)
    for row in range(n_j * hw):
        j = row // hw
        p = row % hw
        y = p // w
        x = p % w
        acc = np.empty(4 * d, np.int32)       # the export bounds every partial sum < 2**31
        for n in range(4 * d):
            acc[n] = g_b[n] + np.int32(hacc[row, n])
        slot = 0
        for dt in range(k):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    tok = _window_token(ctx, j, dt, y + dy, x + dx, h, w, pad)
                    for n in range(4 * d):
                        acc[n] += gate_tab[slot, tok, n]
                    slot += 1
        for n in range(4 * d):
            gq[n] = _c8(_rq(np.int64(acc[n]), g_m[n], g_s[n]))
        for i in range(d):
            c, hv = _cell(gq[i], gq[d + i], gq[2 * d + i], gq[3 * d + i], sig, tanh, cs[row, i])
            cs[row, i] = c
            hs[row, i] = hv


@nb.njit(cache=True, nogil=True)
def lstm_inputs(ctx, emb, hs, w, r, xu):
    """xu[row] = the whole input of ls.gates plus 128 (uint8): the EC embeddings of the
    row's window in frame order (pad id outside the frame), then ``hs[row]``."""
    n_j, k, hw = ctx.shape
    h = hw // w
    e = emb.shape[1]
    d = hs.shape[1]
    pad = emb.shape[0] - 1
    for row in range(n_j * hw):
        j = row // hw
        p = row % hw
        y = p // w
        x = p % w
        col = 0
        for dt in range(k):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    tok = _window_token(ctx, j, dt, y + dy, x + dx, h, w, pad)
                    for i in range(e):
                        xu[row, col + i] = emb[tok, i] + 128
                    col += e
        for i in range(d):
            xu[row, col + i] = hs[row, i] + 128


@nb.njit(cache=True, nogil=True)
def lstm_update(acc, g_b, g_m, g_s, sig, tanh, hs, cs):
    """The cell update of the spec from the gate accumulators ``acc`` (without bias)."""
    d = hs.shape[1]
    gq = np.empty(4 * d, np.int64)
    for row in range(hs.shape[0]):
        for n in range(4 * d):          # requantize all gates (a vector loop), then cells
            gq[n] = _c8(_rq(np.int64(acc[row, n]) + g_b[n], g_m[n], g_s[n]))
        for i in range(d):
            c, hv = _cell(gq[i], gq[d + i], gq[2 * d + i], gq[3 * d + i], sig, tanh, cs[row, i])
            cs[row, i] = c
            hs[row, i] = hv


# ----------------------------------------------------------------------------- head
@nb.njit(cache=True, nogil=True)
def _hit(videos, lane, t, p, k, w, h):
    """1 when token p of frame t equals frame t-1 at shift k of PREV_OFFSETS (t >= 1)."""
    y = p // w
    x = p % w
    yy = y + PREV_OFFSETS[k, 0]
    xx = x + PREV_OFFSETS[k, 1]
    return (t >= 1 and 0 <= yy < h and 0 <= xx < w
            and videos[lane, t, y, x] == videos[lane, t - 1, yy, xx])


@nb.njit(cache=True, nogil=True)
def motion_start(mot, t, hw):
    """At the start of frame t: the finished frame's counts become ``prv``."""
    n = PREV_OFFSETS.shape[0]
    for k in range(n):
        mot[n + 1 + k] = mot[k]
        mot[k] = 0
    mot[n] = 0
    mot[2 * n + 1] = hw if t >= 2 else 0


@nb.njit(cache=True, nogil=True)
def motion_push(videos, lane, t, p, mot):
    """After token p of frame t of ``lane`` is known."""
    _, _, h, w = videos.shape
    n = PREV_OFFSETS.shape[0]
    for k in range(n):
        if _hit(videos, lane, t, p, k, w, h):
            mot[k] += 1
    mot[n] += 1


@nb.njit(cache=True, nogil=True)
def frame_motion(videos, jobs, out):
    """Motion rows (n_jobs, H*W, 20) of every token of each job's frame."""
    _, _, h, w = videos.shape
    hw = h * w
    for j in range(jobs.shape[0]):
        lane, t = jobs[j, 0], jobs[j, 1]
        mot = np.zeros(MOTION_ROW, np.int64)
        if t >= 1:
            for p in range(hw):
                motion_push(videos, lane, t - 1, p, mot)
        motion_start(mot, t, hw)
        for p in range(hw):
            out[j, p] = mot
            motion_push(videos, lane, t, p, mot)


@nb.njit(cache=True, nogil=True, inline="always")
def _token_at(videos, lane, t, y, x, pad):
    _, _, h, w = videos.shape
    if t >= 0 and 0 <= y < h and 0 <= x < w:
        return np.int64(videos[lane, t, y, x])
    return np.int64(pad)


@nb.njit(cache=True, nogil=True)
def _candidates(videos, lane, t, y, x, pad, cand):
    """The 15 candidate slots: HEAD_NEIGHBOURS of frame t, then frame t-1's 3x3 window."""
    n_nb = NB_OFFSETS.shape[0]
    for j in range(n_nb):
        cand[j] = _token_at(videos, lane, t, y + NB_OFFSETS[j, 0], x + NB_OFFSETS[j, 1], pad)
    for j in range(PREV_OFFSETS.shape[0]):
        cand[n_nb + j] = _token_at(videos, lane, t - 1, y + PREV_OFFSETS[j, 0],
                                   x + PREV_OFFSETS[j, 1], pad)


@nb.njit(cache=True, nogil=True)
def head_hidden(videos, jobs, p0, n_p, fpart, mot, nb_tab, ev_w, m1, s1, act, mclamp, u_off,
                u):
    """Hidden layer u of the head (``LUT(LIN(x_in; head.l1); head.act)``) plus ``u_off`` for
    positions p0..p0+n_p-1 of each job (lane, t): row = job * n_p + (p - p0), columns
    0..hidden-1 of ``u``.  ``fpart`` (n_jobs, H*W, hidden) holds the F part plus the bias;
    ``mot`` (n_jobs, n_p, 20) the motion rows."""
    _, _, h, w = videos.shape
    n_nb = NB_OFFSETS.shape[0]
    n_pv = PREV_OFFSETS.shape[0]
    pad = nb_tab.shape[1] - 1
    hidden = m1.shape[0]
    for row in range(jobs.shape[0] * n_p):
        j = row // n_p
        p = p0 + row % n_p
        lane, t = jobs[j, 0], jobs[j, 1]
        y = p // w
        x = p % w
        acc = np.empty(hidden, np.int32)      # the export bounds every partial sum < 2**31
        for n in range(hidden):
            acc[n] = fpart[j, p, n]
        for s in range(n_nb):
            tok = _token_at(videos, lane, t, y + NB_OFFSETS[s, 0], x + NB_OFFSETS[s, 1], pad)
            for n in range(hidden):
                acc[n] += nb_tab[s, tok, n]
        col = 0
        for mi in range(MATCH_OFFSETS.shape[0]):     # match evidence: left, then upper
            cy = y + MATCH_OFFSETS[mi, 0]
            cx = x + MATCH_OFFSETS[mi, 1]
            for k in range(n_pv):
                py = cy + PREV_OFFSETS[k, 0]
                px = cx + PREV_OFFSETS[k, 1]
                if (t >= 1 and 0 <= cy < h and 0 <= cx < w and 0 <= py < h and 0 <= px < w
                        and videos[lane, t, cy, cx] == videos[lane, t - 1, py, px]):
                    for n in range(hidden):
                        acc[n] += ev_w[col, n]
                col += 1
        if mclamp > 0:                              # motion counts: current, then previous
            for grp in range(2):
                off = grp * (n_pv + 1)
                best = mot[j, row % n_p, off]
                for k in range(1, n_pv):
                    best = max(best, mot[j, row % n_p, off + k])
                for k in range(n_pv + 2):
                    if k < n_pv:
                        v = min(best - mot[j, row % n_p, off + k], mclamp)
                    elif k == n_pv:
                        v = min(best, mclamp)
                    else:
                        v = min(mot[j, row % n_p, off + n_pv] - best, mclamp)
                    if v != 0:
                        for n in range(hidden):
                            acc[n] += np.int32(v) * ev_w[col, n]
                    col += 1
        for n in range(hidden):
            u[row, n] = _lut8(act, _c8(_rq(np.int64(acc[n]), m1[n], s1[n]))) + u_off


@nb.njit(cache=True, nogil=True, inline="always")
def _logit(zf, row, n, b, m, s):
    lim = np.int64(LOGIT_CLAMP)
    return min(max(_rq(np.int64(zf[row, n]) + b[n], m[n], s[n]), -lim), lim)


@nb.njit(cache=True, nogil=True)
def _head_table(zf, row, cand, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s, cbias,
                copy_max, mix, ker, exp, precision, pad, z, acc_sub, tab):
    """Table of one token (spec TABLE of the head's logits, or with ``mix`` the mixture
    table over the kernel ``ker``) from its product row ``zf[row]`` = l2 | cp [| sg]
    [| mix] accumulators (without biases) and its 15 candidates."""
    n_c = cand.shape[0]
    for v in range(vocab):
        z[v] = _logit(zf, row, v, out_b, out_m, out_s)
    if subst:
        for v in range(vocab):
            acc_sub[v] = 0
        for j in range(n_c):
            sj = cand[j]
            if sj != pad:
                g = _c8(_rq(np.int64(zf[row, vocab + n_c + j]) + out_b[vocab + n_c + j],
                            out_m[vocab + n_c + j], out_s[vocab + n_c + j]))
                if g != 0:
                    for v in range(vocab):
                        acc_sub[v] += g * sub_t[sj, v]
        lim = np.int64(LOGIT_CLAMP)
        for v in range(vocab):
            z[v] += min(max(_rq(acc_sub[v], sub_m[v], sub_s[v]), -lim), lim)
    for j in range(n_c):
        sj = cand[j]
        if sj == pad:
            continue
        bon = _logit(zf, row, vocab + j, out_b, out_m, out_s)
        if not copy_max:
            z[sj] += bon + cbias[sj]
            continue
        if _first_slot(cand, j):   # copy_max: the first slot holding sj adds the largest bonus
            best = bon
            for k in range(j + 1, n_c):
                if cand[k] == sj:
                    best = max(best, _logit(zf, row, vocab + k, out_b, out_m, out_s))
            z[sj] += best + cbias[sj]
    if not mix:
        table_from_logits(z, vocab, exp, precision, acc_sub, tab)
        return
    x0 = vocab + n_c + (n_c if subst else 0)      # the mixture logits' columns
    ymix = np.empty(n_c + 1, np.int64)
    for k in range(n_c + 1):
        ymix[k] = _logit(zf, row, x0 + k, out_b, out_m, out_s)
    mix_table(z, ymix, cand, pad, ker, exp, precision, acc_sub, tab)  # acc_sub: free here


@nb.njit(cache=True, nogil=True, inline="always")
def table_from_logits(z, vocab, exp, precision, e, tab):
    """TABLE(z) of the spec: ``e[v] = EXP[min(max(z) - z[v], LEN - 1)]``,
    ``f[v] = 1 + e[v] * (2**P - V) // sum(e)``, the remainder to the first maximum.  The
    floor division runs in float64 on exact integers (``e * room < 2**41``, quotient <
    2**24): the float quotient is off by at most one and the exact float remainder
    ``num - q * tot`` (an integer below 2**51) corrects it.  ``e`` is int64 scratch of
    ``vocab`` entries.  Written as separate passes so that all but the table lookup
    vectorize (the lookup index is unsigned: no negative-index wraparound)."""
    zmax = z[0]
    for v in range(vocab):
        zmax = max(zmax, z[v])
    best = 0                # the first maximum: find its block of 16, then the entry
    while best + 16 <= vocab:
        hit = False
        for i in range(16):
            hit |= z[best + i] == zmax
        if hit:
            break
        best += 16
    while z[best] != zmax:
        best += 1
    n_e1 = np.uint64(exp.shape[0] - 1)
    for v in range(vocab):
        e[v] = exp[min(np.uint64(zmax - z[v]), n_e1)]
    tot = np.int64(0)
    for v in range(vocab):
        tot += e[v]
    room = np.float64((np.int64(1) << precision) - vocab)
    totf = np.float64(tot)
    inv = 1.0 / totf
    sm = np.int64(0)
    for v in range(vocab):
        num = np.float64(e[v]) * room
        q = np.floor(num * inv)
        r = num - q * totf
        q += np.float64(r >= totf) - np.float64(r < 0.0)
        f = np.int32(q) + 1
        tab[v] = f
        sm += f
    tab[best] += np.int32((np.int64(1) << precision) - sm)


@nb.njit(cache=True, nogil=True)
def head_intervals(zf, videos, jobs, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                   cbias, copy_max, mix, ker, exp, precision, pad, base, start, freq):
    """(start, freq) of every token of each job's frame (rows job * H*W + p); job j's
    intervals go to start[base[j] + p]."""
    _, _, h, w = videos.shape
    hw = h * w
    n_rows = jobs.shape[0] * hw
    chunk = 32
    for c in range((n_rows + chunk - 1) // chunk):
        cand = np.empty(N_CAND, np.int64)
        z = np.empty(vocab, np.int64)
        acc_sub = np.empty(vocab, np.int64)
        tab = np.empty(vocab, np.int32)
        for row in range(c * chunk, min(n_rows, (c + 1) * chunk)):
            j = row // hw
            p = row % hw
            lane, t = jobs[j, 0], jobs[j, 1]
            y = p // w
            x = p % w
            _candidates(videos, lane, t, y, x, pad, cand)
            _head_table(zf, row, cand, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                        cbias, copy_max, mix, ker, exp, precision, pad, z, acc_sub, tab)
            s = videos[lane, t, y, x]
            acc = np.int64(0)
            for v in range(s):
                acc += tab[v]
            start[base[j] + p] = acc
            freq[base[j] + p] = tab[s]


@nb.njit(cache=True, nogil=True)
def head_tables(zf, videos, jobs, p0, n_p, out_b, out_m, out_s, vocab, subst, sub_t, sub_m,
                sub_s, cbias, copy_max, mix, ker, exp, precision, pad, out):
    """Full tables (rows, V) int32 of positions p0..p0+n_p-1 of each job."""
    _, _, h, w = videos.shape
    for row in range(jobs.shape[0] * n_p):
        cand = np.empty(N_CAND, np.int64)
        z = np.empty(vocab, np.int64)
        acc_sub = np.empty(vocab, np.int64)
        tab = np.empty(vocab, np.int32)
        j = row // n_p
        p = p0 + row % n_p
        _candidates(videos, jobs[j, 0], jobs[j, 1], p // w, p % w, pad, cand)
        _head_table(zf, row, cand, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                    cbias, copy_max, mix, ker, exp, precision, pad, z, acc_sub, tab)
        for v in range(vocab):
            out[row, v] = tab[v]


@nb.njit(cache=True, nogil=True)
def head_decode(zf, videos, jobs, p, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                cbias, copy_max, mix, ker, exp, precision, pad, words, woff, wlen, dstate, dpos,
                mot):
    """Decode token p of each job (lane, t): its table, then one rANS step of the lane's
    decoder (state ``dstate[lane]``, ``dpos[lane]`` words left of ``words[woff[lane]:
    woff[lane] + wlen[lane]]``); writes the symbol into ``videos`` and updates the lane's
    motion row ``mot[lane]``."""
    _, _, h, w = videos.shape
    shift = CODER_PRECISION - precision
    y = p // w
    x = p % w
    cand = np.empty(N_CAND, np.int64)
    z = np.empty(vocab, np.int64)
    acc_sub = np.empty(vocab, np.int64)
    tab = np.empty(vocab, np.int32)
    for j in range(jobs.shape[0]):
        lane, t = jobs[j, 0], jobs[j, 1]
        _candidates(videos, lane, t, y, x, pad, cand)
        _head_table(zf, j, cand, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                    cbias, copy_max, mix, ker, exp, precision, pad, z, acc_sub, tab)
        lw = words[woff[lane]:woff[lane] + wlen[lane]]
        state = dstate[lane]
        q = rans.dec_quantile(state, CODER_PRECISION) >> shift
        acc = np.int64(0)
        s = 0
        while s + 16 <= vocab - 1:      # whole blocks of 16 below q (every entry is >= 1)
            part = np.int64(0)
            for i in range(16):
                part += tab[s + i]
            if acc + part > q:
                break
            acc += part
            s += 16
        while s < vocab - 1 and acc + tab[s] <= q:
            acc += tab[s]
            s += 1
        state, pos = rans.dec_advance(state, dpos[lane], lw, acc << shift, tab[s] << shift,
                                      CODER_PRECISION)
        dstate[lane] = state
        dpos[lane] = pos
        videos[lane, t, y, x] = s
        motion_push(videos, lane, t, p, mot[lane])


@nb.njit(cache=True, nogil=True)
def decode_frame_int8(videos, jobs, fpart, mot, nb_tab, ev_w, m1, s1, act, mclamp, wp, k4, n16,
                      corr, u, zf, out_b, out_m, out_s, vocab, subst, sub_t, sub_m, sub_s,
                      cbias, copy_max, mix, ker, exp, precision, pad, words, woff, wlen, dstate,
                      dpos):
    """Decode one frame (index ``jobs[:, 1]``, equal for all jobs) of every job's lane, token
    by token, in one call: per position the head's hidden rows of all jobs (``u``, uint8
    (n_jobs, 4 * k4), offset by 128), their int8 product with the packed output weights
    (``nacc.kernels.cpu.int8gemm``) into ``zf`` and ``head_decode``.  ``mot`` (lanes,
    MOTION_ROW) carries the lanes' motion rows across frames."""
    n_j = jobs.shape[0]
    _, _, h, w = videos.shape
    hw = h * w
    for j in range(n_j):
        motion_start(mot[jobs[j, 0]], jobs[j, 1], hw)
    cur = np.zeros((n_j, 1, MOTION_ROW), np.int64)
    for p in range(hw):
        if mclamp > 0:
            for j in range(n_j):
                for c in range(MOTION_ROW):
                    cur[j, 0, c] = mot[jobs[j, 0], c]
        head_hidden(videos, jobs, p, 1, fpart, cur, nb_tab, ev_w, m1, s1, act, mclamp, 128, u)
        int8gemm.matmul_into(u, wp, k4, n16, corr, zf)
        head_decode(zf, videos, jobs, p, out_b, out_m, out_s, vocab, subst, sub_t, sub_m,
                    sub_s, cbias, copy_max, mix, ker, exp, precision, pad, words, woff, wlen,
                    dstate, dpos, mot)


# ----------------------------------------------------------------------------- drivers
class LaneModel:
    """A neural model packed for batched inference (see the module docstring).

    ``intervals(videos)`` and ``decode(jobs)`` run a batch of lanes; ``tables(video)`` gives
    the full tables of one video (reference checks).  Lanes share the model's vocabulary and
    frame shape; their lengths may differ."""

    def __init__(self, m):
        self.cfg = cfg = m.cfg
        self.vocab = cfg.vocab
        self.pad = cfg.pad
        self.frame_shape = tuple(cfg.frame_shape)
        self.hw = self.frame_shape[0] * self.frame_shape[1]
        self.precision = cfg.precision
        self.head = pack_head(m)
        self.scratch = Scratch()
        self.arch = cfg.arch
        if cfg.arch == "transformer":
            self.tf = pack_transformer(m)
            self.k = cfg.k_frames
        else:
            self.ls = pack_lstm(m)
            self.k = cfg.k_frames

    # -- the frame pass -----------------------------------------------------------------
    def _context(self, videos, jobs):
        ctx = np.empty((len(jobs), self.k, self.hw), np.int32)
        gather_context(videos, jobs, self.k, self.pad, ctx)
        return ctx

    def _fpart(self, feats, n_jobs):
        """F part of head.l1 plus its bias: int64 (n_jobs, H*W, hidden)."""
        hd = self.head
        rows = len(feats)
        pk = hd.f.int8
        if pk is not None:
            xu = self.scratch("f.xu", (rows, 4 * pk.k4), np.uint8)
            int8gemm.offset_into(feats, xu)
            prod = pk.matmul(xu, self.scratch("f.z", (rows, 16 * pk.n16), np.int32))[:, :pk.n]
        else:
            prod = hd.f(feats)
        # valid until the next call (each frame step's consumer is done with it by then)
        f = self.scratch("fpart", (rows, hd.b1.shape[0]), I64)
        np.add(prod, hd.b1, out=f, casting="unsafe")
        return f.reshape(n_jobs, self.hw, -1)

    def _tf_fpart(self, videos, jobs):
        ctx = self._context(videos, jobs)
        feats = tf_features(self.tf, ctx, self.frame_shape[1], self.cfg.radius,
                            self.cfg.n_heads, self.scratch)
        return self._fpart(feats, len(jobs))

    def _lstm_fpart(self, videos, jobs, hs, cs):
        """One lstm step for jobs of one frame index; hs/cs (n_jobs * H*W, D) in place."""
        ctx = self._context(videos, jobs)
        lp = self.ls
        if lp.gates is not None:        # one int8 product over the whole gate input
            pk = lp.gates.int8
            xu = self.scratch("ls.xu", (len(hs), 4 * pk.k4), np.uint8)   # padding: any value
            lstm_inputs(ctx, lp.emb, hs, self.frame_shape[1], self.cfg.radius, xu)
            acc = pk.matmul(xu, self.scratch("ls.z", (len(hs), 16 * pk.n16), np.int32))
            lstm_update(acc, lp.g_b, lp.g_m, lp.g_s, lp.sig, lp.tanh, hs, cs)
        else:                           # window tables + a float product of h
            lstm_cell(ctx, lp.gate_tab, lp.h(hs), lp.g_b, lp.g_m, lp.g_s, lp.sig, lp.tanh,
                      self.frame_shape[1], self.cfg.radius, hs, cs)
        return self._fpart(hs, len(jobs))

    def _frame_steps(self, videos, lengths):
        """Yield ``(jobs, fpart)`` for every frame of every lane, in an order where each
        lane's frames come in order: the lstm one frame index at a time over the lanes
        still running (its state carries), the transformer in chunks of about
        ENCODE_ROWS tokens."""
        t_max = int(max(lengths))
        if self.arch == "lstm":
            d = self.cfg.d_model
            hs = np.zeros((len(lengths), self.hw, d), I64)
            cs = np.zeros_like(hs)
            for t in range(t_max):
                lanes = np.array([b for b, n in enumerate(lengths) if n > t], I64)
                jobs = np.stack([lanes, np.full_like(lanes, t)], 1)
                if len(lanes) == len(lengths):      # every lane runs: update in place
                    yield jobs, self._lstm_fpart(videos, jobs, hs.reshape(-1, d),
                                                 cs.reshape(-1, d))
                    continue
                h_a = hs[lanes].reshape(-1, d)
                c_a = cs[lanes].reshape(-1, d)
                fpart = self._lstm_fpart(videos, jobs, h_a, c_a)
                hs[lanes] = h_a.reshape(len(lanes), self.hw, d)
                cs[lanes] = c_a.reshape(len(lanes), self.hw, d)
                yield jobs, fpart
            return
        per = max(1, ENCODE_ROWS // self.hw)
        all_jobs = np.array([(b, t) for b, n in enumerate(lengths) for t in range(n)], I64)
        for i in range(0, len(all_jobs), per):
            jobs = all_jobs[i:i + per]
            yield jobs, self._tf_fpart(videos, jobs)

    def _motion(self, videos, jobs):
        mot = np.zeros((len(jobs), self.hw, MOTION_ROW), I64)
        if self.head.mclamp > 0:
            frame_motion(videos, jobs, mot)
        return mot

    def _hidden(self, videos, jobs, p0, n_p, fpart, mot):
        hd = self.head
        g = hd.out
        rows = len(jobs) * n_p
        if g.int8 is not None:        # padding columns of u: any value (zero weights)
            u = self.scratch("head.u", (rows, 4 * g.int8.k4), np.uint8)
            head_hidden(videos, jobs, p0, n_p, fpart, mot, hd.nb_tab, hd.ev_w, hd.m1, hd.s1,
                        hd.act, hd.mclamp, 128, u)
            return g.int8.matmul(u, self.scratch("head.z", (rows, 16 * g.int8.n16), np.int32))
        u = np.empty((rows, hd.b1.shape[0]), g.dtype)
        head_hidden(videos, jobs, p0, n_p, fpart, mot, hd.nb_tab, hd.ev_w, hd.m1, hd.s1,
                    hd.act, hd.mclamp, 0, u)
        return g.float_product(u)

    def _head_args(self):
        hd = self.head
        return (hd.out_b, hd.out_m, hd.out_s, self.vocab, hd.subst, hd.sub_t, hd.sub_m,
                hd.sub_s, hd.cbias, hd.copy_max, hd.mix, hd.ker, hd.exp, self.precision,
                self.pad)

    @staticmethod
    def _stack(videos_list, h, w):
        lengths = [len(v) for v in videos_list]
        videos = np.zeros((len(videos_list), max(lengths), h, w), np.int32)
        for b, v in enumerate(videos_list):
            videos[b, :len(v)] = v
        return videos, lengths

    # -- encode ---------------------------------------------------------------------------
    def intervals(self, videos_list):
        """``(start, freq)`` uint32 of every token of each video (T_b, H, W)."""
        h, w = self.frame_shape
        videos, lengths = self._stack(videos_list, h, w)
        offsets = np.concatenate([[0], np.cumsum([n * self.hw for n in lengths])]).astype(I64)
        start = np.empty(int(offsets[-1]), np.uint32)
        freq = np.empty_like(start)
        per = max(1, ENCODE_ROWS // self.hw)
        for step_jobs, step_fpart in self._frame_steps(videos, lengths):
            for i in range(0, len(step_jobs), per):
                jobs, fpart = step_jobs[i:i + per], step_fpart[i:i + per]
                zf = self._hidden(videos, jobs, 0, self.hw, fpart, self._motion(videos, jobs))
                base = offsets[jobs[:, 0]] + jobs[:, 1] * self.hw
                head_intervals(zf, videos, jobs, *self._head_args(), base, start, freq)
        return [(start[offsets[b]:offsets[b + 1]], freq[offsets[b]:offsets[b + 1]])
                for b in range(len(lengths))]

    def tables(self, video):
        """int32 (T, H*W, V): every table of one video (reference path)."""
        h, w = self.frame_shape
        videos, lengths = self._stack([video], h, w)
        out = np.empty((len(video), self.hw, self.vocab), np.int32)
        for jobs, fpart in self._frame_steps(videos, lengths):
            mot = self._motion(videos, jobs)
            zf = self._hidden(videos, jobs, 0, self.hw, fpart, mot)
            tabs = np.empty((len(jobs) * self.hw, self.vocab), np.int32)
            head_tables(zf, videos, jobs, 0, self.hw, *self._head_args(), tabs)
            out[jobs[:, 1]] = tabs.reshape(len(jobs), self.hw, self.vocab)
        return out

    # -- decode ---------------------------------------------------------------------------
    def decode(self, jobs_in):
        """Tokens int32 (T_b, H, W) of each ``(words, n_frames)`` lane."""
        h, w = self.frame_shape
        lengths = [int(n) for _, n in jobs_in]
        n_l = len(lengths)
        if n_l == 0:
            return []
        videos = np.zeros((n_l, max(max(lengths), 1), h, w), np.int32)
        ws = [np.ascontiguousarray(wd, np.uint32) for wd, _ in jobs_in]
        wlen = np.array([len(x) for x in ws], I64)
        woff = np.concatenate([[0], np.cumsum(wlen)[:-1]]).astype(I64)
        words = np.concatenate(ws) if ws else np.zeros(0, np.uint32)
        dstate = np.zeros(n_l, np.uint64)
        dpos = np.zeros(n_l, I64)
        for b, x in enumerate(ws):
            dstate[b], dpos[b] = rans.dec_init(x)
        mot = np.zeros((n_l, MOTION_ROW), I64)
        args = self._head_args()
        no_motion = np.zeros((1, 1, MOTION_ROW), I64)
        pk = self.head.out.int8
        for jobs, fpart in self._decode_frames(videos, lengths):
            if pk is not None:          # the whole frame in one call
                hd = self.head
                decode_frame_int8(videos, jobs, fpart, mot, hd.nb_tab, hd.ev_w, hd.m1, hd.s1,
                                  hd.act, hd.mclamp, pk.wp, pk.k4, pk.n16, pk.corr,
                                  pk.input(len(jobs)),
                                  np.empty((len(jobs), 16 * pk.n16), np.int32), *args, words,
                                  woff, wlen, dstate, dpos)
                continue
            lanes = jobs[:, 0]
            for lane in lanes:
                motion_start(mot[lane], jobs[0, 1], self.hw)
            for p in range(self.hw):
                cur = mot[lanes][:, None, :] if self.head.mclamp > 0 else no_motion
                zf = self._hidden(videos, jobs, p, 1, fpart, cur)
                head_decode(zf, videos, jobs, p, *args, words, woff, wlen, dstate, dpos, mot)
        return [videos[b, :n] for b, n in enumerate(lengths)]

    def _decode_frames(self, videos, lengths):
        """``(jobs, fpart)`` of frame t of every lane still running, t = 0, 1, ...; the
        frame pass of frame t runs when frames < t are decoded (the caller decodes frame t
        before asking for the next)."""
        t_max = max(lengths) if lengths else 0
        if self.arch == "lstm":
            yield from self._frame_steps(videos, lengths)
            return
        for t in range(t_max):
            lanes = np.array([b for b, n in enumerate(lengths) if n > t], I64)
            jobs = np.stack([lanes, np.full_like(lanes, t)], 1)
            yield jobs, self._tf_fpart(videos, jobs)
