"""Cross-device round trip on the real dev clip: archives written with tables computed on the
CPU and on the GPU must be byte-identical, and each must decode on the other device to the
original bytes.

    python bench/gpu_roundtrip.py                      # CUDA; skips (exit 0) without a GPU
    python bench/gpu_roundtrip.py --device interpret --frames 2 --segments 3   # toy, no GPU

For every predictor that has a Triton kernel (default: all of them) it checks, on the clip cut
into ``--segments`` pieces of unequal length:

1. CPU archive (``nacc.codec``, device cpu) == GPU archive (batched API, several batch sizes)
   == GPU archive through ``nacc.codec`` with ``Options(device=...)`` (one segment at a time);
2. the CPU archive decoded on the GPU (batched, and through ``nacc.codec``) == the inputs;
3. the GPU archive decoded on the CPU == the inputs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nacc import codec, npyio  # noqa: E402
from nacc.predictors import base as predictors  # noqa: E402

CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"


def cut(clip: np.ndarray, n_segments: int) -> list[tuple[str, npyio.NpyFile]]:
    """Unequal pieces (lengths 1, 2, 3, ... parts), so lanes of a batch differ in length."""
    weights = np.arange(1, n_segments + 1)
    bounds = np.concatenate([[0], np.cumsum(weights)]) * len(clip) // weights.sum()
    segs = []
    for k in range(n_segments):
        part = np.ascontiguousarray(clip[bounds[k]:bounds[k + 1]])
        if len(part):
            segs.append((f"seg{k:03d}.npy", npyio.from_array(part)))
    return segs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or interpret")
    ap.add_argument("--frames", type=int, default=0, help="use the first N frames (0: all)")
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--predictors", default="", help="comma-separated (default: all with kernels)")
    ap.add_argument("--batches", default="1,2,0", help="lanes per batch to try (0: automatic)")
    args = ap.parse_args(argv)

    from nacc.kernels.triton import has_kernel
    from nacc.kernels.triton.runtime import cuda_available, triton_importable

    if not triton_importable():
        print("skip: torch/triton not installed")
        return 0
    if args.device.startswith("cuda") and not cuda_available():
        print(f"skip: --device {args.device} needs a CUDA GPU and none is available "
              "(run with --device interpret for a toy check)")
        return 0

    clip = np.load(CLIP)
    if args.frames:
        clip = clip[:args.frames]
    segs = cut(clip, args.segments)
    originals = [npyio.npy_bytes(npy) for _, npy in segs]
    names = [n for n in args.predictors.split(",") if n] or [
        n for n in predictors.available() if has_kernel(n)]
    batches = [int(b) or None for b in args.batches.split(",")]
    print(f"clip {CLIP.name}: {clip.shape} {clip.dtype}, {len(segs)} segments, device "
          f"{args.device}, predictors {names}")
    failures = 0
    for name in names:
        opts = codec.Options(predictor=name, vocab=1024)
        t0 = time.perf_counter()
        cpu_arc = b"".join(codec.compress_segments(segs, opts))
        t_cpu = time.perf_counter() - t0
        checks = {}
        for b in batches:
            dev_opts = codec.Options(predictor=name, vocab=1024, device=args.device, lanes=b)
            t0 = time.perf_counter()
            gpu_arc = b"".join(codec.compress_segments(segs, dev_opts))
            checks[f"encode lanes={b or 'auto'}: archive == CPU archive"] = gpu_arc == cpu_arc
        t_gpu = time.perf_counter() - t0
        for b in batches:
            out = [d for _, d in codec.decompress_archive(cpu_arc, device=args.device, lanes=b)]
            checks[f"decode CPU archive on {args.device} lanes={b or 'auto'}"] = out == originals
        out = [d for _, d in codec.decompress_archive(gpu_arc)]
        checks["decode GPU archive on the CPU"] = out == originals
        for label, ok in checks.items():
            print(f"  {name:10s} {'ok  ' if ok else 'FAIL'} {label}")
            failures += not ok
        print(f"  {name:10s} archive {len(cpu_arc)} bytes; encode time GPU/CPU "
              f"{t_gpu / t_cpu:.2f}")
    print("all identical" if not failures else f"{failures} FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
