"""Neural predictors batched across segments against one segment at a time, side by side.

    python bench/bench_lanes.py [--segments 16] [--frames 36] [--repeat 3] [--threads 1]
                                [--model models/commavq-dev-transformer ...]

The real dev clip (``tests/data/commavq_dev.npy``) is cut into ``--segments`` clips of
``--frames`` frames (16 x 36 = 576 frames by default: a 16-segment archive of
commaVQ-shaped clips).  For every model folder it codes those segments three ways in one
process, interleaved, each timed ``--repeat`` times (median reported):

* ``per-segment``: the per-token kernels of ``nacc.kernels.cpu.neural`` that coded one
  segment at a time before the batched pipeline (encode: frame tables + rANS; decode: the
  fused per-token loop), one segment after the other;
* ``lanes=1``: ``nacc.codec`` with one lane per batch (the batched kernels, one segment);
* ``lanes=N``: ``nacc.codec`` with all segments in one batch (the default for N <= 64).

It checks that every way gives the same rANS words and that decoding restores the input
bytes, then prints tokens/s per way and the ratios.  BLAS, OpenMP and numba run on
``--threads`` threads (default 1: per-core figures; ``-T`` of the codec stays 1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None,
                    help="model folder (repeatable; default: both shipped commavq-dev models)")
    ap.add_argument("--data", default=str(ROOT / "tests/data/commavq_dev.npy"))
    ap.add_argument("--segments", type=int, default=16)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP/numba threads in this one process")
    return ap.parse_args(argv)


def _bench_model(folder, args, videos, segments):
    """(name, arch, median seconds per way) of one model folder (see the module docstring)."""
    import numpy as np

    from nacc import codec, coder, container, npyio
    from nacc.kernels.cpu import neural as per_token
    from nacc.neural.modelfile import load_model

    im, _ = load_model(folder)
    cfg = im.cfg
    h, w = cfg.frame_shape
    fixed = (per_token.dims(cfg), per_token.pack(im))

    def old_encode():
        out = []
        for v in videos:
            start, freq = per_token.encode_intervals(v.astype(np.int32), *fixed)
            out.append(coder.encode_intervals(start, freq, cfg.precision))
        return out

    def old_decode(words):
        return [per_token.decode(np.asarray(wd, np.uint32), len(v), h, w, *fixed)
                for wd, v in zip(words, videos)]

    opts = {n: codec.Options(cfg.arch, (("model", folder),), cfg.vocab, (h, w), lanes=n)
            for n in (1, args.segments)}

    def new_encode(n):
        return b"".join(codec.compress_segments(segments, opts[n]))

    def new_decode(buf, n):
        return list(codec.decompress_archive(buf, lanes=n))

    # warm-up (numba compilation, caches) and exactness checks
    old_words = old_encode()
    archive = new_encode(args.segments)
    assert new_encode(1) == archive, "lanes=1 and lanes=N archives differ"
    _, blocks = container.read_archive(archive)
    assert [list(b.words) for b in blocks] == [list(x) for x in old_words], \
        "per-segment and batched rANS words differ"
    for out, v in zip(old_decode(old_words), videos):
        assert np.array_equal(out, v)
    for n in (1, args.segments):
        restored = new_decode(archive, n)
        assert [b for _, b in restored] == [npyio.npy_bytes(s) for _, s in segments]

    times = {k: [] for k in ("old_enc", "new1_enc", "newN_enc", "old_dec", "new1_dec",
                             "newN_dec")}
    for _ in range(args.repeat):
        for key, fn in (("old_enc", old_encode),
                        ("new1_enc", lambda: new_encode(1)),
                        ("newN_enc", lambda: new_encode(args.segments)),
                        ("old_dec", lambda: old_decode(old_words)),
                        ("new1_dec", lambda: new_decode(archive, 1)),
                        ("newN_dec", lambda: new_decode(archive, args.segments))):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return Path(folder).name, cfg.arch, med


def main(argv=None):
    args = _args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)    # before numpy / numba start their pools
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from nacc import npyio

    models = args.model or [str(ROOT / "models/commavq-dev-transformer"),
                            str(ROOT / "models/commavq-dev-lstm")]
    clip = np.load(args.data)
    need = args.segments * args.frames
    if len(clip) < need:
        sys.exit(f"{args.data}: {len(clip)} frames, {need} needed")
    videos = [clip[k * args.frames:(k + 1) * args.frames].astype(np.int16)
              for k in range(args.segments)]
    segments = [(f"s{k:02d}.npy", npyio.from_array(v)) for k, v in enumerate(videos)]
    n_tokens = need * clip.shape[1] * clip.shape[2]
    print(f"{args.segments} segments x {args.frames} frames of {args.data} "
          f"({n_tokens} tokens), {args.threads} thread(s), median of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    rows = [_bench_model(folder, args, videos, segments) for folder in models]

    n = args.segments
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"\n{'model':28s} {'way':12s} {'encode tok/s':>13s} {'decode tok/s':>13s}")
    for name, _, med in rows:
        for way, key in (("per-segment", "old"), ("lanes=1", "new1"), (f"lanes={n}", "newN")):
            print(f"{name:28s} {way:12s} {n_tokens / med[key + '_enc']:13.0f} "
                  f"{n_tokens / med[key + '_dec']:13.0f}")
    print(f"\n{'model':28s} {'ratio':24s} {'encode':>8s} {'decode':>8s}")
    for name, _, med in rows:
        for what, a, b in ((f"lanes={n} / per-segment", "newN", "old"),
                           (f"lanes={n} / lanes=1", "newN", "new1")):
            print(f"{name:28s} {what:24s} {med[b + '_enc'] / med[a + '_enc']:8.2f} "
                  f"{med[b + '_dec'] / med[a + '_dec']:8.2f}")
    return rows


if __name__ == "__main__":
    main()
