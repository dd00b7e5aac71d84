"""``nacc`` command line, shaped like zstd/xz.

    nacc compress INPUT... [-o OUT] [-c] [-f] [-k|--rm] [-T N] [--predictor NAME] [-v|-q]
    nacc decompress FILE.nacc... [-o OUT] [-c] [-f] [-T N]
    nacc test FILE.nacc...          decode and check, write nothing
    nacc verify INPUT...            compress + decompress in memory, report rate and times
    nacc info FILE.nacc...          header, rate, bits/token

``compress X`` writes ``X.nacc`` beside X; ``decompress X.nacc`` writes X.  A directory
input becomes one archive of all its ``.npy`` files.  ``-`` is stdin/stdout.  Outputs are
written to a temporary file and renamed, never over an existing file without ``-f``, never
as binary to a terminal.  Errors: ``nacc: FILE: message`` on stderr; exit 0 ok, 1 data or
runtime error, 2 usage.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from nacc.errors import NaccError
from nacc.fileio import signals_raise, umask, write_atomic
from nacc.kernels.cpu import compile_notice

SUFFIX = ".nacc"

# subcommands defined by other modules, imported only when called
LAZY_COMMANDS = {
    "train": "nacc.neural.cli:train",
    "bench": "nacc.compare:bench",
    "submission": "nacc.submission:submission",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._lazy()))

    def _lazy(self):
        return {n: t for n, t in LAZY_COMMANDS.items() if _module_exists(t.split(":")[0])}

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self._lazy():
            mod, attr = LAZY_COMMANDS[name].split(":")
            cmd = getattr(importlib.import_module(mod), attr)
        return cmd


def printable(text: str) -> str:
    """``text`` with every unprintable character (terminal escapes, control and format
    characters) written as a Python escape, so that names from an archive cannot drive the
    terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Reporter:
    """Messages on stderr at the chosen verbosity; counts failures for the exit code."""

    def __init__(self, verbose: int, quiet: bool):
        self.level = -1 if quiet else verbose
        self.failed = 0
        # the one-line first-run notice: on a terminal, or with -v; never with -q
        compile_notice.enable(self.level >= 1, quiet)

    def info(self, msg: str, level: int = 0) -> None:
        if self.level >= level:
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


def _verbosity(f):
    f = click.option("-v", "--verbose", count=True, help="More messages (repeatable).")(f)
    return click.option("-q", "--quiet", is_flag=True, help="Only errors.")(f)


def _frame_shape(ctx, param, value):
    from nacc.codec import parse_frame_shape

    try:
        return parse_frame_shape(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _output_options(f):
    """-c, -f and -k, the output flags compress and decompress share."""
    f = click.option("-k", "--keep", is_flag=True, help="Keep inputs (the default).")(f)
    f = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")(f)
    return click.option("-c", "--stdout", "to_stdout", is_flag=True,
                        help="Write to standard output.")(f)


def _engine_options(f):
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


def _device_option(f):
    return click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
                        show_default=True,
                        help="Where tables are computed; archives are identical on all.")(f)


def _params(ctx, param, values):
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE")
        out.append((key, val))
    return tuple(out)


def _predictor_options(f):
    f = _device_option(f)
    f = click.option("--param", "params", multiple=True, callback=_params, metavar="KEY=VALUE",
                     help="Predictor parameter, repeatable (e.g. --param prior=none for cm).")(f)
    f = click.option("--model", type=click.Path(), default=None,
                     help="Model folder, for predictors that need one.")(f)
    f = click.option("--frame-shape", callback=_frame_shape, default=None, metavar="HxW",
                     help="Frame shape for (T, N) arrays [8x16 when N=128, else 1xN].")(f)
    f = click.option("--vocab", type=VOCAB, default=1024, show_default=True,
                     help="Vocabulary size: token ids are 0..vocab-1.")(f)
    return click.option(
        "--predictor", default=None, metavar="NAME",
        help="Predictor [cm]: cm, prevframe, uniform; transformer and lstm need --model and "
             "run at only ~20k-35k tokens/s on one CPU core (seconds per commaVQ segment, "
             "too slow as a CPU default); cm with --model mixes that model in.")(f)


def _solid_option(f):
    return click.option(
        "--solid-group", "solid", type=click.IntRange(1, 1 << 20), default=1,
        show_default=True, metavar="N",
        help="Code runs of up to N consecutive segments as one solid group: the predictor's "
             "state carries across them (better rates); groups stay independent and "
             "parallel, and a group decodes as a whole.")(f)


def _options(predictor, vocab, frame_shape, model, device="cpu", params=(), solid=1):
    from nacc.codec import Options

    params = dict(params)
    if model:
        params["model"] = model
    return Options.of(predictor, params, vocab, frame_shape, device, solid)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nacc", message="nacc %(version)s")
def main():
    """nacc: lossless compression of VQ token videos (commaVQ and friends)."""


# -- input / output helpers -------------------------------------------------------------
def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _segments_of(path: str):
    """``(name, NpyFile)`` pairs of a .npy file, a directory of them, an .npz, a commaVQ
    webdataset shard (.tar/.tar.gz, streamed), or stdin, verified whole; see nacc.inputs.
    NaccError (or OSError from the file system) for anything wrong with it."""
    from nacc import inputs

    return inputs.segments_of(path)


def _files_read(src: str, segments) -> list[str]:
    """The files compressing ``src`` read: the file itself, or a directory's .npy files."""
    if src == "-":
        return []
    if Path(src).is_dir():
        return [os.path.join(src, name) for name, _ in segments]
    return [src]


def _check_not_an_input(dest: str, files: list[str]) -> None:
    """NaccError if ``dest`` is one of ``files`` however spelled (symlink, hard link,
    ``./``, absolute path): writing it would replace an input."""
    if dest == "-" or not os.path.exists(dest):
        return
    for f in files:
        try:
            same = os.path.samefile(dest, f)
        except OSError:
            continue
        if same:
            raise NaccError(f"output {dest} is the input {f} (choose another -o)")


def _check_archive(dest: str, segments, threads: int, override, device: str) -> None:
    """Decode the archive written at ``dest``; NaccError unless it gives back exactly the
    names and bytes of ``segments`` (the check ``--rm`` needs before removing anything)."""
    from nacc import codec, npyio

    restored = codec.decompress_archive(Path(dest).read_bytes(), threads, override, device)
    n = 0
    for (name, npy), (name2, data) in zip(segments, restored):
        if name != name2 or data != npyio.npy_bytes(npy):
            raise NaccError(f"{dest} does not decode to segment {name!r}; inputs kept")
        n += 1
    if n != len(segments) or next(restored, None) is not None:
        raise NaccError(f"{dest} does not decode to {len(segments)} segments; inputs kept")


def _progress(items, total: int, rep: Reporter, what: str):
    """tqdm over ``items`` on stderr when it is a terminal and there is more than one."""
    if total <= 1 or rep.level < 0 or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit="seg", file=sys.stderr, leave=False)


def _rate_line(n_tokens: int, n_bytes: int) -> str:
    return (f"rate {n_tokens * 10 / 8 / n_bytes:.4f}, "
            f"{8 * n_bytes / n_tokens:.4f} bits/token")


def _n_tokens(segments) -> int:
    return sum(int(s.array.size) for _, s in segments)


# -- compress ---------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output file (all inputs in one archive).")
@_output_options
@click.option("--rm", "remove", is_flag=True,
              help="Remove input files once their archive is written and decodes to them.")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes over independent blocks; output does not depend on it.")
@_engine_options
@_solid_option
@_predictor_options
@_verbosity
def compress(inputs, output, to_stdout, force, keep, remove, threads, predictor, vocab,
             frame_shape, model, device, params, verbose, quiet, engine, address, solid):
    """Compress .npy token videos (files, directories, .npz, webdataset shards, or - for
    stdin).  Each input is read and verified whole before anything is written; with --rm
    an input file is removed only after its archive was written and decoded back to it
    (directories are kept)."""
    from nacc import codec

    rep = Reporter(verbose, quiet)
    if keep and remove:
        raise click.UsageError("-k and --rm exclude each other")
    if remove and (to_stdout or output == "-" or (inputs == ("-",) and output is None)):
        raise click.UsageError("--rm needs an output file: an archive on stdout cannot be "
                               "read back to check it")
    if engine == "ray" or address is not None:
        from nacc import distributed

        distributed.run_cli(click.get_current_context())
    opts = _options(predictor, vocab, frame_shape, model, device, params, solid)
    if to_stdout or (inputs == ("-",) and output is None):
        output = "-"
    if output is not None:
        jobs = [(output, list(inputs))]
    else:
        jobs = [(str(Path(i.rstrip("/"))) + SUFFIX, [i]) for i in inputs]
    for dest, srcs in jobs:
        where = srcs[0] if len(srcs) == 1 else dest
        try:
            if dest != "-" and Path(dest).exists() and not force:
                raise NaccError(f"{dest} already exists (use -f to overwrite)")
            segments, read = [], []
            for src in srcs:
                where = src
                segs = _segments_of(src)
                segments += segs
                read += _files_read(src, segs)
            where = srcs[0] if len(srcs) == 1 else dest
            names = [n for n, _ in segments]
            if len(set(names)) != len(names):
                raise NaccError("two inputs share a segment name; compress them separately")
            _check_not_an_input(dest, read)
            t0 = time.perf_counter()
            chunks = codec.compress_segments(segments, opts, threads)
            n_blocks = len(codec.plan_blocks(segments, opts))
            n = write_atomic(dest, _progress(chunks, n_blocks + 1, rep, "compress"), force)
            rep.info(f"{where}: {_rate_line(_n_tokens(segments), n)}, {n} bytes -> {dest}"
                     + (f" in {time.perf_counter() - t0:.2f} s" if rep.level >= 1 else ""))
            if remove:
                try:
                    _check_archive(dest, segments, threads, {"model": model} if model else None,
                                   device)
                except NaccError:
                    Path(dest).unlink(missing_ok=True)
                    raise
                for src in srcs:
                    if src != "-" and Path(src).is_file():
                        Path(src).unlink()
        except (NaccError, OSError) as e:
            rep.failure(where, e)
    rep.exit()


# -- decompress -------------------------------------------------------------------------
# inputs that hold several segments; their archives decompress into a folder of that stem
CONTAINER_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".npz")


def _archive_output(src: str, output: str | None, n_segments: int) -> tuple[str, bool]:
    """``(destination, is_folder)`` for an archive: X.npy.nacc -> file X.npy; an archive of
    a directory, shard or .npz, or of several inputs -> a folder named without the suffixes."""
    if src == "-" and output is None:
        return "-", n_segments > 1
    if output is None and not src.endswith(SUFFIX):
        raise NaccError(f"unknown suffix (expected {SUFFIX}); use -o to name the output")
    dest = output if output is not None else src[: -len(SUFFIX)]
    stem = next((dest[: -len(x)] for x in CONTAINER_SUFFIXES if dest.endswith(x)), None)
    if n_segments == 1 and stem is None:
        return dest, False
    return (stem if stem and output is None else dest), True


def _safe_member(root: Path, name: str) -> Path:
    """``root / name`` for a member name the container accepted (checked again here)."""
    from nacc import container

    why = container.check_name(name)
    if why is not None:
        raise NaccError(f"unsafe segment name {name!r} in archive: {why}")
    return root / name


def _is_dir_nofollow(p: Path) -> bool:
    import stat

    return stat.S_ISDIR(os.lstat(p).st_mode)


def _check_folder_target(root: Path, names: list[str], force: bool) -> None:
    """Refuse, before decoding, what writing ``names`` under ``root`` would do wrong:
    overwrite a file without ``force``, replace a folder, or follow a symlink (or pass a
    file) below ``root`` out of it.  ``root`` itself may be a symlink the user named."""
    if not root.exists():
        if os.path.lexists(root):
            raise NaccError(f"{root} is a broken symlink")
        return
    if not root.is_dir():
        raise NaccError(f"{root} exists and is not a folder")
    for name in names:
        parts = name.split("/")
        p = root
        for part in parts[:-1]:
            p = p / part
            if not os.path.lexists(p):
                break
            if not _is_dir_nofollow(p):
                raise NaccError(f"{p} is a symlink or a file; refusing to write through it")
        else:
            t = root / name
            if os.path.lexists(t):
                if not os.path.islink(t) and t.is_dir():
                    raise NaccError(f"{t} is a folder")
                if not force:
                    raise NaccError(f"{t} already exists (use -f to overwrite)")


def _merge_into(root: Path, tmp: Path, names: list[str], undo: list) -> None:
    """Move the files ``names`` from ``tmp`` into the existing folder ``root``, opening
    every folder below ``root`` without following symlinks; ``undo`` collects the paths
    created (folders and new files), in order."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    root_fd = os.open(root, flags)
    try:
        for name in names:
            parts = name.split("/")
            fds = [root_fd]
            try:
                for i, part in enumerate(parts[:-1]):
                    try:
                        os.mkdir(part, 0o777, dir_fd=fds[-1])
                        undo.append(root.joinpath(*parts[:i + 1]))
                    except FileExistsError:
                        pass
                    try:
                        fds.append(os.open(part, flags | os.O_NOFOLLOW, dir_fd=fds[-1]))
                    except OSError:
                        raise NaccError(f"{root / name}: a symlink or file on its path; "
                                        "refusing to write through it") from None
                try:
                    os.lstat(parts[-1], dir_fd=fds[-1])
                    existed = True
                except FileNotFoundError:
                    existed = False
                os.replace(tmp / name, parts[-1], dst_dir_fd=fds[-1])
                if not existed:
                    undo.append(root / name)
            finally:
                for fd in fds[1:]:
                    os.close(fd)
    finally:
        os.close(root_fd)


def _roll_back(undo: list) -> None:
    """Remove what ``_merge_into`` created, newest first."""
    for p in reversed(undo):
        try:
            if _is_dir_nofollow(p):
                p.rmdir()
            else:
                p.unlink()
        except OSError:
            pass
    undo.clear()


def write_folder(root: Path, names: list[str], items, force: bool) -> int:
    """Write the ``(name, bytes)`` ``items`` (in the order of ``names``) as files under
    ``root``, all or nothing: each is written as it comes (memory does not grow with their
    number) into a temporary folder beside ``root``, which is renamed to ``root`` at the
    end, or, when ``root`` exists, whose files are then moved into it.  On any failure,
    Ctrl-C, SIGTERM or SIGHUP, everything written is removed.  Returns the file count."""
    _check_folder_target(root, names, force)
    made_parents = []
    parent = root.parent
    while not parent.exists():
        made_parents.append(parent)
        parent = parent.parent
    undo: list = []
    tmp = None
    with signals_raise():
        try:
            for p in reversed(made_parents):
                p.mkdir()
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp",
                                        dir=root.parent))
            n = 0
            mode = 0o666 & ~umask()
            for (name, data), want in zip(items, names):
                if name != want:
                    raise NaccError(f"segment {name!r} decoded out of order")
                path = _safe_member(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "xb") as f:
                    f.write(data)
                os.chmod(path, mode)
                n += 1
            if n != len(names):
                raise NaccError(f"{n} of {len(names)} segments decoded")
            if not os.path.lexists(root):
                os.chmod(tmp, 0o777 & ~umask())
                os.rename(tmp, root)
                tmp = None
            else:
                _merge_into(root, tmp, names, undo)
                undo.clear()
            made_parents = []
        except BaseException:
            _roll_back(undo)
            raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for p in made_parents:
                try:
                    p.rmdir()
                except OSError:
                    pass
    return n


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file, or folder for a multi-segment archive.")
@_output_options
@click.option("--rm", "remove", is_flag=True, help="Remove archives after success.")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--model", type=click.Path(), default=None,
              help="Model folder, if it moved since compression (its hash must match).")
@_engine_options
@_device_option
@_verbosity
def decompress(inputs, output, to_stdout, force, keep, remove, threads, model, device, verbose,
               quiet, engine, address):
    """Restore the original .npy files, byte for byte."""
    from nacc import codec, container

    rep = Reporter(verbose, quiet)
    if output is not None and len(inputs) > 1:
        raise click.UsageError("-o takes a single input")
    if engine == "ray" or address is not None:
        from nacc import distributed

        distributed.run_cli(click.get_current_context())
    override = {"model": model} if model else None
    for src in inputs:
        try:
            buf = _read_input(src)
            header, blocks = container.read_archive(buf)    # every check before any work
            dest, folder = _archive_output(src, output, header.n_segments)
            dest = "-" if to_stdout else dest
            t0 = time.perf_counter()
            if not folder or dest == "-":
                if header.n_segments > 1:
                    raise NaccError("a multi-segment archive cannot go to stdout")
                if dest != "-" and Path(dest).exists() and not force:
                    raise NaccError(f"{dest} already exists (use -f to overwrite)")
                (name, data), = codec.decompress_archive(buf, threads, override, device)
                write_atomic(dest, [data], force)
            else:
                names = [seg.name for seg in container.segments_of(blocks)]
                del blocks
                items = _progress(codec.decompress_archive(buf, threads, override, device),
                                  header.n_segments, rep, "decompress")
                write_folder(Path(dest), names, items, force)
            rep.info(f"{src}: {header.n_segments} segment(s) -> {dest}"
                     + (f" in {time.perf_counter() - t0:.2f} s" if rep.level >= 1 else ""),
                     level=1)
            if remove and src != "-":
                Path(src).unlink()
        except Exception as e:  # noqa: BLE001 (one error path for any damaged archive)
            rep.failure(src, e)
    rep.exit()


# -- test / verify / info ---------------------------------------------------------------
@main.command("test")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--model", type=click.Path(), default=None, help="Model folder, if it moved.")
@_device_option
@_verbosity
def test_cmd(inputs, threads, model, device, verbose, quiet):
    """Decode archives and check every checksum; write nothing."""
    from nacc import codec

    rep = Reporter(verbose, quiet)
    override = {"model": model} if model else None
    for src in inputs:
        try:
            n = sum(1 for _ in codec.decompress_archive(_read_input(src), threads, override,
                                                        device))
            rep.info(f"{src}: OK ({n} segment(s))", level=1)
        except Exception as e:  # noqa: BLE001 (one error path for any damaged archive)
            rep.failure(src, e)
    rep.exit()


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@_solid_option
@_predictor_options
@_verbosity
def verify(inputs, threads, predictor, vocab, frame_shape, model, device, params, verbose,
           quiet, solid):
    """Compress and decompress in memory; report rate, bits/token and times; exit 1 on any
    mismatch."""
    from nacc import codec, npyio

    rep = Reporter(verbose, quiet)
    opts = _options(predictor, vocab, frame_shape, model, device, params, solid)
    for src in inputs:
        try:
            segments = _segments_of(src)
            t0 = time.perf_counter()
            archive = b"".join(codec.compress_segments(segments, opts, threads))
            t1 = time.perf_counter()
            restored = list(codec.decompress_archive(archive, threads, device=device))
            t2 = time.perf_counter()
            for (name, npy), (name2, data) in zip(segments, restored):
                if name != name2 or data != npyio.npy_bytes(npy):
                    raise NaccError(f"round trip mismatch in segment {name!r}")
            n_tok = _n_tokens(segments)
            if rep.level >= 0:
                click.echo(f"{src}: OK {opts.predictor_name()} {_rate_line(n_tok, len(archive))}, "
                           f"{len(archive)} bytes, encode {t1 - t0:.3f} s, "
                           f"decode {t2 - t1:.3f} s, {n_tok} tokens")
        except (NaccError, OSError) as e:
            rep.failure(src, e)
    rep.exit()


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--predictors", "list_predictors", is_flag=True, help="List predictors.")
@_verbosity
def info(inputs, list_predictors, verbose, quiet):
    """Show archive headers, rates and bits/token (reads headers only)."""
    from nacc import container
    from nacc.predictors import available

    rep = Reporter(verbose, quiet)
    if list_predictors:
        click.echo("\n".join(available()))
    for src in inputs:
        try:
            buf = _read_input(src)
            header, blocks = container.read_archive(buf)
            n_tok = sum(b.n_tokens for b in blocks)
            rate = _rate_line(n_tok, len(buf)) if n_tok else "no tokens"
            lines = [f"{src}: nacc format {buf[4]}, predictor {header.predictor} "
                     f"{header.params}, model {header.model_hash.hex()[:16] or '-'}, "
                     f"P={header.precision}, {header.n_segments} segment(s) in "
                     f"{len(blocks)} block(s), {len(buf)} bytes, {rate}"]
            for b in blocks:
                coding = ", stored uniform" if b.coding == container.UNIFORM else ""
                first = b.segments[0]
                what = (f"{first.name}: {first.descr} {first.shape}" if len(b.segments) == 1
                        else f"solid group of {len(b.segments)} segments")
                lines.append(f"  {what}, frame {b.frame_shape[0]}x{b.frame_shape[1]}, vocab "
                             f"{b.vocab}{coding}, {4 * len(b.words)} payload bytes, "
                             f"{8 * 4 * len(b.words) / b.n_tokens:.4f} bits/token")
                if len(b.segments) > 1:
                    lines += [f"    {s.name}: {s.descr} {s.shape}" for s in b.segments]
            click.echo("\n".join(printable(line) for line in lines))
        except Exception as e:  # noqa: BLE001 (one error path for any damaged archive)
            rep.failure(src, e)
    if not inputs and not list_predictors:
        raise click.UsageError("give archives, or --predictors")
    rep.exit()


if __name__ == "__main__":
    main()
