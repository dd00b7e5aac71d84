"""Model folders: save and load exported integer models (numpy only, no torch).

A model folder holds ``config.json`` (architecture, sizes, vocabulary, frame shape,
quantization settings, the weights file name and its sha256, and the ``format``: the
version of the integer spec, WEIGHTS_FORMAT) and ``weights-<sha256[:16]>.npz``: plain
integer arrays, loaded with ``allow_pickle=False``.  Loading refuses a format it does not
read, a folder whose weights do not hash to the recorded digest, and a weights file whose
arrays do not have the shapes, types and bounds the config and the integer spec
(``nacc.neural.intref``) require, so that no kernel ever indexes outside an array or
overflows an int32 accumulator.  Coding with a model needs this module, ``intref``'s config
and the CPU kernels only; torch is a training dependency (``nacc[neural]``).
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from nacc.container import MAX_VOCAB
from nacc.errors import NaccError
from nacc.neural.config import HEAD_NEIGHBOURS, MIX_BITS, N_MATCH, N_SLOTS, ModelConfig
from nacc.neural.intref import IntModel
from nacc.spec import CODER_PRECISION

# the spec version a model folder is written in; v2 changed only the mixture table
# (mix_head), so folders of v1 load unless they are mix models
WEIGHTS_FORMAT = "nacc-int-v2"
READABLE_FORMATS = ("nacc-int-v1", WEIGHTS_FORMAT)
INT32_LIMIT = 2**31


class ModelError(NaccError):
    """A model folder is missing, inconsistent, or its weights do not match their hash."""


def weights_bytes(m: IntModel) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: m.a[k] for k in sorted(m.a)})
    return buf.getvalue()


def save_model(m: IntModel, folder, extra: dict | None = None) -> str:
    """Write config.json and weights-<hash>.npz into folder; returns the sha256 hex."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = weights_bytes(m)
    digest = hashlib.sha256(data).hexdigest()
    name = f"weights-{digest[:16]}.npz"
    for old in folder.glob("weights-*.npz"):
        if old.name != name:
            old.unlink()
    (folder / name).write_bytes(data)
    info = {"weights": name, "sha256": digest, "format": WEIGHTS_FORMAT}
    if extra:
        info.update(extra)
    m.cfg.save(folder / "config.json", info)
    return digest


def _lin_shapes(name: str, n: int, k: int, layers: int | None = None) -> dict:
    pre = () if layers is None else (layers,)
    return {f"{name}.w": pre + (n, k), f"{name}.b": pre + (n,), f"{name}.m": pre + (n,),
            f"{name}.s": pre + (n,)}


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Shape of every array the integer spec reads for ``cfg`` (``None`` entries: any
    positive length)."""
    v, d, hidden = cfg.vocab, cfg.d_model, cfg.head_hidden
    k1 = d + len(HEAD_NEIGHBOURS) * cfg.head_emb + N_MATCH + cfg.n_motion
    shapes: dict[str, tuple] = {"head.emb": (v + 1, cfg.head_emb), "head.act": (256,),
                                "exp_logit": (None,)}
    shapes.update(_lin_shapes("head.l1", hidden, k1))
    shapes.update(_lin_shapes("head.l2", v, hidden))
    shapes.update(_lin_shapes("head.cp", N_SLOTS, hidden))
    if cfg.subst:
        shapes.update(_lin_shapes("head.sg", N_SLOTS, hidden))
        shapes.update({"head.sub.w": (v, v), "head.sub.m": (v,), "head.sub.s": (v,)})
    if cfg.copy_bias:
        shapes["head.cb"] = (v,)
    if cfg.mix_head:
        shapes.update(_lin_shapes("head.mix", 1 + N_SLOTS, hidden))
        shapes["head.ker"] = (v, v)
    if cfg.arch == "transformer":
        h, w = cfg.frame_shape
        e, pe, n_l, nh, r = cfg.emb, cfg.pos_emb, cfg.n_layers, cfg.n_heads, cfg.radius
        shapes.update({"tf.emb_q": (v + 1, e), "tf.emb_ctx": (v + 1, e), "tf.row": (h, pe),
                       "tf.col": (w, pe), "tf.ln1.g": (n_l, d), "tf.ln1.b": (n_l, d),
                       "tf.ln2.g": (n_l, d), "tf.ln2.b": (n_l, d), "tf.lnf.g": (d,),
                       "tf.lnf.b": (d,), "tf.att.m": (n_l,), "tf.att.s": (n_l,),
                       "tf.bt": (n_l, nh, cfg.k_frames), "tf.by": (n_l, nh, 2 * r + 1),
                       "tf.bx": (n_l, nh, 2 * r + 1), "exp_att": (None,),
                       "tf.add1": (n_l, 2), "tf.add2": (n_l, 2), "tf.act": (n_l, 256)})
        shapes.update(_lin_shapes("tf.in", d, e + 2 * pe))
        for name, n, k in (("tf.q", d, d), ("tf.k", d, e), ("tf.v", d, e), ("tf.o", d, d),
                           ("tf.f1", cfg.d_ff, d), ("tf.f2", d, cfg.d_ff)):
            shapes.update(_lin_shapes(name, n, k, n_l))
    else:
        shapes.update({"ls.emb": (v + 1, cfg.emb), "ls.sig": (256,), "ls.tanh": (256,)})
        shapes.update(_lin_shapes("ls.gates", 4 * d, cfg.n_window * cfg.emb + d))
    return shapes


def check_config(cfg: ModelConfig, where: str) -> None:
    """ModelError unless the config's sizes are integers the kernels can run."""
    sizes = {"vocab": (2, MAX_VOCAB), "k_frames": (1, 64), "radius": (0, 64),
             "d_model": (1, 4096), "emb": (1, 4096), "n_layers": (1, 64),
             "n_heads": (1, 64), "d_ff": (1, 16384), "pos_emb": (1, 4096),
             "head_emb": (1, 4096), "head_hidden": (1, 16384), "motion_clamp": (0, 1 << 16),
             "precision": (1, CODER_PRECISION)}
    for name, (lo, hi) in sizes.items():
        val = getattr(cfg, name)
        if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
            raise ModelError(f"{where}: config {name} = {val!r} is not an integer in "
                             f"{lo}..{hi}")
    h, w = cfg.frame_shape
    if not (1 <= h <= 4096 and 1 <= w <= 4096):
        raise ModelError(f"{where}: config frame_shape {cfg.frame_shape} out of range")
    if cfg.d_model % cfg.n_heads:
        raise ModelError(f"{where}: d_model {cfg.d_model} is not a multiple of n_heads "
                         f"{cfg.n_heads}")
    if cfg.vocab > 2**cfg.precision:
        raise ModelError(f"{where}: vocabulary {cfg.vocab} does not fit precision "
                         f"{cfg.precision}")


def check_arrays(cfg: ModelConfig, arrays: dict, where: str) -> None:
    """ModelError unless ``arrays`` holds every array of ``expected_shapes(cfg)`` as
    integers of that shape, with the spec's bounds: int8-range weights and embeddings,
    requantization multipliers in [0, 2**31) and shifts in 1..62, LIN accumulators bounded
    below 2**31 (``|b| + K * 127 * 127``), lookup tables of 256 entries in int8 range (the
    lstm's gate tables in -128..128), exp tables in 0..2**16 with a positive first entry and
    the mixture kernel in 0..2**16-1 with a positive entry in every row (and ``exp_logit[0]``
    = 2**16 with it: every mixture then has a positive total)."""
    def bad(msg):
        raise ModelError(f"{where}: {msg}")

    for name, shape in expected_shapes(cfg).items():
        if name not in arrays:
            bad(f"weights lack {name} (the config needs it)")
        arr = arrays[name]
        if arr.dtype.kind not in "iu":
            bad(f"{name} has dtype {arr.dtype}, not an integer type")
        if len(arr.shape) != len(shape) or any(s is not None and s != a
                                               for s, a in zip(shape, arr.shape)):
            bad(f"{name} has shape {arr.shape}, the config needs {shape}")
        if arr.size == 0:
            bad(f"{name} is empty")
    a = {k: np.asarray(arrays[k], np.int64) for k in expected_shapes(cfg)}
    for name, arr in a.items():
        lo, hi = int(arr.min()), int(arr.max())
        if name.endswith(".w") or name.endswith("emb") or name.endswith("emb_q") \
                or name.endswith("emb_ctx") or name in ("tf.row", "tf.col"):
            limit = (-127, 127)
        elif name.endswith(".m"):
            limit = (0, INT32_LIMIT - 1)
        elif name.endswith(".s"):
            limit = (1, 62)
        elif name in ("head.act", "tf.act"):
            limit = (-127, 127)
        elif name in ("ls.sig", "ls.tanh"):
            limit = (-128, 128)
        elif name in ("exp_logit", "exp_att"):
            limit = (0, 1 << 16)
            if int(arr.reshape(-1)[0]) < 1:
                bad(f"{name}[0] must be positive")
        elif name == "head.cb":
            limit = (-(1 << 20), 1 << 20)
        elif name == "head.ker":
            limit = (0, 1 << MIX_BITS)
        else:                          # biases, norms, position biases, residual factors
            limit = (-(INT32_LIMIT - 1), INT32_LIMIT - 1)
        if lo < limit[0] or hi > limit[1]:
            bad(f"{name} has values in [{lo}, {hi}], outside [{limit[0]}, {limit[1]}]")
        if name == "head.ker" and int(arr.max(1).min()) < 1:
            bad(f"{name} has a row without a positive entry")
        if name == "exp_logit" and cfg.mix_head and int(arr[0]) != 1 << 16:
            bad(f"{name}[0] must be 2**16 in a mix_head model")
        if name.endswith(".b") and name[:-2] + ".w" in a:      # a LIN's bias
            k = a[name[:-2] + ".w"].shape[-1]
            x_max = max(127, cfg.motion_clamp) if name == "head.l1.b" else 127
            if int(np.abs(arr).max()) + k * 127 * x_max >= INT32_LIMIT:
                bad(f"{name[:-2]}: accumulators may exceed int32 (|b| + K * 127 * 127)")


def load_model(folder) -> tuple[IntModel, bytes]:
    """(IntModel, sha256 digest) from a model folder; ModelError when anything is off."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if "\x00" in str(folder) or not cfg_path.is_file():
        raise ModelError(f"{folder}: no config.json (not a model folder)")
    try:
        info = json.loads(cfg_path.read_text())
        cfg = ModelConfig.from_json(info)
        fs = tuple(int(x) for x in cfg.frame_shape)
        if len(fs) != 2:
            raise ValueError(f"frame_shape {fs} is not (H, W)")
        cfg.frame_shape = (fs[0], fs[1])
        name, want = info["weights"], info["sha256"]
        if not isinstance(name, str) or not isinstance(want, str) or "/" in name:
            raise ValueError("weights and sha256 must be a file name and a hex digest")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise ModelError(f"{cfg_path}: bad config ({e})") from None
    fmt = info.get("format")
    if fmt not in READABLE_FORMATS:
        raise ModelError(f"{cfg_path}: model format {fmt!r} is not one this nacc reads "
                         f"({', '.join(READABLE_FORMATS)})")
    if cfg.mix_head and fmt != WEIGHTS_FORMAT:
        raise ModelError(f"{cfg_path}: a mixture-head model of format {fmt}, whose integer "
                         f"tables this nacc no longer computes ({WEIGHTS_FORMAT} changed them); "
                         "train it again")
    check_config(cfg, str(cfg_path))
    wpath = folder / name
    if not wpath.is_file():
        raise ModelError(f"{folder}: weights file {name} missing")
    data = wpath.read_bytes()
    digest = hashlib.sha256(data)
    if digest.hexdigest() != want or not name.startswith(f"weights-{want[:16]}"):
        raise ModelError(f"{wpath}: sha256 {digest.hexdigest()[:16]}... does not match the "
                         f"recorded {want[:16]}... (weights changed or corrupt)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 (any unreadable file is the same error)
        raise ModelError(f"{wpath}: unreadable weights ({e})") from None
    if cfg.copy_bias and "head.cb" not in arrays:
        raise ModelError(f"{wpath}: config has copy_bias but the weights lack head.cb")
    check_arrays(cfg, arrays, str(wpath))
    return IntModel(cfg, arrays), digest.digest()
