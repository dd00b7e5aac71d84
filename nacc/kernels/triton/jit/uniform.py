"""Kernels of the ``uniform`` predictor (spec: ``nacc.predictors.uniform``): symbol ``s`` has
frequency ``base + (s < r)`` with ``base = 2**P // V``, ``r = 2**P - base * V``."""
import triton
import triton.language as tl

from .rans import advance, quantile


@triton.jit
def uniform_tables(tab_ptr, n_rows, V, base, r, BV: tl.constexpr):
    """Fill ``n_rows`` tables (int32 [n_rows, V]); one program per row."""
    row = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BV)
    for v0 in range(0, V, BV):
        s = v0 + idx
        f = base + (s < r).to(tl.int32)
        tl.store(tab_ptr + row * V + s, f, mask=s < V)


@triton.jit
def uniform_intervals(tok_ptr, start_ptr, freq_ptr, n, base, r, BLOCK: tl.constexpr):
    """``(start, freq)`` of ``n`` tokens (flat, any number of lanes); fully parallel."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    s = tl.load(tok_ptr + i, mask=m, other=0).to(tl.int64)
    tl.store(start_ptr + i, (s * base + tl.minimum(s, r)).to(tl.int32), mask=m)
    tl.store(freq_ptr + i, (base + (s < r).to(tl.int64)).to(tl.int32), mask=m)


@triton.jit
def uniform_decode(tok_ptr, toff_ptr, tlen_ptr, words_ptr, woff_ptr, rst_ptr, rpos_ptr,
                   n_lanes, max_len, base, r, SHIFT, LANES: tl.constexpr):
    """Decode every lane; a program holds LANES lanes that step through tokens together."""
    lane = tl.program_id(0) * LANES + tl.arange(0, LANES)
    lm = lane < n_lanes
    toff = tl.load(toff_ptr + lane, mask=lm, other=0)
    tlen = tl.load(tlen_ptr + lane, mask=lm, other=0)
    woff = tl.load(woff_ptr + lane, mask=lm, other=0)
    state = tl.load(rst_ptr + lane, mask=lm, other=0).to(tl.uint64, bitcast=True)
    pos = tl.load(rpos_ptr + lane, mask=lm, other=0)
    base64 = base.to(tl.int64)
    r64 = r.to(tl.int64)
    split = r64 * (base64 + 1)
    for i in range(0, max_len):
        act = lm & (i < tlen)
        q = quantile(state, SHIFT)
        s = tl.where(q < split, q // (base64 + 1), r64 + (q - split) // base64)
        start = s * base64 + tl.minimum(s, r64)
        freq = base64 + (s < r64).to(tl.int64)
        state, pos = advance(state, pos, words_ptr, woff, start, freq, SHIFT, act)
        tl.store(tok_ptr + toff + i, s.to(tl.int32), mask=act)
    tl.store(rst_ptr + lane, state.to(tl.int64, bitcast=True), mask=lm)
    tl.store(rpos_ptr + lane, pos, mask=lm)
