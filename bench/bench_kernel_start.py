"""How good the mixture head's starting kernel is, before any training.

    NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_kernel_start.py \
        [--process base v64-wide v2048-still v1024-busy-10x12] [--clips 24] [--frames 100]

For each process of ``bench_train_defaults.py`` (the same corpus and unseen test clip):
the code length of the test clip under the true process with only its substitution
kernel ``K(a -> b)`` replaced by an estimate (every other part -- the hidden motion modes,
the copy / neighbour / fresh weights, the marginal -- exact), in bits/token against the
exact limit.  Estimates: the row softmax of ``nacc.training.train.kernel_start`` without
corpus statistics (``none``) and from the corpus's ``copy_counts`` (``counts``, what
``nacc train`` starts from).  The difference to the limit is what the kernel alone costs;
training moves the kernel from there, and the rest of the model adds its own excess.

Measured 2026-12-04 (24 clips x 100 frames; the start of ``nacc train`` uses the 90% of
clips it trains on, which changes these by under 0.3%):

    process             limit             none           counts
    base               3.2182   4.8184  +49.7%   3.3203   +3.2%
    v64-wide           3.2115   4.4432  +38.4%   3.2681   +1.8%
    v2048-still        2.5190   3.5858  +42.4%   2.6159   +3.8%
    v1024-busy-10x12   3.9733   5.2346  +31.7%   4.1398   +4.2%

The start the head had before (KERNEL_STAY on the diagonal, the z-tested pair prior of
``substitution_prior`` where positive, KERNEL_OTHER elsewhere) gave 2.8039 (+11.3%) on
v2048-still, about what the trained models then reached: the kernel was their bottleneck.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numba as nb
import numpy as np

from nacc.neural import synth
from nacc.neural.synth import N_MODES, SCENE, _components, _Law
from nacc.training.train import copy_counts, kernel_start

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_defaults import PROCESSES


@nb.njit(cache=True)
def _code_lengths_with(video, trans, prior, kern, w_copy, w_left, w_up):
    """synth's exact code lengths, with the dense kernel ``kern[a, b]`` for K(a -> b)."""
    t_n, h, w = video.shape
    out = np.empty(t_n * h * w)
    post = np.zeros(N_MODES)
    post[SCENE] = 1.0
    pm = np.empty(N_MODES)
    i = 0
    for t in range(t_n):
        if t > 0:
            new = np.zeros(N_MODES)
            for a in range(N_MODES):
                for b in range(N_MODES):
                    new[b] += post[a] * trans[a, b]
            post = new / new.sum()
        for y in range(h):
            for x in range(w):
                s = video[t, y, x]
                tot = 0.0
                for m in range(N_MODES):
                    if post[m] == 0.0:
                        pm[m] = 0.0
                        continue
                    sc, sl, su, wc, wl, wu, wn = _components(video, t, y, x, m, w_copy,
                                                             w_left, w_up)
                    p = wn * prior[s]
                    if sc >= 0:
                        p += wc * kern[sc, s]
                    if sl >= 0:
                        p += wl * kern[sl, s]
                    if su >= 0:
                        p += wu * kern[su, s]
                    pm[m] = p
                    tot += post[m] * p
                out[i] = -math.log2(tot)
                i += 1
                for m in range(N_MODES):
                    post[m] = post[m] * pm[m] / tot
    return out


def _true_kernel(cfg, law):
    """The process's own K(a -> b) as a dense (V, V) matrix (a check of the method: with
    it the code lengths are the limit)."""
    v = cfg.vocab
    kern = np.eye(v) * (1 - cfg.p_sub)
    for d, p in zip(law.sub_d, law.sub_p):
        kern[np.arange(v), law.ring[(law.pos + d) % v]] += cfg.p_sub * p
    return kern


def _softmax_rows(logits):
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def measure(process, clips, frames, test_frames):
    """(limit, bits with the constant start, bits with the counted start) of ``process``."""
    over, hw = PROCESSES[process]
    cfg = synth.SynthConfig(**over)
    law = _Law(cfg)
    corpus = synth.corpus(clips, (frames, *hw), 1, cfg)
    test = np.ascontiguousarray(synth.generate((test_frames, *hw), 2, cfg)[0], np.int32)

    def bits(kern):
        return float(_code_lengths_with(test, law.trans, law.prior, kern, cfg.w_copy,
                                        cfg.w_left, cfg.w_up).mean())

    limit = synth.limit_bits_per_token(test, cfg)
    assert abs(bits(_true_kernel(cfg, law)) - limit) < 1e-9 * limit
    none = bits(_softmax_rows(kernel_start(None, cfg.vocab)))
    counts = bits(_softmax_rows(kernel_start(copy_counts(corpus, cfg.vocab), cfg.vocab)))
    return limit, none, counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--process", nargs="+", default=list(PROCESSES), choices=list(PROCESSES))
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--test-frames", type=int, default=300)
    args = ap.parse_args(argv)
    print(f"{'process':17s} {'limit':>7s}  {'none':>15s}  {'counts':>15s}")
    for p in args.process:
        lim, none, counts = measure(p, args.clips, args.frames, args.test_frames)
        print(f"{p:17s} {lim:7.4f}  {none:7.4f} {100 * (none / lim - 1):+6.1f}%  "
              f"{counts:7.4f} {100 * (counts / lim - 1):+6.1f}%", flush=True)


if __name__ == "__main__":
    main()
