"""Integer spec of the ``gpt`` predictor (commaVQ's GPT-2 world model), and its numpy reference.

Every value below is an integer; no float decides a table.  A backend that follows this text
reproduces the tables bit for bit.  ``/`` never appears: ``a // b`` is floor division,
``>>`` an arithmetic (floor) shift, ``round`` never occurs at run time.

Model (``GPTConfig``): ``L`` layers, width ``D``, ``H`` heads of ``dh = D / H``, MLP width
``F``, ``NV`` token ids (the ``V = NV - 1`` codes and ``BOS = V``), ``NP`` positions,
activation bits ``A`` (8..12), ``EPS`` = round(eps * 2**32) (LayerNorm epsilon).

Units.  Every activation is an integer in units of ``2**-16`` (``FRAC``): the residual
stream, LayerNorm outputs, q/k/v, attention outputs, MLP values and logits.  ``clamp32(v) =
min(max(v, -(2**31 - 1)), 2**31 - 1)``.  Weights (the model folder, ``intref.Layer``/``Top``):

* ``wte[NV, D]``, ``wpe[NP, D]`` int32: ``rint(w * 2**16)``;
* LayerNorm ``g[D], b[D]`` int32: ``rint(g * 2**16)``, ``rint(b * 2**16)``;
* a linear map (``Lin``: ``w[K, N]`` int8, ``m[N]``, ``s[N]``, ``b[N]`` int32): column ``n``
  of the float weight ``W`` (``x @ W``, the Conv1D [in, out] layout) has the scale
  ``m[n] * 2**-s[n]`` (``m`` in ``[2**15, 2**16)``, 0 for an all-zero column) and
  ``w[k, n] = clip(rint(W[k, n] / scale), -127, 127)``; ``b[n] = rint(bias[n] * 2**16)``.

Primitives, for one row (one token):

* ``RQ(t, M, s) = (t * M + 2**(s - 1)) >> s`` with ``s >= 1`` (the importer guarantees it).
* ``QUANT(u)`` of an int vector ``u`` (|u| < 2**31): ``a = max|u|``;
  ``e = max(0, bitlen(a) - AMB)`` (``AMB = 12``); ``m = (a >> e) + 1``; ``sa = m << e``;
  ``q = clip((u * 2**A + sa) // (2 * sa), -QM, QM)`` with ``QM = 2**(A-1) - 1``.
  So ``u ~ q * sa * 2**-(A-1)``; ``a = 0`` gives ``m = 1, e = 0, q = 0``.
* ``LIN(u; w, m, s, b)``: ``(q, mu, eu) = QUANT(u)``; ``acc[n] = sum_k q[k] w[k, n]``
  (exact: ``|acc| < 2**(A-1) * 127 * K < 2**30``);
  ``y[n] = clamp32(RQ(acc[n] * mu, m[n], s[n] + A - 1 - eu) + b[n])``.
  (``acc * mu * m < 2**58``; ``s[n] >= 21 - A`` and ``eu <= 19`` keep the shift >= 1.)
* ``LN(x; g, b)`` (width D): ``a = max|x|``; ``e = bitlen(a) - 20`` (may be negative);
  ``xs = x >> e`` (``x << -e`` when ``e < 0``); ``mu = sum(xs) // D``; ``c = xs - mu``;
  ``var = sum(c * c) // D``; ``ve = EPS >> 2e`` (``EPS << -2e`` when ``e < 0``);
  ``sd = isqrt(var + ve)`` (floor square root); ``y = clamp32((2 c g + sd) // (2 sd) + b)``,
  or ``y = b`` when ``sd = 0``.
* ``GELU(h)`` (tanh form) through ``GT[16385]`` int32, ``GT[i] = rint(2**16 *
  gelu((i - 8192) / 1024))``: ``h >= 8 * 2**16``: ``h``; ``h < -8 * 2**16``: 0; otherwise
  ``j = (h >> 6) + 8192``, ``r = h & 63``: ``GT[j] + (((GT[j+1] - GT[j]) * r + 32) >> 6)``.
* ``EXPA[d] = rint(2**16 exp(-d / 1024))`` and ``EXPT[d] = rint(2**24 exp(-d / 1024))``
  (int32, each to its first zero entry inclusive; ``LENA``, ``LENT`` their lengths).
* attention constants: ``1 / sqrt(dh) ~ ATT_M * 2**-ATT_S`` (``ATT_M`` in
  ``[2**15, 2**16)``, from ``frexp`` as for a weight scale).

One token at position ``p`` of a window, input id ``t`` (a code or BOS):
``x = wte[t] + wpe[p]``; per layer:

1. ``qkv = LIN(LN(x; ln1); attn)`` (``N = 3D``): ``q, k, v`` its thirds; head ``h`` uses
   columns ``h*dh .. h*dh + dh - 1`` of each.
2. For each head: ``(qq, mq, eq) = QUANT(q_h)``, and for every key position ``j <= p`` of the
   window (this token included) ``(kq_j, mk_j, ek_j) = QUANT(k_h of token j)``;
   ``dot_j = sum qq * kq_j``; ``t_j = RQ(dot_j * mq, mk_j, AMB)``;
   ``s_j = RQ(t_j, ATT_M, ATT_S + 2(A-1) + 22 - AMB - eq - ek_j)`` (scores in units
   ``2**-10`` nats); ``w_j = EXPA[min(max_j s_j - s_j, LENA - 1)]``; ``Z = sum w_j``;
   ``o_h[d] = (2 sum_j w_j v_j[d] + Z) // (2 Z)`` (``v_j`` the head's slice of token j's
   ``v``; ``|sum| < 2**16 * 2**31 * NP < 2**60``).
3. ``x = clamp32(x + LIN(o; proj))`` (``o`` the heads side by side).
4. ``x = clamp32(x + LIN(GELU(LIN(LN(x; ln2); fc)); out))``.

Logits: ``z = LIN(LN(x; lnf); head)`` (``N = NV``, bias 0); only ``z[0..V-1]`` is used.

Table (precision ``P = 24``): ``zmax = max_{v<V} z[v]``;
``d[v] = (zmax - z[v] + 32) >> 6``; ``e[v] = EXPT[min(d[v], LENT - 1)]``;
``f[v] = 1 + e[v] * (2**P - V) // sum(e)``; the rest ``2**P - sum(f)`` goes to the first
``v`` with ``z[v] = zmax``.  Every entry >= 1, the sum exactly ``2**P``.

Sequence and context policy (``nacc.gpt.policy``): a window of ``n`` frames is the token
sequence ``BOS, frame tokens (raster), BOS, ...`` with positions restarting at 0; the table
of token ``i`` of a frame is the table at the position of the id before it (the frame's BOS
for ``i = 0``).

Everything is per row except attention's sum over earlier keys, so a window computed in one
pass and the same window stepped token by token with a KV cache (keys stored quantized,
values as computed) give identical tables; so do batches of any size and any order of the
integer sums.  The reference computes the integer products with float BLAS where they are
exact (``IntDot``): float32 when every partial sum stays below 2**24 (``A = 8`` and K cut in
chunks of at most 1024), float64 otherwise (below 2**53); the attention sums ``w * v``
run in float64 when ``sum(w) * max|v| < 2**53``, else with ``v`` split in two 16-bit limbs.

Backends.  With ``A = 8`` every product of the model is int8 x int8: ``LIN`` accumulates
in int32 (``|acc| < 127 * 127 * 4096 < 2**26``) and requantizes in int64; ``q . k`` is an
int8 dot of length ``dh``; ``w * v`` takes ``v`` in limbs (``v >> 16`` signed and
``v & 0xFFFF``, or four bytes for int8 tensor cores) with int64 sums.  Row quantities
(``max|u|``, LayerNorm sums, the softmax max and ``Z``) are integer reductions, exact in
any order.  The weights arrive as ``Model(cfg, top: Top, layers: tuple[Layer], tables:
Tables)``: NamedTuples of numpy arrays whose field names are the weights file's names.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

FRAC = 16                 # fixed-point bits of every activation
AMB = 12                  # mantissa bits of a row's quantization scale
ACT_BITS = (8, 12)        # allowed range of A
LOGIT_FRAC = 10           # exp tables index in units of 2**-10 nats
GELU_RANGE = 8            # GELU table covers [-8, 8)
GELU_STEP = 6             # input bits dropped before the table (2**-10 resolution)
TABLE_PRECISION = 24
I32MAX = 2**31 - 1
I64 = np.int64


# -- weight packs (one NamedTuple per layer; field names are the weight names) ------------
class Layer(NamedTuple):
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    attn_w: np.ndarray
    attn_m: np.ndarray
    attn_s: np.ndarray
    attn_b: np.ndarray
    proj_w: np.ndarray
    proj_m: np.ndarray
    proj_s: np.ndarray
    proj_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray
    fc_w: np.ndarray
    fc_m: np.ndarray
    fc_s: np.ndarray
    fc_b: np.ndarray
    out_w: np.ndarray
    out_m: np.ndarray
    out_s: np.ndarray
    out_b: np.ndarray


class Top(NamedTuple):
    wte: np.ndarray
    wpe: np.ndarray
    lnf_g: np.ndarray
    lnf_b: np.ndarray
    head_w: np.ndarray
    head_m: np.ndarray
    head_s: np.ndarray
    head_b: np.ndarray


class Tables(NamedTuple):
    exp_att: np.ndarray
    exp_tab: np.ndarray
    gelu: np.ndarray


LINS = ("attn", "proj", "fc", "out")      # the linear maps of a layer, in order


class GPTConfig(NamedTuple):
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    n_vocab: int          # codes + BOS
    n_positions: int
    act_bits: int = 8
    eps: int = 42950      # rint(1e-5 * 2**32)

    @property
    def vocab(self) -> int:
        """Codes (the table's size); BOS is id ``vocab``."""
        return self.n_vocab - 1

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


class Model(NamedTuple):
    cfg: GPTConfig
    top: Top
    layers: tuple[Layer, ...]
    tables: Tables


def layer_shapes(cfg: GPTConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of every field of a ``Layer``."""
    d, f = cfg.d_model, cfg.d_ff
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for ln in ("ln1", "ln2"):
        out[f"{ln}_g"] = ((d,), "int32")
        out[f"{ln}_b"] = ((d,), "int32")
    for name, k, n in (("attn", d, 3 * d), ("proj", d, d), ("fc", d, f), ("out", f, d)):
        out[f"{name}_w"] = ((k, n), "int8")
        for s in ("m", "s", "b"):
            out[f"{name}_{s}"] = ((n,), "int32")
    return {k: out[k] for k in Layer._fields}


def top_shapes(cfg: GPTConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    d, nv = cfg.d_model, cfg.n_vocab
    out = {"wte": ((nv, d), "int32"), "wpe": ((cfg.n_positions, d), "int32"),
           "lnf_g": ((d,), "int32"), "lnf_b": ((d,), "int32"), "head_w": ((d, nv), "int8")}
    for s in ("m", "s", "b"):
        out[f"head_{s}"] = ((nv,), "int32")
    return {k: out[k] for k in Top._fields}


# -- spec tables (built from float64 elementwise IEEE operations: the same on any machine) --
def _exp_table(scale_bits: int) -> np.ndarray:
    d = np.arange(0, 40 << LOGIT_FRAC, dtype=np.float64)
    t = np.rint(np.exp(-d / (1 << LOGIT_FRAC)) * float(1 << scale_bits)).astype(I64)
    n = int(np.argmax(t == 0)) + 1
    return t[:n].astype(np.int32)


def gelu_float(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (GPT-2's ``gelu_new``), float64."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def make_tables() -> Tables:
    i = np.arange(-(GELU_RANGE << 10), (GELU_RANGE << 10) + 1, dtype=np.float64)
    gelu = np.rint(gelu_float(i / 1024.0) * 65536.0).astype(np.int32)
    return Tables(exp_att=_exp_table(16), exp_tab=_exp_table(24), gelu=gelu)


def scale_bits(scale):
    """``(M, S)`` int64 arrays with ``scale ~ M * 2**-S``, ``M`` in ``[2**15, 2**16)``
    (``rint`` of frexp's mantissa times 2**16); ``(0, 16)`` where the scale is 0."""
    f, ex = np.frexp(np.asarray(scale, np.float64))
    m = np.rint(f * 65536.0).astype(I64)
    ex = ex.astype(I64)
    top = m == 65536
    m = np.where(top, 32768, m)
    ex = np.where(top, ex + 1, ex)
    zero = m <= 0
    return np.where(zero, 0, m), np.where(zero, 16, 16 - ex)


def att_scale(cfg: GPTConfig) -> tuple[int, int]:
    m, s = scale_bits(1.0 / np.sqrt(np.float64(cfg.d_head)))
    return int(m), int(s)


# -- primitives (rows: the leading axis) -----------------------------------------------------
def bitlen(a: np.ndarray) -> np.ndarray:
    """bit_length of non-negative int64 values below 2**53 (exact through frexp)."""
    return np.frexp(np.asarray(a, np.float64))[1].astype(I64)


def rq(t, m, s):
    t = np.asarray(t, I64)
    s = np.asarray(s, I64)
    if np.any(s < 1):
        raise ValueError("requantization shift below 1 (outside the spec's bounds)")
    return (t * np.asarray(m, I64) + (np.int64(1) << (s - 1))) >> s


def clamp32(v):
    return np.clip(v, -I32MAX, I32MAX)


def quant(u: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """QUANT of each row of ``u`` (last axis): ``(q, m, e)``."""
    u = np.asarray(u, I64)
    a = np.abs(u).max(axis=-1, initial=0)
    e = np.maximum(bitlen(a) - AMB, 0)
    m = (a >> e) + 1
    sa = (m << e)[..., None]
    qm = (1 << (bits - 1)) - 1
    q = np.clip((u * (1 << bits) + sa) // (2 * sa), -qm, qm)
    return q, m, e


def isqrt(n: np.ndarray) -> np.ndarray:
    """Floor square root of non-negative int64 values (below 2**62)."""
    n = np.asarray(n, I64)
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(I64)
    for _ in range(2):           # float64's root of n < 2**62 is off by at most 1
        r = np.where(r * r > n, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= n, r + 1, r)
    return r


def layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: int) -> np.ndarray:
    x = np.asarray(x, I64)
    d = x.shape[-1]
    e = bitlen(np.abs(x).max(axis=-1, initial=0)) - 20
    left = np.maximum(-e, 0)[:, None]
    right = np.maximum(e, 0)[:, None]
    xs = (x << left) >> right
    c = xs - xs.sum(axis=-1, keepdims=True) // d
    var = (c * c).sum(axis=-1) // d
    ve = np.where(e >= 0, np.int64(eps) >> np.maximum(2 * e, 0),
                  np.int64(eps) << np.maximum(-2 * e, 0))
    sd = isqrt(var + ve)[:, None]
    g = g.astype(I64)
    safe = np.maximum(sd, 1)
    y = np.where(sd > 0, (2 * c * g + safe) // (2 * safe), 0) + b.astype(I64)
    return clamp32(y)


def gelu(h: np.ndarray, gt: np.ndarray) -> np.ndarray:
    h = np.asarray(h, I64)
    lim = GELU_RANGE << FRAC
    hc = np.clip(h, -lim, lim - 1)
    j = (hc >> GELU_STEP) + (GELU_RANGE << 10)
    r = hc & ((1 << GELU_STEP) - 1)
    t0 = gt[j].astype(I64)
    t1 = gt[j + 1].astype(I64)
    y = t0 + (((t1 - t0) * r + (1 << (GELU_STEP - 1))) >> GELU_STEP)
    return np.where(h >= lim, h, np.where(h < -lim, 0, y))


# -- exact integer products through float BLAS ---------------------------------------------------
class IntDot:
    """``q @ w`` exactly for integer ``|q| <= 2**(A-1) - 1`` and int8 ``w`` (K, N).

    float32 in chunks of at most 1024 rows of ``w`` when ``A = 8`` (every partial sum below
    127 * 127 * 1024 < 2**24), float64 otherwise (below 2**30 << 2**53): exact in any order of
    the sums, so any BLAS, thread count or blocking gives the same integers."""

    CHUNK = 1024
    SMALL = 8          # rows at most: the optional integer kernel instead of BLAS

    def __init__(self, w: np.ndarray, bits: int, small=None):
        self.w = w
        self.bits = bits
        self.small = small           # kernel(q, w, out int32) for few rows, or None
        self.parts: list[np.ndarray] = []

    def _float_parts(self) -> list[np.ndarray]:
        if not self.parts:           # float copies made on first use (4 or 8 bytes a weight)
            w, k = self.w, self.w.shape[0]
            if self.bits == 8:
                self.parts = [np.ascontiguousarray(w[i:i + self.CHUNK], np.float32)
                              for i in range(0, k, self.CHUNK)]
            else:
                self.parts = [np.ascontiguousarray(w, np.float64)]
        return self.parts

    def __call__(self, q: np.ndarray) -> np.ndarray:
        if self.small is not None and len(q) <= self.SMALL:
            out = np.empty((len(q), self.w.shape[1]), np.int32)
            self.small(np.ascontiguousarray(q, np.int32), self.w, out)
            return out.astype(I64)
        parts = self._float_parts()
        qf: np.ndarray = q.astype(np.float32 if self.bits == 8 else np.float64)
        acc = np.zeros((len(q), self.w.shape[1]), I64)
        i = 0
        for p in parts:
            acc += (qf[:, i:i + p.shape[0]] @ p).astype(I64)
            i += p.shape[0]
        return acc


def lin(u: np.ndarray, dot: IntDot, m: np.ndarray, s: np.ndarray, b: np.ndarray,
        bits: int) -> np.ndarray:
    q, mu, eu = quant(u, bits)
    acc = dot(q)
    return clamp32(rq(acc * mu[:, None], m, s.astype(I64) + (bits - 1) - eu[:, None])
                   + b.astype(I64))


def table_from_logits(z: np.ndarray, exp_tab: np.ndarray,
                      precision: int = TABLE_PRECISION) -> np.ndarray:
    """TABLE of each row of logits ``z`` (rows, V): int32 frequencies summing to 2**P."""
    z = np.asarray(z, I64)
    v = z.shape[-1]
    zmax = z.max(axis=-1, keepdims=True)
    d = np.minimum((zmax - z + 32) >> 6, len(exp_tab) - 1)
    e = exp_tab[d].astype(I64)
    f = 1 + e * ((1 << precision) - v) // e.sum(axis=-1, keepdims=True)
    rest = (1 << precision) - f.sum(axis=-1)
    first = np.argmax(z == zmax, axis=-1)
    f[np.arange(len(f)), first] += rest
    return f.astype(np.int32)


# -- KV cache and the forward pass (the window pass and the step are the same code) -----------
class Cache:
    """Keys (quantized) and values of every token fed so far, per layer, for up to
    ``capacity`` positions (default: the model's), and the largest ``|v|`` of each layer."""

    def __init__(self, cfg: GPTConfig, capacity: int | None = None):
        n = cfg.n_positions if capacity is None else min(int(capacity), cfg.n_positions)
        h, dh = cfg.n_head, cfg.d_head
        self.cfg = cfg
        self.capacity = n
        self.n = 0
        # |q . k| <= 127 * 127 * dh < 2**24 when A = 8: float32 products are exact
        kdt = np.float32 if cfg.act_bits == 8 and dh <= 1040 else np.float64
        self.kq = np.zeros((cfg.n_layer, h, n, dh), kdt)
        self.km = np.zeros((cfg.n_layer, h, n), I64)
        self.ke = np.zeros((cfg.n_layer, h, n), I64)
        self.v = np.zeros((cfg.n_layer, h, n, dh), np.float64)
        self.vmax = np.zeros(cfg.n_layer, I64)         # max |v| stored per layer

    def reset(self) -> None:
        self.n = 0


class Runner:
    """The numpy reference of the spec: ``feed(ids, cache)`` runs tokens through the model,
    appending them to the cache; a window in one call or token by token give identical
    results."""

    QUERY_CHUNK = 256     # query rows per attention block (bounds the score matrices)
    ONE_LIMB = 1 << 53    # sum(w) * max|v| below this: w * v in one float64 product

    def __init__(self, model: Model, small=None, attend=None):
        """``small``: an exact integer kernel for products of few rows (see ``IntDot``);
        ``attend``: a kernel of the attention of few rows (``kernels.cpu.gpt.attend_rows``)."""
        self.attend = attend
        self.model = model
        self.cfg = model.cfg
        bits = self.cfg.act_bits
        self.dots = [{name: IntDot(getattr(lay, f"{name}_w"), bits, small) for name in LINS}
                     for lay in model.layers]
        self.head_dot = IntDot(model.top.head_w, bits, small)
        self.att_m, self.att_s = att_scale(self.cfg)

    def _lin(self, u, layer: Layer, li: int, name: str):
        return lin(u, self.dots[li][name], getattr(layer, f"{name}_m"),
                   getattr(layer, f"{name}_s"), getattr(layer, f"{name}_b"), self.cfg.act_bits)

    def _attend(self, q, k, v, cache: Cache, li: int, p0: int) -> np.ndarray:
        """Attention of rows at positions p0.. over the cache (this call's keys included)."""
        cfg = self.cfg
        a = cfg.act_bits
        h, dh = cfg.n_head, cfg.d_head
        n = q.shape[0]
        p1 = p0 + n
        if p1 > cache.capacity:
            raise ValueError(f"position {p1 - 1} beyond the cache's {cache.capacity}")
        kq, km, ke = quant(k.reshape(n, h, dh), a)
        cache.kq[li, :, p0:p1] = kq.transpose(1, 0, 2)
        cache.km[li, :, p0:p1] = km.T
        cache.ke[li, :, p0:p1] = ke.T
        vv = v.reshape(n, h, dh).transpose(1, 0, 2)
        cache.v[li, :, p0:p1] = vv
        if n:
            cache.vmax[li] = max(int(cache.vmax[li]) if p0 else 0, int(np.abs(vv).max()))
        qq, mq, eq = quant(q.reshape(n, h, dh), a)
        out = np.empty((h, n, dh), I64)
        if self.attend is not None and n <= IntDot.SMALL:
            from nacc.kernels.cpu.gpt import AttConst, KVLayer, Queries

            rows = Queries(np.ascontiguousarray(qq.transpose(1, 0, 2)),
                           np.ascontiguousarray(mq.T), np.ascontiguousarray(eq.T))
            kv = KVLayer(cache.kq[li], cache.km[li], cache.ke[li], cache.v[li])
            spec = AttConst(int(self.att_m), int(self.att_s), int(a), AMB)
            self.attend(rows, kv, p0, spec, self.model.tables.exp_att, out)
            return out.transpose(1, 0, 2).reshape(n, cfg.d_model)
        for c0 in range(0, n, self.QUERY_CHUNK):
            c1 = min(n, c0 + self.QUERY_CHUNK)
            out[:, c0:c1] = self._heads(cache, li, qq[c0:c1].transpose(1, 0, 2),
                                        mq[c0:c1].T, eq[c0:c1].T, p0 + c0)
        return out.transpose(1, 0, 2).reshape(n, cfg.d_model)

    def _heads(self, cache: Cache, li: int, qq, mq, eq, p0: int) -> np.ndarray:
        """Every head's output (H, rows, dh) for query rows at positions p0.. (``qq`` (H,
        rows, dh), ``mq``/``eq`` (H, rows)) over keys 0..their position."""
        a = self.cfg.act_bits
        p1 = p0 + qq.shape[1]
        exp_att = self.model.tables.exp_att
        kq = cache.kq[li, :, :p1]
        km = cache.km[li, :, None, :p1]
        ke = cache.ke[li, :, None, :p1]
        dot = np.rint(np.matmul(qq.astype(kq.dtype), kq.transpose(0, 2, 1))).astype(I64)
        t = rq(dot * mq[:, :, None], km, AMB)                       # |dot| < 2**28
        s = rq(t, self.att_m, self.att_s + 2 * (a - 1) + 22 - AMB - eq[:, :, None] - ke)
        valid = np.arange(p1)[None, :] <= np.arange(p0, p1)[:, None]
        s = np.where(valid, s, np.iinfo(I64).min // 4)
        smax = s.max(axis=2, keepdims=True)
        w = np.where(valid, exp_att[np.minimum(smax - s, len(exp_att) - 1)], 0)
        z = w.sum(axis=2, keepdims=True)
        wf = w.astype(np.float64)
        if int(z.max()) * int(cache.vmax[li]) < self.ONE_LIMB:
            # every partial sum of w * v is below sum(w) * max|v| < 2**53: exact in float64
            return (2 * np.rint(np.matmul(wf, cache.v[li, :, :p1])).astype(I64) + z) // (2 * z)
        # limbs: |w * (v >> 16)| sums < 2**16 * 2**15 * NP, w * (v & 0xFFFF) < 2**32 * NP
        v = cache.v[li, :, :p1]
        hi = np.floor(v / 65536.0)
        hi_s = np.rint(np.matmul(wf, hi)).astype(I64)
        lo_s = np.rint(np.matmul(wf, v - hi * 65536.0)).astype(I64)
        return (2 * ((hi_s << 16) + lo_s) + z) // (2 * z)

    def feed(self, ids: np.ndarray, cache: Cache, head_rows=None) -> np.ndarray:
        """Run ``ids`` at the cache's next positions; returns the logits (rows, NV) of the
        rows ``head_rows`` (default: all)."""
        return self.feed_lanes([(ids, cache, head_rows)])[0]

    def feed_lanes(self, jobs) -> list[np.ndarray]:
        """``feed`` of several ``(ids, cache, head_rows)`` at once (distinct caches): the rows
        of all jobs go through each matrix product together; the results are those of the
        jobs fed one by one."""
        cfg, top = self.cfg, self.model.top
        d = cfg.d_model
        spans = []
        xs = []
        r = 0
        for ids, cache, _ in jobs:
            ids = np.asarray(ids, I64).reshape(-1)
            p0 = cache.n
            if p0 + len(ids) > cfg.n_positions:
                raise ValueError(f"window of {p0 + len(ids)} positions exceeds the model's "
                                 f"{cfg.n_positions}")
            if ids.size and (ids.min() < 0 or ids.max() >= cfg.n_vocab):
                raise ValueError("token id outside the model's vocabulary")
            xs.append(top.wte[ids].astype(I64) + top.wpe[p0:p0 + len(ids)].astype(I64))
            spans.append((r, r + len(ids), p0))
            r += len(ids)
        x = np.concatenate(xs) if xs else np.zeros((0, d), I64)
        for li, lay in enumerate(self.model.layers):
            qkv = self._lin(layernorm(x, lay.ln1_g, lay.ln1_b, cfg.eps), lay, li, "attn")
            o = np.empty((len(x), d), I64)
            for (a, b, p0), (_, cache, _) in zip(spans, jobs):
                o[a:b] = self._attend(qkv[a:b, :d], qkv[a:b, d:2 * d], qkv[a:b, 2 * d:],
                                      cache, li, p0)
            x = clamp32(x + self._lin(o, lay, li, "proj"))
            hdn = self._lin(layernorm(x, lay.ln2_g, lay.ln2_b, cfg.eps), lay, li, "fc")
            x = clamp32(x + self._lin(gelu(hdn, self.model.tables.gelu), lay, li, "out"))
        rows = []
        for (a, b, p0), (_, cache, head_rows) in zip(spans, jobs):
            cache.n = p0 + (b - a)
            sel = np.arange(a, b) if head_rows is None else a + np.asarray(head_rows, I64)
            rows.append(sel)
        sel = np.concatenate(rows) if rows else np.zeros(0, I64)
        z = np.zeros((0, cfg.n_vocab), I64)
        if len(sel):
            f = layernorm(x[sel], top.lnf_g, top.lnf_b, cfg.eps)
            z = lin(f, self.head_dot, top.head_m, top.head_s, top.head_b, cfg.act_bits)
        out = []
        k = 0
        for sl in rows:
            out.append(z[k:k + len(sl)])
            k += len(sl)
        return out

    def tables(self, logits: np.ndarray) -> np.ndarray:
        """The tables over the codes (BOS excluded) of logits rows."""
        return table_from_logits(logits[:, :self.cfg.vocab], self.model.tables.exp_tab)
