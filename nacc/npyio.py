"""Reading and byte-exact rewriting of ``.npy`` token files.

``read_npy`` splits a file into its prefix (magic, version and header: everything before
the data), the array, and the raw data bytes.  ``npy_bytes`` rebuilds the identical file.
A prefix equal to ``canonical_prefix(dtype, shape, fortran)`` (the header nacc's format
spec writes, which is what ``np.save`` writes for version 1.0) is stored as one flag
instead of its ~128 bytes.
"""
from __future__ import annotations

import ast
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from nacc.errors import NaccError

MAGIC = b"\x93NUMPY"
MAX_HEADER = 1 << 16


@dataclass(frozen=True)
class NpyFile:
    prefix: bytes          # bytes before the data, exactly as in the file
    descr: str             # numpy dtype string, e.g. '<i2'
    fortran: bool
    shape: tuple[int, ...]
    data: bytes            # the raw data bytes as in the file

    @property
    def array(self) -> np.ndarray:
        """The array (a read-only view of ``data``)."""
        arr = np.frombuffer(self.data, dtype=np.dtype(self.descr))
        return arr.reshape(self.shape, order="F" if self.fortran else "C")

    @property
    def crc(self) -> int:
        return zlib.crc32(self.data)


def canonical_prefix(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    """The version 1.0 prefix in the layout ``np.save`` uses: a Python-literal dict with keys
    descr, fortran_order, shape, padded with spaces and a newline so that the data starts
    at a multiple of 64 bytes."""
    if len(shape) == 1:
        shape_repr = f"({shape[0]},)"
    else:
        shape_repr = "(" + ", ".join(str(d) for d in shape) + ")"
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_repr}, }}"
    total = len(MAGIC) + 2 + 2 + len(header) + 1
    header += " " * ((-total) % 64) + "\n"
    return MAGIC + b"\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def parse_npy(raw: bytes, where: str) -> NpyFile:
    """Split the bytes of an ``.npy`` file; NaccError naming ``where`` if it is not one."""
    if not raw.startswith(MAGIC) or len(raw) < 10:
        raise NaccError(f"{where}: not a .npy file (bad magic)")
    major = raw[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", raw[8:10])
        start = 10
    elif major in (2, 3):
        if len(raw) < 12:
            raise NaccError(f"{where}: truncated .npy header")
        (hlen,) = struct.unpack("<I", raw[8:12])
        start = 12
    else:
        raise NaccError(f"{where}: unsupported .npy version {major}")
    if hlen > MAX_HEADER or start + hlen > len(raw):
        raise NaccError(f"{where}: truncated or oversized .npy header")
    text = raw[start:start + hlen].decode("utf8" if major == 3 else "latin1")
    try:
        d = ast.literal_eval(text)
        descr, fortran, shape = d["descr"], bool(d["fortran_order"]), tuple(d["shape"])
        dtype = np.dtype(descr)
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise NaccError(f"{where}: unreadable .npy header ({e})") from None
    if not isinstance(descr, str):
        raise NaccError(f"{where}: structured arrays are not token videos")
    if dtype.hasobject:
        raise NaccError(f"{where}: object arrays are not token videos")
    data = raw[start + hlen:]
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != want:
        raise NaccError(f"{where}: .npy data is {len(data)} bytes, header says {want}")
    return NpyFile(raw[:start + hlen], descr, fortran, shape, data)


def from_array(arr: np.ndarray) -> NpyFile:
    """The NpyFile ``np.save`` would write for ``arr`` (canonical prefix)."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise NaccError("object arrays are not token videos")
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    if not isinstance(descr, str):
        raise NaccError("structured arrays are not token videos")
    data = arr.tobytes(order="F" if fortran else "C")
    return NpyFile(canonical_prefix(descr, fortran, arr.shape), descr, fortran,
                   tuple(arr.shape), data)


def npy_bytes(npy: NpyFile) -> bytes:
    return npy.prefix + npy.data


def array_data_bytes(arr: np.ndarray, descr: str, fortran: bool) -> bytes:
    """Raw data bytes of token values ``arr`` written as dtype ``descr`` in file order."""
    return np.asarray(arr).astype(np.dtype(descr)).tobytes(order="F" if fortran else "C")


def save_bytes(arr: np.ndarray) -> bytes:
    """What ``np.save`` writes for ``arr`` (used by tests to check canonical_prefix)."""
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()
