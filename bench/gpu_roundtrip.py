"""Cross-device round trips on the real dev clip: archives written with tables computed on the
CPU and on the GPU must be byte-identical, and each must decode on the other device to the
original bytes.

    python bench/gpu_roundtrip.py                      # CUDA; skips (exit 0) without a GPU
    python bench/gpu_roundtrip.py --device interpret --frames 4 --crop 2x4 --vocab 16 \\
        --segments 3 --model transformer=DIR --model lstm=DIR     # toy, no GPU

For every predictor that has a Triton kernel (default: all of them; ``transformer`` and
``lstm`` with the shipped models ``models/commavq-dev-<arch>`` unless ``--model`` names
another folder) and for two inputs -- the clip as one segment, and the clip cut into
``--segments`` pieces of unequal length (one archive of many segments, so lanes of a batch
differ in length) -- it checks:

1. CPU archive (``nacc.codec``, device cpu) == the archive written with tables on the device,
   for each lanes-per-batch setting of ``--batches`` (0: automatic);
2. the CPU archive decoded on the device == the inputs, for each setting;
3. the device's archive decoded on the CPU == the inputs.

``--crop HxW`` keeps the top-left HxW tokens of each frame and ``--vocab V`` (< 1024) maps
tokens to ``token % V``: tiny sizes for a dry run under the interpreter.  Prints one line per
check and "ALL IDENTICAL: N checks" when every one holds (exit 0), else exit 1; ``--json``
writes the results to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nacc import codec, npyio  # noqa: E402
from nacc.predictors import base as predictors  # noqa: E402

CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"
NEURAL = ("transformer", "lstm")


def shipped_model(arch: str) -> Path:
    return ROOT / "models" / f"commavq-dev-{arch}"


def load_clip(frames: int = 0, crop: str = "", vocab: int = 1024) -> np.ndarray:
    """The dev clip (int16 T x 8 x 16), optionally its first ``frames`` frames, the top-left
    ``crop`` ("HxW") of each frame and its tokens modulo ``vocab``."""
    clip = np.load(CLIP)
    if frames:
        clip = clip[:frames]
    if crop:
        h, w = (int(x) for x in crop.lower().split("x"))
        clip = clip[:, :h, :w]
    if vocab < 1024:
        clip = clip % np.int16(vocab)
    return np.ascontiguousarray(clip)


def model_folders(pairs: list[str]) -> dict[str, str]:
    """``{arch: folder}`` from ``ARCH=DIR`` pairs, the shipped models by default."""
    out = {a: str(shipped_model(a)) for a in NEURAL}
    for p in pairs:
        arch, _, folder = p.partition("=")
        if arch not in NEURAL or not folder:
            raise SystemExit(f"--model {p!r}: expected transformer=DIR or lstm=DIR")
        out[arch] = folder
    return out


def predictor_params(name: str, models: dict[str, str]) -> tuple:
    """``Options.params`` of a predictor (the model folder of a neural one)."""
    return (("model", models[name]),) if name in NEURAL else ()


def default_predictors() -> list[str]:
    from nacc.kernels.triton import has_kernel

    return [n for n in predictors.available() if has_kernel(n)]


def cut(clip: np.ndarray, n_segments: int) -> list[tuple[str, npyio.NpyFile]]:
    """``n_segments`` pieces of unequal lengths (weights 1..7, repeating), each at least one
    frame when the clip has enough frames (empty pieces are dropped)."""
    weights = 1 + (np.arange(n_segments) * 5) % 7
    bounds = np.concatenate([[0], np.cumsum(weights)]) * len(clip) // weights.sum()
    segs = []
    for k in range(n_segments):
        part = np.ascontiguousarray(clip[bounds[k]:bounds[k + 1]])
        if len(part):
            segs.append((f"seg{k:03d}.npy", npyio.from_array(part)))
    return segs


def round_trips(name: str, params: tuple, vocab: int, inputs: dict, device: str,
                batches: list[int | None]) -> list[dict]:
    """The checks of one predictor on each input (see the module docstring)."""
    rows = []
    for label, segs in inputs.items():
        originals = [npyio.npy_bytes(npy) for _, npy in segs]
        opts = codec.Options(predictor=name, params=params, vocab=vocab)
        t0 = time.perf_counter()
        cpu_arc = b"".join(codec.compress_segments(segs, opts))
        t_cpu = time.perf_counter() - t0

        common = {"predictor": name, "input": label, "cpu_encode_seconds": round(t_cpu, 3),
                  "archive_bytes": len(cpu_arc)}

        def check(what, ok, seconds, common=common):
            rows.append({**common, "check": what, "ok": bool(ok), "seconds": round(seconds, 3)})

        dev_arc = cpu_arc
        for b in batches:
            dev_opts = codec.Options(predictor=name, params=params, vocab=vocab,
                                     device=device, lanes=b)
            t0 = time.perf_counter()
            dev_arc = b"".join(codec.compress_segments(segs, dev_opts))
            check(f"encode on {device} lanes={b or 'auto'}: archive == CPU archive",
                  dev_arc == cpu_arc, time.perf_counter() - t0)
        for b in batches:
            t0 = time.perf_counter()
            out = [d for _, d in codec.decompress_archive(cpu_arc, device=device, lanes=b)]
            check(f"CPU archive decoded on {device} lanes={b or 'auto'} == input",
                  out == originals, time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = [d for _, d in codec.decompress_archive(dev_arc)]
        check(f"{device} archive decoded on the CPU == input", out == originals,
              time.perf_counter() - t0)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or interpret")
    ap.add_argument("--frames", type=int, default=0, help="use the first N frames (0: all)")
    ap.add_argument("--crop", default="", help="HxW: keep the top-left HxW of each frame")
    ap.add_argument("--vocab", type=int, default=1024, help="< 1024: tokens modulo V")
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--predictors", default="", help="comma-separated (default: all with kernels)")
    ap.add_argument("--model", action="append", default=[], metavar="ARCH=DIR",
                    help="model folder of transformer / lstm (default: the shipped ones)")
    ap.add_argument("--batches", default="1,16,0", help="lanes per batch to try (0: automatic)")
    ap.add_argument("--json", default="", help="write the checks to this file")
    args = ap.parse_args(argv)

    from nacc.kernels.triton.runtime import cuda_available, triton_importable

    if not triton_importable():
        print("skip: torch/triton not installed")
        return 0
    if args.device.startswith("cuda") and not cuda_available():
        print(f"skip: --device {args.device} needs a CUDA GPU and none is available "
              "(run with --device interpret for a toy check)")
        return 0

    clip = load_clip(args.frames, args.crop, args.vocab)
    models = model_folders(args.model)
    inputs = {"clip": [("clip.npy", npyio.from_array(clip))],
              f"{args.segments} segments": cut(clip, args.segments)}
    names = [n for n in args.predictors.split(",") if n] or default_predictors()
    batches = [int(b) or None for b in args.batches.split(",")]
    print(f"clip {CLIP.name}: {clip.shape} {clip.dtype} (V = {args.vocab}), "
          f"{len(inputs[f'{args.segments} segments'])} segments, device {args.device}, "
          f"predictors {names}", flush=True)
    rows = []
    for name in names:
        got = round_trips(name, predictor_params(name, models), args.vocab, inputs,
                          args.device, batches)
        for r in got:
            print(f"  {name:11s} {r['input']:12s} {'ok  ' if r['ok'] else 'FAIL'} "
                  f"{r['check']} ({r['seconds']:.2f} s)", flush=True)
        rows += got
    failures = sum(not r["ok"] for r in rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "clip": list(clip.shape),
                                               "checks": rows}, indent=1))
    print(f"ALL IDENTICAL: {len(rows)} checks" if not failures
          else f"{failures} of {len(rows)} checks FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
