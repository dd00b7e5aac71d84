"""The archive pipeline: segments in, archive bytes out, and back (predictor -> coder ->
container).  Every command, the Python API, ``bench``, ``submission`` and the Ray engine
go through this module; there is no other path from segments to an archive.

``compress_segments`` takes ``(name, NpyFile)`` pairs and yields archive bytes;
``decompress_archive`` yields ``(name, npy bytes)`` pairs byte-identical to the inputs.

Plan.  Segments are coded in *blocks* (see ``nacc.container``): one segment each, or with
``Options.solid = N`` solid groups of up to N consecutive segments of one frame shape whose
frames form one token video, so the predictor's state carries across them.  A block is one
*lane*: one coder stream with its own predictor state.  Consecutive lanes that share a
predictor (name, parameters, vocabulary, frame shape; and for decoding the block's coding)
form *batches* of at most ``lanes`` lanes (default: what the predictor asks for,
``Predictor.lane_batch``), and a batch goes to the predictor's lane methods
(``intervals_lanes`` / ``decode_lanes``), which step its lanes together where the backend
has batched kernels (the neural predictors on the CPU, every Triton kernel on the GPU) and
one after the other elsewhere.  Nothing a lane codes depends on the batch it is in, so the
bytes do not depend on ``lanes``, ``threads`` or the device.

Work.  With ``threads`` > 1 the batches run in that many forked worker processes (results
in order; at most two batches per worker in flight), which die with the parent.  A
predictor that computes on a GPU runs in this process only (a process never forks after
CUDA is initialised); ``threads`` then sets the threads that rANS-code its lanes.  A block
that the predictor would code larger than the uniform table is stored with the uniform
table.
"""
from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nacc import coder, container, npyio
from nacc.errors import NaccError
from nacc.predictors import base as predictors
from nacc.spec import COMMAVQ_FRAME, COMMAVQ_FRAME_TOKENS, DEFAULT_VOCAB

DEFAULT_PREDICTOR = "cm"
FALLBACK_PREDICTOR = "prevframe"
IN_FLIGHT_PER_WORKER = 2        # batches queued per worker process


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
    lanes: int | None = None            # lanes per batch (None: the predictor's choice)

    @classmethod
    def of(cls, predictor: str | None, params: Mapping | Iterable[tuple[str, object]] = (),
           vocab: int = DEFAULT_VOCAB, frame_shape: tuple[int, int] | None = None,
           device: str = "cpu", solid: int = 1) -> Options:
        """The options of one API call or command line: ``predictor`` None or "" for the
        default, ``params`` a mapping or ``(key, value)`` pairs (stored sorted, so equal
        choices give equal options).  A ``model`` parameter that names a model of the zoo
        rather than a folder becomes that model's folder (``nacc.models.resolve``)."""
        params = dict(params)
        if isinstance(params.get("model"), str):
            from nacc import models

            params["model"] = models.resolve(params["model"])
        return cls(predictor or "", tuple(sorted(params.items())), int(vocab),
                   None if frame_shape is None else (int(frame_shape[0]), int(frame_shape[1])),
                   device, int(solid))

    def predictor_name(self) -> str:
        return self.predictor or default_predictor()

    def build(self, vocab: int, frame_shape: tuple[int, int]) -> predictors.Predictor:
        pred = predictors.build(self.predictor_name(), vocab, frame_shape, dict(self.params))
        return on_device(pred, self.device)


def on_device(pred: predictors.Predictor, device: str) -> predictors.Predictor:
    """``pred`` with its tables computed on ``device`` ("cpu", "cuda", "auto", ...): the
    backend serving that device (``nacc.kernels.BACKENDS``) returns a predictor with
    identical tables; "auto" uses a GPU when one is present and the predictor has kernels
    for it, else the CPU."""
    if device == "cpu":
        return pred
    from nacc.kernels import on_device as _on

    return _on(pred, device)


def on_gpu(pred: predictors.Predictor) -> bool:
    """True when ``pred`` computes on a GPU (its lanes then stay in this process)."""
    backend = getattr(pred, "backend", None)
    return getattr(backend, "flavor", None) == "cuda"


# -- segments and blocks -----------------------------------------------------------------
def parse_frame_shape(text: str | None) -> tuple[int, int] | None:
    """``"HxW"`` (e.g. ``8x16``, any case) as ``(H, W)``, both >= 1; None for None;
    ValueError naming the text otherwise."""
    if text is None:
        return None
    try:
        h, w = (int(x) for x in text.lower().split("x"))
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text!r} is not HxW, e.g. 8x16") from None
    return (h, w)


def frame_shape_of(shape: tuple[int, ...], requested: tuple[int, int] | None) -> tuple[int, int]:
    """Frame shape for an array shape: (T, H, W) gives HxW; (T, N) gives ``requested``, or
    8x16 when N == 128, else 1xN."""
    if len(shape) == 3:
        fs = (shape[1], shape[2])
    elif len(shape) == 2:
        fs = requested or (COMMAVQ_FRAME if shape[1] == COMMAVQ_FRAME_TOKENS else (1, shape[1]))
        if fs[0] * fs[1] != shape[1]:
            raise NaccError(f"--frame-shape {fs[0]}x{fs[1]} ({fs[0] * fs[1]} tokens) does not "
                            f"fit frames of {shape[1]} tokens (shape {shape})")
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


def pack_members(members: Sequence[tuple[str, npyio.NpyFile]], frame_shape: tuple[int, int],
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
    block = container.Block(coding, tuple(segs), words)
    container.check_block(block)        # nothing is written that would not read back
    return container.pack_block(block)


def archive_header(opts: Options, pred: predictors.Predictor, n_segments: int,
                   n_blocks: int) -> bytes:
    """The packed archive header for segments coded with ``opts`` by ``pred``, one of the
    run's predictors (they differ only in frame shape: name, parameters, model hash and
    precision are the same for all)."""
    return container.pack_header(container.Header(
        opts.predictor_name(), pred.params(), pred.model_hash(), pred.precision,
        n_segments, n_blocks))


def archive_predictor(header: container.Header, vocab: int, frame_shape: tuple[int, int],
                      params_override: dict | None = None,
                      device: str = "cpu") -> predictors.Predictor:
    """The predictor an archive was written with, checked against its model hash and
    precision.  When the model folder the archive names does not load here or holds
    another model, and no override names one, the zoo's model of the archive's hash is
    used (``zoo_predictor``)."""
    params = dict(header.params)
    params.update(params_override or {})
    recorded = header.params.get("model")
    from_zoo = recorded is not None and "model" not in (params_override or {})
    try:
        pred = predictors.build(header.predictor, vocab, frame_shape, params)
    except NaccError as e:
        found = zoo_predictor(header, vocab, frame_shape) if from_zoo else None
        if found is None:
            if not from_zoo:
                raise
            raise NaccError(f"{e} (the archive names the model folder {recorded!r} as "
                            "given when it was compressed, and no model of the zoo has its "
                            "hash; pass --model FOLDER)") from None
        pred = found
    if pred.model_hash() != header.model_hash and from_zoo:
        pred = zoo_predictor(header, vocab, frame_shape) or pred
    pred = on_device(pred, device)
    if pred.model_hash() != header.model_hash:
        raise NaccError(f"archive was written with predictor {header.predictor!r} model "
                        f"{header.model_hash.hex()[:16] or '(none)'}, but the model given has "
                        f"{pred.model_hash().hex()[:16] or '(none)'}")
    if pred.precision != header.precision:
        raise NaccError(f"predictor precision {pred.precision} != archive {header.precision}")
    return pred


def zoo_predictor(header: container.Header, vocab: int,
                  frame_shape: tuple[int, int]) -> predictors.Predictor | None:
    """The archive's predictor built with the first model folder of the zoo (listed or
    not, ``nacc.models.zoo``) whose model gives the archive's model hash; None if none
    does."""
    from nacc import models

    for _, folder in models.zoo(listed_only=False):
        params = dict(header.params, model=str(folder))
        try:
            pred = predictors.build(header.predictor, vocab, frame_shape, params)
        except NaccError:
            continue
        if pred.model_hash() == header.model_hash:
            return pred
    return None


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


# -- lanes and batches -------------------------------------------------------------------
class _Predictors:
    """The predictors of one run, built once per key (in the parent before workers fork,
    so the workers inherit them) and reused by every batch."""

    def __init__(self, make: Callable):
        self._make = make
        self._built: dict = {}

    def get(self, key):
        if key not in self._built:
            self._built[key] = self._make(key)
        return self._built[key]


def _batches(keys: Sequence, size_of: Callable, threads: int) -> list[list[int]]:
    """Runs of consecutive lanes with equal keys, cut into batches of at most
    ``size_of(key)`` lanes (smaller when that leaves a worker idle)."""
    runs: list[list[int]] = []
    for k, key in enumerate(keys):
        if runs and keys[runs[-1][0]] == key:
            runs[-1].append(k)
        else:
            runs.append([k])
    out = []
    for run in runs:
        size = max(1, int(size_of(keys[run[0]])))
        if threads > 1:
            size = min(size, -(-len(run) // threads))
        out += [run[i:i + size] for i in range(0, len(run), size)]
    return out


def _lane_size(pred: predictors.Predictor, requested: int | None) -> int:
    return requested if requested else getattr(pred, "lane_batch", 1)


def _code_lanes(pred: predictors.Predictor, videos: list[np.ndarray], threads: int):
    """rANS words of each lane of ``videos`` under ``pred``; intervals come from the lane
    method, words are coded as they come (on ``threads`` threads for a GPU predictor)."""
    intervals = pred.intervals_lanes(videos)
    if threads <= 1 or not on_gpu(pred):
        return [coder.encode_intervals(s, f, pred.precision) for s, f in intervals]
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda sf: coder.encode_intervals(sf[0], sf[1], pred.precision),
                             intervals))


@dataclass
class _Run:
    """What every batch of one run reads: the lanes, the options and the predictors.  A
    worker process inherits it when it forks, so jobs travel as lists of lane indices."""
    lanes: list                 # compress: each block's members; decompress: the blocks
    keys: list                  # each lane's predictor key
    cache: _Predictors
    opts: Options | None = None
    coder_threads: int = 1


def _encode_batch(run: _Run, batch: list[int]) -> list[bytes]:
    """Packed blocks of the lanes ``batch`` (one predictor key)."""
    pred = run.cache.get(run.keys[batch[0]])
    opts = run.opts
    assert opts is not None             # a compress run
    members = [run.lanes[i] for i in batch]
    parsed = [block_tokens(m, opts) for m in members]
    words = _code_lanes(pred, [t for t, _ in parsed], run.coder_threads)
    return [pack_members(m, fs, opts.vocab, t, w)
            for m, (t, fs), w in zip(members, parsed, words)]


def _decode_batch(run: _Run, batch: list[int]) -> list[tuple[str, bytes]]:
    """``(name, npy bytes)`` of every member of the blocks ``batch`` (one predictor key)."""
    pred = run.cache.get(run.keys[batch[0]])
    blocks = [run.lanes[i] for i in batch]
    out = []
    for block, tok in zip(blocks, _decode_lanes(pred, blocks)):
        out += restore_block(block, tok)
    return out


def _decode_lanes(pred: predictors.Predictor, blocks: list) -> list[np.ndarray]:
    """The tokens of each block.  A block of no words decodes without the predictor: rANS
    state 0 (nacc.kernels.cpu.rans) selects the symbol laid out first (start 0: symbol 0,
    or the s with ``order[s] == 0``) and stays 0, token after token."""
    coded = [k for k, b in enumerate(blocks) if len(b.words)]
    out: list = [None] * len(blocks)
    if coded:
        jobs = [(blocks[k].words, blocks[k].n_frames) for k in coded]
        for k, tok in zip(coded, pred.decode_lanes(jobs)):
            out[k] = tok
    z = 0 if pred.order is None else int(np.argmin(pred.order))
    for k, b in enumerate(blocks):
        if out[k] is None:
            out[k] = np.full((b.n_frames, *b.frame_shape), z, np.int32)
    return out


def compress_segments(segments: Sequence[tuple[str, npyio.NpyFile]], opts: Options,
                      threads: int = 1, plan: list[list[int]] | None = None
                      ) -> Iterator[bytes]:
    """Archive bytes in pieces (header first, then one piece per block).  ``plan``: the
    blocks ``plan_blocks(segments, opts)`` gives, when the caller made it already (to count
    them); each predictor is built once and also writes the header."""
    if not segments:
        raise NaccError("nothing to compress")
    container.check_names([name for name, _ in segments])
    if plan is None:
        plan = plan_blocks(segments, opts)
    shapes = [frame_shape_of(segments[b[0]][1].shape, opts.frame_shape) for b in plan]
    cache = _Predictors(lambda fs: opts.build(opts.vocab, fs))
    yield archive_header(opts, cache.get(shapes[0]), len(segments), len(plan))
    gpu = any(on_gpu(cache.get(fs)) for fs in dict.fromkeys(shapes))
    run = _Run([[segments[k] for k in b] for b in plan], shapes, cache, opts,
               threads if gpu else 1)
    batches = _batches(shapes, lambda fs: _lane_size(cache.get(fs), opts.lanes), threads)
    budget = container.TailBudget()
    sizes = iter([len(b) for b in plan])
    for packed in _map(_encode_batch, run, batches, 1 if gpu else threads):
        for block in packed:
            budget.add(block, next(sizes))      # what read_archive checks
            yield block


def decompress_archive(buf: bytes, threads: int = 1, params_override: dict | None = None,
                       device: str = "cpu", lanes: int | None = None
                       ) -> Iterator[tuple[str, bytes]]:
    """``(name, npy bytes)`` of every segment, in archive order."""
    header, blocks = container.read_archive(buf)
    return decompress_blocks(header, blocks, threads, params_override, device, lanes)


def decompress_blocks(header: container.Header, blocks: Sequence[container.Block],
                      threads: int = 1, params_override: dict | None = None,
                      device: str = "cpu", lanes: int | None = None
                      ) -> Iterator[tuple[str, bytes]]:
    """``decompress_archive`` of an archive already read by ``container.read_archive``."""
    keys = [(b.coding, b.vocab, b.frame_shape) for b in blocks]
    first = {key: k for k, key in reversed(list(enumerate(keys)))}
    cache = _Predictors(lambda key: block_predictor(blocks[first[key]], header,
                                                    params_override, device))
    gpu = any(on_gpu(cache.get(key)) for key in first)
    run = _Run(list(blocks), keys, cache)
    batches = _batches(keys, lambda key: _lane_size(cache.get(key), lanes), threads)
    for members in _map(_decode_batch, run, batches, 1 if gpu else threads):
        yield from members


def decode_block(block: container.Block, header: container.Header,
                 params_override: dict | None = None,
                 device: str = "cpu") -> list[tuple[str, bytes]]:
    """``(name, original .npy bytes)`` of each member of one block (one lane); checks the
    model hash and the data CRCs."""
    pred = block_predictor(block, header, params_override, device)
    return _decode_batch(_Run([block], [None], _Predictors(lambda _: pred)), [0])


# -- worker processes --------------------------------------------------------------------
def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 (an unusual torch build: be safe, do not fork)
        return True


_WORKER_RUN: _Run | None = None     # a worker process's run (set when it starts)


def _start_worker(parent: int, run: _Run) -> None:
    """Worker initializer: keep the inherited run, and end this process when the parent
    ends (Linux: the kernel sends SIGKILL; elsewhere a thread polls the parent's pid)."""
    global _WORKER_RUN
    _WORKER_RUN = run
    from nacc.fileio import unblock_signals

    unblock_signals()                   # blocked by the parent while it forked us
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:          # the parent ended before the line above
        os._exit(1)
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _in_worker(fn: Callable, batch: list[int]):
    return fn(_WORKER_RUN, batch)


def _map(fn: Callable, run: _Run, batches: Sequence[list[int]], threads: int) -> Iterator:
    """``fn(run, batch)`` for every batch, in order; over ``threads`` forked processes when
    > 1 (results do not depend on it), with at most IN_FLIGHT_PER_WORKER batches per worker
    pending at once."""
    if threads <= 1 or len(batches) <= 1 or _cuda_initialised():
        for batch in batches:
            yield fn(run, batch)
        return
    import collections
    import concurrent.futures as cf  # here: a one-process run need not import them
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    from nacc.fileio import signals_blocked

    workers = min(threads, len(batches))
    with cf.ProcessPoolExecutor(max_workers=workers,
                                mp_context=multiprocessing.get_context("fork"),
                                initializer=_start_worker,
                                initargs=(os.getpid(), run)) as pool:
        pending: collections.deque = collections.deque()
        try:
            for k, batch in enumerate(batches):
                if k == 0:      # the first submit forks every worker: no signal meanwhile
                    with signals_blocked():
                        pending.append(pool.submit(_in_worker, fn, batch))
                else:
                    pending.append(pool.submit(_in_worker, fn, batch))
                if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise NaccError(f"a worker process died (killed by a signal, out of memory?); "
                            f"try fewer -T than {threads}") from None
        finally:
            for f in pending:
                f.cancel()
