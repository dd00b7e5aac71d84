"""``cm``: online context mixing over a binary code tree (the default predictor).

Every token gets one table of V integer frequencies (each >= 1, total exactly 2**24),
computed from the tokens before it by integer arithmetic only.  The table is the product of
(1) a *copy node* that gives the token at the same position in the previous frame a mass of
its own and (2) a binary *code tree* over the other symbols whose node probabilities come
from logistic mixing of adaptive bit counters, match models and an APM.  Encode and decode
walk only the B nodes on one root-to-leaf path; ``tables()`` expands every node.

SPEC.  All quantities are integers.  ``>>`` on a negative number is the arithmetic (floor)
shift; ``&`` on a negative number is two's complement.  No intermediate exceeds 2**63 in
magnitude, so int64 arithmetic (numba, or Triton int64) is exact; nothing wraps.

Constants
    P = 24 (table total 2**24), B = max(1, bit_length(V - 1)) (tree depth), M32 = 2**32 - 1,
    SIGN = 2**31, H1 = 0x2545F491, H2 = 0x5BD1E995, H3 = 0x1B873593, HTB = 24 (hash table of
    2**HTB counters), mask = 2**(HTB - 5) - 1, LIMIT = 255, MLIMIT = 1023, LR = 4,
    WINIT = 10000, APMR = 7, AW = 2, RECENT = 16, NCTX = 7, NCAND = 4, NCC = 2.

Integer tables (built by integer code at import; the golden test pins their sha256)
    SQ = [1,2,3,6,10,16,27,45,73,120,194,310,488,747,1101,1546,2047,2549,2994,3348,3607,
          3785,3901,3975,4022,4050,4068,4079,4085,4089,4092,4093,4094]
    squash(d), d clamped to [-2047, 2047]: k = (d >> 7) + 16, w = d & 127,
        squash(d) = (SQ[k] * (128 - w) + SQ[min(k + 1, 32)] * w + 64) >> 7       (0..4095)
    stretch(p), p in 0..4095: the smallest d in [-2047, 2047] with squash(d) >= p, else 2047
    rates[n] = 131072 // (2n + 3), n in 0..1023

Leaf order
    perm[s] is the leaf of symbol s: the identity, or a shipped tree prior (a permutation of
    0..1023, ``models/cm-prior``).  Leaf j in [0, 2**B) is *valid* when j < V.  A node at
    depth d (0..B-1) is identified by ``prefix``, the d leading bits of its leaves; its
    children are prefix*2 (left, bit 0) and prefix*2+1 (right, bit 1).

Hashing
    hmix(h, v) = g ^ (g >> 15) where g = ((h ^ (v & M32)) * H1) & M32
    ctxhash(0, _) = hmix(H2, 0); ctxhash(k, v) = hmix(hmix(((k + 1) * H2) & M32, k), v + 1)
    bucket(c, g, gp) = ((hmix(hmix(c, g + 1), gp + 1) * H3) & M32 & mask) * 32
    A *counter* is a uint32 stored XOR SIGN; its logical value e holds p22 = e >> 10 (the
    probability of a 1, 22 bits) and n = e & 1023 (a count).  Zeroed memory is p = 1/2, n = 0.
    p12(e) = e >> 20.  Update with bit y and limit L:
        p22 += (((y << 22) - p22) * rates[n]) >> 16;  if n < L: n += 1
    Tree counters live at ht[bucket(...) + local], local = (1 << dd) | (prefix & (2**dd - 1))
    with g = d // 5, dd = d % 5, gp = prefix >> dd (local 1..31); copy counters at
    ht[((c * H3) & M32 & mask) * 32] (local 0).

Context of token i = (t, y, x) (hist = the tokens before i, coding order; a neighbour is -1
when outside the frame, before frame 0, or not yet coded)
    a, a2, a3 = token at (y, x) in frames t-1, t-2, t-3; l = (t, y, x-1); u = (t, y-1, x);
    ul = (t, y-1, x-1); ur = (t, y-1, x+1); pal, pau, pul, pur = the same offsets of l, u,
    ul, ur in frame t-1.  cl = [l >= 0 and l == pal], cu = [u >= 0 and u == pau],
    cul = [ul >= 0 and ul == pul], cur = [ur >= 0 and ur == pur], aa = [a >= 0 and a == a2],
    pos = y * W + x.
    run = number of frames k = t-2, t-3, ... (k >= 0, at most 15) with token (k, y, x) == a,
        counted while equal (0 if a < 0); rq = min(run, 3).
    b = token (t - 2 - run, y, x) if a >= 0 and t - 2 - run >= 0, else -1.
    rc from nc = #{j : max(i - 16, H*W) <= j < i, hist[j] == hist[j - H*W]}:
        rc = 0 if nc <= 2, 1 if nc <= 6, 2 if nc <= 11, else 3.
    la = perm[a] if a >= 0 else -1.
    Tree contexts c_k = ctxhash(k, v_k), k = 0..6, v = (0, a, pos, a2, a3, la >> 3, la >> 5).
    Match candidates (leaves, -1 if the token is -1): cand = (la, perm[l], perm[u], perm[b]);
        sctx = (cl + 2 cu + 4 aa) * 4 + rc.
    Copy contexts: q_0 = hmix((11 H2) & M32, ((((cl*2 + cu)*2 + cul)*2 + cur)*2 + aa)*4 + rc),
        q_1 = hmix((12 H2) & M32, pos + 1); copy weight set csel = ((rq*2 + cl)*2 + cu)*4 + rc;
        copy APM context cactx = rq*8 + cl*4 + cu*2 + aa.

State (all zero / initial unless a warm prior replaces it; ``new_state``)
    ht[2**HTB] counters; w[B*152, 12] int32 mixer weights (rows < B*128 start at WINIT, the
    others at 0); apm[B*8*33] and capm[32*33] int32, row entry j initialised to
    squash(clamp((j - 16) * 128)) * 16; mc[4 * 32 * B] match counters; cw[64, 3] int32 = WINIT.

Node prediction at depth d, prefix (pre-token state)
    x_k = stretch(p12(ctr_k)) for the 7 tree counters (k = 0..6; 0 if masked out);
        na = n of ctr_1, npos = n of ctr_2.
    For m = 0..3 with c = cand[m] >= 0 and (c >> (B - d)) == prefix ("on path"):
        s = stretch(p12(mc[(m*32 + sctx)*B + d])), x_{7+m} = s if bit (B-1-d) of c is 1 else -s;
        on |= 1 << m for m < 3.  Otherwise x_{7+m} = 0.   x_11 = 256 (bias).
    sel = (((d*8 + on)*2 + cl)*2 + cu)*4 + rc;  sel2 = B*128 + (d*6 + A(na))*4 + Q(npos) with
        A(n) = n for n <= 2, 3 for n <= 4, 4 for n <= 8, else 5; Q(n) = 0 if n == 0,
        1 if n <= 3, 2 if n <= 15, else 3.
    pm = squash(clamp((sum_k (w[sel,k] + w[sel2,k]) * x_k) >> 16, -2047, 2047))
    APM: s2 = stretch(pm) + 2048, lo = s2 >> 7, wt = s2 & 127, base = (d*8 + on)*33 + lo,
        pa = (apm[base]*(128 - wt) + apm[base+1]*wt) >> 11, its update index ai = base + (wt >> 6).
    p = clamp((pm*(4 - AW) + pa*AW) >> 2, 1, 4095)  = P(bit = 1) in 1/4096.
Copy probability (when a >= 0): the same with inputs stretch(p12) of the 2 copy counters
    and the bias, weights cw[csel], APM capm at cactx: pc in 1..4095.

Table
    ax = la (the copy leaf) if a >= 0, else no copy node (ax = -1, cmass = 0).
    cmass = min(pc << 12, 2**24 - (V - 1)).  The tree carries T = 2**24 - cmass over the valid
    leaves other than ax.  Top down from the root (mass T): a node of tree mass M whose
    children hold nl and nr valid leaves other than ax gets
        right = 0 if nr == 0; M if nl == 0; else clamp((M * p) >> 12, nr, M - nl); left = M - right.
    freq[s] = tree mass of leaf perm[s] for s != a; freq[a] = cmass.
    Interval layout: leaf order -- start(s) = sum of freq over symbols with a smaller leaf.
    With the identity order that is symbol order (the contract); a tree prior lays intervals
    out in leaf order and sets ``self.order = perm`` (the coder must use that order).
    Encode/decode walk one path keeping the *combined* mass: a node's mass plus cmass when ax
    lies below it; decode goes right iff q >= start + left (combined).

Update with the coded token s (leaf L), after its table is used, in this order
    1. if a >= 0: copy counters (ascending, y = [s == a], limit LIMIT), copy mixer
       (err = ((y << 12) - pm) * LR; cw[csel,k] = clampw(cw[csel,k] + ((x_k * err) >> 14))),
       copy APM (capm[ai] += ((y << 16) - capm[ai]) >> APMR).
    2. if s != a: for d = 0..B-1 along L's path (y = bit of L at depth d): the 7 tree counters
       (k ascending, limit LIMIT); each on-path match counter m ascending with
       y = [bit of cand[m] == y] (limit MLIMIT); both weight rows
       (dw = (x_k * err) >> 14, err = ((y << 12) - pm) * LR, w = clampw(w + dw) for sel, then
       sel2); apm[ai] as above.  clampw(v) = clamp(v, -16777215, 16777215).
    Updates apply sequentially: a counter reached twice (hash collision) is updated twice.

Checked buckets (parameter ``check`` = 1; absent or 0: the plain buckets above)
    The table has 2**HTB + 32 counters; the last 32 (the null bucket, index N0 = 2**HTB) are
    never written.  A tree bucket is found from h = hmix(hmix(c, g + 1), gp + 1) (c, g, gp
    as in ``bucket``), a copy bucket from h = q_k; chk(h) = ((h * H2) & M32) | 1.  Of the
    pair j0 = ((h * H3) & M32 & mask) * 32 and j1 = j0 ^ 32, the bucket is the one whose
    slot 0 holds chk(h) (j0 first).  Predictions (the copy node, every tree node, and every
    node of ``tables()``) use the null bucket when neither holds it.  Updates (and a prior's
    counters, in their order) *claim* one instead: of j0 and j1 the one whose slot 1 has the
    smaller count n (j0 on a tie), slots 1..31 zeroed, slot 0 := chk(h).  The update walk
    looks its buckets up again (claiming) before it updates them, the copy update likewise,
    each context in order k = 0..6 at the first depth of each group.  A tree counter is at
    bucket + local (local 1..31 as above); a copy counter at bucket + 1.

Coding order (parameter ``order`` = 1; absent or 0: the order above)
    Order 0 codes token (t, y, x) of a segment of T frames at index i = (t*H + y)*W + x.
    Order 1 (position-major) codes it at i = (y*W + x)*T + t: the T frames of position 0,
    then of position 1, and so on; the kernels read T from the config (``coding_order``).
    "Before i" and "not yet coded" refer to this order: every frame of the positions before
    (y, x) is known, frames t' < t of (y, x), nothing after.  Every context keeps its
    definition, except rc: nc counts the copies among the RECENT frames before t at (y, x)
    (the tokens before i in this order, within the position):
        nc = #{k : max(t - 16, 1) <= k < t, token (k, y, x) == token (k - 1, y, x)}.
    Intervals and rANS words follow the coding order, and decode restores frame order at
    the end: order 1 needs the whole segment, so it has no per-frame ``tables()``, no
    stepper, no GPU kernel and no external input.

Extra contexts (parameter ``xctx``, a bit mask over j = 0..7; absent or 0: none of this)
    par = token (t-1, y, x+1), pab = token (t-1, y+1, x) (-1 as above).  Extra context j
    hashes (v1, v2, v3) = (a, l, -1), (a, u, -1), (l, u, -1), (a, pos, -1), (a, a2, -1),
    (a, par, -1), (a, pab, -1), (a, l, u) for j = 0..7:
        e_j = hmix(hmix(ctxhash(7 + j, v1), v2 + 1), v3 + 1).
    With n set bits, the enabled contexts in j order are extra contexts 0..n-1 and w has
    12 + n columns (columns 12.. start like the others).  Extra context m is one more tree
    context: its bucket is looked up (claimed) after those of c_0..c_6, m ascending; mixer
    input x_{12+m} = stretch(p12(its counter)); the dot products and weight updates run over
    k = 0..11+n; its counter is updated after the sel / sel2 rows (m ascending).

2-layer mixer (parameter ``mix2`` = 1; absent or 0: none of this)
    w gets B*H*W + B*33 + B*8 more rows after its B*152: r1 = B*152, r2 = r1 + B*H*W,
    rf = r2 + B*33; rows before rf start at WINIT, rows from rf at (65536, 0, 0, 0, ...).
    At a node (d, on as above) with inputs x_k (k < 12 + n, n = 0 without xctx):
    s_0 = clamp(dot >> 16, -2047, 2047) of the mixer above, p_0 = its pm;
    mixer 1 row R1 = r1 + d*H*W + pos, mixer 2 row R2 = r2 + d*33 + (la >> max(B - 5, 0)) + 1,
        s_j = clamp((sum_k w[R_j,k] x_k) >> 16, -2047, 2047), p_j = squash(s_j) (j = 1, 2);
    final row F = rf + d*8 + on: pm = squash((sum_j w[F,j] s_j + w[F,3] * 256) >> 16),
        which replaces pm in the APM and in p.
    Update: the sel / sel2 rows with err = ((y << 12) - p_0) * LR; then for j = 1, 2
    w[R_j,k] = clampw(w[R_j,k] + ((x_k * err_j) >> 14)), err_j = ((y << 12) - p_j) * LR; then
    w[F,j] = clampw(w[F,j] + ((s_j * err) >> 14)) (j = 0..2) and w[F,3] likewise with 256,
    err = ((y << 12) - pm) * LR; then the APM.
    A warm prior fitted with xctx / mix2 has their weights, not the extra contexts' counters;
    no shipped prior is fitted with them (the predictor refuses the pair).

External input (parameter ``model``: a neural predictor's folder, ``transformer``, ``lstm`` or
``gpt``; without it none of this runs)
    The neural predictor gives token i a table f (symbol order, total 2**P', scaled by
    << (24 - P') to total 2**24) from the same tokens before i.  cum[j] = sum of f[s] over
    symbols with perm[s] < j (j = 0..2**B).  fa = cum[ax + 1] - cum[ax] when ax >= 0, else 0.
    Node (d, prefix), leaves [lo, lo + 2 size) with size = 2**(B-1-d): L / R = cum mass of
    the left / right half, minus fa on the side holding ax;
        pn = 2048 if L + R == 0, else clamp((R << 12) // (L + R), 1, 4095).
    Copy node: pn = clamp(fa >> 12, 1, 4095).
    Final mixer, state w2[B + 1, 4] int32, every row initialised to (65536, 0, 0, 0): the
    weights of the cm input, the external input and the bias, and n, the row's update
    count.  Row r = d for the tree node at depth d, r = B for the copy node:
        x = (stretch(p), stretch(pn), 256),  p' = clamp(squash((sum_k w2[r,k] x_k) >> 16), 1, 4095),
    and p' replaces p (pc) wherever the table uses it.  Update, right after the copy update
    (y as there) and right after each tree node's update (y of that node), with the x and
    p' of that node and n = w2[r,3]:  err = ((y << 12) - p') * LR * (15 * 64 // (64 + n) + 1),
    w2[r,k] = clampw(w2[r,k] + ((x_k * err) >> 14)) for k = 0..2, then n += 1 if n < 65535.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import numpy as np

from nacc.errors import NaccError
from nacc.fileio import MAX_MODEL_FILE_BYTES, load_json, open_input
from nacc.kernels.cpu import aot
from nacc.kernels.cpu import cmstate as K0
from nacc.models import shipped_dir
from nacc.predictors.base import Predictor, Stepper, build, register

if TYPE_CHECKING:  # the neural predictors are an optional module
    from nacc.predictors.neural import _Neural

PRECISION = K0.PREC
PRIOR_DIR = shipped_dir("cm-prior")

# fixed hyper-parameters (chosen on frames 0-299 of the dev clip: code 0-299, measure 150-299)
HASH_BITS = 24          # 2**24 counters of 4 bytes (64 MiB, mostly untouched on short clips)
COUNT_LIMIT = 255       # counter adaptation stops slowing down at 1/256.5
MATCH_LIMIT = 1023      # match-confidence counters
MIX_LR = 4              # mixer learning rate
MIX_WINIT = 10000       # initial mixer weight (16.16 fixed point)
APM_RATE = 7            # APM update shift
APM_WEIGHT = 2          # final p = (p_mix * (4 - APM_WEIGHT) + p_apm * APM_WEIGHT) >> 2

ALL_CTX = (1 << K0.NCTX) - 1
ALL_CAND = (1 << K0.NCAND) - 1
ALL_COPY = (1 << K0.NCC) - 1
ALL_XCTX = (1 << K0.NX) - 1
PRIORS_FILE = "priors.json"
READ_CHUNK = 1 << 18    # prior files are hashed while read, in chunks of this many bytes
NEURAL_ARCHS = ("transformer", "lstm")   # what a ``model`` folder may hold


def _jit():
    """The numba kernels (imported on first use: the encode / decode fast paths run the
    ahead-of-time build of the same kernels when there is one, see ``aot``)."""
    from nacc.kernels.cpu import cm

    return cm


def __getattr__(name: str):
    if name == "K":  # the numba kernel module, imported on first use
        return _jit()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tree_bits(vocab: int) -> int:
    """B: depth of the code tree, the smallest B >= 1 with 2**B >= vocab."""
    return max(1, int(vocab - 1).bit_length())


def _read_checked(name: str, digest_hex: str) -> bytearray:
    """The bytes of prior file ``name``, its sha256 checked while they are read."""
    try:
        fd, st = open_input(os.path.join(PRIOR_DIR, name), streams=False)
        with os.fdopen(fd, "rb", buffering=0) as f:
            if st.st_size > MAX_MODEL_FILE_BYTES:
                raise NaccError(f"cm prior file {name}: {st.st_size} bytes, more than "
                                f"{MAX_MODEL_FILE_BYTES}")
            data = bytearray(st.st_size)
            view = memoryview(data)
            h = hashlib.sha256()
            pos = 0
            while pos < len(data):
                n = f.readinto(view[pos:pos + READ_CHUNK])
                if not n:
                    break
                h.update(view[pos:pos + n])
                pos += n
            if pos != len(data) or f.read(1):
                raise OSError(f"{name}: changed while read")
    except OSError as e:
        raise NaccError(f"cm prior file missing: {e}") from None
    if h.hexdigest() != digest_hex or digest_hex[:16] not in name:
        raise NaccError(f"cm prior file {name}: hash mismatch")
    return data


def load_prior(name: str, vocab: int):
    """(perm int64[V], warm dict or None, sha256 digest) of a shipped prior; the identity
    order, no warm state and b"" for "none"."""
    if name == "none":
        return np.arange(vocab, dtype=np.int64), None, b""
    path = os.path.join(PRIOR_DIR, PRIORS_FILE)
    try:
        cfg = load_json(path, what="prior index")
    except OSError as e:
        raise NaccError(f"cm priors missing: {e}") from None
    except (ValueError, RecursionError) as e:
        raise NaccError(f"{path}: not JSON ({e})") from None
    try:
        return _load_entry(cfg, name, vocab)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError) as e:
        raise NaccError(f"{path}: malformed entry for prior {name!r} ({type(e).__name__}: "
                        f"{e})") from None


def _load_entry(cfg, name: str, vocab: int):
    entry = cfg["priors"].get(name)
    if entry is None:
        raise NaccError(f"cm prior {name!r} not found (have {', '.join(sorted(cfg['priors']))})")
    if entry["vocab"] != vocab:
        raise NaccError(f"cm prior {name!r} is for vocabulary {entry['vocab']}, not {vocab}")
    h = hashlib.sha256(json.dumps(entry, sort_keys=True).encode())
    perm = np.arange(vocab, dtype=np.int64)
    if entry.get("tree"):
        data = _read_checked(entry["tree"], cfg["sha256"][entry["tree"]])
        h.update(data)
        perm = np.frombuffer(data, "<u2").astype(np.int64)
        if perm.shape != (vocab,) or not np.array_equal(np.sort(perm), np.arange(vocab)):
            raise NaccError(f"cm prior {name!r} is not a permutation of {vocab} codes")
    warm = None
    if entry.get("warm"):
        digest = cfg["sha256"][entry["warm"]]
        data = _read_checked(entry["warm"], digest)
        if entry["warm"].endswith(".cmw"):
            h.update(bytes.fromhex(digest))     # its checked sha256 stands for its bytes
            warm = K0.unpack_warm(data)
        else:
            h.update(data)
            with np.load(io.BytesIO(data)) as z:
                warm = {k: z[k] for k in z.files}
    return perm, warm, h.digest()


DEFAULT_PRIOR = "commavq-v5"     # for V = 1024


def default_prior(vocab: int) -> str:
    """The prior used unless one is named: for V = 1024 a learned code tree with the whole
    warm-start state (``commavq-v5``, fitted on all 600 frames of the dev clip with the
    recipe of ``commavq-v4``, which was fitted on frames 0-449), else none."""
    return DEFAULT_PRIOR if vocab == 1024 else "none"


def _neural(vocab: int, frame_shape: tuple[int, int], model: str) -> _Neural:
    """The neural predictor of the model folder ``model`` (architecture from its config; a
    ``gpt`` folder, ``nacc.gpt.modelfile``, gives the ``gpt`` predictor with its default
    context policy)."""
    from nacc.gpt.modelfile import FORMAT as GPT_FORMAT

    try:
        info = load_json(os.path.join(model, "config.json"), what="model config")
        if isinstance(info, dict) and info.get("format") == GPT_FORMAT:
            return cast("_Neural", build("gpt", vocab, frame_shape, {"model": model}))
        arch = info["arch"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise NaccError(f"{model}: not a model folder ({e})") from None
    if arch not in NEURAL_ARCHS:       # "cm" here would recurse without end
        raise NaccError(f"{model}: config arch {arch!r} is not a neural model "
                        f"({', '.join(NEURAL_ARCHS)})")
    return cast("_Neural", build(arch, vocab, frame_shape, {"model": model}))


def make_cfg(vocab: int, frame_shape: tuple[int, int], ctx_mask: int = ALL_CTX,
             cand_mask: int = ALL_CAND, apm_weight: int = APM_WEIGHT, copy: int = 1,
             copy_mask: int = ALL_COPY, check: int = 0, order: int = 0, xctx: int = 0,
             mix2: int = 0, htb: int = HASH_BITS) -> np.ndarray:
    """The int64 config array of the kernels (layout: nacc.kernels.cpu.cm.C_*)."""
    cfg = np.zeros(K0.C_NCFG, np.int64)
    cfg[K0.C_V] = vocab
    cfg[K0.C_B] = tree_bits(vocab)
    cfg[K0.C_H], cfg[K0.C_W] = frame_shape
    cfg[K0.C_HTB] = htb
    cfg[K0.C_LIMIT] = COUNT_LIMIT
    cfg[K0.C_LR] = MIX_LR
    cfg[K0.C_WINIT] = MIX_WINIT
    cfg[K0.C_APMR] = APM_RATE
    cfg[K0.C_MLIMIT] = MATCH_LIMIT
    cfg[K0.C_CTXMASK] = ctx_mask
    cfg[K0.C_CANDMASK] = cand_mask
    cfg[K0.C_APMW] = apm_weight
    cfg[K0.C_COPY] = copy
    cfg[K0.C_CCMASK] = copy_mask
    cfg[K0.C_CHECK] = check
    cfg[K0.C_ORDER] = order
    cfg[K0.C_XCTX] = xctx
    cfg[K0.C_MIX2] = mix2
    return cfg


def coding_order(cfg: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 flat in the coding order of ``cfg``, the config of this segment): order
    0 is raster-then-frame; order 1 position-major (all T frames of position 0, then of
    position 1, ...), whose config records T."""
    tok = np.ascontiguousarray(tokens, np.int32)
    seg = segment_cfg(cfg, len(tok))
    if not cfg[K0.C_ORDER]:
        return tok.ravel(), seg
    return np.ascontiguousarray(tok.reshape(len(tok), -1).T).ravel(), seg


def segment_cfg(cfg: np.ndarray, n_frames: int) -> np.ndarray:
    """The config of a segment of ``n_frames`` frames: ``cfg`` itself in order 0, else a
    copy that records T = n_frames (order 1)."""
    if not cfg[K0.C_ORDER]:
        return cfg
    seg = cfg.copy()
    seg[K0.C_NFR] = n_frames
    return seg


def frame_order(cfg: np.ndarray, flat: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Tokens (T, H, W) from ``flat`` in the coding order of ``cfg`` (``coding_order``'s
    inverse)."""
    if not cfg[K0.C_ORDER]:
        return flat.reshape(shape)
    return np.ascontiguousarray(flat.reshape(shape[1] * shape[2], shape[0]).T).reshape(shape)


class _CmNeuralStepper(Stepper):
    """Decode order with the neural table as the external input."""

    def __init__(self, pred: CM):
        self._p = pred
        self._k = K = _jit()
        self._state = K.new_state(pred.cfg, pred.warm)
        self._w2 = K.new_ext_weights(pred.cfg)
        assert pred.nn is not None      # this stepper is the one of a cm with a model
        self._nn = pred.nn.stepper()
        self._hist = np.zeros(1024, np.int32)
        self._i = 0
        self._row: np.ndarray | None = None

    def table(self) -> np.ndarray:
        self._row = self._p.ext_rows(self._nn.table())
        out = np.empty(self._p.vocab, np.int32)
        K = self._k
        K.ext_step_table(self._hist, self._i, self._p.cfg, self._p.perm, self._state, K.TABLES,
                         self._row, self._w2, out)
        return out

    def push(self, symbol: int) -> None:
        if self._row is None:
            raise RuntimeError("push() before table()")
        if self._i >= len(self._hist):
            self._hist = np.concatenate([self._hist, np.zeros_like(self._hist)])
        self._hist[self._i] = int(symbol)
        K = self._k
        K.ext_push(self._hist, self._i, self._p.cfg, self._p.perm, self._state, K.TABLES,
                   self._row, self._w2)
        self._nn.push(int(symbol))
        self._row = None
        self._i += 1


class _CmStepper(Stepper):
    def __init__(self, pred: CM):
        self._p = pred
        self._k = K = _jit()
        self._state = K.new_state(pred.cfg, pred.warm)
        self._hist = np.zeros(1024, np.int32)
        self._i = 0

    def table(self) -> np.ndarray:
        out = np.empty(self._p.vocab, np.int32)
        K = self._k
        K.step_table(self._hist, self._i, self._p.cfg, self._p.perm, self._state, K.TABLES,
                     out)
        return out

    def push(self, symbol: int) -> None:
        if self._i >= len(self._hist):
            self._hist = np.concatenate([self._hist, np.zeros_like(self._hist)])
        self._hist[self._i] = int(symbol)
        K = self._k
        K.step_push(self._hist, self._i, self._p.cfg, self._p.perm, self._state, K.TABLES)
        self._i += 1


@register
class CM(Predictor):
    name = "cm"
    kernels = {"triton": "nacc.kernels.triton.drivers"}
    precision = PRECISION

    def backend_kernels(self) -> dict[str, str]:
        """No GPU kernel with a neural input (its external tables), checked buckets, the
        position-major order, extra contexts or the 2-layer mixer."""
        if self.nn is not None or self.check or self.coding or self.xctx or self.mix2:
            return {}
        return self.kernels

    def __init__(self, vocab: int, frame_shape: tuple[int, int], prior: str = "default",
                 model: str | None = None, check: int = 0, order: int = 0, xctx: int = 0,
                 mix2: int = 0):
        super().__init__(vocab, frame_shape)
        for name, v, top in (("check", check, 1), ("order", order, 1), ("xctx", xctx, ALL_XCTX),
                             ("mix2", mix2, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise NaccError(f"cm: {name} must be an integer in 0..{top}, not {v!r}")
        self.check = int(check)     # 1: checked buckets (see the spec); recorded when 1
        self.coding = int(order)    # 1: position-major coding order; recorded when 1
        self.xctx = int(xctx)       # extra tree contexts (bit mask, see the spec); when not 0
        self.mix2 = int(mix2)       # 1: the 2-layer mixer (see the spec); recorded when 1
        if self.coding and model is not None:
            raise NaccError("cm: order=1 does not combine with a model (the neural input "
                            "codes frame by frame)")
        self.prior = default_prior(self.vocab) if prior == "default" else str(prior)
        self.perm, self.warm, self._hash = load_prior(self.prior, self.vocab)
        if self.warm is not None and (self.xctx or self.mix2):
            raise NaccError(f"cm: prior {self.prior!r} has no state for xctx / mix2 (no shipped "
                            "prior has; use prior='none' or a tree-only prior)")
        # the external input: a neural predictor's tables (see the spec); None without model
        self.nn = None if model is None else _neural(self.vocab, self.frame_shape, str(model))
        self.inv = np.argsort(self.perm).astype(np.int64)
        self.cfg = make_cfg(self.vocab, self.frame_shape, check=self.check, order=self.coding,
                            xctx=self.xctx, mix2=self.mix2)
        # Position of each symbol in the interval layout of a table: with a tree prior the
        # intervals follow the tree's leaf order, not the symbol order (see the spec).
        self.order = None if np.array_equal(self.perm, np.arange(self.vocab)) else self.perm

    def params(self) -> dict:
        p: dict = {"prior": self.prior}
        if self.nn is not None:
            p["model"] = self.nn.model_path
        for name, v in (("check", self.check), ("order", self.coding), ("xctx", self.xctx),
                        ("mix2", self.mix2)):
            if v:
                p[name] = v
        return p

    def model_hash(self) -> bytes:
        if self.nn is None:
            return self._hash
        return hashlib.sha256(b"cm+neural" + self._hash + self.nn.model_hash()).digest()

    def ext_rows(self, tables: np.ndarray) -> np.ndarray:
        """Neural tables (int32 [..., V], total 2**P') as external tables (total 2**24)."""
        assert self.nn is not None
        return np.ascontiguousarray(tables, np.int32) << (PRECISION - self.nn.precision)

    def _flat(self, tokens: np.ndarray) -> np.ndarray:
        tok = np.ascontiguousarray(tokens, dtype=np.int32)
        if tok.ndim != 3 or tok.shape[1:] != self.frame_shape:
            raise NaccError(f"cm: tokens of shape {tok.shape} do not fit frames {self.frame_shape}")
        return tok.ravel()

    def _whole_segment(self, what: str) -> None:
        if self.coding:
            raise NaccError(f"cm: order=1 has no {what}: position-major coding needs the "
                            "whole segment (use intervals / decode, the CLI's paths)")

    def tables(self, tokens: np.ndarray) -> Iterator[np.ndarray]:
        self._whole_segment("per-frame tables")
        flat = self._flat(tokens)
        K = _jit()
        state = K.new_state(self.cfg, self.warm)
        fs = self.frame_size
        if self.nn is not None:
            w2 = K.new_ext_weights(self.cfg)
            for t, ext in enumerate(self.nn.tables(tokens)):
                out = np.empty((fs, self.vocab), np.int32)
                K.ext_tables(flat, t * fs, (t + 1) * fs, self.cfg, self.perm, state, K.TABLES,
                             self.ext_rows(ext), w2, out)
                yield out
            return
        for t in range(len(tokens)):
            out = np.empty((fs, self.vocab), np.int32)
            K.table_pass(flat, t * fs, (t + 1) * fs, self.cfg, self.perm, state, K.TABLES,
                         out)
            yield out

    def stepper(self) -> Stepper:
        self._whole_segment("stepper")
        return _CmStepper(self) if self.nn is None else _CmNeuralStepper(self)

    def intervals(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = self._flat(tokens)
        if self.nn is not None:
            return self._intervals_neural(tokens, flat)
        flat, cfg = coding_order(self.cfg, flat.reshape(len(tokens), *self.frame_shape))
        A = aot.kernels()
        if A is not None:
            state = K0.new_state(cfg, self.warm, A.cm_apply_counters)
            return A.cm_enc_pass(flat, cfg, self.perm, state, K0.TABLES)
        K = _jit()
        state = K.new_state(cfg, self.warm)
        return K.enc_pass(flat, cfg, self.perm, state, K.TABLES)

    def _intervals_neural(self, tokens, flat):
        K = _jit()
        state = K.new_state(self.cfg, self.warm)
        w2 = K.new_ext_weights(self.cfg)
        start = np.empty(flat.size, np.uint32)
        freq = np.empty(flat.size, np.uint32)
        fs = self.frame_size
        for t, ext in enumerate(self.nn.tables(tokens)):
            K.ext_pass(flat, t * fs, (t + 1) * fs, self.cfg, self.perm, state, K.TABLES,
                       self.ext_rows(ext), w2, start, freq)
        return start, freq

    def _decode_neural(self, words: np.ndarray, n: int) -> np.ndarray:
        K = _jit()
        state = K.new_state(self.cfg, self.warm)
        w2 = K.new_ext_weights(self.cfg)
        assert self.nn is not None
        nn = self.nn.stepper()
        out = np.zeros(n, np.int32)
        dec = K.ext_dec_init(words)
        for i in range(n):
            K.ext_dec_step(words, dec, out, i, self.cfg, self.perm, self.inv, state, K.TABLES,
                           self.ext_rows(nn.table()), w2)
            nn.push(int(out[i]))
        return out

    def decode(self, words: np.ndarray, n_frames: int) -> np.ndarray:
        h, w = self.frame_shape
        words = np.ascontiguousarray(words, np.uint32)
        if self.nn is not None:
            return self._decode_neural(words, n_frames * h * w).reshape(n_frames, h, w)
        cfg = segment_cfg(self.cfg, n_frames)
        A = aot.kernels()
        if A is not None:
            state = K0.new_state(cfg, self.warm, A.cm_apply_counters)
            out = A.cm_dec_pass(words, n_frames * h * w, cfg, self.perm, self.inv, state,
                                K0.TABLES)
        else:
            K = _jit()
            state = K.new_state(cfg, self.warm)
            out = K.dec_pass(words, n_frames * h * w, cfg, self.perm, self.inv, state, K.TABLES)
        return frame_order(cfg, out, (n_frames, h, w))
