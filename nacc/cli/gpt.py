"""``nacc import-gpt CHECKPOINT -o DIR``: a GPT-2 checkpoint in commaVQ's published layout
(``pytorch_model.bin`` or ``.safetensors``) to a ``gpt`` model folder (``nacc.gpt``).

A thin command over ``nacc.gpt.importer.import_gpt``: it refuses an existing output
without ``-f``, writes the folder beside its destination and renames it into place (an
error leaves nothing behind), and reports a bad checkpoint in one line, exit 1.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import click


@click.command("import-gpt")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, metavar="DIR", help="Model folder to write.")
@click.option("--heads", type=click.IntRange(1, 1024), default=None,
              help="Attention heads (not stored in a checkpoint; default 16, gpt2m's, for "
                   "width 1024 only).")
@click.option("--act-bits", type=click.IntRange(8, 12), default=8, show_default=True,
              help="Bits of the integer activations (the spec's A).")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output folder.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def import_gpt_command(checkpoint, output, heads, act_bits, force, quiet):
    """Import a GPT-2 checkpoint (commaVQ's gpt2m layout) as integer model folder DIR."""
    from nacc.errors import NaccError
    from nacc.gpt.importer import import_gpt

    dest = Path(output)
    if dest.exists() and not force:
        click.echo(f"nacc import-gpt: {dest} already exists (use -f to replace it)", err=True)
        sys.exit(1)
    t0 = time.time()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        digest = import_gpt(checkpoint, tmp, heads=heads, act_bits=act_bits)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            dest.rename(old)
            tmp.rename(dest)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(dest)
    except (NaccError, OSError) as e:
        click.echo(f"nacc import-gpt: {e}", err=True)
        sys.exit(1)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        from nacc.gpt.modelfile import read_config

        cfg = read_config(dest)[0]
        click.echo(f"{dest}: {cfg.n_layer} layers x {cfg.d_model}, {cfg.n_head} heads, MLP "
                   f"{cfg.d_ff}, {cfg.vocab} codes + BOS, {cfg.n_positions} positions, "
                   f"A = {cfg.act_bits}; weights sha256 {digest[:16]}; "
                   f"{time.time() - t0:.1f} s", err=True)
