"""The ``.nacc`` archive format (version 1): bytes in, bytes out, no predictor logic.

All integers are unsigned LEB128 varints unless marked u8 / u32 (little endian); a string is
a varint length then UTF-8 bytes; ``crc`` is zlib's CRC-32 as u32.  ::

    archive  = magic "\\x89NAC" | version u8 | header_len | header | crc(header)
               | segment * n_segments
    header   = predictor name (string) | predictor params (string: compact JSON, sorted keys)
               | model hash (varint length, bytes: sha256 or empty) | precision u8
               | n_segments
    segment  = seg_len | seg_header | crc(seg_header) | payload | crc(payload)
    seg_header = name (string) | dtype descr (string) | fortran u8 | ndim | dims...
               | frame height | frame width | vocab
               | prefix flag u8 (0: the canonical .npy prefix of npyio.canonical_prefix,
                 1: raw prefix follows as varint length + bytes)
               | crc of the original .npy data bytes | n_words
    payload  = n_words u32 rANS words (see nacc.coder)

Every byte of the archive is covered by a CRC or checked against a bound, so any single
byte change is detected.  Header values are bounded before anything is allocated
(``MAX_*`` below).  A new layout bumps ``VERSION``; old versions keep decoding.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from nacc.errors import NaccError

MAGIC = b"\x89NAC"
VERSION = 1
MAX_SEGMENTS = 1 << 20
MAX_TOKENS = 1 << 28           # per segment: 1 GiB of int32 when decoded
MAX_STRING = 1 << 16
MAX_NDIM = 8
MAX_VOCAB = 65536
MAX_PRECISION = 24


@dataclass(frozen=True)
class Header:
    predictor: str
    params: dict
    model_hash: bytes
    precision: int
    n_segments: int


@dataclass(frozen=True)
class Segment:
    name: str
    descr: str
    fortran: bool
    shape: tuple[int, ...]
    frame_shape: tuple[int, int]
    vocab: int
    data_crc: int
    words: np.ndarray = field(repr=False)        # uint32
    raw_prefix: bytes | None = None              # None: canonical .npy prefix

    @property
    def n_tokens(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def n_frames(self) -> int:
        return self.n_tokens // (self.frame_shape[0] * self.frame_shape[1])


# -- primitives --------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode("utf8") if isinstance(s, str) else s
    return _varint(len(b)) + b


class _Reader:
    def __init__(self, buf: bytes | memoryview, what: str):
        self.buf = memoryview(buf)
        self.pos = 0
        self.what = what

    def fail(self, msg: str) -> NaccError:
        return NaccError(f"damaged archive: {self.what}: {msg}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail("truncated")
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def varint(self, limit: int, name: str) -> int:
        n = shift = 0
        while True:
            if shift > 63:
                raise self.fail(f"{name}: varint too long")
            b = self.u8()
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if n > limit:
            raise self.fail(f"{name} = {n} exceeds the limit {limit}")
        return n

    def string(self, name: str) -> str:
        try:
            return self.take(self.varint(MAX_STRING, name)).decode("utf8")
        except UnicodeDecodeError:
            raise self.fail(f"{name} is not UTF-8") from None

    def done(self) -> bool:
        return self.pos == len(self.buf)


def _framed(body: bytes) -> bytes:
    return _varint(len(body)) + body + struct.pack("<I", zlib.crc32(body))


def _unframe(r: _Reader, limit: int, name: str) -> bytes:
    n = r.varint(limit, f"{name} length")
    body = r.take(n)
    if r.u32() != zlib.crc32(body):
        raise r.fail(f"{name} checksum mismatch")
    return body


# -- writing -----------------------------------------------------------------------------
def pack_header(h: Header) -> bytes:
    body = (_string(h.predictor)
            + _string(json.dumps(h.params, sort_keys=True, separators=(",", ":")))
            + _string(h.model_hash) + bytes([h.precision]) + _varint(h.n_segments))
    return MAGIC + bytes([VERSION]) + _framed(body)


def pack_segment(s: Segment) -> bytes:
    body = bytearray()
    body += _string(s.name) + _string(s.descr) + bytes([int(s.fortran)])
    body += _varint(len(s.shape)) + b"".join(_varint(d) for d in s.shape)
    body += _varint(s.frame_shape[0]) + _varint(s.frame_shape[1]) + _varint(s.vocab)
    if s.raw_prefix is None:
        body += b"\x00"
    else:
        body += b"\x01" + _string(s.raw_prefix)
    words = np.ascontiguousarray(s.words, dtype="<u4")
    body += struct.pack("<I", s.data_crc) + _varint(len(words))
    payload = words.tobytes()
    return _framed(bytes(body)) + payload + struct.pack("<I", zlib.crc32(payload))


# -- reading -----------------------------------------------------------------------------
def read_header(buf: bytes | memoryview) -> tuple[Header, int]:
    """Parse the archive header; returns it and the offset of the first segment."""
    r = _Reader(buf, "header")
    magic = r.take(4) if len(buf) >= 4 else b""
    if magic != MAGIC:
        raise NaccError("not a nacc archive (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise NaccError(f"unsupported archive version {version} (this nacc reads {VERSION})")
    body = _Reader(_unframe(r, 1 << 20, "header"), "header")
    name = body.string("predictor name")
    try:
        params = json.loads(body.string("predictor params"))
    except json.JSONDecodeError:
        raise body.fail("predictor params are not JSON") from None
    model_hash = body.take(body.varint(64, "model hash length"))
    precision = body.u8()
    if not 1 <= precision <= MAX_PRECISION:
        raise body.fail(f"precision {precision} outside 1..{MAX_PRECISION}")
    n_segments = body.varint(MAX_SEGMENTS, "segment count")
    if not body.done() or not isinstance(params, dict):
        raise body.fail("malformed header")
    return Header(name, params, model_hash, precision, n_segments), r.pos


def read_segment(buf: bytes | memoryview, offset: int) -> tuple[Segment, int]:
    """Parse one segment starting at ``offset``; returns it and the next offset."""
    r = _Reader(buf, "segment")
    r.pos = offset
    b = _Reader(_unframe(r, 1 << 20, "segment header"), "segment header")
    name = b.string("name")
    descr = b.string("dtype")
    fortran = b.u8()
    ndim = b.varint(MAX_NDIM, "ndim")
    shape = tuple(b.varint(MAX_TOKENS, "dimension") for _ in range(ndim))
    fh = b.varint(MAX_TOKENS, "frame height")
    fw = b.varint(MAX_TOKENS, "frame width")
    vocab = b.varint(MAX_VOCAB, "vocab")
    flag = b.u8()
    raw_prefix = None
    if flag == 1:
        raw_prefix = b.take(b.varint(MAX_STRING, "npy prefix length"))
    elif flag != 0:
        raise b.fail(f"unknown prefix flag {flag}")
    data_crc = b.u32()
    n_tokens = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if fortran > 1 or n_tokens > MAX_TOKENS or fh * fw == 0 or n_tokens % (fh * fw):
        raise b.fail(f"inconsistent shape {shape} / frame {fh}x{fw}")
    if vocab < 2:
        raise b.fail(f"vocab {vocab} < 2")
    # rANS emits at most one word per token, plus two for the final state
    n_words = b.varint(n_tokens + 2, "payload words")
    if not b.done():
        raise b.fail("trailing bytes")
    payload = r.take(4 * n_words)
    if r.u32() != zlib.crc32(payload):
        raise r.fail(f"payload checksum mismatch in segment {name!r}")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    seg = Segment(name, descr, bool(fortran), shape, (fh, fw), vocab, data_crc, words, raw_prefix)
    return seg, r.pos


def read_archive(buf: bytes) -> tuple[Header, list[Segment]]:
    """Parse a whole archive; every checksum and bound is checked."""
    header, pos = read_header(buf)
    segments = []
    for _ in range(header.n_segments):
        seg, pos = read_segment(buf, pos)
        segments.append(seg)
    if pos != len(buf):
        raise NaccError(f"damaged archive: {len(buf) - pos} trailing bytes")
    return header, segments
