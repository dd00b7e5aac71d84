"""Segments in, archive bytes out, and back: predictor -> coder -> container.

``compress_segments`` takes ``(name, NpyFile)`` pairs and returns archive bytes;
``decompress_archive`` returns ``(name, npy bytes)`` pairs that are byte-identical to the
inputs.  Segments are coded in *blocks* (see ``nacc.container``): one segment each, or with
``Options.solid = N`` solid groups of up to N consecutive segments of one frame shape whose
frames form one token video, so the predictor's adapted state carries across them.  Blocks
are independent (own coder stream, own predictor state), so they run in parallel over
``threads`` processes and the bytes do not depend on that number.  A block that the
predictor would code larger than the uniform table is stored with the uniform table.
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
    solid: int = 1                      # segments per solid group (1: each one independent)

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
        raise NaccError(f"{arr.size} tokens exceed the per-block limit {container.MAX_TOKENS}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise NaccError(f"negative token id {lo}")
    if hi >= vocab:
        raise NaccError(f"token id {hi} >= vocabulary size {vocab} (set --vocab)")
    return np.ascontiguousarray(arr.reshape(arr.shape[0], *fs), dtype=np.int32), fs


def plan_blocks(segments: Sequence[tuple[str, npyio.NpyFile]], opts: Options) -> list[list[int]]:
    """Indices of the segments of each block: runs of up to ``opts.solid`` consecutive
    segments of one frame shape and at most ``container.MAX_TOKENS`` tokens in all."""
    if opts.solid < 1:
        raise NaccError(f"solid group size {opts.solid} < 1")
    blocks: list[list[int]] = []
    last, size = None, 0
    for k, (_, npy) in enumerate(segments):
        fs = frame_shape_of(npy.shape, opts.frame_shape)
        n = int(np.prod(npy.shape, dtype=np.int64))
        if (blocks and fs == last and len(blocks[-1]) < opts.solid
                and size + n <= container.MAX_TOKENS):
            blocks[-1].append(k)
            size += n
        else:
            blocks.append([k])
            last, size = fs, n
    return blocks


def block_tokens(members: Sequence[tuple[str, npyio.NpyFile]], opts: Options):
    """(int32 tokens (T, H, W) of the members' frames one after the other, frame shape)."""
    parsed = [tokens_of(npy, opts.vocab, opts.frame_shape) for _, npy in members]
    if len(parsed) == 1:
        return parsed[0]
    return np.concatenate([t for t, _ in parsed]), parsed[0][1]


def pack_block(members: Sequence[tuple[str, npyio.NpyFile]], frame_shape: tuple[int, int],
               vocab: int, tokens: np.ndarray, words: np.ndarray) -> bytes:
    """The packed block of ``members`` (frames ``tokens``) coded by the archive's predictor
    as ``words``; or stored with the uniform table when that is smaller, so no block costs
    more than the uniform code of its tokens (integer decision, the same on every path)."""
    coding = container.CODED
    min_uniform_bits = tokens.size * (int(vocab - 1).bit_length() - 1) - 64
    if 32 * len(words) >= min_uniform_bits:
        from nacc.predictors.uniform import Uniform

        uniform = Uniform(vocab, frame_shape)
        stored = coder.encode_intervals(*uniform.intervals(tokens), uniform.precision)
        if len(stored) < len(words):
            coding, words = container.UNIFORM, stored
    segs = []
    for name, npy in members:
        canonical = npy.prefix == npyio.canonical_prefix(npy.descr, npy.fortran, npy.shape)
        segs.append(container.Segment(name, npy.descr, npy.fortran, npy.shape, frame_shape,
                                      vocab, npy.crc, None if canonical else npy.prefix))
    return container.pack_block(container.Block(coding, tuple(segs), words))


def encode_block(members: Sequence[tuple[str, npyio.NpyFile]], opts: Options) -> bytes:
    """One packed block of the segments ``members`` (one frame shape)."""
    tokens, fs = block_tokens(members, opts)
    pred = opts.build(opts.vocab, fs)
    start, freq = pred.intervals(tokens)
    return pack_block(members, fs, opts.vocab, tokens,
                      coder.encode_intervals(start, freq, pred.precision))


def archive_header(opts: Options, n_segments: int, n_blocks: int) -> bytes:
    """The packed archive header for segments coded with ``opts``."""
    probe = predictors.build(opts.predictor_name(), opts.vocab, (1, 1), dict(opts.params))
    return container.pack_header(container.Header(
        opts.predictor_name(), probe.params(), probe.model_hash(), probe.precision,
        n_segments, n_blocks))


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


def block_predictor(block: container.Block, header: container.Header,
                    params_override: dict | None = None,
                    device: str = "cpu") -> predictors.Predictor:
    """The predictor that decodes ``block``: the archive's, or the uniform table."""
    if block.coding == container.UNIFORM:
        from nacc.predictors.uniform import Uniform

        return Uniform(block.vocab, block.frame_shape)
    return archive_predictor(header, block.vocab, block.frame_shape, params_override, device)


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


def restore_block(block: container.Block, tokens: np.ndarray) -> list[tuple[str, bytes]]:
    """``(name, npy bytes)`` of each member of ``block`` from its decoded frames."""
    out, t = [], 0
    for seg in block.segments:
        out.append((seg.name, restore_npy(seg, tokens[t:t + seg.n_frames])))
        t += seg.n_frames
    return out


def decode_block(block: container.Block, header: container.Header,
                 params_override: dict | None = None,
                 device: str = "cpu") -> list[tuple[str, bytes]]:
    """``(name, original .npy bytes)`` of each member of ``block``; checks the model hash
    and the data CRCs."""
    pred = block_predictor(block, header, params_override, device)
    return restore_block(block, pred.decode(block.words, block.n_frames))


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
    return encode_block(*job)


def _decode_job(job):
    return decode_block(*job)


def compress_segments(segments: Sequence[tuple[str, npyio.NpyFile]], opts: Options,
                      threads: int = 1) -> Iterator[bytes]:
    """Archive bytes in pieces (header first, then one piece per block)."""
    if not segments:
        raise NaccError("nothing to compress")
    plan = plan_blocks(segments, opts)
    yield archive_header(opts, len(segments), len(plan))
    yield from _map(_encode_job, [([segments[k] for k in b], opts) for b in plan], threads)


def decompress_archive(buf: bytes, threads: int = 1, params_override: dict | None = None,
                       device: str = "cpu") -> Iterator[tuple[str, bytes]]:
    """``(name, npy bytes)`` of every segment, in archive order."""
    header, blocks = container.read_archive(buf)
    jobs = [(block, header, params_override, device) for block in blocks]
    for members in _map(_decode_job, jobs, threads):
        yield from members


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
