"""Fit the shipped ``cm`` priors for V = 1024 commaVQ tokens: code trees (leaf orders) and
warm-start states.

Usage: python -m nacc.training.cm_prior [CLIP.npy] [--out DIR]   (DIR: models/cm-prior)

Every prior is fitted on a prefix of the dev clip, named in its entry (``fitted_on``;
entries without one use the file's top-level ``fitted_on``, frames 0-299): the priors up to
``commavq-v3`` on frames 0-299, so that rates on frames 300-599 stay honest; ``commavq-v4``
on frames 0-449, rates on frames 450-599; ``commavq-v5`` on all 600 frames with the recipe
of ``commavq-v4`` (``fit_recipe``), validated by fitting it on 0-449 and measuring 450-599
(``bench/bench_cm.py --splits``): no frame of the dev clip is held out from it.

A tree is a recursive spectral bisection of the graph whose edge weights count how often
code a is replaced by code b (a != b) at the same position between consecutive frames:
codes that replace each other end up in the same subtree.  Float code runs only here,
offline; its output is frozen as an integer table
(``tree-<sha256 prefix>.u16``: uint16 little-endian, leaf index of each code) and the
predictor reads that file, checks its hash, and never recomputes it.  The warm-start
states are integer model arrays taken after coding the same frames cold (see ``fit_warm``):
``warm-*.npz`` (tree order) and ``warmid-*.npz`` (identity order) hold the small arrays and
the leaf-cluster counters; ``warmall-*.npz`` (tree order) also holds every other context's
counters (previous tokens, position, order 0); ``commavq-v4`` caps each counter's count at
``count_cap`` so that the prior's probabilities move as fast as those of a counter seen that
often (a clip unlike the fitting frames overrides them sooner).  ``commavq-v5`` stores the
same arrays as one raw file (``warmraw-*.cmw``, ``cmstate.pack_warm``) that loads as views,
without decompression.  ``priors.json`` names the priors and the sha256 of every file.
Files are frozen once written: a run adds the priors that ``priors.json`` lacks and never
rewrites an existing one, so archives written with any shipped prior keep decoding.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRIOR_OUT = os.path.join(ROOT, "models", "cm-prior")   # the checkout's shipped priors


def fit_leaf_order(tokens: np.ndarray, vocab: int = 1024) -> np.ndarray:
    """perm[s] = leaf index of code s (a permutation of 0..vocab-1)."""
    tok = np.asarray(tokens, np.int64)
    adj = np.zeros((vocab, vocab))
    a = tok[:-1].ravel()
    b = tok[1:].ravel()
    m = a != b
    np.add.at(adj, (a[m], b[m]), 1.0)
    adj = adj + adj.T
    np.fill_diagonal(adj, 0.0)
    adj += 1e-3
    order: list[int] = []

    def split(idx: np.ndarray) -> None:
        if len(idx) <= 1:
            order.extend(int(i) for i in idx)
            return
        sub = adj[np.ix_(idx, idx)]
        dinv = 1.0 / np.sqrt(sub.sum(1))
        lap = np.eye(len(idx)) - dinv[:, None] * sub * dinv[None, :]
        _, vec = np.linalg.eigh(lap)
        o = np.argsort(vec[:, 1] * dinv, kind="stable")
        h = len(idx) // 2
        split(idx[o[:h]])
        split(idx[o[h:]])

    split(np.arange(vocab))
    perm = np.empty(vocab, np.int64)
    perm[np.array(order)] = np.arange(vocab)
    return perm


# context kinds of cm's tree counters (see the cm spec) and how many values each takes
LEAF_CLUSTER_KINDS = {5: 1024 >> 3, 6: 1024 >> 5}
ALL_KINDS = {0: 1, 1: 1024, 2: 128, 3: 1024, 4: 1024, **LEAF_CLUSTER_KINDS}


def cap_counts(counters: np.ndarray, cap: int) -> np.ndarray:
    """Stored counters (uint32, logical value XOR 2**31) with each count n = e & 1023 lowered
    to at most ``cap``; the probability bits are unchanged."""
    e = counters.astype(np.int64) ^ 0x80000000
    n = np.minimum(e & 1023, cap)
    return (((e >> 10) << 10 | n) ^ 0x80000000).astype(np.uint32)


def fit_warm(tokens: np.ndarray, perm: np.ndarray, contexts: dict = LEAF_CLUSTER_KINDS,
             count_cap: int | None = None, cfg_kw: dict | None = None) -> dict:
    """Warm-start state: the cm model's small arrays (mixer weights, APMs, match and copy
    models) and the tree counters of the contexts ``contexts`` ({kind: number of values})
    after coding ``tokens`` cold with leaf order ``perm``; the counters' counts capped at
    ``count_cap`` when it is given."""
    from nacc.kernels.cpu import cm as K
    from nacc.predictors.cm import coding_order, make_cfg

    tok = np.ascontiguousarray(tokens, np.int32)
    cfg = make_cfg(1024, tok.shape[1:], **(cfg_kw or {}))
    state = K.new_state(cfg)
    K.enc_pass(*coding_order(cfg, tok), perm, state, K.TABLES)
    ht, w, apm, mc, cw, capm = state
    kinds, vals, nodes, ctrs = [], [], [], []
    for kind, n_values in contexts.items():
        v, nd, c = K.read_counters(ht, cfg, kind, range(-1, n_values))
        kinds.append(np.full(len(v), kind))
        vals.append(v)
        nodes.append(nd)
        ctrs.append(c)
    counters = np.concatenate(ctrs).astype(np.uint32)
    if count_cap is not None:
        counters = cap_counts(counters, count_cap)
    return {"w": w, "apm": apm, "mc": mc, "cw": cw, "capm": capm,
            "ht_kind": np.concatenate(kinds).astype(np.uint8),
            "ht_value": np.concatenate(vals).astype(np.int16),
            "ht_node": np.concatenate(nodes).astype(np.uint16),
            "ht_counter": counters}


def fit_recipe(tokens: np.ndarray, count_cap: int = 10,
               cfg_kw: dict | None = None) -> tuple[np.ndarray, dict]:
    """The recipe of ``commavq-v4`` and ``commavq-v5`` on ``tokens`` (T, 8, 16): (leaf order
    fitted on them, warm state of every context after coding them cold with it, counts capped
    at ``count_cap``); ``cfg_kw``: options of the model (``make_cfg``), default today's."""
    perm = fit_leaf_order(tokens)
    return perm, fit_warm(tokens, perm, ALL_KINDS, count_cap, cfg_kw)


def _write(data: bytes, stem: str, ext: str, digests: dict, out: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    fname = f"{stem}-{digest[:16]}.{ext}"
    with open(os.path.join(out, fname), "wb") as f:
        f.write(data)
    digests[fname] = digest
    return fname


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


LEGACY_FRAMES = 300     # the priors without a fitted_on of their own: frames 0-299
V4_COUNT_CAP = 10       # chosen on a tree and warm state fitted on 0-149, measured on 150-299


def main(argv: list[str] | None = None) -> None:
    from nacc.kernels.cpu.cmstate import pack_warm

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip", nargs="?",
                    default=os.path.join(ROOT, "tests", "data", "commavq_dev.npy"))
    ap.add_argument("--out", default=PRIOR_OUT, help="folder of priors.json (default: %(default)s)")
    args = ap.parse_args(argv)
    out = args.out
    clip = np.load(args.clip)
    if clip.ndim == 2:
        clip = clip.reshape(len(clip), 8, 16)
    name = os.path.basename(args.clip)

    def fitted_on(frames: int) -> str:
        return f"{name} frames 0-{frames - 1}"

    path = os.path.join(out, "priors.json")
    cfg: dict[str, Any] = {"fitted_on": fitted_on(LEGACY_FRAMES), "priors": {}, "sha256": {}}
    if os.path.exists(path):
        with open(path) as f:
            cfg = json.load(f)
        if cfg["fitted_on"] != fitted_on(LEGACY_FRAMES):
            sys.exit(f"priors.json was fitted on {cfg['fitted_on']}, "
                     f"not {fitted_on(LEGACY_FRAMES)}")
    priors, digests = cfg["priors"], cfg["sha256"]
    trees: dict[int, tuple[str, np.ndarray]] = {}   # frames -> (file, perm)

    def tree_of(frames: int, known: str | None) -> tuple[str, np.ndarray]:
        if frames not in trees:
            if known is None:
                perm = fit_leaf_order(clip[:frames])
                known = _write(perm.astype("<u2").tobytes(), "tree", "u16", digests, out)
            with open(os.path.join(out, known), "rb") as f:
                trees[frames] = (known, np.frombuffer(f.read(), "<u2").astype(np.int64))
        return trees[frames]

    tree_of(LEGACY_FRAMES, priors.get("commavq-tree-v1", {}).get("tree"))
    identity = np.arange(1024, dtype=np.int64)
    # name -> (frames, file stem, tree order?, context kinds, count cap, raw file?)
    wanted: dict[str, tuple[int, str | None, bool, dict | None, int | None, bool]] = {
        "commavq-tree-v1": (LEGACY_FRAMES, None, True, None, None, False),
        "commavq-v2": (LEGACY_FRAMES, "warm", True, LEAF_CLUSTER_KINDS, None, False),
        "commavq-warm-v1": (LEGACY_FRAMES, "warmid", False, LEAF_CLUSTER_KINDS, None, False),
        "commavq-v3": (LEGACY_FRAMES, "warmall", True, ALL_KINDS, None, False),
        "commavq-v4": (450, "warmall", True, ALL_KINDS, V4_COUNT_CAP, False),
        "commavq-v5": (len(clip), "warmraw", True, ALL_KINDS, V4_COUNT_CAP, True),
    }
    for prior, (frames, stem, use_tree, kinds, cap, raw) in wanted.items():
        if prior in priors:
            continue
        entry: dict[str, Any] = {"vocab": 1024}
        if frames != LEGACY_FRAMES:
            entry["fitted_on"] = fitted_on(frames)
        order = identity
        if use_tree:
            entry["tree"], order = tree_of(frames, None)
        if stem is not None:
            warm = fit_warm(clip[:frames], order, kinds or ALL_KINDS, cap)
            data, ext = (pack_warm(warm), "cmw") if raw else (_npz(warm), "npz")
            entry["warm"] = _write(data, stem, ext, digests, out)
            if cap is not None:
                entry["count_cap"] = cap
        priors[prior] = entry
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(cfg, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
