"""Neural predictors against the exact limit of a synthetic process (``nacc.synth``).

    python bench/bench_synth_limit.py [--vocab 256] [--train-videos 24] [--frames 100] \
        [--steps 400] [--arch transformer lstm] [--motion-clamp 12] [--no-subst] \
        [--qat-frac 1.0] [--eval-every 50] [--patience 6] [--out /tmp/synth_models]

Trains each architecture (its preset, plus the head's motion counts and substitution table
as given) on fresh synthetic videos (seed 1), exports it to integers, and evaluates on
unseen videos (seed 2): bits/token of the integer tables (ideal code length, which rANS
matches to ~0.01%) against the exact limit of the true process on the same tokens.  Both
head options are on by default here because the process has exactly that structure (a
hidden global motion per frame; codes substituted along a hidden ring); the presets leave
them off (on 300 real frames the motion counts did not help and the V x V table overfits).
The table also overfits a few dozen synthetic videos after a few hundred steps, so training
fake-quantizes from the start, keeps the best validation step and stops ``--patience``
evaluations after it.  The ``cm`` predictor is included when it is installed, alone and
with each trained model mixed in (``cm --model``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nacc import synth
from nacc.neural import intref
from nacc.neural.config import make_config
from nacc.neural.train import TrainConfig, float_bits, train

TARGET = 1.05  # the transformer must come within 5% of the exact limit on unseen videos


def predictor_bits(name, vocab, shape, videos, **params):
    from nacc.predictors.base import get

    out = []
    for v in videos:
        p = get(name)(vocab, shape, **params)
        _, freq = p.intervals(v)
        out.append(p.precision - np.log2(freq.astype(np.float64)))
    return float(np.concatenate(out).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--height", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--train-videos", type=int, default=24)
    ap.add_argument("--test-videos", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--val-frac", type=float, default=0.1,
                    help="fraction of the training videos held out for validation")
    ap.add_argument("--qat-frac", type=float, default=1.0,
                    help="fraction of the steps with fake quantization (1: all, so that the "
                         "early best validation step can be kept)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=6,
                    help="stop after this many evaluations without a new best (0: never)")
    ap.add_argument("--arch", nargs="+", default=["transformer", "lstm"])
    ap.add_argument("--motion-clamp", type=int, default=12, help="head motion counts (0: off)")
    ap.add_argument("--subst", action=argparse.BooleanOptionalAction, default=True,
                    help="head substitution table")
    ap.add_argument("--subst-tied", action=argparse.BooleanOptionalAction, default=True,
                    help="tie the substitution table symmetric")
    ap.add_argument("--copy-bias", action=argparse.BooleanOptionalAction, default=False,
                    help="head per-code copy term")
    ap.add_argument("--copy-max", action=argparse.BooleanOptionalAction, default=False,
                    help="head: a code in several candidate slots gets the largest bonus")
    ap.add_argument("--out", default=None, help="keep the trained model folders here")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs checkpointed in --out (a finished run is only "
                         "exported and evaluated again)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    cfg_s = synth.SynthConfig(vocab=args.vocab)
    shape = (args.frames, args.height, args.width)
    train_v = synth.corpus(args.train_videos, shape, 1, cfg_s)
    test_v = synth.corpus(args.test_videos, shape, 2, cfg_s)
    limit = float(np.concatenate([synth.code_lengths(v, cfg_s) for v in test_v]).mean())
    res = {"vocab": args.vocab, "shape": list(shape), "train_tokens": int(sum(v.size for v in train_v)),
           "test_tokens": int(sum(v.size for v in test_v)), "limit_bits_per_token": limit}
    print(f"limit (exact, test videos): {limit:.4f} bits/token")
    for arch in args.arch:
        cfg = make_config(arch, args.vocab, shape[1:], motion_clamp=args.motion_clamp,
                          subst=args.subst, subst_tied=args.subst_tied,
                          copy_bias=args.copy_bias, copy_max=args.copy_max)
        tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, val_frac=args.val_frac,
                         eval_every=args.eval_every, qat_frac=args.qat_frac,
                         patience=args.patience)
        t0 = time.time()
        out = Path(args.out or tempfile.mkdtemp(prefix="nacc-synth-")) / arch
        model, im, st = train(cfg, train_v, tc, out=out, resume=args.resume, quiet=False)
        secs = time.time() - t0
        ib = float(np.concatenate([intref.code_length_bits(im, v) for v in test_v]).mean())
        model.set_qat(True)
        fb = float_bits(model, test_v)
        res[arch] = {"int_bits_per_token": ib, "float_bits_per_token": fb,
                     "quant_cost_pct": 100 * (ib / fb - 1), "vs_limit_pct": 100 * (ib / limit - 1),
                     "train_seconds": secs, "steps": args.steps,
                     "stopped_at": st.get("stopped_at"), "best_step": st.get("best_step")}
        print(f"{arch:12s} integer {ib:.4f}  float {fb:.4f}  (+{100 * (ib / limit - 1):.1f}% over "
              f"the limit, quantization {100 * (ib / fb - 1):+.2f}%, trained {secs:.0f} s, "
              f"kept step {st.get('best_step')}, stopped at {st.get('stopped_at') or args.steps})")
        if arch == "transformer":  # the target of the neural issue: within 5% of the limit
            ok = ib <= TARGET * limit
            res[arch]["target_met"] = bool(ok)
            print(f"{'':12s} target: transformer within {100 * (TARGET - 1):.0f}% of the limit: "
                  f"{'PASS' if ok else 'FAIL'}")
        mb = predictor_bits("cm", args.vocab, shape[1:], test_v, model=str(out))
        res[f"cm+{arch}"] = {"bits_per_token": mb, "vs_limit_pct": 100 * (mb / limit - 1)}
        print(f"{'cm+' + arch:12s} {mb:.4f}  (+{100 * (mb / limit - 1):.1f}% over the limit; "
              f"cm with this model mixed in)")
    try:
        cb = predictor_bits("cm", args.vocab, shape[1:], test_v)
        res["cm"] = {"bits_per_token": cb, "vs_limit_pct": 100 * (cb / limit - 1)}
        print(f"{'cm':12s} {cb:.4f}  (+{100 * (cb / limit - 1):.1f}% over the limit)")
    except Exception as e:  # noqa: BLE001  (cm absent or failing: report, do not hide)
        print(f"cm: not measured ({type(e).__name__}: {e})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
