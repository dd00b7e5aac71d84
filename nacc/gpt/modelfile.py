"""The ``gpt`` model folder: ``config.json`` and one raw weights file, content-hashed.

``config.json``: ``format`` (``FORMAT``), ``config`` (the ``GPTConfig`` fields), ``weights``
(the file name, ``weights-<sha256[:16]>.bin``) and ``sha256`` (of that file), plus
informational ``source`` fields.  The weights file: ``MAGIC``, a u32 little-endian header
length, the header (compact JSON: ``[[name, dtype, shape, offset], ...]``, offsets from the
file start, each 64-byte aligned), then the arrays in C order, little endian, zero padding
between them.  The arrays are, in order, ``top.<field>`` (``intref.Top``), ``layer<i>.<field>``
(``intref.Layer``, i = 0..L-1) and ``tables.<field>`` (``intref.Tables``).  No pickle
anywhere; the same model gives the same bytes on any machine.

Loading refuses a format it does not read, weights that do not hash to the recorded digest,
and arrays whose names, shapes, dtypes or bounds differ from what the config and the integer
spec (``nacc.gpt.intref``) require.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nacc.errors import NaccError
from nacc.fileio import MAX_CONFIG_BYTES, load_json, open_input
from nacc.gpt.intref import (
    ACT_BITS,
    GPTConfig,
    Layer,
    Model,
    Tables,
    Top,
    layer_shapes,
    top_shapes,
)

FORMAT = "nacc-gpt-v1"
MAGIC = b"NACCGPT1"
ALIGN = 64
SIZE_LIMITS = {"n_layer": (1, 256), "d_model": (1, 16384), "n_head": (1, 1024),
               "d_ff": (1, 65536), "n_vocab": (3, 65537), "n_positions": (1, 65536),
               "act_bits": ACT_BITS, "eps": (0, 1 << 40)}


# gpt2m's int8 weights are about 310 MB; a larger file is refused before it is read
MAX_WEIGHTS_BYTES = 1 << 31


class ModelError(NaccError):
    """A gpt model folder is missing, inconsistent, or does not match its hash."""


def check_config(cfg: GPTConfig, where: str) -> None:
    for name, (lo, hi) in SIZE_LIMITS.items():
        val = getattr(cfg, name)
        if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
            raise ModelError(f"{where}: config {name} = {val!r} is not an integer in {lo}..{hi}")
    if cfg.d_model % cfg.n_head:
        raise ModelError(f"{where}: width {cfg.d_model} is not a multiple of {cfg.n_head} heads")


def array_specs(cfg: GPTConfig, tables: Tables) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, dtype, shape)`` of every array of the weights file, in file order."""
    out = [(f"top.{k}", dt, shp) for k, (shp, dt) in top_shapes(cfg).items()]
    ls = layer_shapes(cfg)
    for i in range(cfg.n_layer):
        out += [(f"layer{i}.{k}", dt, shp) for k, (shp, dt) in ls.items()]
    out += [(f"tables.{k}", "int32", getattr(tables, k).shape) for k in Tables._fields]
    return out


def _layout(specs) -> tuple[bytes, list[int]]:
    offsets: list[int] = []
    # the header's length depends on the offsets' digits: iterate to a fixed point
    start = 0
    for _ in range(8):
        offsets = []
        off = start
        for _name, dt, shp in specs:
            off += -off % ALIGN
            offsets.append(off)
            off += int(np.prod(shp, dtype=np.int64)) * np.dtype(dt).itemsize
        header = json.dumps([[n, dt, list(shp), o] for (n, dt, shp), o in zip(specs, offsets)],
                            separators=(",", ":")).encode()
        new_start = len(MAGIC) + 4 + len(header)
        if new_start == start:
            return header, offsets
        start = new_start
    raise AssertionError("weights header layout did not settle")


def write_weights(path: Path, cfg: GPTConfig, tables: Tables,
                  arrays: Iterator[np.ndarray]) -> str:
    """Write the weights file from ``arrays`` (in ``array_specs`` order, one at a time);
    returns its sha256 hex digest."""
    specs = array_specs(cfg, tables)
    header, offsets = _layout(specs)
    h = hashlib.sha256()
    with path.open("wb") as f:
        def put(b: bytes) -> None:
            f.write(b)
            h.update(b)

        put(MAGIC + len(header).to_bytes(4, "little") + header)
        pos = len(MAGIC) + 4 + len(header)
        for (name, dt, shp), off, arr in zip(specs, offsets, arrays, strict=True):
            a = np.ascontiguousarray(arr)
            if a.dtype != np.dtype(dt) or a.shape != tuple(shp):
                raise AssertionError(f"{name}: {a.dtype}{a.shape}, want {dt}{tuple(shp)}")
            put(b"\0" * (off - pos))
            put(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
            pos = off + a.nbytes
    return h.hexdigest()


def save_model(folder, cfg: GPTConfig, tables: Tables, arrays: Iterator[np.ndarray],
               source: dict | None = None) -> str:
    """Write a model folder (the folder may exist; its old weights files are replaced)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.tmp"
    digest = write_weights(tmp, cfg, tables, arrays)
    name = f"weights-{digest[:16]}.bin"
    for old in folder.glob("weights-*.bin"):
        if old.name != name:
            old.unlink()
    tmp.replace(folder / name)
    info = {"format": FORMAT, "config": cfg._asdict(), "weights": name, "sha256": digest}
    if source:
        info["source"] = source
    (folder / "config.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return digest


def model_to_arrays(model: Model) -> Iterator[np.ndarray]:
    yield from model.top
    for lay in model.layers:
        yield from lay
    yield from model.tables


def read_config(folder) -> tuple[GPTConfig, dict]:
    folder = Path(folder)
    path = folder / "config.json"
    try:
        info = load_json(path, MAX_CONFIG_BYTES, "model config")  # a regular file, strict
    except FileNotFoundError:
        raise ModelError(f"{folder}: not a gpt model folder (no config.json)") from None
    except OSError as e:
        raise ModelError(f"{path}: unreadable ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise ModelError(f"{path}: format {got!r}, this nacc reads {FORMAT!r}")
    try:
        cfg = GPTConfig(**info["config"])
    except (KeyError, TypeError) as e:
        raise ModelError(f"{path}: bad config ({e})") from None
    check_config(cfg, str(path))
    return cfg, info


def load_model(folder) -> tuple[Model, bytes]:
    """The model of a folder and the sha256 digest of its weights file."""
    folder = Path(folder)
    cfg, info = read_config(folder)
    name = info.get("weights")
    if not isinstance(name, str) or "/" in name or not name.startswith("weights-"):
        raise ModelError(f"{folder}/config.json: bad weights file name {name!r}")
    try:
        fd, st = open_input(folder / name, streams=False)   # a regular file, never a FIFO
        with os.fdopen(fd, "rb") as f:
            if st.st_size > MAX_WEIGHTS_BYTES:
                raise ModelError(f"{folder}/{name}: {st.st_size} bytes, more than the "
                                 f"{MAX_WEIGHTS_BYTES} a gpt weights file may have")
            data = np.empty(st.st_size, np.uint8)
            if f.readinto(data.data) != st.st_size or f.read(1):
                raise ModelError(f"{folder}/{name}: changed while read")
    except OSError as e:
        raise ModelError(f"{folder}: cannot read {name} ({e})") from None
    digest = hashlib.sha256(data.data).digest()
    if digest.hex() != info.get("sha256"):
        raise ModelError(f"{folder}/{name}: weights do not match the sha256 in config.json")
    return parse_weights(data, cfg, f"{folder}/{name}"), digest


def parse_weights(data: np.ndarray, cfg: GPTConfig, where: str) -> Model:
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise ModelError(f"{where}: not a nacc gpt weights file")
    n = int.from_bytes(bytes(data[len(MAGIC):len(MAGIC) + 4]), "little")
    try:
        header = json.loads(bytes(data[len(MAGIC) + 4:len(MAGIC) + 4 + n]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{where}: damaged header") from None
    arrays: dict[str, np.ndarray] = {}
    for entry in header:
        nm, dt, shp, off = entry
        size = int(np.prod(shp, dtype=np.int64)) * np.dtype(dt).itemsize
        if not 0 <= off <= off + size <= data.size:
            raise ModelError(f"{where}: array {nm} lies outside the file")
        arrays[nm] = data[off:off + size].view(np.dtype(dt).newbyteorder("<")).reshape(shp)
    tab = Tables(*(arrays.get(f"tables.{k}", np.zeros(0, np.int32)) for k in Tables._fields))
    want = array_specs(cfg, tab)
    if [w[0] for w in want] != [e[0] for e in header]:
        raise ModelError(f"{where}: arrays do not match the config ({cfg})")
    for nm, dt, shp in want:
        a = arrays[nm]
        if a.dtype != np.dtype(dt) or a.shape != tuple(shp):
            raise ModelError(f"{where}: {nm} is {a.dtype}{a.shape}, want {dt}{tuple(shp)}")
    top = Top(*(arrays[f"top.{k}"] for k in Top._fields))
    layers = tuple(Layer(*(arrays[f"layer{i}.{k}"] for k in Layer._fields))
                   for i in range(cfg.n_layer))
    model = Model(cfg, top, layers, tab)
    check_bounds(model, where)
    return model


def check_bounds(model: Model, where: str) -> None:
    """ModelError unless every scale, shift and table is inside the spec's bounds."""
    cfg = model.cfg
    smin = 21 - cfg.act_bits
    lins = [("head", model.top.head_m, model.top.head_s)]
    for i, lay in enumerate(model.layers):
        lins += [(f"layer{i}.{k}", getattr(lay, f"{k}_m"), getattr(lay, f"{k}_s"))
                 for k in ("attn", "proj", "fc", "out")]
    for nm, m, s in lins:
        ok = ((m == 0) | ((m >= 1 << 15) & (m < 1 << 16))) & (s >= smin) & (s <= 50)
        if not np.all(ok):
            raise ModelError(f"{where}: {nm}: scales outside the spec's bounds")
        if np.any(np.abs(m.astype(np.int64)) >= 1 << 16):
            raise ModelError(f"{where}: {nm}: multiplier too large")
    t = model.tables
    for nm, tab, top in (("exp_att", t.exp_att, 1 << 16), ("exp_tab", t.exp_tab, 1 << 24)):
        if (len(tab) < 2 or tab[0] != top or tab[-1] != 0 or np.any(np.diff(tab) > 0)
                or np.any(tab < 0)):
            raise ModelError(f"{where}: table {nm} is not a decreasing exp table")
    if len(t.gelu) != (16 << 10) + 1 or np.any(np.abs(t.gelu) > 9 << 16):
        raise ModelError(f"{where}: gelu table of the wrong size or range")
