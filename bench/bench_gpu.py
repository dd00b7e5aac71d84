"""GPU throughput of the Triton path against the CPU path, in one run, on the same segments.

    python bench/bench_gpu.py                     # CUDA; skips (exit 0) without a GPU
    python bench/bench_gpu.py --device interpret --frames 2 --crop 2x4 --vocab 16 \\
        --batches 1,2 --cpu-segments 2 --model transformer=DIR --model lstm=DIR   # toy

Segments are the real dev clip (tests/data/commavq_dev.npy, 600 frames of 8x16; ``--frames``
shortens it, ``--crop`` / ``--vocab`` shrink it as in ``bench/gpu_roundtrip.py``) rotated by
k frames for segment k, so that lanes differ in content.  For each predictor with a kernel
(``transformer`` and ``lstm`` with the shipped models unless ``--model`` says otherwise) and
each batch size (1, 16, 256 and the largest that fits in 80% of the free GPU memory, capped
by ``--max-lanes``, by default) it measures

* encode: segments/s of ``encode_many`` (tables on the GPU, rANS on the CPU, pipelined);
* decode: segments/s of ``decode_many`` (tables and rANS decoding on the GPU);
* peak GPU memory allocated by torch during the run of that batch size;

and, in the same run, the CPU path (``nacc.codec``: one process, and ``--threads``
processes) on ``--cpu-segments`` segments.  Every GPU result is checked against the CPU
words/tokens (a mismatch exits 1).  The results are printed as one table (and, with
``--json``, written to a file).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from gpu_roundtrip import (  # noqa: E402
    default_predictors,
    load_clip,
    model_folders,
    predictor_params,
)

from nacc import codec, coder, npyio  # noqa: E402
from nacc.predictors import base as predictors  # noqa: E402


def segments(clip: np.ndarray, n: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.roll(clip, k, axis=0), np.int32) for k in range(n)]


def cpu_rate(name: str, params: tuple, vocab: int, segs: list[np.ndarray],
             threads: int) -> dict:
    """segments/s of the CPU path (nacc.codec, ``threads`` processes)."""
    opts = codec.Options(predictor=name, params=params, vocab=vocab)
    items = [(f"s{k}.npy", npyio.from_array(s)) for k, s in enumerate(segs)]
    t0 = time.perf_counter()
    arc = b"".join(codec.compress_segments(items, opts, threads=threads))
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in codec.decompress_archive(arc, threads=threads))
    t_dec = time.perf_counter() - t0
    return {"encode_seg_s": n / t_enc, "decode_seg_s": n / t_dec}


def table(rows: list[dict]) -> str:
    """The results as one fixed-width table (GPU rows beside their predictor's CPU rows)."""
    head = (f"{'predictor':11s} {'path':13s} {'batch':>6s} {'encode seg/s':>13s} "
            f"{'decode seg/s':>13s} {'enc/CPU1':>9s} {'dec/CPU1':>9s} {'GPU MiB':>8s}  result")
    lines = [head, "-" * len(head)]
    for r in rows:
        batch = str(r["batch"]) if "batch" in r else f"{r['threads']}p"
        ratio = (f"{r['encode_vs_cpu1']:9.2f} {r['decode_vs_cpu1']:9.2f}" if "batch" in r
                 else f"{'':9s} {'':9s}")
        mib = f"{r['gpu_peak_bytes'] / 2**20:8.0f}" if "batch" in r else f"{'':8s}"
        result = ("identical" if r["identical"] else "MISMATCH") if "batch" in r else ""
        lines.append(f"{r['predictor']:11s} {r['path']:13s} {batch:>6s} "
                     f"{r['encode_seg_s']:13.3f} {r['decode_seg_s']:13.3f} {ratio} {mib}  "
                     f"{result}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=0, help="frames per segment (0: all 600)")
    ap.add_argument("--crop", default="", help="HxW: keep the top-left HxW of each frame")
    ap.add_argument("--vocab", type=int, default=1024, help="< 1024: tokens modulo V")
    ap.add_argument("--batches", default="1,16,256,max")
    ap.add_argument("--max-lanes", type=int, default=4096, help="cap of the 'max' batch")
    ap.add_argument("--cpu-segments", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--predictors", default="")
    ap.add_argument("--model", action="append", default=[], metavar="ARCH=DIR",
                    help="model folder of transformer / lstm (default: the shipped ones)")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    from nacc.kernels.triton import accelerate
    from nacc.kernels.triton import batch as gb
    from nacc.kernels.triton.runtime import cuda_available, triton_importable

    if not triton_importable():
        print("skip: torch/triton not installed")
        return 0
    cuda = args.device.startswith("cuda")
    if cuda and not cuda_available():
        print(f"skip: --device {args.device} needs a CUDA GPU and none is available "
              "(run with --device interpret for a toy check)")
        return 0
    import torch

    clip = load_clip(args.frames, args.crop, args.vocab)
    fs = clip.shape[1:]
    models = model_folders(args.model)
    names = [n for n in args.predictors.split(",") if n] or default_predictors()
    dev_name = torch.cuda.get_device_name() if cuda else "triton interpreter (CPU)"
    title = (f"device: {dev_name}; segments of {clip.shape[0]} frames {fs[0]}x{fs[1]} "
             f"(V = {args.vocab}); CPU: {os.cpu_count()} cores, {args.threads} processes")
    print(title, flush=True)
    report: dict = {"device": dev_name, "frames": int(clip.shape[0]), "results": []}
    rows = report["results"]
    bad = 0
    for name in names:
        params = predictor_params(name, models)
        cpu_pred = predictors.build(name, args.vocab, fs, dict(params))
        tp = accelerate(cpu_pred, args.device)
        ref_segs = segments(clip, max(2, args.cpu_segments))
        ref_words = [coder.encode_intervals(*cpu_pred.intervals(s), cpu_pred.precision)
                     for s in ref_segs]
        cpu_rate(name, params, args.vocab, ref_segs[:1], 1)     # numba compile / warm up
        one = cpu_rate(name, params, args.vocab, ref_segs, 1)
        rows.append({"predictor": name, "path": "cpu", "threads": 1, **one})
        if args.threads > 1:
            many = cpu_rate(name, params, args.vocab, ref_segs, args.threads)
            rows.append({"predictor": name, "path": "cpu", "threads": args.threads, **many})
        print(f"{name}: CPU 1 process encode {one['encode_seg_s']:.3f} seg/s, decode "
              f"{one['decode_seg_s']:.3f} seg/s", flush=True)
        for b in args.batches.split(","):
            if b == "max":
                size = min(args.max_lanes,
                           gb.auto_batch(tp, tp.backend, clip.size, args.max_lanes))
            else:
                size = int(b)
            segs = segments(clip, size)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            gb.intervals_many(tp, segs[:1], batch=1)          # compile / warm up
            t0 = time.perf_counter()
            words = gb.encode_many(tp, segs, batch=size, threads=args.threads)
            t_enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            toks = gb.decode_tokens_many(tp, [(w, s.size) for w, s in zip(words, segs)],
                                         batch=size)
            t_dec = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() if cuda else 0
            k = min(len(segs), len(ref_segs))
            ok = all(np.array_equal(words[j], ref_words[j]) for j in range(k)) and all(
                np.array_equal(t, s.ravel()) for t, s in zip(toks, segs))
            bad += not ok
            row = {"predictor": name, "path": args.device, "batch": size,
                   "encode_seg_s": size / t_enc, "decode_seg_s": size / t_dec,
                   "encode_vs_cpu1": (size / t_enc) / one["encode_seg_s"],
                   "decode_vs_cpu1": (size / t_dec) / one["decode_seg_s"],
                   "gpu_peak_bytes": int(peak), "identical": bool(ok)}
            rows.append(row)
            print(f"{name}: batch {size} encode {row['encode_seg_s']:.3f} seg/s, decode "
                  f"{row['decode_seg_s']:.3f} seg/s, {'identical' if ok else 'MISMATCH'}",
                  flush=True)
    print()
    print(title)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
