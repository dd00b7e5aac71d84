"""Read the tensors of a ``torch.save`` file in torch's zip format without torch.

The format (torch >= 1.6): a zip of ``<root>/data.pkl`` (a pickle of the state dict),
``<root>/data/<key>`` (each storage's raw bytes, stored uncompressed) and small text members
(``<root>/byteorder``, ``little`` when present).  The pickle names tensors as
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` with each storage a
persistent id ``("storage", torch.<Type>Storage, key, location, numel)``.  This unpickler
accepts only those globals (plus ``collections.OrderedDict`` and
``torch._utils._rebuild_parameter``) and refuses every other one, so reading a file runs
no code from it.  ``read_index(path)`` returns ``{name: (dtype, shape, raw)}`` with ``raw``
the tensor's bytes in C order (a slice of a memory map of the file when the tensor is
contiguous), the form ``nacc.gpt.checkpoint`` keeps for safetensors files.
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nacc.errors import NaccError

# torch storage class -> (numpy dtype, item size); "bf16" is read by nacc.gpt.checkpoint
STORAGES = {"FloatStorage": ("<f4", 4), "HalfStorage": ("<f2", 2),
            "BFloat16Storage": ("bf16", 2), "DoubleStorage": ("<f8", 8)}


class _Storage(NamedTuple):
    key: str
    dtype: str
    item: int
    numel: int


class _TensorRef(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


class _StorageType(NamedTuple):
    name: str


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_rest):
    return data


_GLOBALS = {("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dt, item = STORAGES[pid[1].name]
        return _Storage(str(pid[2]), dt, item, int(pid[4]))


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start in the file (after its local header)."""
    with path.open("rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise NaccError(f"{path}: damaged zip member {info.filename}")
    return info.header_offset + 30 + int.from_bytes(head[26:28], "little") + \
        int.from_bytes(head[28:30], "little")


def read_index(path) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
    """``{name: (dtype, shape, raw uint8 bytes in C order)}`` of a torch zip checkpoint."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise NaccError(f"{path}: not a torch zip checkpoint ({e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise NaccError(f"{path}: not a torch zip checkpoint (no single <root>/data.pkl)")
        root = pkls[0][:-len("data.pkl")]
        if root + "byteorder" in zf.namelist() and \
                zf.read(root + "byteorder").strip() != b"little":
            raise NaccError(f"{path}: a big-endian torch checkpoint is not supported")
        try:
            sd = _Unpickler(zf.open(pkls[0])).load()
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
                AttributeError, IndexError) as e:
            raise NaccError(f"{path}: cannot read the checkpoint's state dict ({e})") from None
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise NaccError(f"{path}: the checkpoint holds a {type(sd).__name__}, not a "
                            "state dict")
        size = path.stat().st_size
        whole = np.memmap(path, np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        storages: dict[str, np.ndarray] = {}
        out = {}
        for name, t in sd.items():
            if not isinstance(t, _TensorRef):
                continue
            st = t.storage
            if st.key not in storages:
                member = f"{root}data/{st.key}"
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise NaccError(f"{path}: storage {member} is missing") from None
                if info.file_size != st.numel * st.item:
                    raise NaccError(f"{path}: storage {member} holds {info.file_size} bytes, "
                                    f"{st.numel} x {st.item} expected")
                if info.compress_type == zipfile.ZIP_STORED:
                    a = _data_offset(path, info)
                    storages[st.key] = whole[a:a + info.file_size]
                else:
                    storages[st.key] = np.frombuffer(zf.read(member), np.uint8)
            out[str(name)] = (st.dtype, t.size, _tensor_bytes(storages[st.key], t, path, name))
    return out


def _tensor_bytes(raw: np.ndarray, t: _TensorRef, path: Path, name) -> np.ndarray:
    item = t.storage.item
    n = int(np.prod(t.size, dtype=np.int64))
    if len(t.stride) != len(t.size) or t.offset < 0:
        raise NaccError(f"{path}: tensor {name!r}: bad size/stride")
    if n == 0:
        return raw[:0]
    last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
    if min(t.stride, default=0) < 0 or (last + 1) * item > raw.size:
        raise NaccError(f"{path}: tensor {name!r} reaches outside its storage")
    contiguous = []
    acc = 1
    for s in reversed(t.size):
        contiguous.append(acc)
        acc *= s
    if all(s == 1 or st == c for s, st, c in zip(t.size, t.stride, reversed(contiguous))):
        return raw[t.offset * item:(t.offset + n) * item]
    # a strided view: gather its elements in C order (as items of the right width)
    word = np.dtype(f"<u{item}")
    flat = raw[:raw.size - raw.size % item].view(word)
    view = np.lib.stride_tricks.as_strided(flat[t.offset:], t.size,
                                           tuple(s * item for s in t.stride), writeable=False)
    return np.ascontiguousarray(view).view(np.uint8).reshape(-1)
