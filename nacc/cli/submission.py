"""``nacc submission``: the command over ``nacc.submission`` (a commaVQ challenge zip).

With ``--predictor gpt`` the model folder stays out of the zip: ``--checkpoint`` (default
``gpt2m/pytorch_model.bin``, the commaVQ repository's submodule, relative to the folder
``decompress.py`` runs from) says where ``decompress.py`` finds the public checkpoint it
rebuilds the model from; the build checks first that it rebuilds exactly ``--model``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from nacc.cli.common import VOCAB
from nacc.errors import NaccError
from nacc.gpt.source import COMMAVQ_GPT2M, is_url, weights_digest
from nacc.spec import DEFAULT_VOCAB
from nacc.submission import (
    SELFTEST_SEGMENTS,
    build_zip,
    check_names,
    gpt_source,
    plan,
    self_test,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="The zip to write, e.g. submission.zip.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--predictor", default=None, metavar="NAME", help="Predictor [cm].")
@click.option("--model", type=click.Path(), default=None,
              help="Model folder, for predictors that need one (it goes into the zip, "
                   "except gpt's: see --checkpoint).")
@click.option("--checkpoint", default=None, metavar="PATH|URL",
              help="gpt only: the public checkpoint decompress.py rebuilds --model from "
                   "(a path, relative ones also tried from the folder above the unzipped "
                   "submission, or a file/http(s) URL) [gpt2m/pytorch_model.bin: commaVQ's "
                   "gpt2m, from the commaVQ repository's root].")
@click.option("--vocab", type=VOCAB, default=DEFAULT_VOCAB, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
              show_default=True, help="Where tables are computed; the zip is identical.")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes over segments; the zip does not depend on it.")
@click.option("--minify/--no-minify", default=True, show_default=True,
              help="Strip docstrings and comments from the shipped nacc source.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def submission(inputs, output, force, predictor, model, checkpoint, vocab, device, threads,
               minify, quiet):
    """Write a commaVQ challenge zip: compressed segments + decompress.py + nacc source."""
    from nacc import codec, npyio
    from nacc import inputs as ninputs
    from nacc.fileio import write_atomic

    where = output
    try:
        if Path(output).exists() and not force:
            raise NaccError(f"{output} already exists (use -f to overwrite)")
        segments = []
        for src in inputs:
            where = src
            segments += ninputs.segments_of(src)
        where = output
        check_names([n for n, _ in segments])
        params = (("model", str(Path(model).resolve())),) if model else ()
        opts = codec.Options(predictor or "", params, vocab, None, device)
        gpt = None
        if opts.predictor_name() == "gpt" and model:
            gpt = _checked_source(model, checkpoint or COMMAVQ_GPT2M, output, quiet)
        elif checkpoint is not None:
            raise click.UsageError("--checkpoint is for --predictor gpt with --model")
        archive = b"".join(codec.compress_segments(segments, opts, threads))
        data = build_zip(archive, plan(archive, minify, gpt))
        if not quiet:
            click.echo(f"{output}: self-test: decoding {SELFTEST_SEGMENTS} segment(s) with "
                       "the zip alone in a clean environment (compiles its kernels)", err=True)
        local = gpt is not None and not is_url(gpt["checkpoint"])
        t_test = self_test(data, [(name, npyio.npy_bytes(npy)) for name, npy in segments],
                           cwd=Path.cwd() if local else None,
                           forbid=(Path(model),) if gpt else ())
        n = write_atomic(output, [data], force)
    except NaccError as e:
        click.echo(f"nacc: {where}: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"nacc: {e.filename or where}: {e.strerror or e}", err=True)
        sys.exit(1)
    if not quiet:
        n_tok = sum(int(npy.array.size) for _, npy in segments)
        click.echo(f"{output}: {len(segments)} segment(s), {n_tok} tokens, {n} bytes "
                   f"(archive {len(archive)}, decompress.py + nacc source + models "
                   f"{n - len(archive)}), rate {n_tok * 10 / 8 / n:.4f}; self-test passed "
                   f"({SELFTEST_SEGMENTS} segment(s) from the zip alone in {t_test:.1f} s)",
                   err=True)


def _checked_source(model, checkpoint: str, output: str, quiet: bool) -> dict:
    """``nacc.submission.gpt_source`` for the folder ``model``, with a line saying so."""
    if not quiet:
        click.echo(f"{output}: checking that {checkpoint} rebuilds the gpt model {model}",
                   err=True)
    return gpt_source(model, checkpoint, weights_digest(Path(model)))
