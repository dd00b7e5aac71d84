"""Neural predictors: bits/token, quantization cost and integer CPU speed.

    python bench/bench_neural.py --model models/NAME --data tests/data/commavq_dev.npy \
        --frames 300:600 [--threads 1]

For the model folder it reports, on the given frames (never the training frames):
* bits/token of the integer model (ideal -log2 of the tables, and the actual rANS words);
* bits/token of the float (QAT) torch model from the training checkpoint ``FOLDER.ckpt``,
  and the quantization cost = integer / float - 1;
* encode speed (``intervals``: frame-level pass once per frame, head for all tokens of a
  frame) and decode speed (fused frame pass + head + rANS per token), tokens/s, with
  ``--threads`` numba threads (1 = one core), after a warm-up run (numba compilation).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numba
import numpy as np

from nacc.kernels.cpu import rans
from nacc.predictors.base import get


def float_bits_from_checkpoint(folder: Path, video) -> float | None:
    ck = folder.with_name(folder.name + ".ckpt")   # nacc.training.train.checkpoint_path
    if not ck.is_file():
        return None
    import torch

    from nacc.neural.config import ModelConfig
    from nacc.training.model import NeuralModel
    from nacc.training.train import float_bits

    st = torch.load(ck, weights_only=True)
    model = NeuralModel(ModelConfig.from_json(st["config"]))
    model.load_state_dict(st.get("best_model", st["model"]))  # the exported weights
    model.set_qat(True)
    return float_bits(model, [video])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--frames", default=None, help="a:b frame range of the data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    video = np.load(args.data).astype(np.int32)
    if args.frames:
        a, b = (int(x) for x in args.frames.split(":"))
        video = video[a:b]
    cfg = json.loads((Path(args.model) / "config.json").read_text())
    pred = get(cfg["arch"])(cfg["vocab"], tuple(cfg["frame_shape"]), model=args.model)
    numba.set_num_threads(args.threads)
    n = video.size

    pred.intervals(video[:2])  # warm-up / compile
    t0 = time.perf_counter()
    start, freq = pred.intervals(video)
    t_enc = time.perf_counter() - t0
    words = rans.encode(start, freq, pred.precision)
    ideal = float(np.sum(pred.precision - np.log2(freq.astype(np.float64))) / n)
    actual = 32.0 * len(words) / n
    pred.decode(rans.encode(start[:2 * pred.frame_size], freq[:2 * pred.frame_size],
                            pred.precision), 2)  # warm-up
    t0 = time.perf_counter()
    dec = pred.decode(words, len(video))
    t_dec = time.perf_counter() - t0
    assert np.array_equal(dec, video), "decode mismatch"
    ref = {}
    try:  # a reference predictor timed in the same run (absolute times vary with load)
        cm = get("cm")(cfg["vocab"], tuple(cfg["frame_shape"]))
        cm.intervals(video[:2])
        t0 = time.perf_counter()
        cs, cf = cm.intervals(video)
        ref["cm_encode_s"] = time.perf_counter() - t0
        cw = rans.encode(cs, cf, cm.precision)
        cm.decode(cw, len(video))
        t0 = time.perf_counter()
        cm.decode(cw, len(video))
        ref["cm_decode_s"] = time.perf_counter() - t0
        ref["cm_bits_per_token"] = float(np.sum(cm.precision - np.log2(cf.astype(np.float64))) / n)
        ref["encode_time_ratio_vs_cm"] = t_enc / ref["cm_encode_s"]
        ref["decode_time_ratio_vs_cm"] = t_dec / ref["cm_decode_s"]
    except Exception as e:  # noqa: BLE001
        ref["cm"] = f"not measured ({type(e).__name__}: {e})"
    fb = float_bits_from_checkpoint(Path(args.model), video)
    res = {
        "model": args.model, "arch": cfg["arch"], "sha256": cfg["sha256"][:16],
        "data": args.data, "frames": args.frames, "tokens": int(n),
        "int_bits_per_token_ideal": ideal, "int_bits_per_token_rans": actual,
        "float_bits_per_token": fb,
        "quant_cost_pct": None if fb is None else 100.0 * (ideal / fb - 1.0),
        "threads": args.threads,
        "encode_tokens_per_s": n / t_enc, "decode_tokens_per_s": n / t_dec,
        **ref,
    }
    for k, v in res.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
