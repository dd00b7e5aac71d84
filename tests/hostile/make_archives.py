"""Regenerate tests/hostile/archives/: crafted archives that once crashed, hung or wrote
partial output (issue 12).  Run from the repository root: python tests/hostile/make_archives.py"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from nacc import container as C

OUT = Path(__file__).parent / "archives"


def _seg(name, shape=(2, 8, 16), descr="<i2", crc=0, fs=(8, 16), vocab=1024):
    return C.Segment(name, descr, False, shape, fs, vocab, crc)


def _archive(segs_per_block, predictor="prevframe", params=None, words=None, version=2):
    """Format ``version`` (2: the layout of the archives that once failed, no pad)."""
    n = sum(len(b) for b in segs_per_block)
    out = C.pack_header(C.Header(predictor, params or {}, b"", 24, n, len(segs_per_block),
                                 version))
    for segs in segs_per_block:
        w = np.zeros(0 if words is None else words, np.uint32)
        out += C.pack_block(C.Block(C.CODED, tuple(segs), w), version)
    return out


def _v3_pad(pad_len: int | None = None, flip: bool = False) -> bytes:
    """A version 3 archive of one zero-word block of 1536 tokens (pad 320 bytes), with the
    pad length replaced by ``pad_len`` (and no pad bytes), or its last pad byte set."""
    out = _archive([[_seg("a.npy", shape=(12, 8, 16))]], version=3)
    if flip:
        return out[:-1] + b"\x01"
    return out[:-322] + C._varint(pad_len)


def _raw_header(name: bytes, params: bytes) -> bytes:
    """A version 2 header with a raw predictor name and parameter text."""
    body = (C._varint(len(name)) + name + C._varint(len(params)) + params + C._varint(0)
            + bytes([24]) + C._varint(1) + C._varint(1))
    return C.MAGIC + bytes([2]) + C._varint(len(body)) + body + struct.pack("<I", zlib.crc32(body))


def cases() -> dict[str, bytes]:
    block = C.pack_block(C.Block(C.CODED, (_seg("a.npy"),), np.zeros(0, np.uint32)), 2)
    return {
        "dup-names": _archive([[_seg("a.npy")], [_seg("a.npy")]]),
        "file-and-folder": _archive([[_seg("a")], [_seg("a/b.npy")]]),
        "nul-name": _archive([[_seg("a\x00b.npy")]]),
        "escape-name": _archive([[_seg("\x1b[31mred.npy")]]),
        "abs-name": _archive([[_seg("/tmp/x.npy")]]),
        "dotdot-name": _archive([[_seg("a/../../x.npy")]]),
        "empty-name": _archive([[_seg("")]]),
        "garbage-dtype": _archive([[_seg("a.npy", descr="garbage")]]),
        "float-dtype": _archive([[_seg("a.npy", descr="<f8")]]),
        "huge-dtype": _archive([[_seg("a.npy", descr="<V3000000000")]]),
        "zero-shape": _archive([[_seg("a.npy", shape=(0, 8, 16))]]),
        "wrap-shape": _archive([[_seg("a.npy", shape=(2**16,) * 4)]]),
        "claims-2e24-tokens": _archive([[_seg("a.npy", shape=(2**24 // 128, 8, 16))]],
                                       words=2),
        "claims-2e28-tokens": _archive([[_seg("a.npy", shape=(2**28 // 128, 8, 16))]]),
        # the floor of versions 1-2 alone let a tiny vocabulary or a long payload claim far
        # more tokens than one second of decoding: min_payload now bounds them too
        "v2-vocab2-2e28-tokens": _archive([[_seg("a.npy", (2**28, 1, 1), "<i4", 0, (1, 1), 2)]],
                                          "cm", {"prior": "none"}, 2),
        "v2-122m-tokens": _archive([[_seg("a.npy", (121386147, 1, 1), "<i4", 0, (1, 1))]],
                                   "prevframe", None, 230),
        "v2-v65536-tail": _archive([[_seg("a.npy", (2**20, 1, 1), "<i4", 0, (1, 1), 65536)]],
                                   "prevframe", None, 2),
        "v3-short-pad": _v3_pad(0),
        "v3-long-pad": _v3_pad(321),
        "v3-nonzero-pad": _v3_pad(flip=True),
        "many-free-blocks": _archive([[_seg(f"s{i}.npy", shape=(2**20 // 128, 8, 16))]
                                      for i in range(2)], words=1),
        "nested-params": _raw_header(b"prevframe", b"[" * 30000 + b"]" * 30000) + block,
        "huge-number-params": _raw_header(b"cm", b'{"prior": ' + b"9" * 5000 + b"}") + block,
        "dotted-predictor": _raw_header(b"..base", b"{}") + block,
        "cm-model-nul": _raw_header(b"cm", json.dumps({"prior": "none", "model": "m\x00x"})
                                    .encode()) + block,
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in cases().items():
        (OUT / f"{name}.nacc").write_bytes(data)
        print(name, len(data))
