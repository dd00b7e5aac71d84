"""Small GPTs of the gpt2m layout trained here, and what nacc's integer inference costs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gpt.py train --layers 2 --width 128 \
        --heads 2 --steps 300 --seed 0 -o /tmp/gpt-2x128-s0.bin
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gpt.py eval /tmp/gpt-2x128-s0.bin \
        --heads 2 [--act-bits 8] [--stride 5] [--json F]

``train``: a GPT-2 in the published layout (``nacc.gpt.torch_ref``; vocabulary 1024 codes +
BOS, one BOS before every frame, learned positions for 20 frames) trained on random 20-frame
windows of synthetic token videos (``nacc.neural.synth``, the base process, vocabulary 1024,
frames of ``FRAME`` tokens: 4 x 8, positions scaled from gpt2m's 129 per frame to 33).  The
training clips are seeds ``(1, k)``; the checkpoint is saved as a ``pytorch_model.bin``.
The clips use ``--codes`` of the 1024 codes (default 64: a model this small learns the copy
structure of a 1024-code process only after far more steps than a shared 2-core machine
allows); the model's vocabulary and every table stay over all 1024 codes.  ``--process``:
``left`` (default; most tokens copy their left neighbour, so even a short run gives sharp
tables, the hard case for integer inference) or ``base`` (``nacc.neural.synth``'s
defaults: 400 steps of 2 x 128 learned only the marginal, about 5.2 bits/token).

``eval``: the checkpoint imported with ``nacc import-gpt``'s library function, then on
``--clips`` unseen clips (seed 2) of ``--frames`` frames: the float32 model's ideal code
length (the same stride windows, softmax over the 1024 codes) against the bytes of nacc's
archive of the clip (``nacc.api.compress`` with ``--predictor gpt``, the whole file), and an
exact round trip.  Single runs; the seeds are printed.

Measured 2026-12-06 (single runs, 1 thread, a shared 2-core machine; ``--process left``,
64 codes, frames 4 x 8, A = 8, stride 5; training 150 steps of batch 8 for 2 x 128 (lr 3e-3),
80 steps of batch 4 for 4 x 256 (lr 2e-3); test clips seeds (2, 0) and (2, 1), never seen):

    model            test tokens  float32 ideal  integer tables  rANS payload  archive
    2 x 128, seed 0  2 x 1920     4.9184         +0.003%         +0.303%       +13.69%
    2 x 128, seed 0  1 x 25600    4.9041         +0.001%         +0.043%       +1.056%
    2 x 128, seed 0  1 x 51200    4.9054         +0.000%         +0.017%       +0.524%
    4 x 256, seed 0  1 x 51200    4.2365         +0.005%         +0.023%       +0.609%
    2 x 128, seed 1  2 x 1920     4.9056         -0.003%         +0.396%       +13.82%
    4 x 256, seed 0  2 x 1920     4.2820         +0.002%         +0.421%       +15.80%

(bits/token of the float model; the others relative to it.)  The integer tables cost
nothing measurable; the payload adds the rANS state's final words (64 bits a stream); the
archive adds a fixed header of about 159 bytes (format, predictor parameters with the model
path, the weights' hash, the member's name and shape), 1% of a 25,600-token clip at 4.9
bits/token and about 0.3% of one commaVQ segment (153,600 tokens) at 2.5.  All round trips
exact.  The ``base`` process (400 steps of 2 x 128) stayed at the marginal (~5.2 bits).
Commands: ``train --layers 2 --width 128 --heads 2 --steps 150 --seed S``, ``train --layers
4 --width 256 --heads 4 --steps 80 --batch 4 --lr 2e-3 --seed 0``, then ``eval CKPT --heads
H --clips 2 --frames 60`` (and ``--clips 1 --frames 800`` or ``1600``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacc.gpt.intref import GPTConfig
from nacc.neural import synth

FRAME = (4, 8)
WINDOW = 20
VOCAB = 1024


PROCESSES = {
    # the base process of nacc.neural.synth over --codes codes
    "base": {},
    # most tokens copy their left neighbour (the model's input token): sharp tables that a
    # small model learns within a few hundred steps
    "left": {"w_copy": 0.25, "w_left": 0.6, "w_up": 0.05},
}


def process(args) -> synth.SynthConfig:
    return synth.SynthConfig(vocab=args.codes, **PROCESSES[args.process])


def config(layers: int, width: int, heads: int) -> GPTConfig:
    per = FRAME[0] * FRAME[1] + 1
    return GPTConfig(n_layer=layers, d_model=width, n_head=heads, d_ff=4 * width,
                     n_vocab=VOCAB + 1, n_positions=WINDOW * per)


def windows_ids(video: np.ndarray) -> np.ndarray:
    from nacc.gpt.policy import window_ids

    return window_ids(video, VOCAB)


def train(args) -> None:
    import torch

    from nacc.gpt import torch_ref as TR

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = config(args.layers, args.width, args.heads)
    clips = synth.corpus(args.clips, (args.clip_frames, *FRAME), seed=1,
                         cfg=process(args))
    model = TR.GPT(cfg)
    per = FRAME[0] * FRAME[1] + 1
    with torch.no_grad():
        # position table started with one shared vector per place in the frame (tiled over
        # the 20 frames) beside the random part: attending to the same place one frame
        # back is then easy to learn (the layout stays a learned absolute table)
        place = 0.1 * torch.randn(per, cfg.d_model)
        model.transformer.wpe.weight.add_(place.repeat(WINDOW, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                            betas=(0.9, 0.95))
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = []
        for _ in range(args.batch):
            c = clips[rng.integers(len(clips))]
            s = rng.integers(0, len(c) - WINDOW + 1)
            batch.append(windows_ids(c[s:s + WINDOW]))
        ids = torch.as_tensor(np.stack(batch))
        logits = model(ids[:, :-1])[..., :VOCAB]
        target = ids[:, 1:]
        mask = target != VOCAB                      # BOS is never coded
        loss = torch.nn.functional.cross_entropy(logits[mask], target[mask])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item() / math.log(2):.4f} bits  "
                  f"{time.time() - t0:.0f} s", flush=True)
    TR.save_checkpoint(model, args.out)
    print(f"saved {args.out} ({cfg}), per-frame positions {per}, {time.time() - t0:.0f} s")


def evaluate(args) -> dict:
    import torch

    from nacc import api
    from nacc.gpt import torch_ref as TR
    from nacc.gpt.importer import import_gpt
    from nacc.gpt.policy import coded_rows, window_ids, windows

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpt-"))
    folder = tmp / "model"
    t0 = time.time()
    import_gpt(args.checkpoint, folder, heads=args.heads, act_bits=args.act_bits)
    t_import = time.time() - t0
    from nacc.gpt.modelfile import read_config

    cfg = read_config(folder)[0]
    fmodel = TR.load_checkpoint(cfg, args.checkpoint)
    rows = []
    for k in range(args.clips):
        scfg = process(args)
        clip, _ = synth.generate((args.frames, *FRAME), seed=(2, k), cfg=scfg)
        fs = FRAME[0] * FRAME[1]

        def wins(clip=clip, fs=fs):
            for w in windows(len(clip), WINDOW, args.stride):
                ids = window_ids(clip[w.start:w.end], VOCAB)
                r = coded_rows(w, fs)
                yield ids, r, ids[r + 1]

        t1 = time.time()
        fbits = float(TR.code_bits(fmodel, wins()).sum())
        t_float = time.time() - t1
        from nacc import coder
        from nacc.predictors import get

        pred = get("gpt")(VOCAB, FRAME, model=str(folder), stride=args.stride)
        start, freq = pred.intervals(clip)
        ibits = float(np.sum(24 - np.log2(freq.astype(np.float64))))
        pbits = 32 * len(coder.encode_intervals(start, freq, pred.precision))
        t1 = time.time()
        data = api.compress(clip, predictor="gpt", vocab=VOCAB, model=str(folder),
                            stride=args.stride)
        t_enc = time.time() - t1
        t1 = time.time()
        back = api.decompress(data)
        t_dec = time.time() - t1
        exact = bool(np.array_equal(back.reshape(clip.shape), clip))
        limit = float(synth.code_lengths(clip, scfg).sum())
        n = clip.size
        row = {"clip": k, "tokens": n, "float_bits": fbits / n, "int_bits": ibits / n,
               "int_delta_pct": 100 * (ibits - fbits) / fbits, "payload_bits": pbits / n,
               "nacc_bits": 8 * len(data) / n, "archive_bytes": len(data),
               "delta_pct": 100 * (8 * len(data) - fbits) / fbits, "limit_bits": limit / n,
               "roundtrip": exact, "enc_s": t_enc, "dec_s": t_dec, "float_s": t_float}
        rows.append(row)
        print(json.dumps(row), flush=True)
    tot_f = sum(r["float_bits"] * r["tokens"] for r in rows)
    tot_n = sum(r["nacc_bits"] * r["tokens"] for r in rows)
    tot_i = sum(r["int_bits"] * r["tokens"] for r in rows)
    tot_p = sum(r["payload_bits"] * r["tokens"] for r in rows)
    out = {"checkpoint": str(args.checkpoint), "config": cfg._asdict(), "stride": args.stride,
           "import_s": t_import, "rows": rows,
           "float_bits": tot_f / sum(r["tokens"] for r in rows),
           "nacc_bits": tot_n / sum(r["tokens"] for r in rows),
           "delta_pct": 100 * (tot_n - tot_f) / tot_f,
           "int_delta_pct": 100 * (tot_i - tot_f) / tot_f,
           "payload_delta_pct": 100 * (tot_p - tot_f) / tot_f,
           "roundtrip": all(r["roundtrip"] for r in rows)}
    print(f"float {out['float_bits']:.4f} bits/token; integer tables "
          f"{out['int_delta_pct']:+.3f}%, rANS payload {out['payload_delta_pct']:+.3f}%, whole "
          f"archive {out['nacc_bits']:.4f} ({out['delta_pct']:+.3f}%: the header's fixed bytes "
          f"on a short clip); round trips {'exact' if out['roundtrip'] else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--width", type=int, default=128)
    t.add_argument("--heads", type=int, default=2)
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--clips", type=int, default=48)
    t.add_argument("--clip-frames", type=int, default=60)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--codes", type=int, default=64)
    t.add_argument("--process", choices=sorted(PROCESSES), default="left")
    t.add_argument("-o", "--out", required=True)
    e = sub.add_parser("eval")
    e.add_argument("checkpoint")
    e.add_argument("--heads", type=int, required=True)
    e.add_argument("--act-bits", type=int, default=8)
    e.add_argument("--stride", type=int, default=5)
    e.add_argument("--clips", type=int, default=2)
    e.add_argument("--frames", type=int, default=40)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--codes", type=int, default=64)
    e.add_argument("--process", choices=sorted(PROCESSES), default="left")
    e.add_argument("--json")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
