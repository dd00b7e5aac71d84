"""Token corpora: iterate ``(name, tokens)`` segments from files, without extracting anything.

Accepted inputs (``iter_segments(paths)`` takes any mix):

* ``X.npy``: one segment, an integer array (T, H, W) (a single frame (H, W) is read as T=1).
* a directory: every ``.npy`` / ``.npz`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` below it,
  recursively, in sorted path order.
* ``X.npz``: one segment per array, named ``X.npz:KEY``, in the archive's order.
* commaVQ webdataset shards ``X.tar`` / ``X.tar.gz``: members ``KEY.token.npy`` and
  ``KEY.json``; the segment is named by the json's ``file_name`` (``KEY.npy`` when absent, as
  ``nacc compress`` names it).
  Shards are streamed, never written to disk, and verified whole (gzip checksums, tar
  structure, every key with both members) before any segment is yielded; see
  :mod:`nacc.inputs`.

Every segment is checked: integer dtype, 3 dims, values in ``0..vocab-1`` (when ``vocab``
is given, else ``>= 0``), and one frame shape across the whole corpus (the first segment's,
or ``frame_shape`` when given).  A broken input raises :class:`DatasetError` naming the file
(and member); with ``skip_bad=True`` it is a warning instead, the segment is skipped and
counted in :attr:`Segments.n_bad`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nacc.errors import NaccError

__all__ = ["DatasetError", "Segment", "Segments", "iter_segments", "load_tokens", "list_files"]

_SUFFIXES = (".npy", ".npz", ".tar", ".tar.gz", ".tgz")


class DatasetError(NaccError):
    """A corpus file is unreadable or its tokens break the rules above."""


class Segment(NamedTuple):
    name: str
    tokens: np.ndarray  # int32 (T, H, W)


def _is_data(p: Path) -> bool:
    return p.name.endswith(_SUFFIXES)


def list_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The data files named by ``paths`` (directories expanded recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and _is_data(q)))
        elif p.exists():
            out.append(p)
        else:
            raise DatasetError(f"{p}: no such file or directory")
    return out


def _check(arr: np.ndarray, where: str, vocab: int | None) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(f"{where}: tokens have dtype {arr.dtype}, want integers")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise DatasetError(f"{where}: tokens have shape {arr.shape}, want (T, H, W)")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        top = "" if vocab is None else f"..{vocab - 1}"
        raise DatasetError(f"{where}: token values {lo}..{hi} outside 0{top}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _raw_file(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    name = path.name
    if name.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001  (numpy raises several types)
            raise DatasetError(f"{path}: not a readable .npy ({e})") from None
        yield str(path), arr
    elif name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise DatasetError(f"{path}: empty .npz")
                for k in keys:
                    yield f"{path}:{k}", z[k]
        except DatasetError:
            raise
        except Exception as e:  # noqa: BLE001  (numpy and zipfile raise several types)
            raise DatasetError(f"{path}: not a readable .npz ({e})") from None
    else:
        yield from _raw_shard(path)


def _raw_shard(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """A webdataset shard's ``KEY.token.npy`` arrays, named by their ``KEY.json``
    ``file_name`` (or ``KEY.npy``, as the CLI names them); read and verified whole first by
    :func:`nacc.inputs.read_shard` (gzip checksums, tar structure, no lost member)."""
    from nacc import inputs, npyio

    try:
        items = inputs.read_shard(path)
    except NaccError as e:
        raise DatasetError(f"{path}: {e}") from None
    except inputs.INPUT_ERRORS as e:
        raise DatasetError(f"{path}: corrupt shard ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: {e.strerror or e}") from None
    out = []
    items.reverse()
    while items:                       # all parsed first: a bad member rejects the shard
        item = items.pop()             # its bytes are freed once parsed
        try:
            arr = np.array(npyio.parse_npy(item.data, f"{path}[{item.member}]").array)
        except NaccError as e:
            raise DatasetError(str(e)) from None
        out.append((item.file_name or f"{item.key}.npy", arr))   # as nacc.inputs.shard
    yield from out


class Segments:
    """Iterable of :class:`Segment` over ``paths``; see the module docstring.

    ``n_bad`` counts skipped segments (and files) after iteration when ``skip_bad``.
    """

    def __init__(self, paths, *, vocab: int | None = None, frame_shape=None,
                 skip_bad: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = list(paths)
        self.vocab = vocab
        self.frame_shape = None if frame_shape is None else tuple(int(s) for s in frame_shape)
        self.skip_bad = skip_bad
        self.n_bad = 0

    def _bad(self, err: DatasetError) -> None:
        if not self.skip_bad:
            raise err
        self.n_bad += 1
        warnings.warn(f"skipped: {err}", stacklevel=3)

    def __iter__(self) -> Iterator[Segment]:
        self.n_bad = 0
        shape = self.frame_shape
        for path in list_files(self.paths):
            try:
                for name, arr in _raw_file(path):
                    try:
                        arr = _check(arr, name if name.startswith(str(path)) else f"{path}[{name}]",
                                     self.vocab)
                        if shape is None:
                            shape = arr.shape[1:]
                        elif arr.shape[1:] != shape:
                            raise DatasetError(f"{path} ({name}): frame shape {arr.shape[1:]} "
                                               f"differs from the corpus' {shape}")
                    except DatasetError as e:
                        self._bad(e)
                        continue
                    yield Segment(name, arr)
            except DatasetError as e:
                self._bad(e)


def iter_segments(paths, *, vocab: int | None = None, frame_shape=None,
                  skip_bad: bool = False) -> Iterator[Segment]:
    """Shorthand for ``iter(Segments(...))``."""
    return iter(Segments(paths, vocab=vocab, frame_shape=frame_shape, skip_bad=skip_bad))


def load_tokens(path, *, vocab: int | None = None) -> np.ndarray:
    """The tokens of a single-segment file (``.npy``), checked, as int32 (T, H, W)."""
    segs = list(Segments([path], vocab=vocab))
    if len(segs) != 1:
        raise DatasetError(f"{path}: holds {len(segs)} segments, want exactly 1")
    return segs[0].tokens
