"""``nacc train``: train a neural predictor on a token corpus and export it to integers."""
from __future__ import annotations

import sys

import click


@click.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--arch", type=click.Choice(["transformer", "lstm"]), default="transformer",
              show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="model folder to write (models/NAME)")
@click.option("--steps", type=int, default=None, help="optimizer steps [400]")
@click.option("--batch-size", type=int, default=8, show_default=True, help="clips per step")
@click.option("--clip-len", type=int, default=8, show_default=True, help="frames per clip")
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--val-frac", type=float, default=0.1, show_default=True,
              help="held-out fraction (whole segments, or the last frames of a single one)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vocab", type=click.IntRange(2, 65536), default=1024, show_default=True,
              help="vocabulary size: token ids are 0..vocab-1")
@click.option("--preset", type=click.Choice(["transformer", "lstm", "tiny"]), default=None,
              help="model size preset [the arch's own]")
@click.option("--qat-frac", type=float, default=0.3, show_default=True,
              help="final fraction of the steps trained with fake quantization")
@click.option("--eval-every", type=int, default=100, show_default=True,
              help="steps between validation evaluations")
@click.option("--motion-clamp", type=click.IntRange(0, 127), default=0, show_default=True,
              help="head: per-shift motion counts, clamped to this (0: off)")
@click.option("--subst", is_flag=True,
              help="head: learned V x V substitution table between similar codes (needs "
                   "much data; overfits a few hundred frames)")
@click.option("--untied-subst", is_flag=True,
              help="with --subst: let a -> b and b -> a differ (more data still)")
@click.option("--copy-bias", is_flag=True, help="head: learned per-code copy term")
@click.option("--copy-max", is_flag=True,
              help="head: a code in several candidate slots gets the largest bonus, not the sum")
@click.option("--patience", type=int, default=0, show_default=True,
              help="stop after this many evaluations without a better validation (0: never)")
@click.option("--resume", is_flag=True, help="continue from OUT/checkpoint.pt")
@click.option("--skip-bad", is_flag=True, help="skip unreadable/invalid inputs with a warning")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def train(data, arch, out, steps, batch_size, clip_len, lr, device, val_frac, seed, vocab,
          preset, qat_frac, eval_every, motion_clamp, subst, untied_subst, copy_bias, copy_max,
          patience,
          resume, skip_bad, quiet):
    """Train a causal neural predictor on DATA (.npy, .npz, directories, commaVQ shards)
    and write an integer model folder, used as `--predictor ARCH --model OUT`."""
    import torch

    from nacc.datasets import Segments
    from nacc.neural.config import make_config
    from nacc.neural.train import TrainConfig
    from nacc.neural.train import train as run

    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device available")
    segs = Segments(data, vocab=vocab, skip_bad=skip_bad)
    videos = [s.tokens for s in segs]
    if segs.n_bad:
        click.echo(f"warning: skipped {segs.n_bad} bad input(s)", err=True)
    if not videos:
        raise click.UsageError("no token segments found in DATA")
    v = vocab
    if untied_subst and not subst:
        raise click.UsageError("--untied-subst needs --subst")
    cfg = make_config(arch, v, videos[0].shape[1:], preset, motion_clamp=motion_clamp,
                      subst=subst, subst_tied=not untied_subst, copy_bias=copy_bias,
                      copy_max=copy_max)
    tc = TrainConfig(steps=steps or 400, batch_size=batch_size, clip_len=clip_len, lr=lr,
                     device=device, val_frac=val_frac, seed=seed,
                     eval_every=eval_every, ckpt_every=eval_every,
                     qat_frac=qat_frac, patience=patience)
    n_tok = sum(x.size for x in videos)
    if not quiet:
        click.echo(f"{len(videos)} segment(s), {n_tok} tokens, vocab {v}, frames "
                   f"{cfg.frame_shape[0]}x{cfg.frame_shape[1]}; {arch} -> {out}", err=True)
    _, _, stats = run(cfg, videos, tc, out=out, resume=resume, quiet=quiet,
                      log=lambda s: click.echo(s, err=True))
    if not quiet:
        click.echo(f"wrote {out} (sha256 {stats['sha256'][:16]})", err=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train())
