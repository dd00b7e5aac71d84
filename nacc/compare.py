"""``nacc bench``: nacc and general-purpose codecs side by side, on the same inputs, in one run.

    nacc bench INPUT... [--against xz,lzma,zstd,brotli,bz2,zpaq] [--predictor cm,prevframe]
               [--model DIR]   (for the predictors that need one: transformer, lstm, gpt)
               [--json F] [--markdown F] [--plot F.png] [-T N] [--device cpu|cuda|auto]

Every codec's output is decoded and compared with its input before a row is printed.

* nacc compresses each input to one archive, as ``nacc compress`` does (whole archive bytes,
  headers included).  The numba kernels are compiled (warmed up) before any timing.
* General-purpose codecs compress the commaVQ baseline layout, one stream per segment:
  tokens as int16, reshaped to (-1, H*W) (= (-1, 128) for commaVQ), transposed, raw bytes
  (``compression/compress.py`` of commaVQ does exactly this before ``lzma``).
* Python bindings are used where importable (lzma, bz2, zstandard, brotli), command-line
  programs otherwise or where the row names a program (``xz -9e``, ``zpaq -m5``); a codec
  that has neither is skipped with a line saying so.  Program rows include process start-up
  and temporary-file time.

Columns: rate = tokens * 10 / 8 / bytes (the commaVQ rate), bits/token = 8 * bytes / tokens,
encode/decode seconds, and times relative to nacc (the first ``--predictor``): a ratio of
times measured in the same run, which is what transfers between machines.

``--plot F.png`` draws bits per frame over time for every codec (nacc from its per-token code
lengths -log2(freq / 2**P), read from the predictor's intervals; general codecs only have a
total, spread evenly over the frames) and a heatmap of nacc's mean bits per token position.
It needs matplotlib (``pip install 'nacc[plot]'``).
"""
from __future__ import annotations

import bz2
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nacc.errors import NaccError, OptionError
from nacc.spec import DEFAULT_VOCAB

DEFAULT_AGAINST = "xz,lzma,zstd,brotli,bz2,zpaq"
LAYOUT = ("general-purpose codecs compress the commaVQ baseline layout: tokens as int16, "
          "reshaped to (-1, {n}), transposed, one stream per segment")


# -- general-purpose codecs -------------------------------------------------------------
@dataclass
class Codec:
    """A byte codec: ``encode``/``decode`` on bytes; ``why_not`` says why it is unavailable."""
    key: str
    label: str
    encode: Callable[[bytes], bytes] | None = None
    decode: Callable[[bytes], bytes] | None = None
    why_not: str = ""


def _pipe(args: list[str], data: bytes, cwd: str | None = None) -> bytes:
    r = subprocess.run(args, input=data, capture_output=True, check=False, cwd=cwd)
    if r.returncode != 0:
        raise NaccError(f"{' '.join(args)} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def _zpaq_codec(prog: str) -> Codec:
    """zpaq works on files: one archive holding one file ``s`` per stream."""
    def encode(data: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="nacc-bench-") as d:
            (Path(d) / "s").write_bytes(data)
            _pipe([prog, "a", "z.zpaq", "s", "-m5"], b"", cwd=d)
            return (Path(d) / "z.zpaq").read_bytes()

    def decode(blob: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="nacc-bench-") as d:
            (Path(d) / "z.zpaq").write_bytes(blob)
            _pipe([prog, "x", "z.zpaq", "-to", "out"], b"", cwd=d)
            return (Path(d) / "out" / "s").read_bytes()

    return Codec("zpaq", "zpaq -m5 (program)", encode, decode)


def codec(key: str) -> Codec:
    """The codec named ``key`` (see ``DEFAULT_AGAINST``), available or with ``why_not``."""
    if key == "lzma":
        return Codec(key, "lzma (Python, preset 6: the commaVQ baseline)", lzma.compress,
                     lzma.decompress)
    if key == "xz":
        if shutil.which("xz"):
            return Codec(key, "xz -9e (program)",
                         lambda b: _pipe(["xz", "-9e", "-T1", "-c"], b),
                         lambda b: _pipe(["xz", "-d", "-c"], b))
        return Codec(key, "xz -9e (Python lzma)",
                     lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress)
    if key == "bz2":
        return Codec(key, "bz2 -9 (Python)", lambda b: bz2.compress(b, 9), bz2.decompress)
    if key == "zstd":
        try:
            import zstandard
        except ImportError:
            if shutil.which("zstd"):
                return Codec(key, "zstd --ultra -22 (program)",
                             lambda b: _pipe(["zstd", "-q", "--ultra", "-22", "-c"], b),
                             lambda b: _pipe(["zstd", "-q", "-d", "-c"], b))
            return Codec(key, "zstd", why_not="neither the zstandard module nor zstd is installed")
        return Codec(key, "zstd --ultra -22 (Python zstandard)",
                     lambda b: zstandard.ZstdCompressor(level=22).compress(b),
                     lambda b: zstandard.ZstdDecompressor().decompress(b))
    if key == "brotli":
        try:
            import brotli
        except ImportError:
            if shutil.which("brotli"):
                return Codec(key, "brotli -q 11 -w 24 (program)",
                             lambda b: _pipe(["brotli", "-q", "11", "-w", "24", "-c"], b),
                             lambda b: _pipe(["brotli", "-d", "-c"], b))
            return Codec(key, "brotli", why_not="neither the brotli module nor brotli is installed")
        return Codec(key, "brotli -q 11 -w 24 (Python)",
                     lambda b: brotli.compress(b, quality=11, lgwin=24), brotli.decompress)
    if key == "zpaq":
        prog = shutil.which("zpaq")
        if prog is None:
            return Codec(key, "zpaq -m5", why_not="the zpaq program is not installed")
        return _zpaq_codec(prog)
    raise OptionError(f"unknown codec {key!r} (known: {DEFAULT_AGAINST})", "--against")


def baseline_layout(tokens: np.ndarray) -> bytes:
    """commaVQ's baseline byte layout: int16, (-1, frame size), transposed."""
    t = np.asarray(tokens)
    n = t.shape[-1] if t.ndim == 2 else t.shape[-1] * t.shape[-2]
    return np.ascontiguousarray(t.astype(np.int16).reshape(-1, n).T).tobytes()


# -- results ----------------------------------------------------------------------------
@dataclass
class Row:
    codec: str
    label: str
    bytes: int
    tokens: int
    encode_s: float
    decode_s: float
    rate: float = 0.0
    bits_per_token: float = 0.0
    encode_vs_nacc: float = 0.0
    decode_vs_nacc: float = 0.0
    bits_per_frame: list[float] = field(default_factory=list, repr=False)

    def finish(self, ref: Row) -> None:
        self.rate = self.tokens * 10 / 8 / self.bytes
        self.bits_per_token = 8 * self.bytes / self.tokens
        self.encode_vs_nacc = self.encode_s / max(ref.encode_s, 1e-9)
        self.decode_vs_nacc = self.decode_s / max(ref.decode_s, 1e-9)


@dataclass
class Report:
    inputs: list[str]
    n_segments: int
    n_frames: int
    n_tokens: int
    frame_shape: tuple[int, int]
    layout: str
    reference: str
    rows: list[Row]
    skipped: list[tuple[str, str]]
    heatmap: list[list[float]] | None = None
    # frames where each segment starts (all inputs in order), and for every shipped prior or
    # model fitted on frames of the inputs (nacc.fitted): what, and those frames' mask
    boundaries: list[int] = field(default_factory=list)
    fitted: list[tuple[str, list[bool]]] = field(default_factory=list, repr=False)

    def fitted_notes(self) -> list[str]:
        """One line per shipped prior or model that saw frames of the inputs."""
        return [f"WARNING: {sum(m)} of the {self.n_frames} frames are training frames of "
                f"{what}: rates there are not held-out rates (nacc.fitted)"
                for what, m in self.fitted]

    def table(self) -> list[list[str]]:
        head = ["codec", "bytes", "rate", "bits/token", "encode s", "decode s",
                "encode x nacc", "decode x nacc"]
        body = [[r.label, str(r.bytes), f"{r.rate:.3f}", f"{r.bits_per_token:.3f}",
                 f"{r.encode_s:.4f}", f"{r.decode_s:.4f}", f"{r.encode_vs_nacc:.3g}",
                 f"{r.decode_vs_nacc:.3g}"] for r in self.rows]
        return [head] + body

    def notes(self) -> list[str]:
        s = "" if self.n_segments == 1 else "s"
        return [f"{len(self.inputs)} input(s), {self.n_segments} segment{s}, {self.n_frames} "
                f"frames of {self.frame_shape[0]}x{self.frame_shape[1]}, {self.n_tokens} tokens; "
                "every output decoded and checked byte-exact",
                "rate = tokens*10/8/bytes; nacc rows are whole archives, one per input",
                self.layout,
                f"x nacc = time / time of {self.reference} in this run (numba warmed up first)",
                *self.fitted_notes()]

    def text(self) -> str:
        rows = self.table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        fmt = [(lambda s, w: s.ljust(w)) if i == 0 else (lambda s, w: s.rjust(w))
               for i in range(len(widths))]
        lines = ["  ".join(f(c, w) for f, c, w in zip(fmt, r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = self.notes()
        out = [f"nacc bench: {notes[0]}"] + [f"  {n}" for n in notes[1:]] + lines
        out += [f"{k}: skipped ({why})" for k, why in self.skipped]
        return "\n".join(out)

    def markdown(self) -> str:
        rows = self.table()
        out = ["| " + " | ".join(rows[0]) + " |",
               "|:--" + "|--:" * (len(rows[0]) - 1) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out += [""] + [f"- {n}" for n in self.notes()]
        out += [f"- {k}: skipped ({why})" for k, why in self.skipped]
        return "\n".join(out) + "\n"

    def as_json(self) -> dict:
        d = asdict(self)
        d["skipped"] = [{"codec": k, "reason": why} for k, why in self.skipped]
        d["fitted"] = [{"what": what, "frames": [k for k, x in enumerate(m) if x]}
                       for what, m in self.fitted]
        for r in d["rows"]:
            r.pop("bits_per_frame")
        return d


# -- the run ----------------------------------------------------------------------------
def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _nacc_row(pred_name, inputs, opts, threads, device, progress,
              want_bits) -> tuple[Row, list[np.ndarray]]:
    from nacc import codec as ncodec
    from nacc import npyio

    row = Row(f"nacc-{pred_name}", f"nacc {pred_name}", 0, 0, 0.0, 0.0)
    per_token: list[np.ndarray] = []
    for src, segments in inputs:
        archive, t_enc = _timed(lambda s=segments: b"".join(ncodec.compress_segments(s, opts,
                                                                                threads)))
        restored, t_dec = _timed(lambda a=archive: list(ncodec.decompress_archive(a, threads,
                                                                               device=device)))
        for (name, npy), (name2, data) in zip(segments, restored):
            if name != name2 or data != npyio.npy_bytes(npy):
                raise NaccError(f"nacc {pred_name}: round trip mismatch in {src}: {name}")
        row.bytes += len(archive)
        row.tokens += sum(int(npy.array.size) for _, npy in segments)
        row.encode_s += t_enc
        row.decode_s += t_dec
        if want_bits:
            for _, npy in segments:
                tokens, fs = ncodec.tokens_of(npy, opts.vocab, opts.frame_shape)
                pred = opts.build(opts.vocab, fs)
                _, freq = pred.intervals(tokens)
                bits = pred.precision - np.log2(freq.astype(np.float64))
                per_token.append(bits.reshape(len(tokens), *fs))
        progress.update(len(segments))
    return row, per_token


def _codec_row(c: Codec, streams, progress):
    """The codec's row over ``streams`` (one per segment, each coded on its own); its
    ``bits_per_frame`` holds each segment's bits per token (spread over the segment)."""
    row = Row(c.key, c.label, 0, 0, 0.0, 0.0)
    for n_tokens, raw in streams:
        blob, t_enc = _timed(c.encode, raw)
        back, t_dec = _timed(c.decode, blob)
        if back != raw:
            raise NaccError(f"{c.label}: round trip mismatch")
        row.bytes += len(blob)
        row.tokens += n_tokens
        row.encode_s += t_enc
        row.decode_s += t_dec
        row.bits_per_frame.append(8 * len(blob) / n_tokens)
        progress.update(1)
    return row


def _warm_up(opts, device, segments) -> None:
    """Compile the numba kernels (a 2-frame archive) so that no timing includes the JIT."""
    from nacc import codec as ncodec
    from nacc import npyio

    name, npy = segments[0]
    small = npyio.from_array(np.ascontiguousarray(npy.array[:2]))
    archive = b"".join(ncodec.compress_segments([(name, small)], opts))
    list(ncodec.decompress_archive(archive, device=device))


def _model_params(name: str, model: str | None) -> tuple:
    """``(("model", model),)`` if the predictor ``name`` ("" the default) needs a model."""
    from nacc import codec as ncodec
    from nacc.predictors import base

    cls = base.get(ncodec.Options(name).predictor_name())
    return (("model", model),) if model and "model" in base.required_params(cls) else ()


def run_bench(paths: list[str], against: list[str], predictors: list[str],
              vocab: int = DEFAULT_VOCAB, frame_shape: tuple[int, int] | None = None,
              threads: int = 1, device: str = "cpu", want_bits: bool = False,
              quiet: bool = True, model: str | None = None) -> Report:
    """Measure every codec on ``paths``; NaccError (prefixed with the input) on bad input.
    ``model`` (a model folder) goes to each predictor that needs one (``transformer``,
    ``lstm``, ``gpt``)."""
    from tqdm import tqdm

    from nacc import codec as ncodec
    from nacc import inputs as ninputs

    codecs = [codec(k) for k in against]
    inputs = []
    for p in paths:
        try:
            inputs.append((p, ninputs.segments_of(p)))
        except NaccError as e:
            raise NaccError(f"{p}: {e}") from None
    segments = [s for _, segs in inputs for s in segs]
    arrays = [(name, ncodec.tokens_of(npy, vocab, frame_shape)) for name, npy in segments]
    fs0 = arrays[0][1][1]
    streams = [(int(t.size), baseline_layout(t)) for _, (t, _) in arrays]
    n_frames = sum(len(t) for _, (t, _) in arrays)
    available = [c for c in codecs if c.encode is not None]
    steps = len(segments) * len(predictors) + len(streams) * len(available)
    rows: list[Row] = []
    bits_of: dict[str, list[np.ndarray]] = {}
    with tqdm(total=steps, disable=True if quiet else None, leave=False, file=sys.stderr,
              unit="seg") as progress:
        for name in predictors:
            opts = ncodec.Options(name, _model_params(name, model), vocab, frame_shape,
                                  device)
            pred_name = opts.predictor_name()
            progress.set_description(f"nacc {pred_name}")
            _warm_up(opts, device, segments)
            row, bits = _nacc_row(pred_name, inputs, opts, threads, device, progress,
                                  want_bits)
            rows.append(row)
            bits_of[row.codec] = bits
        for c in available:
            progress.set_description(c.key)
            rows.append(_codec_row(c, streams, progress))
    lengths = [len(t) for _, (t, _) in arrays]
    for r in rows:
        r.finish(rows[0])
        if r.codec in bits_of and bits_of[r.codec]:
            r.bits_per_frame = np.concatenate(
                [b.reshape(len(b), -1).sum(axis=1) for b in bits_of[r.codec]]).tolist()
        elif len(r.bits_per_frame) == len(arrays):     # a general codec: per segment
            r.bits_per_frame = [bpt * int(t[0].size) for bpt, (_, (t, _)) in
                                zip(r.bits_per_frame, arrays) for _ in range(len(t))]
        else:
            r.bits_per_frame = [8 * r.bytes / n_frames] * n_frames
    heat = None
    ref_bits = bits_of.get(rows[0].codec) or []
    same = [b for b in ref_bits if b.shape[1:] == tuple(fs0)]
    if same:
        heat = np.concatenate(same).mean(axis=0).tolist()
    n = fs0[0] * fs0[1]
    from nacc import fitted

    masks: dict[str, list[bool]] = {}
    for _, (t, _) in arrays:
        found = dict(fitted.overlaps(t))
        for what in fitted.FITTED:
            m = found.get(what)
            masks.setdefault(what, []).extend(m.tolist() if m is not None else [False] * len(t))
    return Report(list(paths), len(segments), n_frames, sum(r for r, _ in streams), tuple(fs0),
                  LAYOUT.format(n=n), rows[0].label, rows,
                  [(c.key, c.why_not) for c in codecs if c.encode is None], heat,
                  np.cumsum([0, *lengths[:-1]]).tolist(),
                  [(what, m) for what, m in masks.items() if any(m)])


# -- plot -------------------------------------------------------------------------------
def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise NaccError("--plot needs matplotlib: pip install 'nacc[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(report: Report, path: str) -> None:
    """Bits per frame over time for every codec, and nacc's mean bits per token position."""
    plt = pyplot()
    fig = plt.figure(figsize=(14, 6), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1.3, 1])
    ax = fig.add_subplot(grid[0])
    n_tok_frame = report.frame_shape[0] * report.frame_shape[1]
    styles = iter(["--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1))] * 4)
    for what, m in report.fitted:
        starts = np.flatnonzero(np.diff(np.r_[0, np.asarray(m, int), 0]) == 1)
        stops = np.flatnonzero(np.diff(np.r_[0, np.asarray(m, int), 0]) == -1)
        for k, (lo, hi) in enumerate(zip(starts, stops)):
            ax.axvspan(lo - 0.5, hi - 0.5, color="tab:orange", alpha=0.08,
                       label=f"training frames of {what} (not held out)" if k == 0
                       else None)
        break       # the widest entry (the default prior) is enough to explain the jump
    for k, start in enumerate(report.boundaries[1:]):
        ax.axvline(start - 0.5, color="grey", lw=0.6, ls=(0, (2, 3)),
                   label="segment boundary" if k == 0 else None)
    for r in report.rows:
        y = np.asarray(r.bits_per_frame)
        if r.codec.startswith("nacc-"):
            k = max(1, min(25, len(y) // 40))
            win = np.ones(k)
            smooth = np.convolve(y, win, "same") / np.convolve(np.ones_like(y), win, "same")
            line, = ax.plot(y, lw=0.6, alpha=0.35)
            ax.plot(smooth, lw=1.8, color=line.get_color(),
                    label=f"{r.label}: {r.bits_per_token:.2f} bits/token"
                    + (f" (line: {k}-frame mean)" if k > 1 else ""))
        else:
            line, = ax.plot(y, lw=1.3, ls=next(styles),
                            label=f"{r.label}: {r.bits_per_token:.2f} bits/token (each "
                                  "segment's total spread over its frames)")
            ax.annotate(r.label.split(" ")[0], (len(y) - 1, y[-1]), xytext=(3, 0),
                        textcoords="offset points", fontsize=7, color=line.get_color(),
                        va="center")
    ax.axhline(10 * n_tok_frame, color="grey", lw=0.8, ls=":")
    ax.text(0, 10 * n_tok_frame, " raw 10-bit tokens", va="bottom", color="grey", fontsize=8)
    ax.set_xlabel("frame (all inputs in order)")
    ax.set_ylabel(f"bits per frame ({n_tok_frame} tokens)")
    ax.set_title("Bits per frame over time")
    ax.set_ylim(bottom=0, top=10.8 * n_tok_frame)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2,
               fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(grid[1])
    if report.heatmap is not None:
        h = np.asarray(report.heatmap)
        im = ax2.imshow(h, cmap="magma", aspect="equal")
        for (y, x), v in np.ndenumerate(h):
            if h.size <= 256:
                ax2.text(x, y, f"{v:.1f}", ha="center", va="center", fontsize=6.5,
                         color="white" if v < (h.min() + h.max()) / 2 else "black")
        fig.colorbar(im, ax=ax2, location="bottom", shrink=0.8, pad=0.02,
                     label="mean bits per token")
        ax2.set_title(f"{report.rows[0].label}: mean bits per token position")
        ax2.set_xlabel("x (token column)")
        ax2.set_ylabel("y (token row)")
    else:
        ax2.axis("off")
    fig.suptitle(f"nacc bench: {', '.join(Path(p).name for p in report.inputs)} "
                 f"({report.n_frames} frames, {report.n_tokens} tokens)", fontsize=11)
    fig.savefig(path, dpi=130)
    plt.close(fig)
