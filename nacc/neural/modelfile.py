"""Model folders: save and load exported integer models (numpy only, no torch).

A model folder holds ``config.json`` (architecture, sizes, vocabulary, frame shape,
quantization settings, the weights file name and its sha256, and the ``format``: the
version of the integer spec and of the weight names, WEIGHTS_FORMAT) and
``weights-<sha256[:16]>.npz``: plain integer arrays named by the field paths of the weight
packs (``nacc.neural.packs``: ``head.l1.w``, ``transformer.layers.0.q.w``), loaded with
``allow_pickle=False`` into those packs.  Folders of the formats before packs
(``nacc-int-v1``, ``nacc-int-v2``: older names, layers stacked) still load, with the same
hash (the sha256 of their weights file).  Loading refuses a format it does not
read, a folder whose weights do not hash to the recorded digest, and a weights file whose
arrays do not have the shapes, types and bounds the config and the integer spec
(``nacc.neural.intref``) require, so that no kernel ever indexes outside an array or
overflows an int32 accumulator.  Coding with a model needs this module, ``intref``'s config
and the CPU kernels only; torch is a training dependency (``nacc[neural]``).
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from nacc.container import MAX_VOCAB
from nacc.errors import NaccError
from nacc.fileio import MAX_CONFIG_BYTES, MAX_MODEL_FILE_BYTES, load_json, read_regular
from nacc.neural import packs
from nacc.neural.config import HEAD_NEIGHBOURS, MIX_BITS, N_MATCH, N_SLOTS, ModelConfig
from nacc.neural.intref import IntModel
from nacc.spec import CODER_PRECISION

# the format a model folder is written in: v3 names the arrays by the packs' field paths
# (the integer spec of v2); v2 changed only the mixture table (mix_head), so folders of v1
# load unless they are mix models
WEIGHTS_FORMAT = "nacc-int-v3"
PACKED_FORMATS = (WEIGHTS_FORMAT,)
READABLE_FORMATS = ("nacc-int-v1", "nacc-int-v2", WEIGHTS_FORMAT)
MIX_FORMATS = ("nacc-int-v2", WEIGHTS_FORMAT)      # the mixture table of the current spec
INT32_LIMIT = 2**31


class ModelError(NaccError):
    """A model folder is missing, inconsistent, or its weights do not match their hash."""


def weights_bytes(arrays: dict) -> bytes:
    """The weights file of arrays named by field path (sorted by name)."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: arrays[k] for k in sorted(arrays)})
    return buf.getvalue()


def save_model(m: IntModel, folder, extra: dict | None = None) -> str:
    """Write config.json and weights-<hash>.npz into folder; returns the sha256 hex."""
    return save_arrays(m.cfg, packs.flatten(m.weights), folder, extra)


def save_arrays(cfg: ModelConfig, arrays: dict, folder, extra: dict | None = None) -> str:
    """``save_model`` of arrays already named by field path (``packs.flatten``), unchecked
    (tests write broken folders with it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = weights_bytes(arrays)
    digest = hashlib.sha256(data).hexdigest()
    name = f"weights-{digest[:16]}.npz"
    for old in folder.glob("weights-*.npz"):
        if old.name != name:
            old.unlink()
    (folder / name).write_bytes(data)
    info = {"weights": name, "sha256": digest, "format": WEIGHTS_FORMAT}
    if extra:
        info.update(extra)
    cfg.save(folder / "config.json", info)
    return digest


class Shape(tuple):
    """A leaf of a pack of shapes: the shape an array must have (``None``: any positive
    length)."""


def _shape(*dims) -> Any:
    """A ``Shape`` where a pack field wants an array (typed Any for that reason)."""
    return Shape(dims)


def _lin(n: int, k: int) -> packs.Lin:
    return packs.Lin(_shape(n, k), _shape(n), _shape(n), _shape(n))


def _norm(d: int) -> packs.Norm:
    return packs.Norm(_shape(d), _shape(d))


def shape_pack(cfg: ModelConfig) -> packs.Weights:
    """The packs of ``cfg``'s model with the shape of every array in place of the array."""
    v, d, hidden = cfg.vocab, cfg.d_model, cfg.head_hidden
    k1 = d + len(HEAD_NEIGHBOURS) * cfg.head_emb + N_MATCH + cfg.n_motion
    head = packs.Head(
        emb=_shape(v + 1, cfg.head_emb), l1=_lin(hidden, k1), act=_shape(256),
        l2=_lin(v, hidden), cp=_lin(N_SLOTS, hidden), exp_logit=_shape(None),
        cb=_shape(v) if cfg.copy_bias else None,
        sg=_lin(N_SLOTS, hidden) if cfg.subst else None,
        sub=packs.Subst(_shape(v, v), _shape(v), _shape(v)) if cfg.subst else None,
        mix=_lin(1 + N_SLOTS, hidden) if cfg.mix_head else None,
        ker=_shape(v, v) if cfg.mix_head else None)
    frame: packs.Transformer | packs.LSTM
    if cfg.arch == "transformer":
        h, w = cfg.frame_shape
        e, pe, nh, side = cfg.emb, cfg.pos_emb, cfg.n_heads, 2 * cfg.radius + 1
        layer = packs.TfLayer(
            ln1=_norm(d), q=_lin(d, d), k=_lin(d, e), v=_lin(d, e),
            att=packs.Requant(_shape(), _shape()), bt=_shape(nh, cfg.k_frames),
            by=_shape(nh, side), bx=_shape(nh, side), o=_lin(d, d), add1=_shape(2),
            ln2=_norm(d), f1=_lin(cfg.d_ff, d), act=_shape(256), f2=_lin(d, cfg.d_ff),
            add2=_shape(2))
        frame = packs.Transformer(
            emb_q=_shape(v + 1, e), emb_ctx=_shape(v + 1, e), row=_shape(h, pe),
            col=_shape(w, pe), inp=_lin(d, e + 2 * pe), layers=(layer,) * cfg.n_layers,
            lnf=_norm(d), exp_att=_shape(None))
    else:
        frame = packs.LSTM(emb=_shape(v + 1, cfg.emb),
                           gates=_lin(4 * d, cfg.n_window * cfg.emb + d), sig=_shape(256),
                           tanh=_shape(256))
    return packs.Weights(head, frame)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Shape of every array the integer spec reads for ``cfg``, by field path
    (``packs.flatten`` of ``shape_pack``; ``None`` entries: any positive length)."""
    return {k: tuple(x) for k, x in packs.flatten(shape_pack(cfg), leaf=Shape).items()}


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
    = 2**16 with it: every mixture then has a positive total).  ``arrays`` are named by
    field path; the bounds follow the last field name."""
    def bad(msg):
        raise ModelError(f"{where}: {msg}")

    shapes = expected_shapes(cfg)
    extra = sorted(set(arrays) - set(shapes))
    if extra:
        bad(f"weights hold {extra[0]}, which the config does not use")
    for name, shape in shapes.items():
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
        field = name.rsplit(".", 1)[-1]
        if field in ("w", "emb", "emb_q", "emb_ctx", "row", "col", "act"):
            limit = (-127, 127)        # weights, embeddings, int8 LUTs
        elif field == "m":
            limit = (0, INT32_LIMIT - 1)
        elif field == "s":
            limit = (1, 62)
        elif field in ("sig", "tanh"):
            limit = (-128, 128)
        elif field in ("exp_logit", "exp_att"):
            limit = (0, 1 << 16)
            if int(arr.reshape(-1)[0]) < 1:
                bad(f"{name}[0] must be positive")
        elif field == "cb":
            limit = (-(1 << 20), 1 << 20)
        elif field == "ker":
            limit = (0, 1 << MIX_BITS)
        else:                          # biases, norms, position biases, residual factors
            limit = (-(INT32_LIMIT - 1), INT32_LIMIT - 1)
        if lo < limit[0] or hi > limit[1]:
            bad(f"{name} has values in [{lo}, {hi}], outside [{limit[0]}, {limit[1]}]")
        if name == "head.ker" and int(arr.max(1).min()) < 1:
            bad(f"{name} has a row without a positive entry")
        if name == "head.exp_logit" and cfg.mix_head and int(arr[0]) != 1 << 16:
            bad(f"{name}[0] must be 2**16 in a mix_head model")
        if name.endswith(".b") and name[:-2] + ".w" in a:      # a LIN's bias
            k = a[name[:-2] + ".w"].shape[-1]
            x_max = max(127, cfg.motion_clamp) if name == "head.l1.b" else 127
            if int(np.abs(arr).max()) + k * 127 * x_max >= INT32_LIMIT:
                bad(f"{name[:-2]}: accumulators may exceed int32 (|b| + K * 127 * 127)")


def load_model(folder) -> tuple[IntModel, bytes]:
    """(IntModel, sha256 digest) from a model folder; ModelError when anything is off.
    A folder of format v1 or v2 has its arrays renamed into packs (``packs.from_v2``)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if "\x00" in str(folder) or not cfg_path.is_file():
        raise ModelError(f"{folder}: no config.json (not a model folder)")
    try:
        info = load_json(cfg_path, MAX_CONFIG_BYTES, "model config")
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
    if cfg.mix_head and fmt not in MIX_FORMATS:
        raise ModelError(f"{cfg_path}: a mixture-head model of format {fmt}, whose integer "
                         f"tables this nacc no longer computes ({MIX_FORMATS[0]} changed them); "
                         "train it again")
    check_config(cfg, str(cfg_path))
    wpath = folder / name
    if not wpath.is_file():
        raise ModelError(f"{folder}: weights file {name} missing")
    data = read_regular(wpath, MAX_MODEL_FILE_BYTES, "weights file")
    digest = hashlib.sha256(data)
    if digest.hexdigest() != want or not name.startswith(f"weights-{want[:16]}"):
        raise ModelError(f"{wpath}: sha256 {digest.hexdigest()[:16]}... does not match the "
                         f"recorded {want[:16]}... (weights changed or corrupt)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 (any unreadable file is the same error)
        raise ModelError(f"{wpath}: unreadable weights ({e})") from None
    try:
        if fmt in PACKED_FORMATS:
            weights = packs.unflatten(cfg.arch, arrays)
        else:
            weights = packs.from_v2(cfg, arrays)
    except packs.MissingWeight as e:
        raise ModelError(f"{wpath}: weights lack {e.args[0]} (the config needs it)") from None
    except IndexError:
        raise ModelError(f"{wpath}: weights have fewer layers than the config") from None
    check_arrays(cfg, packs.flatten(weights), str(wpath))
    return IntModel(cfg, weights), digest.digest()
