"""What ``nacc compress`` (and ``bench``, ``submission``, the API) reads: ``(name, NpyFile)``
segments, byte-exact, from every input format users have.

* ``X.npy``: one segment named ``X.npy``; ``-`` is stdin (named ``stdin.npy``).
* a directory: every ``.npy`` below it, recursively, named by its relative path.
* ``X.npz``: one segment per member, named as the member (``KEY.npy``).  The member bytes
  are ``.npy`` files, kept byte for byte.
* a commaVQ webdataset shard ``X.tar`` / ``X.tar.gz`` / ``X.tgz``: members ``KEY.token.npy``
  and ``KEY.json``; the segment is named by the json's ``file_name`` (``KEY.npy`` when there
  is no json).  The shard is streamed (``tarfile`` mode ``r|*``), never extracted to disk.

``nacc.datasets`` iterates the same formats for training, but decodes every array to int32;
an archive must restore the original bytes (dtype and header included), so this module keeps
the raw ``.npy`` bytes instead.

Every segment is checked here, so that a bad one is reported by its name before anything is
written: integer dtype, 2 or 3 dimensions, not empty, and one frame size per input (a
directory or shard mixing frame sizes is almost always a mistake).
"""
from __future__ import annotations

import errno
import json
import os
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from nacc import npyio
from nacc.errors import NaccError

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TOKEN_EXT = "token.npy"


def is_shard(path: str) -> bool:
    return path.endswith(SHARD_SUFFIXES)


def safe_name(name: str, where: str) -> str:
    """``name`` if it is a relative path without ``..`` (it becomes an output file name)."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or "\x00" in name:
        raise NaccError(f"{where}: unsafe segment name {name!r}")
    return p.as_posix()


def _frame_size(npy: npyio.NpyFile) -> int:
    return int(np.prod(npy.shape[1:], dtype=np.int64))


def check_segment(name: str, npy: npyio.NpyFile) -> None:
    """NaccError naming the segment unless it looks like a token video."""
    dtype = np.dtype(npy.descr)
    if dtype.kind not in "iu":
        raise NaccError(f"{name}: dtype {dtype} is not an integer type; token ids are integers")
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


def read_stdin() -> bytes:
    return sys.stdin.buffer.read()


def npy_file(path: Path, name: str) -> list[tuple[str, npyio.NpyFile]]:
    """A single file; its errors need no name (the caller names the file)."""
    return [(name, npyio.parse_npy(path.read_bytes(), str(path)))]


def directory(root: Path) -> list[tuple[str, npyio.NpyFile]]:
    files = sorted(q for q in root.rglob("*.npy") if q.is_file())
    if not files:
        raise NaccError("directory holds no .npy files")
    out = []
    for q in files:
        name = q.relative_to(root).as_posix()
        npy = npyio.parse_npy(q.read_bytes(), name)
        check_segment(name, npy)
        out.append((name, npy))
    check_same_frames(out)
    return out


def npz_file(path: Path) -> list[tuple[str, npyio.NpyFile]]:
    out = []
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                name = safe_name(info.filename, f"member {info.filename}")
                if not name.endswith(".npy"):
                    raise NaccError(f"member {name}: not a .npy member (is this an .npz?)")
                npy = npyio.parse_npy(z.read(info), f"member {name}")
                check_segment(f"member {name}", npy)
                out.append((name, npy))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise NaccError(f"not a readable .npz ({e})") from None
    if not out:
        raise NaccError("empty .npz (no arrays)")
    check_same_frames(out)
    return out


def _split_member(name: str) -> tuple[str, str]:
    """Webdataset key and extension: ``dir/KEY.token.npy`` -> (``dir/KEY``, ``token.npy``)."""
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


def shard(path: Path) -> list[tuple[str, npyio.NpyFile]]:
    """Segments of a commaVQ webdataset shard, named by their json ``file_name``."""
    arrays: dict[str, tuple[str, npyio.NpyFile]] = {}
    names: dict[str, str] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_member(member.name)
                if ext not in (TOKEN_EXT, "json"):
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                where = f"member {member.name}"
                if ext == TOKEN_EXT:
                    if key in arrays:
                        raise NaccError(f"{where}: key {key!r} appears twice")
                    npy = npyio.parse_npy(data, where)
                    check_segment(where, npy)
                    arrays[key] = (member.name, npy)
                    order.append(key)
                else:
                    try:
                        meta = json.loads(data)
                    except ValueError as e:
                        raise NaccError(f"{where}: bad JSON ({e})") from None
                    if isinstance(meta, dict) and "file_name" in meta:
                        names[key] = safe_name(str(meta["file_name"]), where)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise NaccError(f"corrupt or truncated shard ({e})") from None
    if not order:
        raise NaccError(f"shard holds no KEY.{TOKEN_EXT} members")
    out = [(names.get(k, f"{k}.npy"), arrays[k][1]) for k in order]
    seen: dict[str, str] = {}
    for (name, _), k in zip(out, order):
        if name in seen:
            raise NaccError(f"members {seen[name]} and {arrays[k][0]} are both named {name!r}")
        seen[name] = arrays[k][0]
    check_same_frames(out)
    return out


def segments_of(path: str) -> list[tuple[str, npyio.NpyFile]]:
    """``(name, NpyFile)`` pairs of one input: a ``.npy`` file, a directory of them, an
    ``.npz``, a webdataset shard, or ``-`` (stdin).  NaccError (message without the input's
    own name; callers prefix it) when anything is wrong."""
    if path == "-":
        return [("stdin.npy", npyio.parse_npy(read_stdin(), "-"))]
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
