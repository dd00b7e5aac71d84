"""Reading and byte-exact rewriting of ``.npy`` token files.

``parse_npy`` splits a file into its prefix (magic, version and header: everything before
the data), the array, and the raw data bytes.  ``npy_bytes`` rebuilds the identical file.
A prefix equal to ``canonical_prefix(dtype, shape, fortran)`` (the header nacc's format
spec writes, which is what ``np.save`` writes for version 1.0) is stored as one flag
instead of its ~128 bytes.

Headers are untrusted: ``check_descr_shape`` admits only the integer dtypes of
``TOKEN_DESCRS`` and shapes of non-negative Python ints whose product cannot wrap, and the
data length must match before any array is made.
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


# The dtypes a token file may have: integers of 1, 2, 4 or 8 bytes, spelled as np.save writes
# them ('|' for one byte, an explicit '<' or '>' byte order otherwise).  Native-order
# spellings ('=i2', 'i2') are refused so that the bytes mean the same on every machine.
TOKEN_DESCRS = frozenset(["|i1", "|u1"] + [f"{o}{k}{n}" for o in "<>" for k in "iu"
                                           for n in (2, 4, 8)])
MAX_NDIM = 32                      # numpy's own limit (NPY_MAXDIMS of numpy 1.x)
MAX_ITEMS = 1 << 62                # no array this large can exist; keeps byte counts in int64


def _prefixed(where: str, msg: str) -> str:
    return f"{where}: {msg}" if where else msg


def _short(x) -> str:
    """``repr(x)``, cut to 60 characters (hostile headers can hold 64 KiB)."""
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def _dtype_or_none(descr) -> np.dtype | None:
    try:
        return np.dtype(descr)
    except Exception:  # noqa: BLE001 - any spelling numpy rejects
        return None


def check_descr_shape(descr, shape, where: str = "") -> tuple[np.dtype, int]:
    """``(dtype, number of items)`` of a header's ``descr`` and ``shape``, or NaccError
    (prefixed ``where: `` when ``where`` is given) unless ``descr`` is one of
    ``TOKEN_DESCRS`` (int8/uint8 as ``|i1``/``|u1``; int16, uint16, int32, uint32, int64,
    uint64 as ``<`` or ``>`` ``i2 u2 i4 u4 i8 u8``) and ``shape`` is a tuple of at most
    ``MAX_NDIM`` Python ints (not bools), each >= 0, whose product is at most ``MAX_ITEMS``.
    The product is computed with Python integers, so it cannot wrap.  Used by the ``.npy``
    parser here and by the archive parser, so both accept the same dtypes and shapes."""
    if not (isinstance(descr, str) and descr in TOKEN_DESCRS):
        dtype = _dtype_or_none(descr)
        if not isinstance(descr, str) and dtype is not None and dtype.names:
            msg = "structured arrays are not token videos"
        elif dtype is not None and dtype.hasobject:
            msg = "object arrays are not token videos"
        elif dtype is not None and dtype.kind not in "iu":
            msg = f"dtype {dtype} is not an integer type; token ids are integers"
        else:
            msg = (f"dtype {_short(descr)} is not a supported token dtype (one of "
                   + " ".join(sorted(TOKEN_DESCRS)) + ")")
        raise NaccError(_prefixed(where, msg))
    if not isinstance(shape, tuple) or len(shape) > MAX_NDIM:
        raise NaccError(_prefixed(where, f"bad shape {_short(shape)} (want a tuple of at most "
                                         f"{MAX_NDIM} sizes)"))
    n = 1
    for d in shape:
        if type(d) is not int or d < 0:
            raise NaccError(_prefixed(where, f"bad shape {_short(shape)} (sizes are integers "
                                             ">= 0)"))
        n *= d
        if n > MAX_ITEMS:
            raise NaccError(_prefixed(where, f"shape {_short(shape)} has more than 2^62 items"))
    return np.dtype(descr), n


def prefix_size(head: bytes, where: str = "") -> int:
    """The length of the prefix (magic, version, header length and header) of an ``.npy``
    file that starts with ``head`` (its first 12 bytes, or all of a shorter file);
    NaccError unless magic, version and header length are valid."""
    if len(head) < 10 or not head.startswith(MAGIC):
        raise NaccError(_prefixed(where, "not a .npy file (bad magic)"))
    major = head[6]
    if head[7] != 0:
        raise NaccError(_prefixed(where, f"unsupported .npy version {major}.{head[7]}"))
    if major == 1:
        (hlen,) = struct.unpack("<H", head[8:10])
        start = 10
    elif major in (2, 3):
        if len(head) < 12:
            raise NaccError(_prefixed(where, "truncated .npy header"))
        (hlen,) = struct.unpack("<I", head[8:12])
        start = 12
    else:
        raise NaccError(_prefixed(where, f"unsupported .npy version {major}"))
    if hlen > MAX_HEADER:
        raise NaccError(_prefixed(where, "truncated or oversized .npy header"))
    return start + hlen


def parse_prefix(prefix: bytes, where: str = "") -> tuple[str, bool, tuple[int, ...], int]:
    """``(descr, fortran, shape, number of data bytes)`` of a whole ``.npy`` prefix (see
    ``parse_npy`` for what is checked), before any data is read."""
    size = prefix_size(prefix[:12], where)
    if size > len(prefix):
        raise NaccError(_prefixed(where, "truncated or oversized .npy header"))
    start = 10 if prefix[6] == 1 else 12
    try:
        text = prefix[start:size].decode("utf8" if prefix[6] == 3 else "latin1")
        d = ast.literal_eval(text)
    except Exception as e:  # noqa: BLE001 - any parse failure (incl. RecursionError) is the same
        raise NaccError(_prefixed(where, f"unreadable .npy header ({type(e).__name__})")) \
            from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise NaccError(_prefixed(where, "unreadable .npy header (want a dict of descr, "
                                         "fortran_order and shape)"))
    descr, fortran, shape = d["descr"], d["fortran_order"], d["shape"]
    if not isinstance(fortran, bool):
        raise NaccError(_prefixed(where, f"bad fortran_order {_short(fortran)} in .npy header"))
    dtype, n = check_descr_shape(descr, shape, where)
    return descr, fortran, shape, n * dtype.itemsize


def parse_npy(raw: bytes, where: str = "") -> NpyFile:
    """Split the bytes of an ``.npy`` file; NaccError (prefixed ``where: `` when given)
    unless it is one: magic, version 1, 2 or 3, a header that is a Python-literal dict with
    exactly the keys descr, fortran_order (a bool) and shape, a token dtype and shape
    (``check_descr_shape``), and exactly as many data bytes as they say.  Nothing is
    allocated from the header's numbers."""
    size = prefix_size(raw[:12], where)
    descr, fortran, shape, want = parse_prefix(raw[:size], where)
    have = len(raw) - size
    if have != want:
        raise NaccError(_prefixed(where, f".npy data is {have} bytes, header says {want}"))
    return NpyFile(bytes(raw[:size]), descr, fortran, shape, bytes(raw[size:]))


def from_array(arr: np.ndarray) -> NpyFile:
    """The NpyFile ``np.save`` would write for ``arr`` (canonical prefix)."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise NaccError("object arrays are not token videos")
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    raw_descr = np.lib.format.dtype_to_descr(arr.dtype)
    check_descr_shape(raw_descr, tuple(int(d) for d in arr.shape))
    descr = str(raw_descr)                  # checked: one of TOKEN_DESCRS
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
