"""What ``nacc compress`` (and ``bench``, ``submission``, the API) reads: ``(name, NpyFile)``
segments, byte-exact, from every input format users have.

* ``X.npy``: one segment named ``X.npy``; ``-`` is stdin (named ``stdin.npy``).
* a directory: every ``.npy`` below it, recursively, named by its relative path.
* ``X.npz``: one segment per member, named as the member (``KEY.npy``).  The member bytes
  are ``.npy`` files, kept byte for byte.
* a commaVQ webdataset shard ``X.tar`` / ``X.tar.gz`` / ``X.tgz``: members ``KEY.token.npy``
  and ``KEY.json``; the segment is named by the json's ``file_name`` (``KEY.npy`` when the
  shard has no json members at all).  The shard is streamed, never extracted to disk.

``nacc.training.datasets`` iterates the same formats for training, but decodes every array to int32;
an archive must restore the original bytes (dtype and header included), so this module keeps
the raw ``.npy`` bytes instead.

Integrity: an input is read whole and checked before any segment is returned, so a damaged
one is refused before anything is written.

* shards: gzip (also bzip2, xz; told by their magic bytes) is decoded with every stream's
  checksum and length verified, and nothing but another stream may follow one; the tar is
  walked block by block (header checksums, sizes, pax and GNU long names) up to its
  end-of-archive marker, after which only zero bytes may follow.  A member cut short, a
  missing marker, a ``KEY.token.npy`` without its ``KEY.json`` (when the shard has json
  members) or the reverse is an error, never a dropped or renamed segment.  A plain
  ``.tar`` has no checksum over member data; only its structure can be checked.
* ``.npz``: every member's CRC-32 is checked as it is read, and the members, the central
  directory and its end record must tile the file exactly, with the record's member count.
* every segment: a valid ``.npy`` (``npyio.parse_npy``), 2 or 3 dimensions, not empty, and
  one frame size per input (a directory or shard mixing frame sizes is almost always a
  mistake); its name is a safe relative path (``safe_name``).

Memory: an ``.npy`` (a file, stdin, a FIFO, a directory's files) is read header first; its
data is read only once the header is valid and says how many bytes follow (for a regular
file, once its size matches), so ``/dev/zero`` or a sparse file is refused after a few
bytes; a sparse file may not claim more than ``budget_of`` its bytes on disk (a few KB
of disk that read as gigabytes are a bomb too).  A compressed input (a shard, ``.npz``
members) may expand to at most
``budget_of(bytes read)``: ``BUDGET_RATIO`` times its compressed size, or
``BUDGET_FLOOR``, whichever is more, checked while it streams; gzip never expands that much,
so only a bomb (bzip2, xz, or a bzip2 stream under a ``.tar.gz`` name) is refused.  The
``.npz`` members must be stored or deflated (what numpy writes; zipfile decodes bzip2 and
lzma members without a bound).  Only regular files, FIFOs and character devices are read;
a FIFO is opened without blocking on a missing writer (``fileio.open_input``).

Any exception a damaged input makes a parser raise becomes NaccError (``segments_of``).
"""
from __future__ import annotations

import bz2
import errno
import json
import lzma
import os
import stat
import struct
import sys
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from nacc import fileio, npyio
from nacc.errors import NaccError

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TOKEN_EXT = "token.npy"
# the largest .npy that can be coded: MAX_TOKENS 8-byte items and the largest header
MAX_NPY_BYTES = (1 << 28) * 8 + npyio.MAX_HEADER + 12
MAX_JSON_BYTES = 1 << 20
MAX_NAME_BYTES = 4096          # PATH_MAX
MAX_PART_BYTES = 255           # NAME_MAX of common file systems
BUDGET_FLOOR = 64 << 20        # what any compressed input may expand to
BUDGET_RATIO = 1024            # ... or this times its compressed size (gzip's limit is ~1032)
_STREAM_CHUNK = 16 << 20


def budget_of(n_read: int) -> int:
    """How many bytes an input of ``n_read`` compressed bytes may expand to."""
    return max(BUDGET_FLOOR, BUDGET_RATIO * n_read)


def _bomb(what: str, n_read: int) -> NaccError:
    return NaccError(f"{what} expands to more than {budget_of(n_read)} bytes ({BUDGET_RATIO} "
                     f"times its {n_read} compressed bytes, or {BUDGET_FLOOR >> 20} MiB); "
                     "a compression bomb?")

# what a damaged or hostile input can make the standard parsers raise
INPUT_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError, RuntimeError, EOFError,
                MemoryError, struct.error, zlib.error, lzma.LZMAError, tarfile.TarError,
                zipfile.BadZipFile, zipfile.LargeZipFile)


def is_shard(path: str) -> bool:
    return path.endswith(SHARD_SUFFIXES)


def safe_name(name: str, where: str) -> str:
    """``name`` in its normal form if it can become a file name inside an output folder:
    relative, no ``..``, no backslash, no control characters, valid UTF-8, parts of at most
    255 bytes and 4096 in all; else NaccError (prefixed ``where: `` when given)."""
    p = PurePosixPath(name)
    bad = (not name or p.is_absolute() or ".." in p.parts or "\\" in name
           or p.as_posix() in ("", ".")
           or any(unicodedata.category(c) == "Cc" for c in name))
    try:
        encoded = [part.encode("utf8") for part in p.parts]
    except UnicodeEncodeError:
        bad = True
    else:
        bad = bad or sum(len(e) + 1 for e in encoded) > MAX_NAME_BYTES \
            or any(len(e) > MAX_PART_BYTES for e in encoded)
    if bad:
        shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "..."
        raise NaccError(f"{where}: unsafe segment name {shown}" if where
                        else f"unsafe segment name {shown}")
    return p.as_posix()


def _frame_size(npy: npyio.NpyFile) -> int:
    n = 1
    for d in npy.shape[1:]:
        n *= d
    return n


def check_segment(name: str, npy: npyio.NpyFile) -> None:
    """NaccError naming the segment unless it looks like a token video (its dtype was checked
    by ``npyio.parse_npy``)."""
    if len(npy.shape) not in (2, 3):
        raise NaccError(f"{name}: shape {npy.shape} is not a token video (T, H, W) or (T, N)")
    if 0 in npy.shape:
        raise NaccError(f"{name}: empty array of shape {npy.shape}")


def check_same_frames(segments: list[tuple[str, npyio.NpyFile]]) -> None:
    """All segments of one input have frames of the first one's size ((T, 8, 16) and
    (T, 128) go together)."""
    if not segments:
        return
    first, npy0 = segments[0]
    for name, npy in segments[1:]:
        if _frame_size(npy) != _frame_size(npy0):
            raise NaccError(f"{name}: shape {npy.shape} does not match {npy0.shape} of {first} "
                            "(one frame size per input; compress it separately)")


def _read_stream(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes of a stream, in chunks (memory grows with what arrives, not with
    ``n``)."""
    if n <= _STREAM_CHUNK:
        return f.read(n)
    buf = bytearray()
    while len(buf) < n:
        c = f.read(min(_STREAM_CHUNK, n - len(buf)))
        if not c:
            break
        buf += c
    return bytes(buf)


def read_npy(f: BinaryIO, where: str = "", size: int | None = None) -> npyio.NpyFile:
    """The ``.npy`` file that ``f`` holds (to its end), header first: no data byte is read
    before the header is valid and, when ``size`` (the file's size) is known, agrees with
    it.  NaccError as ``npyio.parse_npy``."""
    head = f.read(12)
    n = npyio.prefix_size(head, where)
    prefix = head[:n] if n <= len(head) else head + f.read(n - len(head))
    descr, fortran, shape, want = npyio.parse_prefix(prefix, where)
    if want > MAX_NPY_BYTES:
        raise NaccError((f"{where}: " if where else "") + f".npy data of {want} bytes, more "
                        "than any token video nacc codes")
    if size is not None and size - n != want:
        raise NaccError((f"{where}: " if where else "")
                        + f".npy data is {size - n} bytes, header says {want}")
    rest = head[n:]
    data = rest + _read_stream(f, want - len(rest)) if len(rest) < want else rest
    if len(data) != want or f.read(1):
        have = f"{len(data)} bytes" if len(data) < want else "more than that"
        raise NaccError((f"{where}: " if where else "")
                        + f".npy data is {have}, header says {want}")
    return npyio.NpyFile(bytes(prefix), descr, fortran, shape, data)


def read_npy_file(path: Path | str, where: str = "", streams: bool = True) -> npyio.NpyFile:
    """``read_npy`` of the file ``path`` (a regular file; also a FIFO or a character device
    when ``streams``), opened by ``fileio.open_input``."""
    fd, st = fileio.open_input(path, streams)
    with os.fdopen(fd, "rb") as f:
        disk = getattr(st, "st_blocks", None)
        if stat.S_ISREG(st.st_mode) and disk is not None and st.st_size > budget_of(disk * 512):
            raise NaccError((f"{where}: " if where else "") + f"a sparse file ({st.st_size} "
                            f"bytes, {disk * 512} of them on disk); nacc reads at most "
                            f"{BUDGET_RATIO} times what a file holds on disk")
        return read_npy(f, where, st.st_size if stat.S_ISREG(st.st_mode) else None)


def npy_file(path: Path, name: str) -> list[tuple[str, npyio.NpyFile]]:
    """A single file; its errors need no name (the caller names the file).  Its shape is
    checked by the codec."""
    npy = read_npy_file(path)
    return [(safe_name(name, ""), npy)]


def directory(root: Path) -> list[tuple[str, npyio.NpyFile]]:
    files = sorted(q for q in root.rglob("*.npy") if q.is_file())
    if not files:
        raise NaccError("directory holds no .npy files")
    out = []
    for q in files:
        name = q.relative_to(root).as_posix()
        name = safe_name(name, "")
        npy = read_npy_file(q, name, streams=False)
        check_segment(name, npy)
        out.append((name, npy))
    check_same_frames(out)
    return out


# -- .npz --------------------------------------------------------------------------------
_LOCAL, _DESCRIPTOR = b"PK\x03\x04", b"PK\x07\x08"
_END, _END64, _LOCATOR64 = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"


def _read_at(f: BinaryIO, pos: int, n: int) -> bytes:
    f.seek(pos)
    return f.read(n)


def _descriptor_size(f: BinaryIO, pos: int, info: zipfile.ZipInfo) -> int:
    """Length of the data descriptor at ``pos`` (with or without its signature, 32- or
    64-bit sizes) that repeats ``info``'s CRC and sizes."""
    d = _read_at(f, pos, 24)
    for start in ((4, 0) if d[:4] == _DESCRIPTOR else (0,)):
        for fmt in ("<III", "<IQQ"):
            end = start + struct.calcsize(fmt)
            if len(d) >= end and struct.unpack(fmt, d[start:end]) == (
                    info.CRC, info.compress_size, info.file_size):
                return end
    raise NaccError(f"damaged .npz (member {info.filename}: bad data descriptor)")


def _check_zip_layout(f: BinaryIO, z: zipfile.ZipFile, size: int) -> None:
    """NaccError unless the local members, the central directory and its end record follow
    each other from byte 0 to the end of the file with nothing between or missing."""
    pos = 0
    for info in sorted(z.infolist(), key=lambda i: i.header_offset):
        if info.header_offset != pos:
            raise NaccError(f"damaged .npz (unexplained bytes {pos}..{info.header_offset} "
                            f"before member {info.filename})")
        head = _read_at(f, pos, 30)
        if len(head) < 30 or head[:4] != _LOCAL:
            raise NaccError(f"damaged .npz (member {info.filename}: bad local header)")
        n_name, n_extra = struct.unpack("<HH", head[26:30])
        pos += 30 + n_name + n_extra + info.compress_size
        if info.flag_bits & 0x08:
            pos += _descriptor_size(f, pos, info)
    if pos != z.start_dir:
        raise NaccError(f"damaged .npz (unexplained bytes {pos}..{z.start_dir} before the "
                        "central directory)")
    end = size - 22 - len(z.comment)
    rec = _read_at(f, end, 22)
    if len(rec) != 22 or rec[:4] != _END:
        raise NaccError("damaged .npz (end of central directory record not at the end)")
    count, cd_size = struct.unpack("<H", rec[10:12])[0], struct.unpack("<I", rec[12:16])[0]
    cd_end = end
    loc = _read_at(f, end - 20, 20) if end >= 20 else b""
    if loc[:4] == _LOCATOR64:
        (at,) = struct.unpack("<Q", loc[8:16])
        rec64 = _read_at(f, at, 56)
        if len(rec64) != 56 or rec64[:4] != _END64 or at + 56 != end - 20:
            raise NaccError("damaged .npz (bad zip64 end record)")
        count, cd_size = struct.unpack("<QQ", rec64[32:48])
        cd_end = at
    if count != len(z.infolist()):
        raise NaccError(f"damaged .npz (the end record counts {count} members, the central "
                        f"directory holds {len(z.infolist())})")
    if z.start_dir + cd_size != cd_end:
        raise NaccError("damaged .npz (central directory size does not match its place)")


def npz_file(path: Path) -> list[tuple[str, npyio.NpyFile]]:
    out = []
    seen = set()
    fd, st = fileio.open_input(path, streams=False)
    held, size = 0, st.st_size
    with os.fdopen(fd, "rb") as f:
        try:
            z = zipfile.ZipFile(f)
        except (*INPUT_ERRORS, OSError) as e:
            raise NaccError(f"not a readable .npz ({e})") from None
        with z:
            _check_zip_layout(f, z, size)
            for info in z.infolist():
                if info.is_dir():
                    continue
                where = f"member {info.filename}"
                name = safe_name(info.filename, where)
                if not name.endswith(".npy"):
                    raise NaccError(f"member {name}: not a .npy member (is this an .npz?)")
                if name in seen:
                    raise NaccError(f"member {name} appears twice")
                seen.add(name)
                if info.file_size > MAX_NPY_BYTES:
                    raise NaccError(f"{where}: {info.file_size} bytes, more than any token "
                                    "video nacc codes")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise NaccError(f"{where}: compression method {info.compress_type} (numpy "
                                    "writes only stored or deflated members)")
                held += info.file_size
                if held > budget_of(size):
                    raise _bomb("the .npz", size)
                try:
                    raw = z.read(info)
                except zipfile.BadZipFile as e:
                    raise NaccError(f"{where}: damaged ({e})") from None
                except (*INPUT_ERRORS, OSError) as e:
                    raise NaccError(f"{where}: damaged ({type(e).__name__}: {e})") from None
                npy = npyio.parse_npy(raw, where)
                check_segment(where, npy)
                out.append((name, npy))
    if not out:
        raise NaccError("empty .npz (no arrays)")
    check_same_frames(out)
    return out


# -- webdataset shards -------------------------------------------------------------------
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_CHUNK = 1 << 20
_MAX_TRAILER = 16 << 20        # zero bytes allowed after the end-of-archive marker
_COMPRESSIONS = (  # (magic, name, new decompressor); bzip2's includes its first block magic
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(wbits=31)),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),
) + tuple((b"BZh" + bytes([c]) + b"1AY&SY", "bzip2", bz2.BZ2Decompressor)
          for c in b"123456789")


class _Source:
    """Forward-only bytes of a tar: decompressed when the file starts with a gzip, bzip2 or
    xz magic (each stream's checksum and length are verified by zlib, bz2 or lzma; streams
    may follow each other, nothing else may follow them), else as stored.  Output is made
    in chunks of at most 1 MiB, so a compression bomb costs time, not memory."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.raw = f.read(_CHUNK)          # input bytes not yet fed
        self.raw_done = False
        self.n_read = len(self.raw)        # input bytes read so far (for the budget)
        self.buf = bytearray()             # tar bytes not yet handed out
        self.pos = 0                       # tar bytes handed out so far
        found = next(((name, new) for magic, name, new in _COMPRESSIONS
                      if self.raw.startswith(magic)), None)
        self.kind: str | None = found[0] if found else None
        self.new: Any = found[1] if found else None
        self.magic = self.raw[:2] if self.kind else b""   # enough to tell the next stream
        # zlib, lzma or bz2 decompressor (they share decompress/eof/unused_data only)
        self.dec: Any = self.new() if self.new else None

    def _raw_more(self) -> bool:
        """Read more input into ``raw`` if it is empty; False at the end of the file."""
        if not self.raw and not self.raw_done:
            self.raw = self.f.read(_CHUNK)
            self.raw_done = not self.raw
            self.n_read += len(self.raw)
        return bool(self.raw)

    def _more(self) -> bool:
        """Append more tar bytes to ``buf``; False at the verified end of the input."""
        if self.dec is None:
            if not self._raw_more():
                return False
            self.buf += self.raw
            self.raw = b""
            return True
        while True:
            if self.dec.eof:              # a stream ended and its checksum was right
                rest = self.dec.unused_data
                if not rest and not self._raw_more():
                    return False
                rest = rest or self.raw
                if not (self.magic.startswith(rest) or rest.startswith(self.magic)):
                    raise NaccError(f"damaged shard (bytes after the end of the {self.kind} "
                                    "data)")
                self.raw, self.dec = rest, self.new()
            tail = self.dec.unconsumed_tail if self.kind == "gzip" else b""
            data, self.raw = tail + self.raw, b""
            try:
                out = self.dec.decompress(data, _CHUNK)
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
                raise NaccError(f"damaged {self.kind} data ({e})") from None
            if out:
                self.buf += out
                if self.pos + len(self.buf) > budget_of(self.n_read):
                    raise _bomb(f"the {self.kind} data", self.n_read)
                return True
            if self.dec.eof:
                continue
            starved = (not self.dec.unconsumed_tail if self.kind == "gzip"
                       else self.dec.needs_input)
            if (starved or not data) and not self._raw_more():
                raise NaccError(f"truncated shard (the {self.kind} data ends early)")

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes; NaccError (the shard is truncated) if the input ends first."""
        while len(self.buf) < n:
            if not self._more():
                raise NaccError(f"truncated shard (it ends inside {what} at tar byte "
                                f"{self.pos + len(self.buf)})")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            n -= len(self.read(min(n, _CHUNK), what))

    def rest_is_zero(self) -> bool:
        """Read to the verified end; True when every byte left is zero and there are at most
        16 MiB of them."""
        start = self.pos
        while True:
            if self.buf.count(0) != len(self.buf) or self.pos - start > _MAX_TRAILER:
                return False
            self.pos += len(self.buf)
            self.buf.clear()
            if not self._more():
                return True


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """The ``LENGTH key=value\\n`` records of a pax extended header."""
    out, pos = {}, 0
    while pos < len(data):
        sp = data.find(b" ", pos, pos + 24)
        length = data[pos:sp]
        if sp < 0 or not length.isdigit() or int(length) <= sp - pos + 1:
            raise NaccError(f"damaged tar (bad pax header before {where})")
        end = pos + int(length)
        rec = data[sp + 1:end]
        if end > len(data) or not rec.endswith(b"\n") or b"=" not in rec:
            raise NaccError(f"damaged tar (bad pax header before {where})")
        key, _, value = rec[:-1].partition(b"=")
        out[key.decode("utf8")] = value.decode("utf8")
        pos = end
    return out


_NO_DATA = (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE,
            tarfile.BLKTYPE, tarfile.FIFOTYPE)
_FILE = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def tar_files(f: BinaryIO, want: Callable[[str], int | None]) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each regular file of the tar in ``f`` (see ``_Source`` for
    compression) for which ``want(name)`` gives a size limit (None: skip it); a wanted
    member over its limit, a damaged or truncated tar, or anything after its end marker
    but zeros is a NaccError.  Checksums are verified only at the end of each compressed
    stream, so callers must consume the iterator to the end before trusting any item."""
    src = _Source(f)
    ext: dict[str, str] = {}
    long_name = None
    while True:
        at = src.pos
        block = src.read(_BLOCK, "a tar header")
        if block == _ZERO_BLOCK:
            if ext or long_name is not None:
                raise NaccError("damaged tar (an extended header without its member)")
            if src.read(_BLOCK, "the end-of-archive marker") != _ZERO_BLOCK \
                    or not src.rest_is_zero():
                raise NaccError(f"damaged tar (data after the end-of-archive marker at tar "
                                f"byte {at})")
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as e:
            raise NaccError(f"damaged tar header at tar byte {at} ({e})") from None
        size = ext.get("size", info.size) if info.type not in _NO_DATA else 0
        if isinstance(size, str):
            size = int(size) if size.isdigit() and len(size) < 20 else -1
        if size < 0:
            raise NaccError(f"damaged tar header at tar byte {at} (bad size)")
        pad = -size % _BLOCK
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK):
            if size > MAX_JSON_BYTES:
                raise NaccError(f"damaged tar (an extended header of {size} bytes at tar byte "
                                f"{at})")
            data = src.read(size, "an extended header")
            src.skip(pad, "padding")
            if info.type == tarfile.XHDTYPE:
                ext = _pax_records(data, f"tar byte {src.pos}")
            elif info.type == tarfile.XGLTYPE:
                _pax_records(data, f"tar byte {src.pos}")
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.split(b"\x00", 1)[0].decode("utf8")
            continue
        if info.type == tarfile.GNUTYPE_SPARSE or "GNU.sparse.major" in ext \
                or "GNU.sparse.size" in ext:
            raise NaccError(f"member {info.name}: sparse tar members are not supported")
        name = ext.get("path", long_name if long_name is not None else info.name)
        ext, long_name = {}, None
        limit = want(name) if info.type in _FILE else None
        if limit is None:
            src.skip(size + pad, f"member {name}")
            continue
        if size > limit:
            raise NaccError(f"member {name}: {size} bytes, more than the {limit} such a member "
                            "may have")
        data = src.read(size, f"member {name}")
        src.skip(pad, f"member {name}")
        yield name, data


def _split_member(name: str) -> tuple[str, str]:
    """Webdataset key and extension: ``dir/KEY.token.npy`` -> (``dir/KEY``, ``token.npy``)."""
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


@dataclass(frozen=True)
class ShardItem:
    key: str                 # webdataset key, e.g. ``000123`` or ``dir/000123``
    member: str              # the ``KEY.token.npy`` member's name
    data: bytes              # its bytes (an .npy file, not yet parsed)
    file_name: str | None    # the json's ``file_name``, if it has one


def read_shard(path: Path) -> list[ShardItem]:
    """The ``KEY.token.npy`` members of a webdataset shard in member order, each with its
    ``KEY.json``'s ``file_name``, once the whole shard has been read and verified (see the
    module docstring).  When the shard has json members every key must have both members.
    NaccError without the shard's name when anything is wrong."""
    def want(name: str) -> int | None:
        ext = _split_member(name)[1]
        return MAX_NPY_BYTES if ext == TOKEN_EXT else MAX_JSON_BYTES if ext == "json" else None

    arrays: dict[str, tuple[str, bytes]] = {}
    metas: dict[str, str | None] = {}
    json_member: dict[str, str] = {}
    fd, _ = fileio.open_input(path)
    with os.fdopen(fd, "rb") as f:
        for name, data in tar_files(f, want):
            key, ext = _split_member(name)
            where = f"member {name}"
            if ext == TOKEN_EXT:
                if key in arrays:
                    raise NaccError(f"{where}: key {key!r} appears twice")
                arrays[key] = (name, data)
                continue
            if key in metas:
                raise NaccError(f"{where}: key {key!r} appears twice")
            try:
                meta = json.loads(data.decode("utf8"))
            except (ValueError, RecursionError) as e:
                raise NaccError(f"{where}: bad JSON ({type(e).__name__}: {e})") from None
            file_name = meta.get("file_name") if isinstance(meta, dict) else None
            if file_name is not None and not isinstance(file_name, str):
                raise NaccError(f"{where}: file_name {file_name!r} is not a string")
            metas[key] = file_name
            json_member[key] = name
    if not arrays:
        raise NaccError(f"shard holds no KEY.{TOKEN_EXT} members")
    if metas:
        for key, (name, _) in arrays.items():
            if key not in metas:
                raise NaccError(f"member {name} has no {key}.json beside it (a damaged shard?)")
        for key, name in json_member.items():
            if key not in arrays:
                raise NaccError(f"member {name} has no {key}.{TOKEN_EXT} beside it (a damaged "
                                "shard?)")
    return [ShardItem(k, name, data, metas.get(k)) for k, (name, data) in arrays.items()]


def shard(path: Path) -> list[tuple[str, npyio.NpyFile]]:
    """Segments of a commaVQ webdataset shard, named by their json ``file_name``."""
    out, members = [], []
    for item in read_shard(path):
        where = f"member {item.member}"
        npy = npyio.parse_npy(item.data, where)
        check_segment(where, npy)
        out.append((safe_name(item.file_name or f"{item.key}.npy", where), npy))
        members.append(item.member)
    seen: dict[str, str] = {}
    for (name, _), member in zip(out, members):
        if name in seen:
            raise NaccError(f"members {seen[name]} and {member} are both named {name!r}")
        seen[name] = member
    check_same_frames(out)
    return out


def segments_of(path: str) -> list[tuple[str, npyio.NpyFile]]:
    """``(name, NpyFile)`` pairs of one input: a ``.npy`` file, a directory of them, an
    ``.npz``, a webdataset shard, or ``-`` (stdin).  NaccError (message without the input's
    own name; callers prefix it) when anything is wrong, whatever the parsers raised; OSError
    only for the file system's own errors."""
    try:
        if path == "-":
            return [("stdin.npy", read_npy(sys.stdin.buffer))]
        p = Path(path)
        if p.is_dir():
            return directory(p)
        if not p.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if is_shard(p.name):
            return shard(p)
        if p.name.endswith(".npz"):
            return npz_file(p)
        return npy_file(p, p.name)
    except INPUT_ERRORS as e:
        raise NaccError(f"unreadable input ({type(e).__name__}: {e})") from None
