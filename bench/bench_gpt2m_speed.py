"""How fast nacc's integer gpt2m runs on this CPU: a model of gpt2m's shape with random
weights (the cost of the integer inference does not depend on the weights' values).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gpt2m_speed.py [--frames 20] \
        [--decode-frames 1] [--lanes 8] [--json F]

gpt2m's shape: 24 layers of width 1024, 16 heads, MLP 4096, 1024 codes + BOS, 20 frames of
129 positions.  Steps, each timed once (a single run) in wall-clock and in this process's CPU
seconds (``time.process_time``: on a shared machine, what one free core would take):

1. ``import``: a random float checkpoint (``.safetensors``) of that shape imported with
   ``nacc.gpt.importer`` (what ``decompress.py`` of a gpt submission does first);
2. ``encode``: ``--frames`` frames of the real dev clip compressed with ``--predictor gpt``:
   one window pass over ``frames * 129`` positions (with 20 frames, the pass that every later
   window of a segment repeats: 5 new frames each);
3. ``decode``: ``--decode-frames`` frames decoded (one KV-cache step per token), as one
   segment and as ``--lanes`` segments decoded together.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacc
from nacc import codec
from nacc.gpt.intref import GPTConfig

GPT2M = GPTConfig(n_layer=24, d_model=1024, n_head=16, d_ff=4096, n_vocab=1025,
                  n_positions=20 * 129)
DEV = Path(__file__).resolve().parent.parent / "tests" / "data" / "commavq_dev.npy"


def random_checkpoint(path: Path, cfg: GPTConfig, seed: int = 0) -> Path:
    import torch

    from nacc.gpt import torch_ref as TR

    torch.manual_seed(seed)
    TR.save_safetensors(TR.GPT(cfg), path)
    return path


class Clock:
    """Wall and CPU seconds since it started."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, out: dict, key: str) -> float:
        out[f"{key}_s"] = time.perf_counter() - self.wall
        out[f"{key}_cpu_s"] = time.process_time() - self.cpu
        return out[f"{key}_cpu_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--decode-frames", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from nacc.gpt.importer import import_gpt

    clip = np.load(DEV)
    out: dict = {"config": GPT2M._asdict()}
    with tempfile.TemporaryDirectory(prefix="nacc-gpt2m-") as tmp:
        d = Path(tmp)
        ck = random_checkpoint(d / "model.safetensors", GPT2M)
        c = Clock()
        import_gpt(ck, d / "model")
        c.stop(out, "import")
        ck.unlink()
        model = str(d / "model")
        print(f"import: {out['import_cpu_s']:.1f} s CPU", file=sys.stderr, flush=True)

        c = Clock()
        nacc.compress(clip[:a.frames], predictor="gpt", model=model)
        t = c.stop(out, "encode")
        out["encode_frames"] = a.frames
        out["encode_tokens_per_cpu_s"] = a.frames * 128 / t
        print(f"encode: {a.frames} frames ({a.frames * 129} positions, one pass) in "
              f"{t:.1f} s CPU", file=sys.stderr, flush=True)

        n = a.decode_frames
        one = nacc.compress(clip[:n], predictor="gpt", model=model)
        c = Clock()
        assert np.array_equal(nacc.decompress(one), clip[:n])
        t = c.stop(out, "decode")
        out["decode_tokens_per_cpu_s"] = n * 128 / t
        print(f"decode: {n * 128} tokens, 1 lane, in {t:.1f} s CPU",
              file=sys.stderr, flush=True)

        segs = {f"s{k}.npy": clip[k * n:(k + 1) * n] for k in range(a.lanes)}
        many = nacc.compress_segments(segs, predictor="gpt", model=model)
        c = Clock()
        for name, raw in codec.decompress_archive(many):     # the lanes decode together
            assert np.array_equal(np.load(io.BytesIO(raw)), segs[name])
        out["decode_lanes"] = a.lanes
        t = c.stop(out, "decode_lanes")
        out["decode_lanes_tokens_per_cpu_s"] = a.lanes * n * 128 / t
        print(f"decode: {a.lanes} x {n * 128} tokens, {a.lanes} lanes, in {t:.1f} s CPU",
              file=sys.stderr, flush=True)
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
