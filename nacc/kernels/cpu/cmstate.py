"""Numba-free part of the ``cm`` kernels: constants, the config layout, the fixed integer
tables and the model state (``new_state``).  ``nacc.kernels.cpu.cm`` re-exports all of it;
it lives here so that the fast paths that run ahead-of-time compiled kernels
(``nacc.kernels.cpu.aot``) can set up a model without importing numba.
"""
from __future__ import annotations

import numpy as np

from nacc.spec import CODER_PRECISION

PREC = CODER_PRECISION      # table total 2**24, the coder's full precision
ONE = 1 << PREC
M32 = 0xFFFFFFFF
SIGN = 0x80000000           # counters are stored XOR 2**31 (so zeroed memory means p = 1/2)
NCTX = 7                    # tree contexts
NCAND = 4                   # match candidates: previous frame, left, up, older value
NIN = NCTX + NCAND + 1      # tree mixer inputs (+ bias)
NCC = 2                     # copy-node contexts
NCIN = NCC + 1              # copy mixer inputs (+ bias)
BUCKET = 32                 # counters per hash bucket (5 tree levels + the copy slot 0)
GROUP = 5                   # tree levels per bucket
NSMALL = 32                 # small context of the match confidences
RECENT = 16                 # window of the recent-copies count
NSEL1 = 128                 # tree weight sets per depth, selector 1
NSEL2 = 24                  # tree weight sets per depth, selector 2
NCSEL = 64                  # copy weight sets
NCAPM = 32                  # copy APM contexts
H1 = 0x2545F491
H2 = 0x5BD1E995
H3 = 0x1B873593

# cfg layout (int64 array); C_ORDER: coding order (0 raster-then-frame, 1 position-major),
# C_NFR: frames of the segment (read in order 1 only)
(C_V, C_B, C_H, C_W, C_HTB, C_LIMIT, C_LR, C_WINIT, C_APMR, C_MLIMIT, C_CTXMASK,
 C_CANDMASK, C_APMW, C_COPY, C_CCMASK, C_CHECK, C_ORDER, C_NFR, C_XCTX, C_MIX2,
 C_NCFG) = range(21)

# ctx layout: the context of token i (int64[X_N]; names as in the spec's "Context" section),
# filled by the kernels' ``_setup`` and read by every node; the Triton kernel keeps the same
# slots in its scratch
X_TREE = 0                  # X_TREE + k: c_k, hash of tree context k (k < NCTX)
X_CAND = 8                  # X_CAND + m: cand[m], leaf of match candidate m (m < NCAND)
X_SCTX = 12                 # sctx, small context of the match counters
X_CL = 13                   # cl
X_CU = 14                   # cu
X_RC = 15                   # rc
X_CSEL = 16                 # csel, the copy weight set
X_CACTX = 17                # cactx, the copy APM context
X_COPY = 20                 # X_COPY + k: q_k, hash of copy context k (k < NCC)
X_N = 24
# slots of the CPU kernels only (parameters xctx / mix2; the Triton kernel refuses them)
X_XTREE = 24                # X_XTREE + n: hash of the n-th enabled extra context
X_POS = 32                  # pos
X_LA = 33                   # la
X_NX = 34                   # the number of extra contexts (set bits of xctx)
X_NCPU = 35                 # ctx size of the CPU kernels
NX = 8                      # extra tree contexts (parameter xctx, a bit mask)
NM2 = 3                     # first-layer mixers of the 2-layer mixer (parameter mix2)
# info layout: what the prediction of the node at depth d leaves for its update
# (int64[I_N] per depth); I_BIT is the coded bit
I_SEL, I_SEL2, I_AI, I_PM, I_LOCAL, I_ONM, I_BIT = range(7)
I_N = 8
# the 2-layer mixer's per-node data after the I_* slots (CPU scratch only): the row of each
# first-layer mixer j >= 1, the final mixer's row, each first-layer output p_j and input s_j
I_M2ROW = I_N               # I_M2ROW + j (j = 1..NM2-1), I_M2ROW = the final row
I_M2P = I_M2ROW + NM2       # I_M2P + j: p_j
I_M2S = I_M2P + NM2         # I_M2S + j: s_j
I_NCPU = I_M2S + NM2
# cinfo layout: the same for the copy node; CI_SLOT + k: counter slot of copy context k
CI_SEL, CI_AI, CI_PM = range(3)
CI_SLOT = 4
CI_N = CI_SLOT + NCC

_SQ = np.array([1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
                2549, 2994, 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089,
                4092, 4093, 4094], dtype=np.int64)


def squash_table() -> np.ndarray:
    """squash(d) for d in -2047..2047 (index d + 2047), integer interpolation of _SQ."""
    d = np.arange(-2047, 2048, dtype=np.int64)
    w = d & 127
    k = (d >> 7) + 16
    return ((_SQ[k] * (128 - w) + _SQ[np.minimum(k + 1, 32)] * w + 64) >> 7).astype(np.int32)


def stretch_table(sq: np.ndarray) -> np.ndarray:
    """stretch(p) for p in 0..4095: the smallest d with squash(d) >= p (2047 if none)."""
    st = np.searchsorted(sq.astype(np.int64), np.arange(4096), side="left") - 2047
    return np.minimum(st, 2047).astype(np.int32)


def rate_table() -> np.ndarray:
    """Counter adaptation rates: rt[n] = 131072 // (2n + 3) (= 65536 / (n + 1.5))."""
    n = np.arange(1024, dtype=np.int64)
    return (131072 // (2 * n + 3)).astype(np.int32)


SQUASH = squash_table()
STRETCH = stretch_table(SQUASH)
RATES = rate_table()
TABLES = (SQUASH, STRETCH, RATES)


def apm_init(n_ctx: int) -> np.ndarray:
    j = np.arange(33, dtype=np.int64)
    row = SQUASH[np.clip((j - 16) * 128, -2047, 2047) + 2047].astype(np.int64) * 16
    return np.tile(row, n_ctx).astype(np.int32)


def mix2_bases(cfg: np.ndarray) -> tuple[int, int, int]:
    """First rows of the 2-layer mixer's weight sets in ``w``: mixer 1 (by depth and
    position), mixer 2 (by depth and cluster of a), the final mixer (by depth and on)."""
    b = int(cfg[C_B])
    r1 = b * (NSEL1 + NSEL2)
    r2 = r1 + b * int(cfg[C_H]) * int(cfg[C_W])
    return r1, r2, r2 + b * 33


def mix2_rows(cfg: np.ndarray) -> int:
    """Rows of ``w`` that the 2-layer mixer adds (0 without it)."""
    if not cfg[C_MIX2]:
        return 0
    r1, _, rf = mix2_bases(cfg)
    return rf - r1 + int(cfg[C_B]) * 8


def new_state(cfg: np.ndarray, warm, apply_counters):
    """Fresh model state for config ``cfg`` (see the spec for the initial values); ``warm``
    (a dict of arrays, see ``models/cm-prior``) replaces the initial values with a prior,
    whose hashed counters ``apply_counters`` (a compiled ``cm.apply_counters``) writes."""
    b = int(cfg[C_B])
    # np.zeros: pages are mapped as first touched; pre-faulting (MAP_POPULATE) or huge pages
    # measured slower in CPU time here, even with a prior that touches every page
    # with checked buckets (C_CHECK) one more bucket at the end: the null bucket, always zero
    ht = np.zeros((1 << int(cfg[C_HTB])) + (BUCKET if cfg[C_CHECK] else 0), np.uint32)
    w = np.zeros((b * (NSEL1 + NSEL2) + mix2_rows(cfg), NIN + bin(int(cfg[C_XCTX])).count("1")),
                 np.int32)
    w[: b * NSEL1] = int(cfg[C_WINIT])
    if cfg[C_MIX2]:
        r1, r2, rf = mix2_bases(cfg)
        w[r1:rf] = int(cfg[C_WINIT])
        w[rf:, 0] = 65536       # the final mixer starts as the plain mixer alone
    apm = apm_init(b * 8)
    mc = np.zeros(NCAND * NSMALL * b, np.uint32)
    cw = np.full((NCSEL, NCIN), int(cfg[C_WINIT]), np.int32)
    capm = apm_init(NCAPM)
    if warm is not None:
        for name, arr in (("w", w), ("apm", apm), ("mc", mc), ("cw", cw), ("capm", capm)):
            src = warm[name]
            if src.shape != arr.shape or src.dtype != arr.dtype:
                raise ValueError(f"cm prior: {name} has shape {src.shape}, want {arr.shape}")
            arr[...] = src
        # the kernel's int64 inputs in one allocation (one large block, ~2 ms less than three)
        kvn = np.empty((3, warm["ht_kind"].shape[0]), np.int64)
        for row, name in zip(kvn, ("ht_kind", "ht_value", "ht_node")):
            row[...] = warm[name]
        apply_counters(ht, kvn[0], kvn[1], kvn[2], warm["ht_counter"], cfg)
    return ht, w, apm, mc, cw, capm


# -- a warm state as one raw file (the ``.cmw`` files of ``models/cm-prior``) ----------------
# Layout: WARM_MAGIC, u32 count, then per array a record <16s name, 4s dtype, u32 ndim,
# u32 shape[4], u64 offset>, then the arrays' bytes, each at its offset (a multiple of 16,
# from the start of the file), little-endian, C order.  Loading is a view per array: no
# decompression, no archive walk.
WARM_MAGIC = b"NACCCMW1"
_WARM_REC = np.dtype([("name", "S16"), ("dtype", "S4"), ("ndim", "<u4"), ("shape", "<u4", 4),
                      ("offset", "<u8")])
WARM_DTYPES = ("<i4", "<u4", "<i2", "<u2", "|u1")


def pack_warm(arrays: dict) -> bytes:
    """The raw file of a warm state (a dict name -> array of a dtype in WARM_DTYPES)."""
    recs = np.zeros(len(arrays), _WARM_REC)
    off = -(-(len(WARM_MAGIC) + 4 + recs.nbytes) // 16) * 16
    blobs = []
    for r, (name, arr) in zip(recs, arrays.items()):
        a = np.ascontiguousarray(arr)
        dt = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        if dt.str not in WARM_DTYPES or a.ndim > 4:
            raise ValueError(f"warm array {name}: dtype {a.dtype} / {a.ndim} dims not storable")
        r["name"], r["dtype"], r["ndim"] = name.encode(), dt.str.encode(), a.ndim
        r["shape"][: a.ndim] = a.shape
        r["offset"] = off
        data = a.astype(dt, copy=False).tobytes()
        blobs.append(data + bytes(-len(data) % 16))
        off += len(blobs[-1])
    head = WARM_MAGIC + np.uint32(len(arrays)).astype("<u4").tobytes() + recs.tobytes()
    return head + bytes(-len(head) % 16) + b"".join(blobs)


def unpack_warm(buf) -> dict:
    """The arrays of a raw warm-state file (read-only views into ``buf``); ValueError when
    ``buf`` is not one."""
    mv = memoryview(buf)
    if bytes(mv[:8]) != WARM_MAGIC or len(mv) < 12:
        raise ValueError("not a cm warm-state file (bad magic)")
    count = int(np.frombuffer(mv, "<u4", 1, 8)[0])
    if 12 + count * _WARM_REC.itemsize > len(mv):
        raise ValueError("cm warm-state file truncated (header)")
    recs = np.frombuffer(mv, _WARM_REC, count, 12)
    out = {}
    for r in recs:
        dt = r["dtype"].decode("ascii", "replace")
        nd = int(r["ndim"])
        if dt not in WARM_DTYPES or nd > 4:
            raise ValueError(f"cm warm-state file: bad dtype {dt!r} or {nd} dims")
        shape = tuple(int(s) for s in r["shape"][:nd])
        n = int(np.prod(shape, dtype=np.int64))
        off = int(r["offset"])
        if off % 16 or off + n * np.dtype(dt).itemsize > len(mv):
            raise ValueError("cm warm-state file truncated (data)")
        out[r["name"].decode("ascii", "replace")] = np.frombuffer(mv, dt, n, off).reshape(shape)
    return out
