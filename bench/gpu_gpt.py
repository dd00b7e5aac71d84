"""The ``gpt`` predictor at gpt2m's size on a GPU: exact round trips with the CPU, segments/s.

    python bench/gpu_gpt.py                       # CUDA (skips, exit 0, without a GPU)
    python bench/gpu_gpt.py --device interpret --tiny     # dry run on the CPU, tiny sizes

1. A random GPT-2 in the published layout (``nacc.gpt.torch_ref``; gpt2m's shape: 24 layers,
   width 1024, 16 heads, MLP 4096, 1025 ids, 2580 positions; seed ``--seed``) saved as a
   ``pytorch_model.bin`` and imported with ``nacc.gpt.importer.import_gpt`` (A = 8).
2. The first ``--frames`` frames of the real dev clip (``tests/data/commavq_dev.npy``) under
   ``--predictor gpt`` (window ``--window``, stride ``--stride``; with 25 frames, 20 / 5: two
   windows, so decoding crosses a window change with its context pass).  The CPU path at
   this size is slow (the numpy reference's 2580-token window pass took about 48 s per layer
   on a loaded 2-core machine, one run), so the CPU legs are prefixes:
   * the GPU's words (tables from its window passes) decoded on the GPU (KV-cache steps) ==
     the clip, all ``--frames`` frames;
   * CPU intervals of the first ``--cpu-frames`` frames == the GPU's (of the whole clip),
     and CPU words == GPU words of that prefix as a clip of its own;
   * those CPU words decoded on the GPU == the prefix;
   * the GPU's words of the whole clip decoded on the CPU (its stepper) == the clip's first
     ``--cpu-tokens`` tokens;
   prints "ALL IDENTICAL: N checks" when all hold (exit 1 otherwise).
3. segments/s for ``--batches`` (``max``: the most lanes that fit in the GPU's free memory,
   halved on out-of-memory): encode (intervals of every token, window passes of all
   segments batched as lanes) of ``--frames``-frame segments, and decode of
   ``--decode-frames``-frame segments (stepwise; segments/s of ``--frames``-frame segments
   is then extrapolated from the measured tokens/s and printed as such).

Single runs; every number printed with what it measured.  ``--json F`` writes them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nacc import coder  # noqa: E402
from nacc.gpt.intref import GPTConfig  # noqa: E402

GPT2M = GPTConfig(n_layer=24, d_model=1024, n_head=16, d_ff=4096, n_vocab=1025,
                  n_positions=2580)
TINY = GPTConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, n_vocab=17, n_positions=21)


def log(msg: str) -> None:
    print(msg, flush=True)


def build_model(cfg: GPTConfig, folder: Path, seed: int) -> str:
    """A random checkpoint of ``cfg`` in the published layout, imported into ``folder``."""
    import torch

    from nacc.gpt import torch_ref as TR
    from nacc.gpt.importer import import_gpt

    t0 = time.time()
    torch.manual_seed(seed)
    m = TR.GPT(cfg)
    with torch.no_grad():                        # LayerNorm gains and biases off their init
        for name, p in m.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    ck = folder / "pytorch_model.bin"
    TR.save_checkpoint(m, ck)
    del m
    t1 = time.time()
    import_gpt(ck, folder / "model", heads=cfg.n_head, act_bits=8)
    ck.unlink()
    log(f"model: random {cfg.n_layer}x{cfg.d_model} GPT (seed {seed}) saved in "
        f"{t1 - t0:.1f} s, imported in {time.time() - t1:.1f} s")
    return str(folder / "model")


def clip(cfg: GPTConfig, frames: int, shape: tuple[int, int]) -> np.ndarray:
    v = np.load(ROOT / "tests" / "data" / "commavq_dev.npy")[:frames, :shape[0], :shape[1]]
    return (v.astype(np.int32) % cfg.vocab).astype(np.int32)


def words_of(start, freq, precision: int) -> np.ndarray:
    return coder.encode_intervals(start, freq, precision)


def round_trips(pred, gl, video, cpu_frames: int, cpu_tokens: int) -> int:
    """The checks of step 2; returns their number (exits on a mismatch)."""
    from nacc.coder import StepDecoder

    def check(ok: bool, what: str, t0: float) -> None:
        if not ok:
            raise SystemExit(f"MISMATCH: {what}")
        log(f"  {what} ({time.time() - t0:.1f} s)")

    fs = pred.frame_size
    t0 = time.time()
    s_g, f_g = gl.video_intervals([video])[0]
    w_gpu = words_of(s_g, f_g, pred.precision)
    log(f"  GPU encode of {len(video)} frames: {time.time() - t0:.1f} s (compiles included), "
        f"{w_gpu.size} words ({32 * w_gpu.size / video.size:.3f} bits/token)")
    t0 = time.time()
    dec = gl.decode_lanes([(w_gpu, len(video))])[0]
    check(np.array_equal(dec, video), f"GPU words decoded on the GPU (KV-cache steps) == "
          f"clip, {len(video)} frames", t0)
    k = min(cpu_frames, len(video))
    t0 = time.time()
    s_c, f_c = pred.intervals(video[:k])
    check(np.array_equal(s_c, s_g[:k * fs]) and np.array_equal(f_c, f_g[:k * fs]),
          f"CPU intervals of the first {k} frames == the GPU's", t0)
    t0 = time.time()
    w_cpu = words_of(s_c, f_c, pred.precision)
    w_gk = words_of(*gl.video_intervals([video[:k]])[0], pred.precision)
    check(np.array_equal(w_cpu, w_gk), f"CPU words == GPU words of the first {k} frames "
          f"({w_cpu.size} words)", t0)
    t0 = time.time()
    check(np.array_equal(gl.decode_lanes([(w_cpu, k)])[0], video[:k]),
          f"CPU words decoded on the GPU == clip, {k} frames", t0)
    t0 = time.time()
    n = min(cpu_tokens, video.size)
    st = pred.stepper()
    dec_c = StepDecoder(w_gpu, pred.precision)
    got = np.empty(n, np.int32)
    for i in range(n):
        got[i] = dec_c.decode(st.table())
        st.push(int(got[i]))
    check(np.array_equal(got, video.ravel()[:n]), f"GPU words ({len(video)} frames) decoded "
          f"on the CPU == clip, first {n} tokens", t0)
    return 5


def lane_bytes(cfg: GPTConfig, cap: int) -> int:
    """Device bytes per lane: its KV cache and a window pass's activations."""
    from nacc.kernels.triton.gpt import GptTriton

    act = cap * (4 * 3 * cfg.d_model + 8 * cfg.d_model + 4 * cfg.d_ff + 6 * cfg.d_model
                 + cfg.d_ff + 64)
    return GptTriton.cache_bytes(cfg, cap) + 2 * act


def throughput(pred, device: str, video: np.ndarray, batches: list[str], dec_frames: int,
               max_lanes: int) -> list[dict]:
    import torch

    from nacc.kernels.triton.gpt import GptLanes

    fs = pred.frame_size
    cap = pred.window * (fs + 1)
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info()
        fit = max(1, min(max_lanes, int(0.8 * free) // lane_bytes(pred.cfg, cap)))
    else:
        fit = max_lanes
    rows = []
    for b in batches:
        lanes = fit if b == "max" else int(b)
        while True:
            try:
                segs = [(video + 37 * k) % pred.vocab for k in range(lanes)]
                gl = GptLanes(pred, device, lanes=lanes)
                sync(device)
                t0 = time.time()
                iv = gl.video_intervals(segs)
                sync(device)
                t_enc = time.time() - t0
                words = [words_of(s[:dec_frames * fs], f[:dec_frames * fs], pred.precision)
                         for s, f in iv]
                t0 = time.time()
                dec = gl.decode_lanes([(w, dec_frames) for w in words])
                t_dec = time.time() - t0
                break
            except torch.cuda.OutOfMemoryError:
                if lanes == 1:
                    raise
                lanes //= 2
                torch.cuda.empty_cache()
                log(f"  out of memory: {lanes} lanes")
        if not all(np.array_equal(d, s[:dec_frames]) for d, s in zip(dec, segs)):
            raise SystemExit(f"MISMATCH: decode at batch {lanes}")
        tok_s = lanes * dec_frames * fs / t_dec
        row = {"batch": b, "lanes": lanes, "frames": len(video), "encode_s": t_enc,
               "encode_segments_per_s": lanes / t_enc, "decode_frames": dec_frames,
               "decode_s": t_dec, "decode_tokens_per_s": tok_s,
               "decode_segments_per_s_extrapolated": tok_s / (len(video) * fs)}
        log(f"  batch {b:>4} ({lanes} lanes): encode {lanes / t_enc:8.3f} segments/s "
            f"({len(video)}-frame segments, {t_enc:.2f} s); decode {tok_s:9.1f} tokens/s "
            f"({dec_frames}-frame segments, {t_dec:.2f} s) = "
            f"{row['decode_segments_per_s_extrapolated']:.4f} {len(video)}-frame segments/s "
            "(extrapolated)")
        rows.append(row)
        torch.cuda.empty_cache() if device.startswith("cuda") else None
    return rows


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer toy model, frames 2x3")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--cpu-frames", type=int, default=1)
    ap.add_argument("--cpu-tokens", type=int, default=48)
    ap.add_argument("--decode-frames", type=int, default=2)
    ap.add_argument("--batches", default="1,16,max")
    ap.add_argument("--max-lanes", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            log("SKIP: torch is not installed")
            return 0
        if not torch.cuda.is_available():
            log("SKIP: no CUDA GPU")
            return 0
        torch.backends.cuda.matmul.allow_tf32 = False
        log(f"device: {torch.cuda.get_device_name()}")
    cfg, shape = (TINY, (2, 3)) if a.tiny else (GPT2M, (8, 16))
    from nacc.predictors import get

    out: dict = {"device": a.device, "config": cfg._asdict()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(cfg, Path(tmp), a.seed)
        from nacc.kernels.triton.gpt import GptLanes

        pred = get("gpt")(cfg.vocab, shape, model=folder, window=a.window, stride=a.stride)
        video = clip(cfg, a.frames, shape)
        log(f"clip: {video.shape} of the dev clip, window {a.window}, stride {a.stride}")
        gl = GptLanes(pred, a.device, lanes=1)
        n = round_trips(pred, gl, video, a.cpu_frames, a.cpu_tokens)
        log(f"ALL IDENTICAL: {n} checks")
        out["checks"] = n
        if not a.skip_bench:
            log("segments/s (single runs):")
            out["throughput"] = throughput(pred, a.device, video, a.batches.split(","),
                                           min(a.decode_frames, a.frames), a.max_lanes)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
