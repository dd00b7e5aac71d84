"""GPU throughput of the Triton path against the CPU path, in one run, on the same segments.

    python bench/bench_gpu.py                     # CUDA; skips (exit 0) without a GPU
    python bench/bench_gpu.py --device interpret --frames 2 --batches 1,2 --cpu-segments 2

Segments are the real dev clip (tests/data/commavq_dev.npy, 600 frames of 8x16) rotated by
k frames for segment k, so that lanes differ in content; ``--frames`` shortens them.  For
each predictor with a kernel and each batch size (1, 16, 256 and the largest that fits in
80% of the free GPU memory by default) it reports

* encode: segments/s of ``encode_many`` (tables on the GPU, rANS on the CPU, pipelined);
* decode: segments/s of ``decode_many`` (tables and rANS decoding on the GPU);
* peak GPU memory allocated by torch during the run of that batch size;

and, in the same run, the CPU path (``nacc.codec``: one process, and ``--threads``
processes) on ``--cpu-segments`` segments.  Every GPU result is checked against the CPU
words/tokens (a mismatch exits 1).  Results go to stdout and, with ``--json``, to a file.
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
sys.path.insert(0, str(ROOT))

from nacc import codec, coder, npyio  # noqa: E402
from nacc.predictors import base as predictors  # noqa: E402

CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"


def segments(clip: np.ndarray, n: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.roll(clip, k, axis=0), np.int32) for k in range(n)]


def cpu_rate(name: str, segs: list[np.ndarray], threads: int) -> dict:
    """segments/s of the CPU path (nacc.codec, ``threads`` processes)."""
    opts = codec.Options(predictor=name, vocab=1024)
    items = [(f"s{k}.npy", npyio.from_array(s)) for k, s in enumerate(segs)]
    t0 = time.perf_counter()
    arc = b"".join(codec.compress_segments(items, opts, threads=threads))
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in codec.decompress_archive(arc, threads=threads))
    t_dec = time.perf_counter() - t0
    return {"encode_seg_s": n / t_enc, "decode_seg_s": n / t_dec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=0, help="frames per segment (0: all 600)")
    ap.add_argument("--batches", default="1,16,256,max")
    ap.add_argument("--max-lanes", type=int, default=4096, help="cap of the 'max' batch")
    ap.add_argument("--cpu-segments", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--predictors", default="")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    from nacc.kernels.triton import accelerate, has_kernel
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

    clip = np.load(CLIP)
    if args.frames:
        clip = clip[:args.frames]
    fs = clip.shape[1:]
    names = [n for n in args.predictors.split(",") if n] or [
        n for n in predictors.available() if has_kernel(n)]
    dev_name = torch.cuda.get_device_name() if cuda else "triton interpreter (CPU)"
    print(f"device: {dev_name}; segments of {clip.shape[0]} frames {fs[0]}x{fs[1]}; "
          f"CPU: {os.cpu_count()} cores")
    report = {"device": dev_name, "frames": int(clip.shape[0]), "results": []}
    bad = 0
    for name in names:
        cpu_pred = predictors.get(name)(1024, fs)
        tp = accelerate(cpu_pred, args.device)
        ref_segs = segments(clip, max(2, args.cpu_segments))
        ref_words = [coder.encode_intervals(*cpu_pred.intervals(s), cpu_pred.precision)
                     for s in ref_segs]
        cpu_rate(name, ref_segs[:1], 1)                       # numba compile / warm up
        one = cpu_rate(name, ref_segs, 1)
        many = cpu_rate(name, ref_segs, args.threads)
        print(f"{name}: CPU 1 process encode {one['encode_seg_s']:.3f} seg/s, decode "
              f"{one['decode_seg_s']:.3f} seg/s; {args.threads} processes encode "
              f"{many['encode_seg_s']:.3f}, decode {many['decode_seg_s']:.3f}")
        report["results"].append({"predictor": name, "path": "cpu", "threads": 1, **one})
        report["results"].append({"predictor": name, "path": "cpu", "threads": args.threads,
                                  **many})
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
            report["results"].append(row)
            print(f"{name}: batch {size:5d} encode {row['encode_seg_s']:9.3f} seg/s "
                  f"(x{row['encode_vs_cpu1']:.2f} CPU 1p), decode {row['decode_seg_s']:9.3f} "
                  f"seg/s (x{row['decode_vs_cpu1']:.2f}), peak GPU memory "
                  f"{peak / 2**20:.0f} MiB, {'identical' if ok else 'MISMATCH'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
