"""``nacc train``: train a neural predictor on a token corpus and export it to integers.

As safe as ``compress``: inputs are read and framed exactly as ``compress`` reads them (the
same readers, ``--vocab`` and ``--frame-shape``), and bad data is ``nacc: FILE: message``,
exit 1, before any training; the model folder OUT is never replaced without ``-f`` and is
written whole or not at all (trained into a temporary folder beside it, then renamed); it
holds only what inference needs, while the training checkpoint is the file ``OUT.ckpt``
beside it (``--checkpoint``).  Ctrl-C finishes the running step, saves the checkpoint and
says how to resume (exit 130).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from nacc.cli.common import VOCAB, frame_shape_callback, printable, segments_of
from nacc.errors import NaccError
from nacc.spec import DEFAULT_VOCAB

# frames every training segment needs: a clip of two frames (one to predict from the other);
# the one segment of a single-input corpus needs that many after its validation frames
MIN_FRAMES = 2

TORCH_HINT = ("pip install 'nacc[neural]'; on a machine without a GPU the CPU build is much "
              "smaller: pip install torch --index-url https://download.pytorch.org/whl/cpu")


def need_torch(where: str):
    """The torch module; without it ``nacc: WHERE: needs torch (pip install ...)`` on
    stderr and exit 1 (coding with a trained model needs no torch, training does)."""
    try:
        import torch
    except ImportError:
        click.echo(f"nacc: {where}: needs torch ({TORCH_HINT})", err=True)
        sys.exit(1)
    return torch


def _fail(where: str, msg: str, code: int = 1):
    click.echo(f"nacc: {printable(where)}: {printable(msg)}", err=True)
    sys.exit(code)


def read_corpus(data, vocab: int, frame_shape, skip_bad: bool) -> list:
    """The token videos (int32 (T, H, W)) of ``data``, read and framed as ``compress`` does
    (``nacc.inputs.segments_of``, ``nacc.codec.tokens_of``): exit 1 naming the file at the
    first bad one, or with ``skip_bad`` a warning per skipped one."""
    from nacc.codec import tokens_of

    videos, shape, n_bad = [], None, 0
    for path in data:
        try:
            segs = segments_of(path)
        except (NaccError, OSError) as e:
            msg = str(e) if isinstance(e, NaccError) else (e.strerror or str(e))
            if not skip_bad:
                _fail(path, msg)
            click.echo(f"nacc: {printable(path)}: {printable(msg)} (skipped)", err=True)
            n_bad += 1
            continue
        for name, npy in segs:
            where = path if len(segs) == 1 else f"{path}: {name}"
            try:
                tokens, fs = tokens_of(npy, vocab, frame_shape)
                if shape is not None and fs != shape:
                    raise NaccError(f"{fs[0]}x{fs[1]} frames, the corpus has "
                                    f"{shape[0]}x{shape[1]} (one model codes one frame shape)")
                if len(tokens) < MIN_FRAMES:
                    raise NaccError(f"{len(tokens)} frame(s): a training segment needs at "
                                    f"least {MIN_FRAMES}")
            except NaccError as e:
                if not skip_bad:
                    _fail(where, str(e))
                click.echo(f"nacc: {printable(where)}: {printable(str(e))} (skipped)", err=True)
                n_bad += 1
                continue
            shape = fs
            videos.append(tokens)
    if n_bad:
        click.echo(f"warning: skipped {n_bad} bad input(s)", err=True)
    return videos


def _check_split(videos, val_frac: float) -> None:
    """Exit 1 unless ``split_corpus`` leaves training frames (the rule of
    ``nacc.training.train.split_corpus``: one segment loses its last ``val_frac`` frames)."""
    if len(videos) == 1 and val_frac > 0:
        t = len(videos[0])
        n_val = max(1, int(round(t * val_frac)))
        if t - n_val < MIN_FRAMES:
            _fail("train", f"one segment of {t} frames: {n_val} go to validation "
                           f"(--val-frac {val_frac}), fewer than {MIN_FRAMES} are left to train "
                           "on (give more frames, more segments, or --val-frac 0)")


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Move the trained folder ``tmp`` to ``out`` (replacing it only with ``force``)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not force:
        raise NaccError(f"{out} already exists (use -f to overwrite)")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _config_sets(sets, config_cls) -> dict:
    """``--set KEY=VALUE`` pairs as config overrides: VALUE is read as JSON (``64``,
    ``false``, ``0.5``) and must have the type of the field's default; a key that is not a
    field (or is fixed by the data: arch, vocab, frame_shape) is a usage error."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)
              if f.name not in ("arch", "vocab", "frame_shape")}
    out = {}
    for kv in sets:
        key, eq, text = kv.partition("=")
        if not eq or key not in fields:
            raise click.BadParameter(f"{kv!r}: expected KEY=VALUE with KEY one of "
                                     f"{', '.join(sorted(fields))}", param_hint="--set")
        want = type(fields[key].default)
        try:
            val = json.loads(text)
        except ValueError:
            val = text
        if want is float and type(val) is int:
            val = float(val)
        if type(val) is not want:
            raise click.BadParameter(f"{kv!r}: {key} must be of type {want.__name__}",
                                     param_hint="--set")
        out[key] = val
    return out


@click.command("train")
@click.argument("data", nargs=-1, required=True)
@click.option("--arch", type=click.Choice(["transformer", "lstm"]), default="transformer",
              show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="model folder to write (models/NAME); never replaced without -f")
@click.option("-f", "--force", is_flag=True, help="replace an existing model folder OUT")
@click.option("--frame-shape", callback=frame_shape_callback, default=None, metavar="HxW",
              help="frame shape for (T, N) arrays, as in compress [8x16 when N=128, else 1xN]")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="training checkpoint file, outside the model folder [OUT.ckpt]")
@click.option("--steps", type=int, default=None,
              help="most optimizer steps; early stopping usually ends sooner [3000]")
@click.option("--batch-size", type=int, default=8, show_default=True, help="clips per step")
@click.option("--clip-len", type=int, default=8, show_default=True, help="frames per clip")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--table-lr-mult", type=float, default=100.0, show_default=True,
              help="lr factor of the head's per-code tables (copy term, substitution)")
@click.option("--table-eps", type=float, default=1e-3, show_default=True,
              help="Adam eps of those tables: large makes their steps SGD-like, "
                   "proportional to the evidence (1e-8: plain Adam)")
@click.option("--schedule", type=click.Choice(["plateau", "cosine"]), default="plateau",
              show_default=True,
              help="plateau: halve the lr after 2 evaluations without a better validation; "
                   "cosine: decay over --steps")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--val-frac", type=float, default=0.1, show_default=True,
              help="held-out fraction (whole segments, or the last frames of a single one)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vocab", type=VOCAB, default=DEFAULT_VOCAB, show_default=True,
              help="vocabulary size: token ids are 0..vocab-1")
@click.option("--preset", type=click.Choice(["transformer", "lstm", "tiny"]), default=None,
              help="model size preset [the arch's own]")
@click.option("--qat-frac", type=float, default=1.0, show_default=True,
              help="final fraction of the steps trained with fake quantization")
@click.option("--dropout", type=float, default=0.1, show_default=True,
              help="dropout on the frame features and the head's hidden layer")
@click.option("--subst-init", type=float, default=1.0, show_default=True,
              help="with --subst: start the table at this times the corpus's statistics "
                   "of codes replacing each other; with --mix, any value > 0 starts the "
                   "kernel from them (0: without them)")
@click.option("--ema", type=float, default=None,
              help="keep an exponential moving average of the weights with this decay per "
                   "step, and validate and export it (0: off) [0]")
@click.option("--eval-every", type=int, default=100, show_default=True,
              help="steps between validation evaluations")
@click.option("--patience", type=int, default=6, show_default=True,
              help="stop after this many evaluations without a better validation (0: never)")
@click.option("--motion-clamp", type=click.IntRange(0, 127), default=None,
              help="head: per-shift motion counts, clamped to this (0: off) [12]")
@click.option("--subst/--no-subst", default=None,
              help="head: learned V x V substitution logits between similar codes (gated "
                   "per candidate) [off]")
@click.option("--untied-subst/--tied-subst", default=None,
              help="with --subst or --mix: let a -> b and b -> a differ [tied]")
@click.option("--subst-emb", type=click.IntRange(0, 4096), default=None,
              help="with --subst or --mix: rank of the per-code embedding product trained "
                   "into the V x V tables (0: the full tables only) [16]")
@click.option("--copy-bias/--no-copy-bias", default=None,
              help="head: learned per-code copy term [on]")
@click.option("--copy-max/--no-copy-max", default=None,
              help="head: a code in several candidate slots gets the largest bonus, not the "
                   "sum [on]")
@click.option("--mix/--no-mix", default=None,
              help="head: the table is a mixture of the fresh softmax and one learned kernel "
                   "row per copy candidate (the kernel starts from the corpus's statistics, "
                   "see --subst-init) [on]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override one model configuration field (ModelConfig), e.g. "
                   "head_hidden=64; repeatable")
@click.option("--weight-decay", type=float, default=0.01, show_default=True,
              help="AdamW decoupled weight decay")
@click.option("--resume", is_flag=True, help="continue from the checkpoint [OUT.ckpt]")
@click.option("--skip-bad", is_flag=True, help="skip unreadable/invalid inputs with a warning")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
def train(data, arch, out, force, frame_shape, checkpoint, steps, batch_size, clip_len, lr,
          table_lr_mult, table_eps, schedule, device, val_frac, seed, vocab, preset, qat_frac,
          dropout, subst_init, ema, eval_every, patience, motion_clamp, subst, untied_subst,
          subst_emb, copy_bias, copy_max, mix, sets, weight_decay, resume, skip_bad, quiet):
    """Train a causal neural predictor on DATA (.npy, .npz, directories, commaVQ shards)
    and write an integer model folder, used as `--predictor ARCH --model OUT`.

    The defaults are meant to be used as they are: the arch's preset with every head option
    on, and training until the validation stops improving (see `nacc.training.train`).  In
    brackets: the default of the arch's preset (the `tiny` preset has the head options off).
    """
    torch = need_torch("train")
    from nacc.kernels.cpu import compile_notice

    compile_notice.enable(not quiet, quiet)     # as every command: in pipes too, not with -q

    from nacc.neural.config import ModelConfig, make_config
    from nacc.training.train import Interrupted, TrainConfig, checkpoint_path
    from nacc.training.train import train as run

    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device available")
    over = {k: v for k, v in dict(motion_clamp=motion_clamp, subst=subst, subst_emb=subst_emb,
                                  copy_bias=copy_bias, copy_max=copy_max,
                                  mix_head=mix).items()
            if v is not None}
    if untied_subst is not None:
        over["subst_tied"] = not untied_subst
    over.update(_config_sets(sets, ModelConfig))
    out_path = Path(out)
    ckpt = Path(checkpoint) if checkpoint else checkpoint_path(out_path)
    if out_path.exists() and not force:
        _fail(out, "already exists (use -f to overwrite)")
    if resume and not ckpt.is_file():
        _fail(str(ckpt), "no checkpoint to resume from")
    if ckpt.exists() and not resume and not force:
        _fail(str(ckpt), "a checkpoint of an earlier run exists: --resume continues from it, "
                         "-f starts over")
    if not 0 <= val_frac < 1:
        raise click.BadParameter(f"{val_frac} is not in [0, 1)", param_hint="'--val-frac'")
    videos = read_corpus(data, vocab, frame_shape, skip_bad)
    if not videos:
        _fail("train", "no token segments to train on")
    _check_split(videos, val_frac)
    v = vocab
    cfg = make_config(arch, v, videos[0].shape[1:], preset, **over)
    if not (cfg.subst or cfg.mix_head) and (untied_subst or subst_emb):
        raise click.UsageError("--untied-subst and --subst-emb need --subst or --mix")
    kw = {} if steps is None else {"steps": steps}
    if ema is not None:
        kw["ema"] = ema
    tc = TrainConfig(batch_size=batch_size, clip_len=clip_len, lr=lr, table_lr_mult=table_lr_mult,
                     table_eps=table_eps, schedule=schedule,
                     device=device, val_frac=val_frac, seed=seed, eval_every=eval_every,
                     ckpt_every=eval_every, qat_frac=qat_frac, dropout=dropout,
                     subst_init=subst_init, weight_decay=weight_decay,
                     patience=patience, **kw)
    n_tok = sum(x.size for x in videos)
    if not quiet:
        click.echo(f"{len(videos)} segment(s), {n_tok} tokens, vocab {v}, frames "
                   f"{cfg.frame_shape[0]}x{cfg.frame_shape[1]}; {arch} -> {out}", err=True)
    parent = out_path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=parent))
    try:
        _, _, stats = run(cfg, videos, tc, out=tmp, checkpoint=ckpt, resume=resume,
                          quiet=quiet, log=lambda s: click.echo(s, err=True))
        _install(tmp, out_path, force)
    except Interrupted as e:
        click.echo(f"nacc: train: interrupted after step {e.step}; checkpoint saved to "
                   f"{printable(str(e.path))}: run the same command with --resume to "
                   "continue", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("nacc: train: interrupted (no checkpoint of this run was saved)", err=True)
        sys.exit(130)
    except (NaccError, OSError) as e:
        _fail(out, str(e) if isinstance(e, NaccError) else (e.strerror or str(e)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        click.echo(f"wrote {out} (sha256 {stats['sha256'][:16]}); training checkpoint "
                   f"{ckpt} (--resume continues from it; delete it when done)", err=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train())
