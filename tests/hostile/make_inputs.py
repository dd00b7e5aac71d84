"""Writes tests/hostile/inputs/: small crafted inputs that nacc once mishandled (exit 0 with
wrong or missing segments, or a traceback).  Deterministic; run from anywhere:
``python tests/hostile/make_inputs.py``.  tests/test_hostile_inputs.py pins the message
each one must give."""
from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "inputs"


def npy(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def clips(n=3):
    rng = np.random.default_rng(12)
    return [rng.integers(0, 16, (3, 8, 16)).astype(np.int16) for _ in range(n)]


def tar_bytes(members) -> bytes:
    """A ustar archive ending with its two zero blocks (no padding to a 10 KiB record)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
        end = t.offset
    return b.getvalue()[:end + 1024]


def shard_members(skip=()):
    out = []
    for i, c in enumerate(clips()):
        for name, data in ((f"{i:06d}.json", json.dumps({"file_name": f"seg{i}.npy"}).encode()),
                           (f"{i:06d}.token.npy", npy(c))):
            if name not in skip:
                out.append((name, data))
    return out


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def crc_damaged(good: bytes) -> bytes:
    """``good`` with the first byte flip (from the middle on) that inflates cleanly but
    fails gzip's CRC-32."""
    for i in range(len(good) // 2, len(good) - 8):
        bad = bytearray(good)
        bad[i] ^= 0x01
        try:
            zlib.decompress(bytes(bad), wbits=31)
        except zlib.error as e:
            if "incorrect data check" in str(e):
                return bytes(bad)
    raise AssertionError("no CRC-only damage found")


def npy_with_header(header: str, data: bytes = b"", version: int = 1, raw: bytes | None = None):
    h = raw if raw is not None else header.encode("latin1")
    h += b" " * ((-(10 + len(h) + 1)) % 64) + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h)) + h + data


def npz_bytes(compression=zipfile.ZIP_STORED) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        for key, c in zip("ab", clips(2)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, npy(c))
    return b.getvalue()


def npz_without_first_entry(raw: bytes) -> bytes:
    """The central directory loses member a.npy (its record is cut out and the end record
    counts one member less): zipfile then lists only b.npy."""
    end = raw.rindex(b"PK\x05\x06")
    n, size, start = struct.unpack("<HIi", raw[end + 10:end + 20])
    first = raw[start:]
    name_len, extra_len, comment_len = struct.unpack("<HHH", first[28:34])
    rec = 46 + name_len + extra_len + comment_len
    cd = raw[start + rec:end]
    eocd = bytearray(raw[end:])
    struct.pack_into("<HHI", eocd, 8, n - 1, n - 1, size - rec)
    return raw[:start] + cd + bytes(eocd)


def main(out: Path = OUT) -> None:
    out.mkdir(exist_ok=True)
    files: dict[str, bytes] = {}
    good_tar = tar_bytes(shard_members())
    good = gz(good_tar)
    files["crc.tar.gz"] = crc_damaged(good)
    flags = bytearray(good)
    flags[3] ^= 0xFF                                 # gzip FLG: once a TypeError (ord())
    files["flags.tar.gz"] = bytes(flags)
    files["cut-inside.tar.gz"] = good[: len(good) // 2]
    cut = tar_bytes(shard_members()[:4])[:-1024]     # two whole keys, no end marker
    files["cut-boundary.tar"] = cut
    files["cut-boundary.tar.gz"] = gz(cut)           # a whole gzip stream of a cut tar
    files["lost-json.tar.gz"] = gz(tar_bytes(shard_members(skip={"000001.json"})))
    files["lost-npy.tar.gz"] = gz(tar_bytes(shard_members(skip={"000001.token.npy"})))
    files["trailing.tar.gz"] = good + b"garbage"
    hdr = bytearray(good_tar)
    with tarfile.open(fileobj=io.BytesIO(good_tar)) as t:
        fifth = [m.offset for m in t][4]
    hdr[fifth + 100] ^= 0x01                         # the mode field of member 5
    files["bad-header.tar"] = bytes(hdr)
    files["after-end.tar"] = good_tar + tar_bytes(shard_members()[:1])
    stored = npz_bytes()
    crc = bytearray(stored)
    crc[stored.index(b"\x93NUMPY") + 200] ^= 0x01    # a data byte of a.npy
    files["crc.npz"] = bytes(crc)
    method = bytearray(stored)
    cd = stored.rindex(b"PK\x01\x02", 0, stored.rindex(b"PK\x01\x02"))
    method[cd + 10] = 99                             # compression method 99: NotImplementedError
    files["method.npz"] = bytes(method)
    files["cut.npz"] = stored[: len(stored) - 30]
    files["lost-member.npz"] = npz_without_first_entry(stored)
    deflated = bytearray(npz_bytes(zipfile.ZIP_DEFLATED))
    deflated[30 + 5 + 3] ^= 0xFF                     # inside a.npy's deflate data: zlib.error
    files["deflate.npz"] = bytes(deflated)
    files["junk.npy"] = b"hello"
    d = "{'descr': '<i2', 'fortran_order': False, 'shape': %s, }"
    files["shape-2p32.npy"] = npy_with_header(d % "(4294967296, 4294967296)")
    files["shape-negative.npy"] = npy_with_header(d % "(-1, 128)")
    files["shape-float.npy"] = npy_with_header(d % "(2.0, 128)", bytes(512))
    files["shape-string.npy"] = npy_with_header(d % "('2', 128)", bytes(512))
    files["shape-bool.npy"] = npy_with_header(d % "(True, 128)", bytes(256))
    files["shape-int64.npy"] = npy_with_header(d % "(3037000500, 3037000500)")
    files["shape-list.npy"] = npy_with_header(d % "[2, 128]", bytes(512))
    files["short-data.npy"] = npy_with_header(d % "(1000000, 128)", bytes(10))
    files["dtype-garbage.npy"] = npy_with_header(
        "{'descr': 'garbage', 'fortran_order': False, 'shape': (2, 128), }", bytes(512))
    files["dtype-native.npy"] = npy_with_header(
        "{'descr': '=i2', 'fortran_order': False, 'shape': (2, 128), }", bytes(512))
    files["dtype-float64.npy"] = npy(np.zeros((2, 8, 16)))
    files["fortran-string.npy"] = npy_with_header(
        "{'descr': '<i2', 'fortran_order': 'no', 'shape': (2, 128), }", bytes(512))
    files["extra-key.npy"] = npy_with_header(
        "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 128), 'x': 1}", bytes(512))
    files["nested.npy"] = npy_with_header("(" * 3000 + ")" * 3000)
    files["bigint.npy"] = npy_with_header(d % ("(" + "9" * 5000 + ",)"))
    files["v3-utf8.npy"] = npy_with_header("", version=3, raw=b"{'descr': '\xff'}")
    files["version-9.npy"] = npy_with_header(d % "(2, 128)", bytes(512), version=9)
    for name, data in files.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
