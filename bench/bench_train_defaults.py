"""`nacc train` with its default flags on fixed corpora of the synthetic family.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_train_defaults.py \
        [--process base v64-wide v2048-still v1024-busy-10x12] [--arch transformer lstm] \
        [--clips 24] [--frames 100] [--test-frames 300] [--threads 1] [--steps N] [--json F]
        [--real]

For each process (a :class:`nacc.neural.synth.SynthConfig` and a frame shape, below) a fixed
training corpus of ``--clips`` clips of ``--frames`` frames (seed 1) is generated, and an
unseen test clip of ``--test-frames`` frames (seed 2).  Each architecture is trained on the
corpus with ``nacc train``'s defaults, through the same code path as the command (the CLI
itself, on .npy files), and the integer model codes the test clip: bits/token (the ideal
code length of the integer tables, which rANS matches to ~0.01%) against the exact limit
of the process on the same tokens, the float (QAT) model's bits (the export cost), ``cm``
alone and ``cm --model`` (the model mixed into cm), and the training time.  ``--steps``
caps the steps for short proxy runs (not the defaults: say so when quoting).  No rate is
ever measured on a clip a model trained on.  ``--real`` replaces the processes by real
commaVQ data (tests/data/commavq_dev.npy, 600x8x16, V=1024): frames 0-449 are the one
training clip, frames 450-599 the unseen test clip, through the same path; no limit is
known, so its columns print "-" (null in the JSON).

Measured 2026-12-04 with the defaults of that day (the mixture head, its kernel started
from the corpus's copy counts, ``kernel_start``, and its table at 22 fixed-point bits;
lr 1e-3), single runs, 1 thread each, two runs at a time on a 2-core machine.  ``base``
with the defaults as they are (no cap: early stopping ended both runs; the training time of
the issue's 2,400-frame corpus); the other rows with ``--steps 600`` (a proxy cap: the
defaults would train longer, keeping the best validation):

    process           arch         bits    limit   over    export  cm      cm+model  train
    base              lstm         3.3744  3.2182   +4.9%  +0.01%  7.1113  3.3874    913 s
    base              transformer  3.3812  3.2182   +5.1%  +0.01%  7.1113  3.3951    972 s
    v64-wide          lstm         3.2823  3.2115   +2.2%  +0.00%  5.2601  3.2953    193 s
    v64-wide          transformer  3.2733  3.2115   +1.9%  +0.00%  5.2601  3.2855    305 s
    v2048-still       lstm         2.7034  2.5190   +7.3%  +0.06%  6.1334  2.7134    838 s
    v2048-still       transformer  2.7129  2.5190   +7.7%  +0.07%  6.1334  2.7215    945 s
    v1024-busy-10x12  lstm         4.1604  3.9733   +4.7%  +0.00%  7.1774  4.1753    286 s
    v1024-busy-10x12  transformer  4.1705  3.9733   +5.0%  +0.00%  7.1774  4.1870    333 s
    base, --clips 96  lstm         3.3189  3.2182   +3.1%  +0.00%  7.1113  3.3374    542 s
    base, --clips 96  transformer  3.3169  3.2182   +3.1%  +0.00%  7.1113  3.3358    712 s

cm+model is within 0.6% of the model alone on every row (cm alone is far behind).  The
day before (kernel started from the z-tested pair prior, the mixture at 16 bits) the rows
were +4.6 / +5.1% (base, uncapped), +2.5 / +2.2%, +11.6 / +12.1% (v2048-still, export
+0.81 / +0.65%), +4.6 / +4.6% and +2.4 / +2.3% (lstm / transformer).  What the starting
kernel alone costs is in ``bench_kernel_start.py``.

``--real`` (frames 450-599; cm alone 5.5677 bits/token), ``--steps 400``: lstm 5.8515
(export +0.00%, 298 s, best step 100), cm+model 5.4604 (-1.93% against cm); transformer
5.8514 (381 s, best step 100), cm+model 5.4606 (-1.92%).  Both keep their first evaluation
(step 100): on one 450-frame clip further training only fits the training frames, and
the counted kernel does most of the work.  The day before: lstm 7.3718, transformer
7.2279, cm+model +0.04 / -0.01%; the head before the mixture: 6.8516 / 6.9121, cm+model
-1.07 / -1.00%.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nacc.neural import synth

# name -> (SynthConfig overrides, frame shape (H, W))
PROCESSES = {
    "base": (dict(vocab=1024), (8, 16)),
    "v64-wide": (dict(vocab=64, sub_width=6, sub_tau=2.0, p_sub=0.35), (8, 16)),
    # w_copy + w_left + w_up must stay below 1 (the rest is the fresh draw's weight)
    "v2048-still": (dict(vocab=2048, w_copy=0.88, w_left=0.05, w_up=0.04, p_stay=0.95,
                         p_sub=0.15), (8, 16)),
    "v1024-busy-10x12": (dict(vocab=1024, w_copy=0.65, w_left=0.12, w_up=0.1, p_stay=0.6,
                              p_scene=0.05), (10, 12)),
}


def predictor_bits(name, vocab, shape, video, **params):
    from nacc.predictors.base import get

    p = get(name)(vocab, shape, **params)
    _, freq = p.intervals(video)
    return float((p.precision - np.log2(freq.astype(np.float64))).mean())


REAL = "real"
REAL_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "commavq_dev.npy"
REAL_TRAIN = 450  # frames [0, 450) train, [450, 600) are the unseen test clip


def source(process, args):
    """(training clips, test clip, vocab, (H, W), exact limit or None) of ``process``.

    ``real`` is commaVQ dev: frames 0-449 the one training clip, 450-599 the test clip
    (no limit is known); the others are the synthetic family with its exact limit.
    """
    if process == REAL:
        video = np.load(REAL_FILE)
        return [video[:REAL_TRAIN]], video[REAL_TRAIN:], 1024, video.shape[1:], None
    over, hw = PROCESSES[process]
    cfg_s = synth.SynthConfig(**over)
    corpus = synth.corpus(args.clips, (args.frames, *hw), 1, cfg_s)
    test = synth.generate((args.test_frames, *hw), 2, cfg_s)[0]
    return corpus, test, cfg_s.vocab, hw, synth.limit_bits_per_token(test, cfg_s)


def pct(bits, limit):
    """Percent over ``limit``; None when no limit is known (real data)."""
    return None if limit is None else 100 * (bits / limit - 1)


def fmt(x, spec, suffix=""):
    """``x`` formatted with ``spec``, or "-" for None."""
    return "-" if x is None else format(x, spec) + suffix


def run(process, arch, args, work: Path):
    import torch
    from click.testing import CliRunner

    from nacc.cli.train import train as train_cmd
    from nacc.neural import intref
    from nacc.training.export import load_model
    from nacc.training.model import NeuralModel
    from nacc.training.train import checkpoint_path, float_bits

    corpus, test, vocab, hw, limit = source(process, args)
    data = work / process / "data"
    data.mkdir(parents=True, exist_ok=True)
    for k, v in enumerate(corpus):
        np.save(data / f"clip{k:03d}.npy", v)
    out = work / process / arch
    # (T, H, W) .npy files keep their frame shape
    cmd = [str(data), "--arch", arch, "--out", str(out), "--vocab", str(vocab), "-q"]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    cmd += args.flags.split()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    r = CliRunner().invoke(train_cmd, cmd, catch_exceptions=False)
    secs = time.time() - t0
    if r.exit_code != 0:
        raise SystemExit(f"nacc train failed: {r.output}")
    im, _ = load_model(out)
    ib = float(intref.code_length_bits(im, test).mean())
    # the float (QAT) model from the checkpoint's best weights: the export cost
    st = torch.load(checkpoint_path(out), weights_only=True)
    model = NeuralModel(im.cfg)
    model.load_state_dict(st.get("best_model", st["model"]))
    model.set_qat(True)
    fb = float_bits(model, [test])
    cm = predictor_bits("cm", vocab, hw, test)
    cmm = predictor_bits("cm", vocab, hw, test, model=str(out))
    meta = json.loads((out / "config.json").read_text())
    res = dict(process=process, arch=arch, clips=args.clips, frames=args.frames,
               limit=limit, bits=ib, over_pct=pct(ib, limit), float_bits=fb,
               export_cost_pct=100 * (ib / fb - 1), cm=cm, cm_model=cmm,
               cm_model_over_pct=pct(cmm, limit), train_seconds=secs,
               threads=args.threads, stats=meta.get("stats"))
    size = f"{len(corpus)}x{len(corpus[0])}"
    res["clips"], res["frames"] = len(corpus), len(corpus[0])
    print(f"{process:18s} {arch:11s} {size}  bits {ib:.4f}  limit "
          f"{fmt(limit, '.4f')}  {fmt(res['over_pct'], '+.1f', '%')}  "
          f"export {res['export_cost_pct']:+.2f}%  "
          f"cm {cm:.4f}  cm+model {cmm:.4f} ({fmt(res['cm_model_over_pct'], '+.1f', '%')})  "
          f"train {secs:.0f} s on {args.threads} thread(s), best step "
          f"{(meta.get('stats') or {}).get('best_step')}", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--process", nargs="+", default=list(PROCESSES), choices=list(PROCESSES))
    ap.add_argument("--arch", nargs="+", default=["transformer", "lstm"])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--test-frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="cap (proxy runs only)")
    ap.add_argument("--flags", default="",
                    help="extra `nacc train` flags (experiments only: not the defaults)")
    ap.add_argument("--out", default=None, help="keep corpora and models here")
    ap.add_argument("--json", default=None)
    ap.add_argument("--real", action="store_true",
                    help="commaVQ dev frames 0-449 train, 450-599 test (replaces --process)")
    args = ap.parse_args(argv)
    if args.real:
        args.process = [REAL]
    work = Path(args.out or tempfile.mkdtemp(prefix="nacc-train-defaults-"))
    rows = [run(p, a, args, work) for p in args.process for a in args.arch]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
