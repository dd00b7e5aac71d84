"""What the command modules share: the reporter (messages, exit code), the option
decorators and types, and the small input/output helpers of the coding commands."""
from __future__ import annotations

import sys

import click

from nacc.errors import NaccError
from nacc.kernels.cpu import compile_notice
from nacc.spec import DEFAULT_VOCAB

SUFFIX = ".nacc"


def printable(text: str) -> str:
    """``text`` with every unprintable character (terminal escapes, control and format
    characters) written as a Python escape, so that names from an archive cannot drive the
    terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Reporter:
    """Messages on stderr at the chosen verbosity; counts failures for the exit code.

    Levels: -1 with ``-q`` (errors only), else the count of ``-v``.  ``summary`` lines (one
    per file: what was written, the rate) show on a terminal, or anywhere with ``-v``, as
    zstd's and xz's do; a pipe or log sees only errors unless ``-v`` is given.  The
    first-run compile notice shows everywhere but with ``-q``: a script otherwise waits
    in silence while the kernels compile."""

    def __init__(self, verbose: int, quiet: bool):
        self.level = -1 if quiet else verbose
        self.failed = 0
        compile_notice.enable(not quiet, quiet)

    def info(self, msg: str, level: int = 0) -> None:
        if self.level >= level:
            click.echo(msg, err=True)

    def summary(self, msg: str) -> None:
        """A file's summary line: on a terminal, or with -v; never with -q."""
        if self.level >= 1 or (self.level == 0 and _isatty(sys.stderr)):
            click.echo(msg, err=True)

    def error(self, where: str, msg: str) -> None:
        self.failed += 1
        click.echo(f"nacc: {printable(where)}: {printable(msg)}", err=True)

    def failure(self, where: str, e: Exception) -> None:
        """Report the exception that stopped work on ``where``: a NaccError by its message,
        an OSError by its strerror, anything else as ``unexpected``."""
        if isinstance(e, NaccError):
            self.error(where, str(e))
        elif isinstance(e, OSError):
            self.error(where, e.strerror or str(e))
        else:
            self.unexpected(where, e)

    def unexpected(self, where: str, e: Exception) -> None:
        """An exception no check turned into a NaccError (a damaged or hostile input the
        parser let through): reported like one, exit 1, never a traceback."""
        if isinstance(e, MemoryError):
            self.error(where, "out of memory")
        else:
            self.error(where, f"unreadable input ({type(e).__name__}: {e})")

    def exit(self) -> None:
        sys.exit(1 if self.failed else 0)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):    # no stream, or a closed one
        return False


def verbosity(f):
    f = click.option("-v", "--verbose", count=True, help="More messages (repeatable).")(f)
    return click.option("-q", "--quiet", is_flag=True, help="Only errors.")(f)


def frame_shape_callback(ctx, param, value):
    from nacc.codec import parse_frame_shape

    try:
        return parse_frame_shape(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def output_options(f):
    """-c, -f and -k, the output flags compress and decompress share."""
    f = click.option("-k", "--keep", is_flag=True, help="Keep inputs (the default).")(f)
    f = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")(f)
    return click.option("-c", "--stdout", "to_stdout", is_flag=True,
                        help="Write to standard output.")(f)


def engine_options(f):
    """--engine and --address (see ``nacc.distributed``)."""
    f = click.option("--address", default=None, metavar="ADDR",
                     help="Ray cluster address for --engine ray [a local Ray instance].")(f)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                        show_default=True,
                        help="ray: one Ray task per input (see nacc.distributed).")(f)


class _Vocab(click.ParamType):
    """A vocabulary size: an integer in 2..container.MAX_VOCAB (the container is imported
    when a value is converted, so that the CLI starts without numpy)."""

    name = "integer range"

    def convert(self, value, param, ctx):
        from nacc.container import MAX_VOCAB

        v = click.INT.convert(value, param, ctx)
        if not 2 <= v <= MAX_VOCAB:
            self.fail(f"{v} is not in the range 2<=x<={MAX_VOCAB}.", param, ctx)
        return v


VOCAB = _Vocab()  # the --vocab type of every command


def device_option(f):
    return click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
                        show_default=True,
                        help="Where tables are computed; archives are identical on all.")(f)


def _params(ctx, param, values):
    """``--param KEY=VALUE`` pairs: VALUE an integer where it is written as one (``stride=5``,
    ``check=1``; archives record such parameters as JSON integers), else the text."""
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE")
        digits = val[1:] if val[:1] == "-" else val
        out.append((key, int(val) if digits.isdigit() and digits.isascii() else val))
    return tuple(out)


def predictor_options(f):
    f = device_option(f)
    f = click.option("--param", "params", multiple=True, callback=_params, metavar="KEY=VALUE",
                     help="Predictor parameter, repeatable (e.g. --param prior=none for cm).")(f)
    f = click.option("--model", type=click.Path(), default=None,
                     help="Model folder, or the name of a model of the zoo (nacc models), "
                          "for predictors that need one.")(f)
    f = click.option("--frame-shape", callback=frame_shape_callback, default=None, metavar="HxW",
                     help="Frame shape for (T, N) arrays [8x16 when N=128, else 1xN].")(f)
    f = click.option("--vocab", type=VOCAB, default=DEFAULT_VOCAB, show_default=True,
                     help="Vocabulary size: token ids are 0..vocab-1.")(f)
    return click.option(
        "--predictor", default=None, metavar="NAME",
        help="Predictor [cm]: cm, prevframe, uniform; transformer and lstm need --model and "
             "run at only ~20k-35k tokens/s on one CPU core (seconds per commaVQ segment, "
             "too slow as a CPU default); cm with --model mixes that model in.")(f)


def solid_option(f):
    return click.option(
        "--solid-group", "solid", type=click.IntRange(1, 1 << 20), default=1,
        show_default=True, metavar="N",
        help="Code runs of up to N consecutive segments as one solid group: the predictor's "
             "state carries across them (better rates); groups stay independent and "
             "parallel, and a group decodes as a whole.")(f)


def options(predictor, vocab, frame_shape, model, device="cpu", params=(), solid=1):
    """The codec options of the command line, checked once before any input is read: the
    predictor is built on a probe, so that an unknown predictor or parameter, a missing
    or unknown ``--model`` is a usage error (exit 2, said once, not per input), and a model
    folder that does not load is ``nacc: FOLDER: ...``, exit 1."""
    from nacc.codec import Options
    from nacc.errors import OptionError
    from nacc.predictors import base

    params = dict(params)
    if model:
        params["model"] = model
    try:
        opts = Options.of(predictor, params, vocab, frame_shape, device, solid)
        base.build(opts.predictor_name(), opts.vocab, (1, 1), dict(opts.params))
    except OptionError as e:
        raise click.BadParameter(str(e), param_hint=f"'{e.option}'" if e.option else None) \
            from None
    except NaccError as e:
        if not model:           # no file involved: a parameter the predictor refuses
            raise click.BadParameter(str(e), param_hint="'--param'") from None
        from pathlib import Path

        msg, where = printable(str(e)), printable(str(Path(model)))
        click.echo(f"nacc: {msg}" if msg.startswith(where) else f"nacc: {where}: {msg}",
                   err=True)
        sys.exit(1)
    return opts


def model_override(model: str | None) -> dict | None:
    """The decoders' ``--model``: a folder or a zoo name (usage error if neither), as the
    parameter override of ``nacc.codec.decompress_archive``."""
    if not model:
        return None
    from nacc.errors import OptionError
    from nacc.models import resolve

    try:
        return {"model": resolve(model)}
    except OptionError as e:
        raise click.BadParameter(str(e), param_hint="'--model'") from None


def read_input(path: str) -> bytes:
    """An archive's bytes, bounded and type-checked (``nacc.fileio.read_input``)."""
    from nacc import container, fileio

    return fileio.read_input(path, container.MAGIC)


def segments_of(path: str):
    """``(name, NpyFile)`` pairs of a .npy file, a directory of them, an .npz, a commaVQ
    webdataset shard (.tar/.tar.gz, streamed), or stdin, verified whole; see nacc.inputs.
    NaccError (or OSError from the file system) for anything wrong with it."""
    from nacc import inputs

    return inputs.segments_of(path)


def progress(items, total: int, rep: Reporter, what: str, unit: str = "seg"):
    """tqdm over ``items`` (``total`` of them, counted in ``unit``) on stderr when it is a
    terminal and there is more than one."""
    if total <= 1 or rep.level < 0 or not _isatty(sys.stderr):
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit=unit, file=sys.stderr, leave=False)


def rate_line(n_tokens: int, n_bytes: int) -> str:
    return (f"rate {n_tokens * 10 / 8 / n_bytes:.4f}, "
            f"{8 * n_bytes / n_tokens:.4f} bits/token")


def n_tokens(segments) -> int:
    return sum(int(s.array.size) for _, s in segments)


