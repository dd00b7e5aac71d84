"""Neural predictors against the exact limit of a synthetic process (``nacc.neural.synth``).

    python bench/bench_synth_limit.py [--arch transformer lstm] [--steps 2000] \
        [--vocab 256] [--frames 100] [--no-fresh] [--train-videos 24] [--motion-clamp 12] \
        [--no-subst] [--subst-tied] [--no-copy-bias] [--no-copy-max] [--table-lr-mult 10] \
        [--table-eps 1e-8] [--eval-every 200] [--patience 6] [--out /tmp/synth_models] [--json FILE]

Trains each architecture (its preset, plus the head options as given) on synthetic videos,
exports it to integers, and evaluates on unseen videos (seed 2): bits/token of the integer
tables (ideal code length, which rANS matches to ~0.01%) against the exact limit of the
true process on the same tokens.  By default training never sees a video twice: every step
draws its clips from ``--batch-size`` new videos of the stream ``synth.stream`` (seed 1),
and ``--val-videos`` videos of seed 3 validate; ``--no-fresh`` trains on a fixed corpus of
``--train-videos`` videos (seed 1) instead, with a ``--val-frac`` of them held out.

The head options are on by default here because the process has exactly that structure (a
hidden global motion per frame: motion counts; codes substituted along a hidden ring: the
substitution table; copies whose probability does not follow the copied code's Zipf prior:
the per-code copy term, max-merged over duplicate candidates; in 1000-step runs the copy
term made no difference); the presets leave them off (on 300 real frames the motion counts
did not help and the V x V table overfits).  On fresh videos nothing overfits, so the table
is untied (a -> b and b -> a differ by the prior of b) and the per-code tables learn
``--table-lr-mult`` times faster than the rest.  On a fixed corpus the table overfits a
few dozen videos after a few hundred steps; training fake-quantizes from the start, keeps
the best validation step and stops ``--patience`` evaluations after it.  The ``cm``
predictor is included when it is installed, alone and with each trained model mixed in
(``cm --model``).
"""
from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nacc.neural import intref, synth
from nacc.neural.config import make_config
from nacc.training.train import TrainConfig, float_bits, train

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
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--height", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                    help="train on new videos every step (else on --train-videos videos)")
    ap.add_argument("--train-videos", type=int, default=24, help="with --no-fresh")
    ap.add_argument("--val-videos", type=int, default=4, help="with --fresh")
    ap.add_argument("--test-videos", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--table-lr-mult", type=float, default=10.0,
                    help="lr factor of the head's per-code tables (copy term, substitution)")
    ap.add_argument("--table-eps", type=float, default=1e-8,
                    help="Adam eps of those tables (the +4.8%% run used Adam's own, 1e-8; "
                         "nacc train's default is 1e-3)")
    ap.add_argument("--val-frac", type=float, default=0.1,
                    help="with --no-fresh: fraction of the training videos held out for "
                         "validation")
    ap.add_argument("--qat-frac", type=float, default=1.0,
                    help="fraction of the steps with fake quantization (1: all, so that the "
                         "early best validation step can be kept)")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--patience", type=int, default=6,
                    help="stop after this many evaluations without a new best (0: never)")
    ap.add_argument("--arch", nargs="+", default=["transformer", "lstm"])
    ap.add_argument("--motion-clamp", type=int, default=12, help="head motion counts (0: off)")
    ap.add_argument("--subst", action=argparse.BooleanOptionalAction, default=True,
                    help="head substitution table")
    ap.add_argument("--subst-tied", action=argparse.BooleanOptionalAction, default=False,
                    help="tie the substitution table symmetric")
    ap.add_argument("--copy-bias", action=argparse.BooleanOptionalAction, default=True,
                    help="head per-code copy term")
    ap.add_argument("--copy-max", action=argparse.BooleanOptionalAction, default=True,
                    help="head: a code in several candidate slots gets the largest bonus")
    ap.add_argument("--out", default=None, help="keep the trained model folders here")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs checkpointed in --out (a finished run is only "
                         "exported and evaluated again)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    cfg_s = synth.SynthConfig(vocab=args.vocab)
    shape = (args.frames, args.height, args.width)
    # what train() gets as its corpus: with a stream, validation videos only
    if args.fresh:
        videos = synth.corpus(args.val_videos, shape, 3, cfg_s)
        stream = functools.partial(synth.stream, n_videos=args.batch_size, shape=shape, seed=1,
                                   cfg=cfg_s)
        n_train = args.steps * args.batch_size * int(np.prod(shape))
    else:
        videos = synth.corpus(args.train_videos, shape, 1, cfg_s)
        stream = None
        n_train = int(sum(v.size for v in videos))
    test_v = synth.corpus(args.test_videos, shape, 2, cfg_s)
    limit = float(np.concatenate([synth.code_lengths(v, cfg_s) for v in test_v]).mean())
    res = {"vocab": args.vocab, "shape": list(shape), "fresh": args.fresh, "train_tokens": n_train,
           "test_tokens": int(sum(v.size for v in test_v)), "limit_bits_per_token": limit}
    print(f"limit (exact, test videos): {limit:.4f} bits/token")
    for arch in args.arch:
        cfg = make_config(arch, args.vocab, shape[1:], motion_clamp=args.motion_clamp,
                          subst=args.subst, subst_tied=args.subst_tied,
                          copy_bias=args.copy_bias, copy_max=args.copy_max)
        tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         table_lr_mult=args.table_lr_mult, table_eps=args.table_eps,
                         val_frac=args.val_frac,
                         eval_every=args.eval_every, qat_frac=args.qat_frac,
                         patience=args.patience)
        t0 = time.time()
        out = Path(args.out or tempfile.mkdtemp(prefix="nacc-synth-")) / arch
        model, im, st = train(cfg, videos, tc, out=out, resume=args.resume, quiet=False,
                              stream=stream)
        secs = time.time() - t0
        ib = float(np.concatenate([intref.code_length_bits(im, v) for v in test_v]).mean())
        model.set_qat(True)
        fb = float_bits(model, test_v)
        res[arch] = {"int_bits_per_token": ib, "float_bits_per_token": fb,
                     "quant_cost_pct": 100 * (ib / fb - 1), "vs_limit_pct": 100 * (ib / limit - 1),
                     "train_seconds": secs, "steps": args.steps,
                     "train_tokens_seen": st.get("train_tokens_seen"),
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
