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


def _seg(name, shape=(2, 8, 16), descr="<i2", crc=0, fs=(8, 16)):
    return C.Segment(name, descr, False, shape, fs, 1024, crc)


def _archive(segs_per_block, predictor="prevframe", params=None, words=None):
    n = sum(len(b) for b in segs_per_block)
    out = C.pack_header(C.Header(predictor, params or {}, b"", 24, n, len(segs_per_block)))
    for segs in segs_per_block:
        w = np.zeros(0 if words is None else words, np.uint32)
        out += C.pack_block(C.Block(C.CODED, tuple(segs), w))
    return out


def _raw_header(name: bytes, params: bytes) -> bytes:
    body = (C._varint(len(name)) + name + C._varint(len(params)) + params + C._varint(0)
            + bytes([24]) + C._varint(1) + C._varint(1))
    return C.MAGIC + bytes([2]) + C._varint(len(body)) + body + struct.pack("<I", zlib.crc32(body))


def cases() -> dict[str, bytes]:
    block = C.pack_block(C.Block(C.CODED, (_seg("a.npy"),), np.zeros(0, np.uint32)))
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
