"""The ``.nacc`` archive format (version 3; versions 1 and 2 still read): bytes in, bytes out.

All integers are unsigned LEB128 varints unless marked u8 / u32 (little endian); a string is
a varint length then UTF-8 bytes; ``crc`` is zlib's CRC-32 as u32.  ::

    archive  = magic "\\x89NAC" | version u8 (3) | header_len | header | crc(header)
               | block * n_blocks
    header   = predictor name (string) | predictor params (string: compact JSON, sorted keys)
               | model hash (varint length, bytes: sha256 or empty) | precision u8
               | n_segments | n_blocks
    block    = block_len | block_header | crc(block_header) | payload | crc(payload)
               | pad_len | pad (pad_len zero bytes: the payload floor, see ``min_payload``)
    block_header = coding u8 (0: the archive's predictor; 1: the ``uniform`` table)
               | frame height | frame width | vocab | n_members | member * n_members | n_words
    member   = name (string) | dtype descr (string) | fortran u8 | ndim | dims...
               | prefix flag u8 (0: the canonical .npy prefix of npyio.canonical_prefix,
                 1: raw prefix follows as varint length + bytes)
               | crc of the original .npy data bytes
    payload  = n_words u32 rANS words (see nacc.coder)

A block is one token video coded by one rANS stream: the frames of its members (segments,
i.e. input files), one member after the other.  A block of one member is an independent
segment; a block of several is a *solid group* whose predictor state runs on across its
members.  Blocks are independent of each other.  ``coding`` 1 marks a block stored with the
uniform table because the predictor would have coded it larger (the worst-case floor).

Version 2 (still read) is version 3 without ``pad_len | pad``.  Version 1 (still read) had
no n_blocks, and one independent segment per block, each laid out as
``seg_len | seg_header | crc | payload | crc`` with ``seg_header = name | descr | fortran
| ndim | dims | frame height | frame width | vocab | prefix flag [| prefix] | data crc |
n_words``.

Every byte of the archive is covered by a CRC or checked against a bound, so any single
byte change is detected.  Header values are bounded before anything is allocated
(``MAX_*`` below), and parsing refuses, before any decoding:

* member names that are not a safe relative path (``check_name``: empty, absolute, ``.``
  or ``..`` parts, empty parts, backslashes, NUL or other control or unprintable
  characters), names used twice, and a name that is also another member's folder;
* a dtype outside the integer whitelist ``DTYPES``; a shape that is not (T, H, W) or
  (T, H*W) of the block's frames, or of no tokens (products in Python integers: no
  overflow);
* predictor names outside ``[a-z][a-z0-9_]*`` and parameters that are not a flat JSON
  object of strings, booleans, null and 64-bit integers (no recursion, no huge numbers);
* a block whose payload and pad are not at least ``min_payload`` bytes (its tokens at
  ``token_bits(vocab)`` bits each, divided by ``MAX_RATIO`` up to ``FLOOR_HEAD`` bytes and by
  ``LONG_RATIO`` beyond): the pad is exactly what tops the payload up to that floor, so an
  archive of B <= FLOOR_HEAD bytes claims fewer than ``8 * MAX_RATIO * B / token_bits(vocab)``
  tokens and costs at most that many predictor steps to decode.  Versions 1 and 2 have no
  pad: their blocks with words must meet the same floor with their words alone (a block of
  no words decodes without the predictor), and the older rANS bound (``max_block_tokens``,
  ``FREE_TAIL``) still applies to them.
  The writer refuses the same members (``check_block``, ``check_names``) and pads every
  block, so that everything written reads back.

A new layout bumps ``VERSION``; old versions keep decoding.
"""
from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from nacc import npyio
from nacc.errors import NaccError
from nacc.spec import CODER_PRECISION as MAX_PRECISION  # the rANS precision, 24

MAGIC = b"\x89NAC"
VERSION = 3
READS = (1, 2, 3)
CODED, UNIFORM = 0, 1          # block coding: the archive's predictor / the uniform table
MAX_SEGMENTS = 1 << 20
MAX_TOKENS = 1 << 28           # per block: 1 GiB of int32 when decoded
MAX_STRING = 1 << 16
MAX_NDIM = 8
MAX_VOCAB = 65536
MAX_PARAMS = 64                # keys in the predictor parameters
# The payload floor (min_payload): a block's first FLOOR_HEAD bytes stand for at most
# MAX_RATIO times their size in fixed-width tokens, every byte beyond for LONG_RATIO times
MAX_RATIO = 6
FLOOR_HEAD = 1024
LONG_RATIO = 256
# integer dtypes a token video may be stored as: the one list of nacc.npyio (the .npy descr
# strings numpy writes), so that the archive and the .npy parsers accept the same ones
DTYPES = npyio.TOKEN_DESCRS
PREDICTOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
# Version 1 and 2's payload floor (``max_block_tokens``, kept for them besides
# ``min_payload``).  rANS (nacc.kernels.cpu.rans) codes a token of
# frequency f (of 2**24) by state -> (state // f) * 2**24 + state % f + start, from state 0
# backwards.  Write k = 2**24 - f; every table entry is >= 1, so k >= V - 1 (the uniform
# table: k = 2**24 - ceil(2**24 / V)).  Along the encoder (the video read backwards):
#   * *tail* tokens, met while the state is < 2**24, may cost nothing (a token laid out at
#     start 0 leaves a small state unchanged; a video of only that token codes to no words),
#     so no floor holds for them: the blocks of an archive that have words may have at most
#     FREE_TAIL tokens in all beyond the bound below (a block of no words is all tail, at
#     most FREE_TAIL tokens, and decodes without the predictor), and the writer refuses
#     (exit 1, nothing written) an archive that would need more;
#   * *mid* tokens (2**24 <= state < 2**32, no word emitted) multiply the state by at least
#     1 + k / 2**25, so there are at most 2**28 // k + 1 of them;
#   * *steady* tokens (state >= 2**32) multiply X = state * 2**(32 e) + (the e emitted words)
#     by at least 1 + h, h = k * 255**2 / 2**40 (state // f >= (state / f)(1 - 2**-8) and
#     the emitted words are below X / 2**8); X starts >= 2**32 and ends < 2**(32 W), and
#     log2(1 + h) >= h, so there are fewer than (32 W - 32) / h of them.
# With W = 0 words the state never left 0: only tail tokens.  All integer arithmetic.
FREE_TAIL = 1 << 20


@dataclass(frozen=True)
class Header:
    predictor: str
    params: dict
    model_hash: bytes
    precision: int
    n_segments: int
    n_blocks: int | None = None      # None: one block per segment (version 1)
    version: int = VERSION

    @property
    def blocks(self) -> int:
        return self.n_segments if self.n_blocks is None else self.n_blocks


@dataclass(frozen=True)
class Segment:
    """One input file (a block member): how to restore its exact ``.npy`` bytes."""
    name: str
    descr: str
    fortran: bool
    shape: tuple[int, ...]
    frame_shape: tuple[int, int]
    vocab: int
    data_crc: int
    raw_prefix: bytes | None = None              # None: canonical .npy prefix

    @property
    def n_tokens(self) -> int:
        return math.prod(self.shape)

    @property
    def n_frames(self) -> int:
        return self.n_tokens // (self.frame_shape[0] * self.frame_shape[1])


@dataclass(frozen=True)
class Block:
    """One rANS stream: the frames of ``segments``, one after the other."""
    coding: int                                   # CODED or UNIFORM
    segments: tuple[Segment, ...]
    words: np.ndarray = field(repr=False)         # uint32

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.segments[0].frame_shape

    @property
    def vocab(self) -> int:
        return self.segments[0].vocab

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.segments)

    @property
    def n_frames(self) -> int:
        return sum(s.n_frames for s in self.segments)


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
    """The archive's magic, version (``h.version``: 2 or 3) and framed header."""
    if h.version not in (2, 3):
        raise ValueError(f"cannot write version {h.version}")
    body = (_string(h.predictor)
            + _string(json.dumps(h.params, sort_keys=True, separators=(",", ":")))
            + _string(h.model_hash) + bytes([h.precision]) + _varint(h.n_segments)
            + _varint(h.blocks))
    return MAGIC + bytes([h.version]) + _framed(body)


def _pack_member(s: Segment) -> bytes:
    body = bytearray()
    body += _string(s.name) + _string(s.descr) + bytes([int(s.fortran)])
    body += _varint(len(s.shape)) + b"".join(_varint(d) for d in s.shape)
    if s.raw_prefix is None:
        body += b"\x00"
    else:
        body += b"\x01" + _string(s.raw_prefix)
    return bytes(body + struct.pack("<I", s.data_crc))


def pack_block(b: Block, version: int = VERSION) -> bytes:
    """The block's bytes in format ``version`` (2 or 3); version 3 appends the pad that
    tops the payload up to ``min_payload``."""
    fh, fw = b.frame_shape
    if any(s.frame_shape != b.frame_shape or s.vocab != b.vocab for s in b.segments):
        raise ValueError("block members differ in frame shape or vocabulary")
    words = np.ascontiguousarray(b.words, dtype="<u4")
    body = (bytes([b.coding]) + _varint(fh) + _varint(fw) + _varint(b.vocab)
            + _varint(len(b.segments)) + b"".join(_pack_member(s) for s in b.segments)
            + _varint(len(words)))
    payload = words.tobytes()
    out = _framed(body) + payload + struct.pack("<I", zlib.crc32(payload))
    if version == 3:
        if b.n_tokens > MAX_TOKENS:     # no reader takes it; its pad would not fit in memory
            raise ValueError(f"a block of {b.n_tokens} tokens exceeds MAX_TOKENS")
        pad = pad_bytes(b.n_tokens, b.vocab, len(words))
        out += _varint(pad) + bytes(pad)
    elif version != 2:
        raise ValueError(f"cannot write version {version}")
    return out


# -- reading -----------------------------------------------------------------------------
def check_name(name: str) -> str | None:
    """Why ``name`` is not a safe relative output path (None when it is): it must be
    non-empty, relative, of printable characters without backslashes, and split by ``/``
    into non-empty parts other than ``.`` and ``..``."""
    if not name:
        return "empty name"
    bad = next((c for c in name if not c.isprintable() or c == "\\"), None)
    if bad is not None:
        return f"character {bad!r} in name"
    if name.startswith("/"):
        return "absolute name"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "empty, '.' or '..' part in name"
    return None


def _check_params(params, body: _Reader) -> dict:
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise body.fail("predictor params are not a JSON object of at most "
                        f"{MAX_PARAMS} keys")
    for key, val in params.items():
        ok = (val is None or isinstance(val, (str, bool))
              or (isinstance(val, int) and -(1 << 63) <= val < (1 << 63)))
        if not ok:
            raise body.fail(f"predictor param {key!r} is not a string, boolean, null or "
                            "64-bit integer")
    return params


def token_bits(vocab: int) -> int:
    """Bits of one token of ``vocab`` ids at fixed width: ``bit_length(vocab - 1)``."""
    return max(1, (vocab - 1).bit_length())


def min_payload(n_tokens: int, vocab: int) -> int:
    """The least bytes of payload plus pad of a block of ``n_tokens`` tokens of
    ``token_bits(vocab)`` bits at fixed width (``F`` bits in all; Python integers):
    ``ceil(F / (8 * MAX_RATIO))`` while that is at most ``FLOOR_HEAD`` bytes, beyond it
    ``FLOOR_HEAD + ceil((F - 8 * MAX_RATIO * FLOOR_HEAD) / (8 * LONG_RATIO))``.  Small blocks
    compress at most MAX_RATIO to one (a small archive is cheap to refuse); long ones up to
    LONG_RATIO to one (a still video stays small).  The floor is subadditive, so splitting
    tokens over more blocks never lowers it."""
    fixed = n_tokens * token_bits(vocab)
    head = 8 * MAX_RATIO * FLOOR_HEAD
    if fixed <= head:
        return -(-fixed // (8 * MAX_RATIO))
    return FLOOR_HEAD + -(-(fixed - head) // (8 * LONG_RATIO))


def pad_bytes(n_tokens: int, vocab: int, n_words: int) -> int:
    """The pad of a version 3 block: what tops ``4 * n_words`` payload bytes up to
    ``min_payload`` (0 when the words reach it)."""
    return max(0, min_payload(n_tokens, vocab) - 4 * n_words)


def floor_tokens(n_words: int, vocab: int, coding: int) -> int:
    """The most tokens ``n_words`` rANS words can code outside a free tail (the mid and
    steady bounds of the comment at ``FREE_TAIL``), for the least gap ``k`` of a table of
    ``vocab`` entries (``coding`` UNIFORM: the uniform table's)."""
    if n_words == 0:
        return 0
    if coding == UNIFORM:
        k = (1 << MAX_PRECISION) - -(-(1 << MAX_PRECISION) // vocab)
    else:
        k = vocab - 1
    k = max(1, k)
    mid = (1 << 28) // k + 1
    steady = -(-(32 * n_words - 32) * (1 << 40) // (k * 255 * 255))
    return mid + steady


def free_tokens(block: Block) -> int:
    """Tokens of ``block`` beyond ``floor_tokens`` of its payload: the least length of its
    free tail.  A block of no words is all tail (it decodes without the predictor, see
    ``nacc.codec``); the others share an archive's ``FREE_TAIL``."""
    return max(0, block.n_tokens - floor_tokens(len(block.words), block.vocab, block.coding))


def max_block_tokens(n_words: int, vocab: int, coding: int) -> int:
    """The most tokens a block of ``n_words`` words may claim: ``floor_tokens`` plus
    ``FREE_TAIL``."""
    return floor_tokens(n_words, vocab, coding) + FREE_TAIL


def check_block(block: Block, version: int = VERSION) -> None:
    """NaccError unless ``read_block`` would accept ``block`` written in ``version``: its
    members, and for versions 1 and 2 the payload floors (version 3 pads every block up to
    its floor).  The writer calls it, so that nothing is written that would not read back."""
    for s in block.segments:
        why = segment_problem(s)
        if why is not None:
            raise NaccError(why)
    if version < 3:
        why = _old_floor_problem(block.n_tokens, len(block.words), block.vocab)
        if why is not None:
            raise NaccError(why)
        if free_tokens(block) > FREE_TAIL:
            raise NaccError(_tail_message(block.n_tokens, len(block.words)))


def _tail_message(n: int, w: int) -> str:
    return (f"{n} tokens coded in {w} words: the video ends in a run of more than "
            f"{FREE_TAIL} tokens that the coder stores for free, which archives refuse as "
            "hostile; compress it in shorter segments")


class TailBudget:
    """The writer's side of ``read_archive``'s check that the blocks with words of a
    version 1 or 2 archive have at most ``FREE_TAIL`` free tokens in all: ``add`` each
    packed block as it is written (for version 3 it only checks that the block reads)."""

    def __init__(self, version: int = VERSION):
        self.used = 0
        self.version = version

    def add(self, packed: bytes, n_members: int) -> None:
        header = Header("", {}, b"", MAX_PRECISION, n_members, 1, self.version)
        block, _ = read_block(packed, 0, header)
        if self.version >= 3:
            return
        if len(block.words):
            self.used += free_tokens(block)
        if self.used > FREE_TAIL:
            raise NaccError(_tail_message(block.n_tokens, len(block.words)))


def read_header(buf: bytes | memoryview) -> tuple[Header, int]:
    """Parse the archive header; returns it and the offset of the first block."""
    r = _Reader(buf, "header")
    magic = r.take(4) if len(buf) >= 4 else b""
    if magic != MAGIC:
        raise NaccError("not a nacc archive (bad magic)")
    version = r.u8()
    if version not in READS:
        raise NaccError(f"unsupported archive version {version} (this nacc reads "
                        f"{', '.join(map(str, READS))})")
    body = _Reader(_unframe(r, 1 << 20, "header"), "header")
    name = body.string("predictor name")
    if not PREDICTOR_NAME.match(name):
        raise body.fail(f"predictor name {name!r} is not a registry name")
    try:
        params = json.loads(body.string("predictor params"))
    except (ValueError, RecursionError):   # JSONDecodeError, too many digits, nesting
        raise body.fail("predictor params are not JSON") from None
    params = _check_params(params, body)
    model_hash = body.take(body.varint(64, "model hash length"))
    precision = body.u8()
    if not 1 <= precision <= MAX_PRECISION:
        raise body.fail(f"precision {precision} outside 1..{MAX_PRECISION}")
    n_segments = body.varint(MAX_SEGMENTS, "segment count")
    n_blocks = None
    if version >= 2:
        n_blocks = body.varint(n_segments, "block count")
        if (n_blocks == 0) != (n_segments == 0):
            raise body.fail(f"{n_blocks} blocks for {n_segments} segments")
    if not body.done() or not isinstance(params, dict):
        raise body.fail("malformed header")
    return Header(name, params, model_hash, precision, n_segments, n_blocks, version), r.pos


def _read_shape(b: _Reader) -> tuple[int, ...]:
    ndim = b.varint(MAX_NDIM, "ndim")
    return tuple(b.varint(MAX_TOKENS, "dimension") for _ in range(ndim))


def _read_prefix(b: _Reader) -> bytes | None:
    flag = b.u8()
    if flag == 1:
        return b.take(b.varint(MAX_STRING, "npy prefix length"))
    if flag != 0:
        raise b.fail(f"unknown prefix flag {flag}")
    return None


def segment_problem(s: Segment) -> str | None:
    """Why the member ``s`` cannot be in an archive (None when it can): its name, dtype and
    shape (see the module docstring); Python integers, no overflow."""
    why = check_name(s.name)
    if why is not None:
        return f"unsafe segment name {s.name!r}: {why}"
    if s.descr not in DTYPES:
        return f"segment {s.name!r}: dtype {s.descr!r} is not an integer dtype"
    fh, fw = s.frame_shape
    if s.vocab < 2:
        return f"vocab {s.vocab} < 2"
    frame = (fh, fw) if len(s.shape) == 3 else (fh * fw,)
    if not (len(s.shape) in (2, 3) and tuple(s.shape[1:]) == frame and s.shape[0] >= 1
            and fh >= 1 and fw >= 1):
        return f"segment {s.name!r}: shape {s.shape} is not a video of {fh}x{fw} frames"
    if math.prod(s.shape) > MAX_TOKENS:
        return (f"segment {s.name!r}: {math.prod(s.shape)} tokens exceed the limit "
                f"{MAX_TOKENS}")
    return None


def _check_member(b: _Reader, s: Segment) -> None:
    why = segment_problem(s)
    if why is not None:
        raise b.fail(why)


def _old_floor_problem(n_tokens: int, n_words: int, vocab: int) -> str | None:
    """Why a version 1 or 2 block (no pad) breaks ``min_payload`` (None when it does not):
    only blocks with words, since a block of no words decodes without the predictor."""
    need = min_payload(n_tokens, vocab)
    if n_words and 4 * n_words < need:
        return (f"{n_tokens} tokens ({token_bits(vocab)} bits each) claimed in {n_words} "
                f"payload words, under the floor of {need} bytes (min_payload of their "
                "fixed-width size)")
    return None


def _check_floor(b: _Reader, n_tokens: int, n_words: int, vocab: int, coding: int,
                 version: int) -> None:
    """Versions 1 and 2: the rANS bound and ``min_payload`` on the words (version 3's
    floor is its pad, read after the payload)."""
    if version >= 3:
        return
    cap = max_block_tokens(n_words, vocab, coding)
    if n_tokens > cap:
        raise b.fail(f"{n_tokens} tokens claimed, but {n_words} payload words hold at most "
                     f"{cap}")
    why = _old_floor_problem(n_tokens, n_words, vocab)
    if why is not None:
        raise b.fail(why)


def _read_pad(r: _Reader, n_tokens: int, vocab: int, n_words: int) -> None:
    """Version 3's pad: exactly ``pad_bytes`` zero bytes (checked without a copy)."""
    want = pad_bytes(n_tokens, vocab, n_words)
    got = r.varint(want, "pad length")
    if got != want:
        raise r.fail(f"pad of {got} bytes, but {n_tokens} tokens in {n_words} words need "
                     f"{want}")
    if r.pos + got > len(r.buf):
        raise r.fail("truncated")
    if np.frombuffer(r.buf, np.uint8, got, r.pos).any():
        raise r.fail("pad bytes are not zero")
    r.pos += got


def _read_payload(r: _Reader, n_words: int, what: str) -> np.ndarray:
    payload = r.take(4 * n_words)
    if r.u32() != zlib.crc32(payload):
        raise r.fail(f"payload checksum mismatch in {what}")
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _read_block_v1(buf: bytes | memoryview, offset: int) -> tuple[Block, int]:
    r = _Reader(buf, "segment")
    r.pos = offset
    b = _Reader(_unframe(r, 1 << 20, "segment header"), "segment header")
    name = b.string("name")
    descr = b.string("dtype")
    fortran = b.u8()
    shape = _read_shape(b)
    fs = (b.varint(MAX_TOKENS, "frame height"), b.varint(MAX_TOKENS, "frame width"))
    vocab = b.varint(MAX_VOCAB, "vocab")
    raw_prefix = _read_prefix(b)
    seg = Segment(name, descr, bool(fortran), shape, fs, vocab, b.u32(), raw_prefix)
    if fortran > 1:
        raise b.fail(f"fortran flag {fortran}")
    _check_member(b, seg)
    # rANS emits at most one word per token, plus two for the final state
    n_words = b.varint(seg.n_tokens + 2, "payload words")
    if not b.done():
        raise b.fail("trailing bytes")
    _check_floor(b, seg.n_tokens, n_words, vocab, CODED, 1)
    words = _read_payload(r, n_words, f"segment {name!r}")
    return Block(CODED, (seg,), words), r.pos


def read_block(buf: bytes | memoryview, offset: int, header: Header,
               members_left: int | None = None) -> tuple[Block, int]:
    """Parse one block starting at ``offset`` (``header`` gives the version's layout);
    returns it and the next offset.  ``members_left`` bounds its member count."""
    if header.n_blocks is None or header.version == 1:
        return _read_block_v1(buf, offset)
    r = _Reader(buf, "block")
    r.pos = offset
    b = _Reader(_unframe(r, 1 << 24, "block header"), "block header")
    coding = b.u8()
    if coding not in (CODED, UNIFORM):
        raise b.fail(f"unknown coding {coding}")
    fs = (b.varint(MAX_TOKENS, "frame height"), b.varint(MAX_TOKENS, "frame width"))
    vocab = b.varint(MAX_VOCAB, "vocab")
    limit = header.n_segments if members_left is None else members_left
    n_members = b.varint(limit, "member count")
    if n_members == 0:
        raise b.fail("a block without members")
    members, n_tokens = [], 0
    for _ in range(n_members):
        name = b.string("name")
        descr = b.string("dtype")
        fortran = b.u8()
        shape = _read_shape(b)
        raw_prefix = _read_prefix(b)
        seg = Segment(name, descr, bool(fortran), shape, fs, vocab, b.u32(), raw_prefix)
        if fortran > 1:
            raise b.fail(f"fortran flag {fortran}")
        _check_member(b, seg)
        n_tokens += seg.n_tokens
        if n_tokens > MAX_TOKENS:
            raise b.fail(f"block of {n_tokens} tokens exceeds the limit {MAX_TOKENS}")
        members.append(seg)
    n_words = b.varint(n_tokens + 2, "payload words")
    if not b.done():
        raise b.fail("trailing bytes")
    _check_floor(b, n_tokens, n_words, vocab, coding, header.version)
    words = _read_payload(r, n_words, f"block of {members[0].name!r}")
    if header.version >= 3:
        _read_pad(r, n_tokens, vocab, n_words)
    return Block(coding, tuple(members), words), r.pos


def read_archive(buf: bytes) -> tuple[Header, list[Block]]:
    """Parse a whole archive; every checksum and bound is checked."""
    header, pos = read_header(buf)
    blocks, left = [], header.n_segments
    names: set[str] = set()
    folders: set[str] = set()
    for k in range(header.blocks):
        # every later block needs a member of its own
        block, pos = read_block(buf, pos, header, max(0, left - (header.blocks - 1 - k)))
        for s in block.segments:
            why = _clash(s.name, names, folders)
            if why is not None:
                raise NaccError(f"damaged archive: {why}")
        blocks.append(block)
        left -= len(block.segments)
    tail = sum(free_tokens(b) for b in blocks if len(b.words)) if header.version < 3 else 0
    if tail > FREE_TAIL:
        raise NaccError(f"damaged archive: its blocks claim {tail} tokens more than their "
                        f"payloads can code (at most {FREE_TAIL} in all)")
    if left:
        raise NaccError(f"damaged archive: blocks hold {header.n_segments - left} segments, "
                        f"the header says {header.n_segments}")
    if pos != len(buf):
        raise NaccError(f"damaged archive: {len(buf) - pos} trailing bytes")
    return header, blocks


def check_names(names) -> None:
    """NaccError unless ``names`` are safe, distinct, and none is another's folder (what
    ``read_archive`` checks; the writer calls it before writing anything)."""
    seen: set[str] = set()
    folders: set[str] = set()
    for name in names:
        why = check_name(name)
        if why is not None:
            raise NaccError(f"unsafe segment name {name!r}: {why}")
        why = _clash(name, seen, folders)
        if why is not None:
            raise NaccError(why)


def _clash(name: str, names: set, folders: set) -> str | None:
    """Why ``name`` clashes (it repeats a member, or is a member's folder or lies in a
    member); else None, and it is added to ``names`` and its folders to ``folders``."""
    parts = name.split("/")
    above = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if name in names:
        return f"segment name {name!r} used twice"
    if name in folders or any(a in names for a in above):
        return f"segment name {name!r} is both a file and a folder"
    names.add(name)
    folders.update(above)
    return None


def segments_of(blocks: list[Block]) -> list[Segment]:
    """Every segment of ``blocks``, in archive order."""
    return [s for b in blocks for s in b.segments]
