"""numba kernel of the ``uniform`` predictor (spec: ``nacc.predictors.uniform``)."""
from __future__ import annotations

import numpy as np
from numba import njit

from nacc.kernels.cpu import rans


@njit(cache=True, nogil=True)
def decode(words, n, vocab, precision):
    """n tokens from rANS words, every table uniform over vocab of total 2**precision."""
    base = (1 << precision) // vocab
    r = (1 << precision) - base * vocab
    split = r * (base + 1)
    out = np.empty(n, np.int32)
    state, pos = rans.dec_init(words)
    for i in range(n):
        q = rans.dec_quantile(state, precision)
        if q < split:
            s = q // (base + 1)
        else:
            s = r + (q - split) // base
        out[i] = s
        start = s * base + min(s, r)
        freq = base + 1 if s < r else base
        state, pos = rans.dec_advance(state, pos, words, start, freq, precision)
    return out
