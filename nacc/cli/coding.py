"""The coding commands: compress, decompress, test, verify, info.

``compress X`` writes ``X.nacc`` beside X; ``decompress X.nacc`` writes X.  A directory
input becomes one archive of all its ``.npy`` files.  ``-`` is stdin/stdout.  Outputs are
written to a temporary file and renamed, never over an existing file without ``-f``, never
as binary to a terminal (``nacc.fileio``).
"""
from __future__ import annotations

import os
import time

import click

from nacc import fileio
from nacc.cli.common import (
    SUFFIX,
    Reporter,
    device_option,
    engine_options,
    model_override,
    n_tokens,
    options,
    output_options,
    predictor_options,
    printable,
    progress,
    rate_line,
    read_input,
    segments_of,
    solid_option,
    verbosity,
)
from nacc.errors import NaccError
from nacc.fileio import write_atomic, write_folder


def _files_read(src: str, segments) -> list[str]:
    """The files compressing ``src`` read: the file itself, or a directory's .npy files."""
    from pathlib import Path  # in the functions that use it: nacc decompress need not

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


def _check_archive(dest: str, segments, threads: int, override, device: str,
                   ident=None) -> None:
    """Decode the archive written at ``dest`` (still the file ``ident`` this run wrote);
    NaccError unless it gives back exactly the names and bytes of ``segments`` (the check
    ``--rm`` needs before removing anything)."""
    from nacc import codec, npyio

    restored = codec.decompress_archive(fileio.read_written(dest, ident), threads, override,
                                        device)
    n = 0
    for (name, npy), (name2, data) in zip(segments, restored):
        if name != name2 or data != npyio.npy_bytes(npy):
            raise NaccError(f"{dest} does not decode to segment {name!r}; inputs kept")
        n += 1
    if n != len(segments) or next(restored, None) is not None:
        raise NaccError(f"{dest} does not decode to {len(segments)} segments; inputs kept")


def _block_progress(chunks, n_blocks: int, rep: Reporter):
    """``chunks`` (the archive header, then one piece per block) with a progress bar that
    counts the blocks only."""
    it = iter(chunks)
    yield next(it)
    yield from progress(it, n_blocks, rep, "compress", unit="block")


# -- compress ---------------------------------------------------------------------------
@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output file (all inputs in one archive).")
@output_options
@click.option("--rm", "remove", is_flag=True,
              help="Remove input files once their archive is written and decodes to them.")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes over independent blocks; output does not depend on it.")
@engine_options
@solid_option
@predictor_options
@verbosity
def compress(inputs, output, to_stdout, force, keep, remove, threads, predictor, vocab,
             frame_shape, model, device, params, verbose, quiet, engine, address, solid):
    """Compress .npy token videos (files, directories, .npz, webdataset shards, or - for
    stdin).  Each input is read and verified whole before anything is written; with --rm
    an input file is removed only after its archive was written and decoded back to it
    (directories are kept)."""
    from pathlib import Path

    from nacc import codec, npyio

    rep = Reporter(verbose, quiet)
    if keep and remove:
        raise click.UsageError("-k and --rm exclude each other")
    if remove and (to_stdout or output == "-" or (inputs == ("-",) and output is None)):
        raise click.UsageError("--rm needs an output file: an archive on stdout cannot be "
                               "read back to check it")
    # --engine ray: -o ARCHIVE spreads the segments over Ray workers (the same pieces as
    # codec.compress_segments); otherwise one Ray task per input runs this command
    spread = engine == "ray" and output not in (None, "-") and not to_stdout
    if (engine == "ray" or address is not None) and not spread:
        from nacc import distributed

        distributed.run_cli(click.get_current_context())
    opts = options(predictor, vocab, frame_shape, model, device, params, solid)
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
            segments, read, states, written, contents = [], [], {}, [], {}
            for src in srcs:
                where = src
                states[src] = fileio.file_state(src)
                segs = segments_of(src)
                if remove and src != "-" and _not_restored(src):
                    raise NaccError(f"--rm: the archive restores the token arrays of {src}, "
                                    "not the file itself; compress it without --rm")
                if remove and len(segs) == 1 and not Path(src).is_dir():
                    contents[src] = npyio.npy_bytes(segs[0][1])   # what --rm may remove
                segments += segs
                read += _files_read(src, segs)
            where = srcs[0] if len(srcs) == 1 else dest
            names = [n for n, _ in segments]
            if len(set(names)) != len(names):
                raise NaccError("two inputs share a segment name; compress them separately")
            _check_not_an_input(dest, read)
            t0 = time.perf_counter()
            plan = codec.plan_blocks(segments, opts)
            if spread:
                from nacc import distributed

                chunks = distributed.compress_segments(segments, opts, threads, plan, address)
            else:
                chunks = codec.compress_segments(segments, opts, threads, plan)
            try:
                n = write_atomic(dest, _block_progress(chunks, len(plan), rep), force,
                                 protect=read, written=written)
            except OSError:
                where = dest        # the output could not be written (the inputs were read)
                raise
            rep.summary(f"{where}: {rate_line(n_tokens(segments), n)}, {n} bytes -> "
                        f"{'(stdout)' if dest == '-' else dest}"
                        + (f" in {time.perf_counter() - t0:.2f} s" if rep.level >= 1 else ""))
            if remove:
                try:
                    _check_archive(dest, segments, threads, model_override(model), device,
                                   written[0] if written else None)
                except NaccError:
                    fileio.unlink_written(dest, written[0] if written else None)
                    raise
                for src in srcs:
                    if src != "-" and Path(src).is_file():
                        fileio.remove_if_unchanged(src, states[src], contents.get(src))
        except (NaccError, OSError) as e:
            rep.failure(where, e)
    rep.exit()


def _not_restored(src: str) -> bool:
    """True for an input file whose archive does not restore it byte for byte (a shard or
    an .npz: the archive holds their token arrays only); --rm keeps those."""
    from pathlib import Path

    from nacc import inputs

    return not Path(src).is_dir() and (inputs.is_shard(src) or src.endswith(".npz"))


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


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file, or folder for a multi-segment archive.")
@output_options
@click.option("--rm", "remove", is_flag=True, help="Remove archives after success.")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--model", type=click.Path(), default=None,
              help="Model folder or zoo name, for a model outside the zoo that moved since "
                   "compression (its hash must match).")
@engine_options
@device_option
@verbosity
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
    override = model_override(model)
    for src in inputs:
        where = src
        try:
            state = fileio.file_state(src) if src != "-" else None
            buf = read_input(src)
            header, blocks = container.read_archive(buf)    # every check before any work
            dest, folder = _archive_output(src, output, header.n_segments)
            dest = "-" if to_stdout else dest
            t0 = time.perf_counter()
            if not folder or dest == "-":
                if header.n_segments > 1:
                    raise NaccError("a multi-segment archive cannot go to stdout")
                if dest != "-" and os.path.exists(dest) and not force:
                    raise NaccError(f"{dest} already exists (use -f to overwrite)")
                (name, data), = codec.decompress_blocks(header, blocks, threads, override,
                                                        device)
                where = dest        # an OSError now is the output's (the input was read)
                write_atomic(dest, [data], force, protect=[src])
            else:
                names = [seg.name for seg in container.segments_of(blocks)]
                items = progress(codec.decompress_blocks(header, blocks, threads, override,
                                                         device),
                                 header.n_segments, rep, "decompress")
                from pathlib import Path

                # errors: the archive's names
                write_folder(Path(dest), names, items, force, protect=[src])
            where = src
            rep.summary(f"{src}: {header.n_segments} segment(s) -> "
                        f"{'(stdout)' if dest == '-' else dest}"
                        + (f" in {time.perf_counter() - t0:.2f} s" if rep.level >= 1 else ""))
            if remove and src != "-":
                fileio.remove_if_unchanged(src, state)
        except Exception as e:  # noqa: BLE001 (one error path for any damaged archive)
            rep.failure(where if isinstance(e, OSError) else src, e)
    rep.exit()


# -- test / verify / info ---------------------------------------------------------------
@click.command("test")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--model", type=click.Path(), default=None,
              help="Model folder or zoo name, if it moved (see decompress).")
@device_option
@verbosity
def test_cmd(inputs, threads, model, device, verbose, quiet):
    """Decode archives and check every checksum; write nothing."""
    from nacc import codec

    rep = Reporter(verbose, quiet)
    override = model_override(model)
    for src in inputs:
        try:
            n = sum(1 for _ in codec.decompress_archive(read_input(src), threads, override,
                                                        device))
            rep.summary(f"{src}: OK ({n} segment(s))")
        except Exception as e:  # noqa: BLE001 (one error path for any damaged archive)
            rep.failure(src, e)
    rep.exit()


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@solid_option
@predictor_options
@verbosity
def verify(inputs, threads, predictor, vocab, frame_shape, model, device, params, verbose,
           quiet, solid):
    """Compress and decompress in memory; report rate, bits/token and times; exit 1 on any
    mismatch."""
    from nacc import codec, npyio

    rep = Reporter(verbose, quiet)
    opts = options(predictor, vocab, frame_shape, model, device, params, solid)
    for src in inputs:
        try:
            segments = segments_of(src)
            t0 = time.perf_counter()
            archive = b"".join(codec.compress_segments(segments, opts, threads))
            t1 = time.perf_counter()
            restored = list(codec.decompress_archive(archive, threads, device=device))
            t2 = time.perf_counter()
            for (name, npy), (name2, data) in zip(segments, restored):
                if name != name2 or data != npyio.npy_bytes(npy):
                    raise NaccError(f"round trip mismatch in segment {name!r}")
            n_tok = n_tokens(segments)
            if rep.level >= 0:
                click.echo(f"{src}: OK {opts.predictor_name()} {rate_line(n_tok, len(archive))}, "
                           f"{len(archive)} bytes, encode {t1 - t0:.3f} s, "
                           f"decode {t2 - t1:.3f} s, {n_tok} tokens")
        except (NaccError, OSError) as e:
            rep.failure(src, e)
    rep.exit()


@click.command()
@click.argument("inputs", nargs=-1)
@click.option("--predictors", "list_predictors", is_flag=True, help="List predictors.")
@verbosity
def info(inputs, list_predictors, verbose, quiet):
    """Show archive headers, rates and bits/token (reads headers only)."""
    from nacc import container
    from nacc.predictors import available

    rep = Reporter(verbose, quiet)
    if list_predictors:
        click.echo("\n".join(available()))
    for src in inputs:
        try:
            buf = read_input(src)
            header, blocks = container.read_archive(buf)
            n_tok = sum(b.n_tokens for b in blocks)
            rate = rate_line(n_tok, len(buf)) if n_tok else "no tokens"
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

