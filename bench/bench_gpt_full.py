"""A full-size gpt2m checkpoint with random weights: import time and memory, an exact round
trip of a 20-frame clip on the CPU, and tokens/s against the machine's float32 GEMM peak.

    python bench/bench_gpt_full.py make /tmp/gpt2m/pytorch_model.bin      # ~1.2 GB, fp32
    /usr/bin/time -v python bench/bench_gpt_full.py import /tmp/gpt2m/pytorch_model.bin \
        /tmp/gpt2m/model                                                   # peak RSS, time
    OMP_NUM_THREADS=1 python bench/bench_gpt_full.py speed /tmp/gpt2m/model [--lanes 1 4 16]
    OMP_NUM_THREADS=1 python bench/bench_gpt_full.py roundtrip /tmp/gpt2m/model [--frames 20]

``make`` writes the published layout (``nacc.gpt.torch_ref``: 24 layers, width 1024, 16
heads, MLP 4096, 1025 ids, 2580 positions; 307,052,544 parameters, GPT-2's initialisation;
``--buffers`` adds the ``attn.bias`` masks some GPT-2 files carry: +640 MB).

``speed`` (times in CPU seconds of this one-thread process, so that a shared machine's load
does not count): the float32 GEMM peak of this process (a 1024 x 1024 x 4096 product, best of
5); the KV-cache step at ``--lanes`` segments in lockstep, each at positions 1290.. (the
middle of a window; ``--context``): tokens/s and the multiply-adds per token over the GEMM peak; the
window pass (one 2580-position window, 2580 rows at once).

``roundtrip``: a random 8 x 16 clip coded by the predictor ``gpt`` (window pass ->
rANS words) and decoded token by token with the KV cache; exact or not, and the time of
each direction.  Single runs: quote
them as such.

Measured 2026-12-06, single runs on a shared 2-core machine (one thread each; no VNNI):

* ``make``: 307,052,544 parameters, 1,171 MiB fp32 (``/usr/bin/time -v``: 1.41 GiB peak).
* ``import``: 48.9 s (54.8 s wall, the machine loaded by other jobs), peak RSS 1.49 GiB =
  1.27 x the checkpoint (memory-mapped, one tensor at a time); weights file 306 MiB.
* ``speed --lanes 1 4 --steps 4 --context 256 --window-rows 512`` (CPU time): float32 GEMM
  peak 88.9 GFLOP/s; the KV-cache step 5.85 tokens/s at 1 lane (171 ms, 4% of the peak:
  it reads every weight once per token) and 17.7 tokens/s at 4 lanes (13%); the window pass
  38.1 tokens/s (512 rows at once, 24.1 GFLOP/s, 27%).
* ``roundtrip --frames 2``: exact (window pass -> 83 words -> KV-cache decode), peak RSS
  2.3 GiB.  ``roundtrip --frames 20`` (2,560 tokens, one 20-frame window): exact, 825
  words (10.31 bits/token: a random model), encode 818 s and decode 478 s wall (5.35
  tokens/s) with the process getting 38% of a core: 405 s user + 99 s system CPU in all;
  peak RSS 3.1 GiB.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacc.gpt.intref import GPTConfig

GPT2M = GPTConfig(n_layer=24, d_model=1024, n_head=16, d_ff=4096, n_vocab=1025,
                  n_positions=2580)


def make(args) -> None:
    import torch

    from nacc.gpt import torch_ref as TR

    torch.manual_seed(args.seed)
    model = TR.GPT(GPT2M)
    n = sum(p.numel() for p in model.parameters())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    TR.save_checkpoint(model, args.out, buffers=args.buffers)
    print(f"{args.out}: {n:,} parameters, {Path(args.out).stat().st_size / 2**20:.0f} MiB")


def do_import(args) -> None:
    from nacc.gpt.importer import import_gpt

    t0 = time.time()
    digest = import_gpt(args.checkpoint, args.folder, heads=args.heads)
    print(f"imported in {time.time() - t0:.1f} s, weights sha256 {digest}")


def gemm_peak() -> float:
    a = np.random.default_rng(0).integers(-127, 128, (1024, 1024)).astype(np.float32)
    b = np.random.default_rng(1).integers(-127, 128, (1024, 4096)).astype(np.float32)
    best = 1e9
    for _ in range(5):
        t = time.process_time()
        a @ b
        best = min(best, time.process_time() - t)
    return 2 * 1024 * 1024 * 4096 / best / 1e9


def speed(args) -> None:
    from nacc.gpt.intref import Cache, Runner
    from nacc.gpt.modelfile import load_model

    t0 = time.time()
    model, _ = load_model(args.folder)
    from nacc.kernels.cpu.gpt import attend_rows, gemm_i8

    run = Runner(model, small=gemm_i8, attend=attend_rows)
    cfg = model.cfg
    print(f"load + float copies {time.time() - t0:.1f} s")
    peak = gemm_peak()
    macs = (12 * cfg.d_model ** 2 + 0) * cfg.n_layer + cfg.d_model * cfg.n_vocab
    print(f"float32 GEMM peak {peak:.1f} GFLOP/s; weights {macs / 1e6:.0f} M multiply-adds "
          "per token")
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, cfg.vocab, args.context)
    for b in args.lanes:
        caches = [Cache(cfg) for _ in range(b)]
        run.feed_lanes([(ctx, c, []) for c in caches])      # prefill, not timed
        t = time.perf_counter()
        c0 = time.process_time()
        for _ in range(args.steps):
            run.feed_lanes([(rng.integers(0, cfg.vocab, 1), c, [0]) for c in caches])
        wall = (time.perf_counter() - t) / args.steps
        dt = (time.process_time() - c0) / args.steps     # CPU time: the machine is shared
        tps = b / dt
        att = 2 * cfg.d_model * (args.context + args.steps / 2) * cfg.n_layer
        print(f"step, {b:3d} lanes: {tps:8.2f} tokens/s of CPU time ({dt * 1000:.0f} ms CPU, "
              f"{wall * 1000:.0f} ms wall per step); "
              f"{2 * (macs + att) * tps / 1e9:.1f} GFLOP/s = "
              f"{100 * 2 * (macs + att) * tps / 1e9 / peak:.0f}% of the GEMM peak")
    rows = args.window_rows
    ids = rng.integers(0, cfg.vocab, rows)
    c0 = time.process_time()
    run.feed(ids, Cache(cfg), [])
    dt = time.process_time() - c0
    att = cfg.d_model * rows * cfg.n_layer   # causal: half of 2 * n * d per row
    print(f"window pass, {rows} rows: {rows / dt:.1f} tokens/s of CPU time "
          f"({dt:.1f} s); {2 * (macs + att) * rows / dt / 1e9:.1f} GFLOP/s = "
          f"{100 * 2 * (macs + att) * rows / dt / 1e9 / peak:.0f}% of the peak")


def roundtrip(args) -> None:
    """The model's own code both ways: the window pass's intervals to rANS words, then the
    KV-cache decoder back to tokens (the archive itself would store a random model's clip
    with the uniform table, which is smaller, and decode without the model)."""
    from nacc import coder
    from nacc.predictors import get

    clip = np.random.default_rng(args.seed).integers(0, 1024, (args.frames, 8, 16)).astype(
        np.int32)
    t = time.time()
    pred = get("gpt")(1024, (8, 16), model=str(args.folder), stride=args.stride)
    t_load = time.time() - t
    t = time.time()
    start, freq = pred.intervals(clip)
    words = coder.encode_intervals(start, freq, pred.precision)
    t_enc = time.time() - t
    t = time.time()
    back = pred.decode(words, len(clip))
    t_dec = time.time() - t
    ok = np.array_equal(back, clip)
    print(f"{args.frames} frames ({clip.size} tokens): load {t_load:.0f} s; {len(words)} words "
          f"({32 * len(words) / clip.size:.3f} bits/token); encode {t_enc:.0f} s "
          f"({clip.size / t_enc:.1f} tokens/s), decode {t_dec:.0f} s "
          f"({clip.size / t_dec:.2f} tokens/s), round trip {'exact' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--buffers", action="store_true",
                   help="add the attn.bias causal-mask buffers (+640 MB)")
    i = sub.add_parser("import")
    i.add_argument("checkpoint")
    i.add_argument("folder")
    i.add_argument("--heads", type=int, default=None)
    s = sub.add_parser("speed")
    s.add_argument("folder")
    s.add_argument("--lanes", type=int, nargs="+", default=[1, 4, 16])
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--context", type=int, default=1290)
    s.add_argument("--window-rows", type=int, default=2580)
    r = sub.add_parser("roundtrip")
    r.add_argument("folder")
    r.add_argument("--frames", type=int, default=20)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--stride", type=int, default=5)
    args = ap.parse_args()
    {"make": make, "import": do_import, "speed": speed, "roundtrip": roundtrip}[args.cmd](args)


if __name__ == "__main__":
    main()
