"""Python API: token arrays to archive bytes and back, and archives opened by segment.

Everything here is re-exported from :mod:`nacc` (lazily: ``import nacc`` stays cheap, the
numba kernels load on the first call).  The archive bytes are those of ``nacc compress``,
so files written here open with the command line tools and the other way round.

## Python API

Compress an array to bytes and back (any integer dtype; shape (T, H, W), or (T, 128) read
as 8x16 frames):

```python
import numpy as np
import nacc

tokens = np.load("tests/data/commavq_dev.npy")[:20]      # (20, 8, 16) int16
blob = nacc.compress(tokens)                              # bytes of a .nacc archive
restored = nacc.decompress(blob)
assert restored.dtype == tokens.dtype and np.array_equal(restored, tokens)
print(f"{tokens.size * 10 / 8 / len(blob):.2f}x")         # commaVQ rate: 10-bit tokens
```

Choose the predictor (``nacc.available_predictors()`` lists them) and where tables are
computed (``device="cuda"`` uses the GPU kernels when present; the bytes are identical):

```python
blob = nacc.compress(tokens, predictor="prevframe", device="cpu")
assert nacc.info(blob).predictor == "prevframe"
```

Several named segments in one archive, then open it and iterate (``open`` takes a path,
bytes, or a file object; segments decode lazily, one at a time):

```python
import tempfile, os

segments = {"a.npy": tokens[:10], "b.npy": tokens[10:]}
path = os.path.join(tempfile.mkdtemp(), "clip.nacc")
nacc.compress_to(path, segments)

with nacc.open(path) as archive:
    print(archive.names, f"rate {archive.rate:.2f}")
    for name, array in archive:
        assert np.array_equal(array, segments[name])
    first = archive["a.npy"]                              # one segment by name
    raw = archive.read_bytes("b.npy")                     # its exact .npy file bytes
```

Read any input the command line reads (``.npy``, directories, ``.npz``, commaVQ shards)
as ``(name, array)`` pairs:

```python
for name, array in nacc.read_segments("tests/data/commavq_dev.npy"):
    print(name, array.shape, array.dtype)
```
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeAlias

from nacc.spec import DEFAULT_VOCAB

if TYPE_CHECKING:  # imported for annotations only; the real imports are in the functions
    import numpy as np

    from nacc import npyio

__all__ = ["compress", "decompress", "compress_segments", "compress_to", "open", "Archive",
           "ArchiveInfo", "info", "read_segments", "available_predictors"]

Source: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"
SegmentsLike: TypeAlias = "Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]"


def _npy_segments(segments: SegmentsLike) -> list[tuple[str, npyio.NpyFile]]:
    from nacc import inputs, npyio

    items = segments.items() if isinstance(segments, Mapping) else segments
    out = [(inputs.safe_name(str(n), "segment"), npyio.from_array(a)) for n, a in items]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        from nacc.errors import NaccError

        raise NaccError("two segments share a name")
    return out


def compress(tokens: np.ndarray, *, predictor: str | None = None, vocab: int = DEFAULT_VOCAB,
             frame_shape: tuple[int, int] | None = None, device: str = "cpu",
             name: str = "tokens.npy", **params) -> bytes:
    """One integer token array (T, H, W) or (T, N) to the bytes of a ``.nacc`` archive.

    ``predictor``: a registered name (default: nacc's default, ``cm``); ``params``: its
    parameters; ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (never changes the bytes).
    """
    return compress_segments({name: tokens}, predictor=predictor, vocab=vocab,
                             frame_shape=frame_shape, device=device, **params)


def compress_segments(segments: SegmentsLike, *, predictor: str | None = None,
                      vocab: int = DEFAULT_VOCAB, frame_shape: tuple[int, int] | None = None,
                      device: str = "cpu", threads: int = 1, solid: int = 1,
                      **params) -> bytes:
    """Named arrays (a mapping or ``(name, array)`` pairs) to one archive's bytes; names
    become the file names ``nacc decompress`` writes.  ``solid`` = N codes runs of up to N
    consecutive segments as one solid group (better rates; a group decodes as a whole)."""
    from nacc import codec

    opts = codec.Options.of(predictor, params, vocab, frame_shape, device, solid)
    return b"".join(codec.compress_segments(_npy_segments(segments), opts, threads))


def compress_to(path: str | os.PathLike, segments: SegmentsLike | np.ndarray, *,
                overwrite: bool = False, **kwargs) -> int:
    """Write an archive file (atomically; refuses to overwrite unless ``overwrite``).
    ``segments`` is one array or named arrays; returns the archive size in bytes."""
    import numpy as np

    from nacc.fileio import write_atomic

    if isinstance(segments, np.ndarray):
        name = Path(path).name.removesuffix(".nacc") or "tokens"
        segments = {name if name.endswith(".npy") else name + ".npy": segments}
    data = compress_segments(segments, **kwargs)
    return write_atomic(os.fspath(path), [data], overwrite)


def decompress(data: Source, *, device: str = "cpu", **params_override) -> np.ndarray:
    """The array of a one-segment archive (bytes, path or file object), with its original
    dtype and shape."""
    with open(data, device=device, **params_override) as archive:
        if len(archive) != 1:
            from nacc.errors import NaccError

            raise NaccError(f"archive holds {len(archive)} segments; use nacc.open()")
        return archive[archive.names[0]]


@dataclass(frozen=True)
class ArchiveInfo:
    """Header facts of an archive (no decoding)."""
    predictor: str
    params: dict
    model_hash: str
    precision: int
    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    n_tokens: int
    n_bytes: int

    @property
    def rate(self) -> float:
        """commaVQ compression rate: tokens * 10 / 8 / archive bytes."""
        return self.n_tokens * 10 / 8 / self.n_bytes

    @property
    def bits_per_token(self) -> float:
        return 8 * self.n_bytes / self.n_tokens


def _read_source(data: Source) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        return Path(data).read_bytes()
    if hasattr(data, "read"):
        return data.read()
    raise TypeError(f"cannot read an archive from {type(data).__name__}")


def info(data: Source) -> ArchiveInfo:
    """Header facts of an archive; reads headers and checksums, decodes nothing."""
    from nacc import container

    buf = _read_source(data)
    header, blocks = container.read_archive(buf)
    segs = container.segments_of(blocks)
    return ArchiveInfo(header.predictor, dict(header.params), header.model_hash.hex(),
                       header.precision, [s.name for s in segs], [s.shape for s in segs],
                       [s.descr for s in segs], sum(s.n_tokens for s in segs), len(buf))


class Archive:
    """An opened ``.nacc`` archive: ``len``, ``names``, ``archive[name]`` (array),
    ``read_bytes(name)`` (exact ``.npy`` bytes), iteration over ``(name, array)``.
    Segments are decoded when asked for, one at a time (a solid group as a whole); every
    checksum is verified."""

    def __init__(self, data: Source, *, device: str = "cpu", **params_override):
        from nacc import container

        self._buf = _read_source(data)
        self._header, blocks = container.read_archive(self._buf)
        self._segments = container.segments_of(blocks)
        self._index = {s.name: b for b in blocks for s in b.segments}
        self._decoded: tuple = (None, {})      # (block, {name: npy bytes}) decoded last
        self.device = device
        self._override = params_override or None
        self.info = info(self._buf)

    # context manager for symmetry with files; nothing to release
    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def close(self) -> None:
        return None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._segments]

    @property
    def predictor(self) -> str:
        return self._header.predictor

    @property
    def rate(self) -> float:
        return self.info.rate

    def __len__(self) -> int:
        return len(self._segments)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def read_bytes(self, name: str) -> bytes:
        """The original ``.npy`` file bytes of segment ``name``."""
        from nacc import codec

        try:
            block = self._index[name]
        except KeyError:
            raise KeyError(f"no segment {name!r} in archive") from None
        if self._decoded[0] is not block:   # a solid group decodes as a whole: keep it
            self._decoded = (block, dict(codec.decode_block(block, self._header,
                                                            self._override, self.device)))
        return self._decoded[1][name]

    def __getitem__(self, name: str) -> np.ndarray:
        from nacc import npyio

        return npyio.parse_npy(self.read_bytes(name), name).array.copy()

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.names:
            yield name, self[name]

    def __repr__(self) -> str:
        return (f"<nacc.Archive {len(self)} segment(s), predictor {self.predictor}, "
                f"rate {self.rate:.3f}>")


def open(data: Source, *, device: str = "cpu", **params_override) -> Archive:  # noqa: A001  (nacc.open, as gzip.open)
    """Open an archive from a path, bytes or a binary file object."""
    return Archive(data, device=device, **params_override)


def read_segments(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """``(name, array)`` of every segment of an input the CLI reads (``.npy``, directory,
    ``.npz``, webdataset shard), arrays exactly as stored."""
    from nacc import inputs

    return [(n, npy.array) for n, npy in inputs.segments_of(os.fspath(path))]


def available_predictors() -> list[str]:
    """Names of the registered predictors."""
    from nacc.predictors import available

    return available()
