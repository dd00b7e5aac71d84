"""``nacc bench``: the command over ``nacc.compare`` (nacc and general-purpose codecs side
by side, on the same inputs, in one run)."""
from __future__ import annotations

import json
import sys

import click

from nacc.cli.common import VOCAB, frame_shape_callback
from nacc.compare import DEFAULT_AGAINST, plot, pyplot, run_bench
from nacc.errors import NaccError, OptionError
from nacc.fileio import write_atomic
from nacc.spec import DEFAULT_VOCAB


def _write_text(path: str, text: str) -> None:
    write_atomic(path, [text.encode()], True)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--against", default=DEFAULT_AGAINST, show_default=True, metavar="LIST",
              help="General-purpose codecs, comma separated ('none' for nacc only).")
@click.option("--predictor", default="", metavar="LIST",
              help="nacc predictor(s), comma separated; the first is the time reference "
                   "[default predictor].")
@click.option("--model", type=click.Path(), default=None, metavar="DIR",
              help="Model folder for the predictors that need one (transformer, lstm, gpt).")
@click.option("--vocab", type=VOCAB, default=DEFAULT_VOCAB, show_default=True)
@click.option("--frame-shape", "fs", callback=frame_shape_callback, default=None, metavar="HxW",
              help="Frame shape for (T, N) arrays [8x16 when N=128].")
@click.option("-T", "--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="nacc processes over segments.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
              show_default=True)
@click.option("--json", "json_out", default=None, metavar="F", help="Write results as JSON.")
@click.option("--markdown", default=None, metavar="F", help="Write the table as Markdown.")
@click.option("--plot", "plot_out", default=None, metavar="F.png",
              help="Bits per frame and per token position (needs matplotlib).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def bench(inputs, against, predictor, model, vocab, fs, threads, device, json_out, markdown,
          plot_out, quiet):
    """Compare nacc with xz, lzma, zstd, brotli, bz2 and zpaq on the same inputs."""
    from nacc.kernels.cpu import compile_notice

    compile_notice.enable(not quiet, quiet)     # as every command: in pipes too, not with -q
    keys = [] if against.strip() == "none" else [k.strip() for k in against.split(",")
                                                  if k.strip()]
    preds = [p.strip() for p in predictor.split(",")] if predictor else [""]
    try:
        if plot_out:
            pyplot()
        report = run_bench(list(inputs), keys, preds, vocab, fs, threads, device,
                           want_bits=bool(plot_out), quiet=quiet, model=model)
        click.echo(report.text())
        if json_out:
            _write_text(json_out, json.dumps(report.as_json(), indent=1) + "\n")
        if markdown:
            _write_text(markdown, report.markdown())
        if plot_out:
            plot(report, plot_out)
    except OptionError as e:
        raise click.BadParameter(str(e), param_hint=f"'{e.option}'" if e.option else None) \
            from None
    except NaccError as e:
        msg = str(e)
        where, _, rest = msg.partition(": ")
        if where in inputs:
            click.echo(f"nacc: {msg}", err=True)
        else:
            click.echo(f"nacc: bench: {msg}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"nacc: {e.filename or 'bench'}: {e.strerror or e}", err=True)
        sys.exit(1)
