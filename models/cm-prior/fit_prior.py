"""Fit the shipped ``cm`` priors for V = 1024 commaVQ tokens: a code tree (leaf order) and
warm-start states.

Usage: python models/cm-prior/fit_prior.py [CLIP.npy] [--frames 300]

Only frames 0..frames-1 of the clip are used (default: frames 0-299 of the dev clip, so that
rates on frames 300-599 stay honest).  The tree is a recursive spectral bisection of the
graph whose edge weights count how often code a is replaced by code b (a != b) at the same
position between consecutive frames: codes that replace each other end up in the same
subtree.  Float code runs only here, offline; its output is frozen as an integer table
(``tree-<sha256 prefix>.u16``: uint16 little-endian, leaf index of each code) and the
predictor reads that file, checks its hash, and never recomputes it.  The warm-start
states are integer model arrays taken after coding the same frames cold (see ``fit_warm``):
``warm-*.npz`` (tree order) and ``warmid-*.npz`` (identity order) hold the small arrays and
the leaf-cluster counters; ``warmall-*.npz`` (tree order) also holds every other context's
counters (previous tokens, position, order 0).  ``priors.json`` names the priors and the
sha256 of every file.  Files are frozen once written: a run adds the priors that
``priors.json`` lacks (reusing the frozen tree) and never rewrites an existing one, so
archives written with any shipped prior keep decoding.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


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


def fit_warm(tokens: np.ndarray, perm: np.ndarray, contexts: dict = LEAF_CLUSTER_KINDS) -> dict:
    """Warm-start state: the cm model's small arrays (mixer weights, APMs, match and copy
    models) and the tree counters of the contexts ``contexts`` ({kind: number of values})
    after coding ``tokens`` cold with leaf order ``perm``."""
    sys.path.insert(0, ROOT)
    from nacc.kernels.cpu import cm as K
    from nacc.predictors.cm import make_cfg

    tok = np.ascontiguousarray(tokens, np.int32)
    cfg = make_cfg(1024, tok.shape[1:])
    state = K.new_state(cfg)
    K.enc_pass(tok.ravel(), cfg, perm, state, K.TABLES)
    ht, w, apm, mc, cw, capm = state
    kinds, vals, nodes, ctrs = [], [], [], []
    for kind, n_values in contexts.items():
        v, nd, c = K.read_counters(ht, cfg, kind, range(-1, n_values))
        kinds.append(np.full(len(v), kind))
        vals.append(v)
        nodes.append(nd)
        ctrs.append(c)
    return {"w": w, "apm": apm, "mc": mc, "cw": cw, "capm": capm,
            "ht_kind": np.concatenate(kinds).astype(np.uint8),
            "ht_value": np.concatenate(vals).astype(np.int16),
            "ht_node": np.concatenate(nodes).astype(np.uint16),
            "ht_counter": np.concatenate(ctrs).astype(np.uint32)}


def _write(data: bytes, stem: str, ext: str, digests: dict) -> str:
    digest = hashlib.sha256(data).hexdigest()
    fname = f"{stem}-{digest[:16]}.{ext}"
    with open(os.path.join(HERE, fname), "wb") as f:
        f.write(data)
    digests[fname] = digest
    return fname


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", nargs="?", default=os.path.join(ROOT, "tests", "data", "commavq_dev.npy"))
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    tok = np.load(args.clip)
    if tok.ndim == 2:
        tok = tok.reshape(len(tok), 8, 16)
    tok = tok[: args.frames]
    fitted_on = f"{os.path.basename(args.clip)} frames 0-{args.frames - 1}"
    path = os.path.join(HERE, "priors.json")
    cfg = {"fitted_on": fitted_on, "priors": {}, "sha256": {}}
    if os.path.exists(path):
        with open(path) as f:
            cfg = json.load(f)
        if cfg["fitted_on"] != fitted_on:
            sys.exit(f"priors.json was fitted on {cfg['fitted_on']}, not {fitted_on}")
    priors, digests = cfg["priors"], cfg["sha256"]
    tree = priors.get("commavq-tree-v1", {}).get("tree")
    if tree is None:
        perm = fit_leaf_order(tok)
        tree = _write(perm.astype("<u2").tobytes(), "tree", "u16", digests)
    else:
        with open(os.path.join(HERE, tree), "rb") as f:
            perm = np.frombuffer(f.read(), "<u2").astype(np.int64)
    identity = np.arange(1024, dtype=np.int64)
    wanted = {   # name -> (file stem, leaf order, context kinds of the warm state)
        "commavq-tree-v1": None,
        "commavq-v2": ("warm", perm, LEAF_CLUSTER_KINDS),
        "commavq-warm-v1": ("warmid", identity, LEAF_CLUSTER_KINDS),
        "commavq-v3": ("warmall", perm, ALL_KINDS),
    }
    for name, spec in wanted.items():
        if name in priors:
            continue
        entry = {"vocab": 1024}
        if spec is None or spec[1] is perm:
            entry["tree"] = tree
        if spec is not None:
            stem, order, kinds = spec
            entry["warm"] = _write(_npz(fit_warm(tok, order, kinds)), stem, "npz", digests)
        priors[name] = entry
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(cfg, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
