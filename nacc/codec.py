"""Segments in, archive bytes out, and back: predictor -> coder -> container.

``compress_segments`` takes ``(name, NpyFile)`` pairs and returns archive bytes;
``decompress_archive`` returns ``(name, npy bytes)`` pairs that are byte-identical to the
inputs.  Segments are independent (each has its own coder stream and predictor state), so
they run in parallel over ``threads`` processes and the bytes do not depend on that number.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from nacc import coder, container, npyio
from nacc.errors import NaccError
from nacc.predictors import base as predictors

DEFAULT_PREDICTOR = "cm"
FALLBACK_PREDICTOR = "prevframe"
DEFAULT_VOCAB = 1024
COMMAVQ_FRAME = (8, 16)


def default_predictor() -> str:
    """``cm`` when it is installed, else ``prevframe``."""
    try:
        predictors.get(DEFAULT_PREDICTOR)   # not available(): that imports every predictor
    except NaccError:
        return FALLBACK_PREDICTOR
    return DEFAULT_PREDICTOR


@dataclass(frozen=True)
class Options:
    """What the user chose; everything else is read from the data."""
    predictor: str = ""                 # "" = default_predictor()
    params: tuple = ()                  # predictor parameters as sorted (key, value) pairs
    vocab: int = DEFAULT_VOCAB
    frame_shape: tuple[int, int] | None = None
    device: str = "cpu"                 # where tables are computed; never changes the bytes

    def predictor_name(self) -> str:
        return self.predictor or default_predictor()

    def build(self, vocab: int, frame_shape: tuple[int, int]) -> predictors.Predictor:
        pred = predictors.build(self.predictor_name(), vocab, frame_shape, dict(self.params))
        return on_device(pred, self.device)


def on_device(pred: predictors.Predictor, device: str) -> predictors.Predictor:
    """``pred`` with its tables computed on ``device`` ("cpu", "cuda" or "auto"). The GPU
    path (nacc.kernels.triton) returns a predictor with identical tables; "auto" uses it
    when a GPU and triton are present and the predictor has a kernel, else the CPU."""
    if device == "cpu":
        return pred
    from nacc.kernels.triton import accelerate

    return accelerate(pred, device)


def frame_shape_of(shape: tuple[int, ...], requested: tuple[int, int] | None) -> tuple[int, int]:
    """Frame shape for an array shape: (T, H, W) gives HxW; (T, N) gives ``requested``, or
    8x16 when N == 128, else 1xN."""
    if len(shape) == 3:
        fs = (shape[1], shape[2])
    elif len(shape) == 2:
        fs = requested or (COMMAVQ_FRAME if shape[1] == 128 else (1, shape[1]))
    else:
        raise NaccError(f"array has {len(shape)} dimensions; a token video is (T, H, W) or (T, N)")
    if requested is not None and requested[0] * requested[1] == fs[0] * fs[1]:
        fs = requested
    if requested is not None and requested != fs:
        raise NaccError(f"--frame-shape {requested[0]}x{requested[1]} does not fit shape {shape}")
    return fs


def tokens_of(npy: npyio.NpyFile, vocab: int, frame_shape: tuple[int, int] | None):
    """Validate a token array; returns (int32 tokens (T, H, W), frame shape)."""
    dtype = np.dtype(npy.descr)
    if dtype.kind not in "iu":
        raise NaccError(f"dtype {dtype} is not an integer type; token ids are integers")
    fs = frame_shape_of(npy.shape, frame_shape)
    arr = npy.array
    if arr.size == 0:
        raise NaccError(f"empty array of shape {npy.shape}")
    if arr.size > container.MAX_TOKENS:
        raise NaccError(f"{arr.size} tokens exceed the per-segment limit {container.MAX_TOKENS}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise NaccError(f"negative token id {lo}")
    if hi >= vocab:
        raise NaccError(f"token id {hi} >= vocabulary size {vocab} (set --vocab)")
    return np.ascontiguousarray(arr.reshape(arr.shape[0], *fs), dtype=np.int32), fs


def pack_words(name: str, npy: npyio.NpyFile, frame_shape: tuple[int, int], vocab: int,
               words: np.ndarray) -> bytes:
    """The packed segment of ``npy`` coded as ``words``."""
    canonical = npy.prefix == npyio.canonical_prefix(npy.descr, npy.fortran, npy.shape)
    seg = container.Segment(name, npy.descr, npy.fortran, npy.shape, frame_shape, vocab,
                            npy.crc, words, None if canonical else npy.prefix)
    return container.pack_segment(seg)


def encode_segment(name: str, npy: npyio.NpyFile, opts: Options) -> bytes:
    """One packed segment."""
    tokens, fs = tokens_of(npy, opts.vocab, opts.frame_shape)
    pred = opts.build(opts.vocab, fs)
    start, freq = pred.intervals(tokens)
    return pack_words(name, npy, fs, opts.vocab,
                      coder.encode_intervals(start, freq, pred.precision))


def archive_header(opts: Options, n_segments: int) -> bytes:
    """The packed archive header for segments coded with ``opts``."""
    probe = predictors.build(opts.predictor_name(), opts.vocab, (1, 1), dict(opts.params))
    return container.pack_header(container.Header(
        opts.predictor_name(), probe.params(), probe.model_hash(), probe.precision,
        n_segments))


def archive_predictor(header: container.Header, vocab: int, frame_shape: tuple[int, int],
                      params_override: dict | None = None,
                      device: str = "cpu") -> predictors.Predictor:
    """The predictor an archive was written with, checked against its model hash and
    precision."""
    params = dict(header.params)
    params.update(params_override or {})
    pred = on_device(predictors.build(header.predictor, vocab, frame_shape, params), device)
    if pred.model_hash() != header.model_hash:
        raise NaccError(f"archive was written with predictor {header.predictor!r} model "
                        f"{header.model_hash.hex()[:16] or '(none)'}, but the model given has "
                        f"{pred.model_hash().hex()[:16] or '(none)'}")
    if pred.precision != header.precision:
        raise NaccError(f"predictor precision {pred.precision} != archive {header.precision}")
    return pred


def restore_npy(seg: container.Segment, tokens: np.ndarray) -> bytes:
    """The original ``.npy`` bytes from decoded ``tokens``; checks the data CRC."""
    data = npyio.array_data_bytes(tokens.reshape(seg.shape), seg.descr, seg.fortran)
    if zlib.crc32(data) != seg.data_crc:
        raise NaccError(f"segment {seg.name!r}: decoded data checksum mismatch "
                        "(wrong model or damaged archive)")
    prefix = seg.raw_prefix
    if prefix is None:
        prefix = npyio.canonical_prefix(seg.descr, seg.fortran, seg.shape)
    return prefix + data


def decode_segment(seg: container.Segment, header: container.Header,
                   params_override: dict | None = None, device: str = "cpu") -> bytes:
    """The original ``.npy`` bytes of one segment; checks the model hash and the data CRC."""
    pred = archive_predictor(header, seg.vocab, seg.frame_shape, params_override, device)
    return restore_npy(seg, pred.decode(seg.words, seg.n_frames))


def _map(fn: Callable, items: Sequence, threads: int) -> Iterator:
    """``map`` in order, over ``threads`` processes when > 1 (results independent of it)."""
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    import concurrent.futures as cf     # here: a one-process run need not import them
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(max_workers=threads, mp_context=ctx) as pool:
        yield from pool.map(fn, items)


def _encode_job(job):
    return encode_segment(*job)


def _decode_job(job):
    return decode_segment(*job)


def compress_segments(segments: Sequence[tuple[str, npyio.NpyFile]], opts: Options,
                      threads: int = 1) -> Iterator[bytes]:
    """Archive bytes in pieces (header first, then one piece per segment)."""
    if not segments:
        raise NaccError("nothing to compress")
    yield archive_header(opts, len(segments))
    yield from _map(_encode_job, [(n, s, opts) for n, s in segments], threads)


def decompress_archive(buf: bytes, threads: int = 1, params_override: dict | None = None,
                       device: str = "cpu") -> Iterator[tuple[str, bytes]]:
    """``(name, npy bytes)`` of every segment, in archive order."""
    header, segments = container.read_archive(buf)
    jobs = [(seg, header, params_override, device) for seg in segments]
    for seg, data in zip(segments, _map(_decode_job, jobs, threads)):
        yield seg.name, data


def compress_array(tokens: np.ndarray, predictor: str = "", vocab: int = DEFAULT_VOCAB,
                   frame_shape: tuple[int, int] | None = None, name: str = "tokens.npy",
                   **params) -> bytes:
    """Compress one integer array to archive bytes (Python API)."""
    opts = Options(predictor, tuple(sorted(params.items())), vocab, frame_shape)
    return b"".join(compress_segments([(name, npyio.from_array(tokens))], opts))


def decompress_array(buf: bytes, **params_override) -> np.ndarray:
    """The array of a one-segment archive (Python API)."""
    items = list(decompress_archive(buf, params_override=params_override or None))
    if len(items) != 1:
        raise NaccError(f"archive holds {len(items)} segments; use decompress_archive")
    return npyio.parse_npy(items[0][1], items[0][0]).array


def iter_arrays(buf: bytes) -> Iterable[tuple[str, np.ndarray]]:
    """``(name, array)`` of every segment of an archive."""
    for name, data in decompress_archive(buf):
        yield name, npyio.parse_npy(data, name).array
