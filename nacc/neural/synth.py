"""Synthetic token videos with a known conditional law, and their exact code length.

The process (all parameters in :class:`SynthConfig`) generates a token video (T, H, W) over
a vocabulary of V codes.  Each frame has a hidden *mode* ``m``: one of the 9 global motions
``(dy, dx)`` in ``{-1, 0, 1}**2`` or a *scene change* (mode 9).  Modes follow a Markov chain
over frames (stay with ``p_stay``, scene change with ``p_scene``, otherwise a uniform other
motion; the first frame is a scene change).  Given the mode, the tokens of a frame are drawn
in raster order, each from a mixture over its causal neighbourhood:

* ``w_copy``:  the token of the previous frame at ``(y - dy, x - dx)`` (motion shift),
* ``w_left`` / ``w_up``: the already drawn token to the left / above (spatial correlation),
* the rest: a fresh code from a Zipf-like marginal ``prior``.

Every copied code goes through the *substitution kernel* ``K(a -> b)``: it stays with
probability ``1 - p_sub``, otherwise becomes a 'similar' code: codes sit on a ring (a random
permutation of 0..V-1) and ``b`` is drawn with weight ``exp(-|d| / sub_tau)`` over ring
distances ``1 <= |d| <= sub_width``.  In a scene change frame the copy component is absent
(its weight goes to the fresh draw); components falling outside the frame likewise.

Since the mode is hidden, the true conditional of a token given everything already coded
mixes the modes with their exact posterior (a forward pass of the hidden Markov chain,
updated token by token).  :func:`code_lengths` returns ``-log2`` of that probability for
every token: the limit no causal predictor can beat on average.
"""
from __future__ import annotations

import dataclasses
import math

import numba as nb
import numpy as np

N_MODES = 10  # 9 motions + scene change
SCENE = 9


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    vocab: int = 1024
    w_copy: float = 0.80
    w_left: float = 0.08
    w_up: float = 0.06
    p_sub: float = 0.25
    sub_width: int = 3
    sub_tau: float = 1.0
    zipf: float = 1.1
    p_stay: float = 0.85
    p_scene: float = 0.02
    law_seed: int = 1234  # seeds the ring and the prior: the 'codebook', shared across videos


class _Law:
    """Arrays describing the process for one vocabulary (ring order and prior)."""

    def __init__(self, cfg: SynthConfig):
        rng = np.random.default_rng(cfg.law_seed)
        v = cfg.vocab
        self.ring = rng.permutation(v).astype(np.int64)  # ring position -> code
        self.pos = np.empty(v, np.int64)
        self.pos[self.ring] = np.arange(v)  # code -> ring position
        ranks = rng.permutation(v)
        prior = 1.0 / (1.0 + ranks) ** cfg.zipf
        self.prior = prior / prior.sum()
        self.prior_cdf = np.cumsum(self.prior)
        w = cfg.sub_width
        d = np.concatenate([np.arange(-w, 0), np.arange(1, w + 1)])
        k = np.exp(-np.abs(d) / cfg.sub_tau)
        self.sub_d = d.astype(np.int64)
        self.sub_p = k / k.sum()
        self.trans = np.zeros((N_MODES, N_MODES))
        for a in range(N_MODES):
            for b in range(N_MODES):
                if b == SCENE:
                    self.trans[a, b] = cfg.p_scene
                elif a == b:
                    self.trans[a, b] = cfg.p_stay
                elif a == SCENE:
                    self.trans[a, b] = (1 - cfg.p_scene) / 9
                else:
                    self.trans[a, b] = (1 - cfg.p_scene - cfg.p_stay) / 8
        self.trans[SCENE, :SCENE] = (1 - cfg.p_scene) / 9


@nb.njit(cache=True)
def _sub_prob(a, b, pos, sub_d, sub_p, p_sub, v):
    """K(a -> b)."""
    p = 0.0
    if a == b:
        p = 1.0 - p_sub
    d = pos[b] - pos[a]
    d = (d + v // 2) % v - v // 2  # signed ring distance
    for k in range(sub_d.shape[0]):
        if sub_d[k] == d:
            p += p_sub * sub_p[k]
    return p


@nb.njit(cache=True)
def _components(video, t, y, x, mode, w_copy, w_left, w_up):
    """(src_copy, src_left, src_up, w_copy, w_left, w_up, w_new); src = -1 when absent."""
    h, w = video.shape[1], video.shape[2]
    sc = -1
    sl = -1
    su = -1
    wc = 0.0
    wl = 0.0
    wu = 0.0
    if mode != 9 and t > 0:
        dy = mode // 3 - 1
        dx = mode % 3 - 1
        yy = y - dy
        xx = x - dx
        if 0 <= yy < h and 0 <= xx < w:
            sc = video[t - 1, yy, xx]
            wc = w_copy
    if x > 0:
        sl = video[t, y, x - 1]
        wl = w_left
    if y > 0:
        su = video[t, y - 1, x]
        wu = w_up
    return sc, sl, su, wc, wl, wu, 1.0 - wc - wl - wu


@nb.njit(cache=True)
def _sample_sub(a, u, ring, pos, sub_d, sub_p, p_sub, v):
    if u < 1.0 - p_sub:
        return a
    u = (u - (1.0 - p_sub)) / p_sub
    acc = 0.0
    for k in range(sub_d.shape[0]):
        acc += sub_p[k]
        if u < acc or k == sub_d.shape[0] - 1:
            return ring[(pos[a] + sub_d[k]) % v]
    return a


@nb.njit(cache=True)
def _generate(video, modes, uniforms, ring, pos, prior_cdf, sub_d, sub_p, p_sub,
              w_copy, w_left, w_up):
    t_n, h, w = video.shape
    v = prior_cdf.shape[0]
    k = 0
    for t in range(t_n):
        m = modes[t]
        for y in range(h):
            for x in range(w):
                sc, sl, su, wc, wl, wu, wn = _components(video, t, y, x, m, w_copy, w_left, w_up)
                u = uniforms[k]
                u2 = uniforms[k + 1]
                k += 2
                if u < wc:
                    a = sc
                elif u < wc + wl:
                    a = sl
                elif u < wc + wl + wu:
                    a = su
                else:
                    a = -1
                if a >= 0:
                    video[t, y, x] = _sample_sub(a, u2, ring, pos, sub_d, sub_p, p_sub, v)
                else:
                    j = np.searchsorted(prior_cdf, u2 * prior_cdf[-1], side="right")
                    video[t, y, x] = min(j, v - 1)


@nb.njit(cache=True)
def _code_lengths(video, trans, ring, pos, prior, sub_d, sub_p, p_sub, w_copy, w_left, w_up):
    t_n, h, w = video.shape
    v = prior.shape[0]
    out = np.empty(t_n * h * w)
    post = np.zeros(N_MODES)
    post[SCENE] = 1.0  # the first frame is a scene change
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
                    sc, sl, su, wc, wl, wu, wn = _components(video, t, y, x, m, w_copy, w_left,
                                                             w_up)
                    p = wn * prior[s]
                    if sc >= 0:
                        p += wc * _sub_prob(sc, s, pos, sub_d, sub_p, p_sub, v)
                    if sl >= 0:
                        p += wl * _sub_prob(sl, s, pos, sub_d, sub_p, p_sub, v)
                    if su >= 0:
                        p += wu * _sub_prob(su, s, pos, sub_d, sub_p, p_sub, v)
                    pm[m] = p
                    tot += post[m] * p
                out[i] = -math.log2(tot)
                i += 1
                for m in range(N_MODES):
                    post[m] = post[m] * pm[m] / tot
    return out


def generate(shape: tuple[int, int, int], seed, cfg: SynthConfig = SynthConfig()):
    """A token video of ``shape`` (T, H, W) (int32, values 0..cfg.vocab-1) and its modes.

    ``seed``: an int or a sequence of ints (the entropy of ``numpy.random.default_rng``).
    Deterministic in ``(shape, seed, cfg)``.  Returns ``(tokens, modes)``.
    """
    t_n, h, w = (int(s) for s in shape)
    law = _Law(cfg)
    rng = np.random.default_rng(seed)
    modes = np.empty(t_n, np.int64)
    m = SCENE
    for t in range(t_n):
        if t > 0:
            m = int(rng.choice(N_MODES, p=law.trans[m]))
        modes[t] = m
    video = np.zeros((t_n, h, w), np.int32)
    uniforms = rng.random(2 * t_n * h * w)
    _generate(video, modes, uniforms, law.ring, law.pos, law.prior_cdf, law.sub_d, law.sub_p,
              cfg.p_sub, cfg.w_copy, cfg.w_left, cfg.w_up)
    return video, modes


def code_lengths(tokens: np.ndarray, cfg: SynthConfig = SynthConfig()) -> np.ndarray:
    """Exact code length in bits of every token (flat, coding order) under the true process,
    given everything before it (the hidden modes are marginalised exactly)."""
    law = _Law(cfg)
    video = np.ascontiguousarray(tokens, np.int32)
    if video.ndim != 3 or video.min() < 0 or video.max() >= cfg.vocab:
        raise ValueError("tokens must be (T, H, W) with values in 0..vocab-1")
    return _code_lengths(video, law.trans, law.ring, law.pos, law.prior, law.sub_d, law.sub_p,
                         cfg.p_sub, cfg.w_copy, cfg.w_left, cfg.w_up)


def limit_bits_per_token(tokens: np.ndarray, cfg: SynthConfig = SynthConfig()) -> float:
    return float(code_lengths(tokens, cfg).mean())


def corpus(n_videos: int, shape: tuple[int, int, int], seed: int, cfg: SynthConfig = SynthConfig()):
    """``n_videos`` independent videos (list of arrays), video k seeded by ``(seed, k)``."""
    return [generate(shape, seed * 100003 + k, cfg)[0] for k in range(n_videos)]


STREAM_TAG = 0x5EED  # last entropy word of every stream() video; never 0, see stream()


def stream(step: int, n_videos: int, shape: tuple[int, int, int], seed: int,
           cfg: SynthConfig = SynthConfig()):
    """The ``n_videos`` training videos of step ``step`` of the never-repeating stream
    ``seed`` (list of arrays): video ``j`` is seeded by the entropy words
    ``(seed, step, j, STREAM_TAG)`` (each below 2**32).  Distinct ``(seed, step, j)`` give
    distinct seeds, and none is a :func:`corpus` seed: numpy reads an integer seed as its
    32-bit words padded with zeros (``7`` seeds as ``(7, 0, 0)`` does), so the nonzero tag
    keeps the stream apart from every integer seed below 2**96."""
    return [generate(shape, (seed, step, j, STREAM_TAG), cfg)[0] for j in range(n_videos)]
