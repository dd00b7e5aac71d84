"""Kernel of the ``prevframe`` predictor (spec: ``nacc.predictors.prevframe``).

One program per lane (segment); the V-entry table is a vector across the program's threads,
and the program steps through the lane's tokens.  State per lane: ``cond`` int32
[(C + 1) * V] in memory, ``order0`` int32 [V] in memory between launches and in registers
within one.  The row sum of ``cond[ctx]`` is recomputed from the row (it equals the CPU's
running ``sums[ctx]``), and ``sum(order0)`` is carried as a scalar.
"""
import triton
import triton.language as tl

from .common import vcumsum, vmax, vmin, vsum
from .rans import TOTAL, advance, quantile


@triton.jit
def prevframe_kernel(tok_ptr, toff_ptr, tlen_ptr, cond_ptr, o0_ptr, tab_ptr,
                     start_ptr, freq_ptr, words_ptr, woff_ptr, rst_ptr, rpos_ptr,
                     i0, i1, V, C, FS,
                     MODE: tl.constexpr, BV: tl.constexpr):
    lane = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BV)
    vm = idx < V
    v64 = V.to(tl.int64)
    room = TOTAL - v64                              # 2**24 - V
    toff = tl.load(toff_ptr + lane)
    tlen = tl.load(tlen_ptr + lane).to(tl.int64)
    end = tl.minimum(tlen, i1.to(tl.int64))
    crow0 = cond_ptr + lane * (C + 1).to(tl.int64) * v64
    o0 = tl.load(o0_ptr + lane * v64 + idx, mask=vm, other=0)
    o0sum = vsum(o0)
    if MODE == 2:
        woff = tl.load(woff_ptr + lane)
        state = tl.load(rst_ptr + lane).to(tl.uint64, bitcast=True)
        pos = tl.load(rpos_ptr + lane)
    for i in range(i0.to(tl.int64), end):
        # context: 0 in the first frame, else 1 + (token one frame earlier) % C
        prev = tl.load(tok_ptr + toff + i - FS, mask=i >= FS, other=0)
        ctx = tl.where(i >= FS, 1 + prev % C, 0)
        crow = crow0 + ctx.to(tl.int64) * v64
        c = tl.load(crow + idx, mask=vm, other=0)
        csum = vsum(c)
        if MODE != 4:
            score = (1 + 32 * c + o0).to(tl.int64)
            total = v64 + 32 * csum.to(tl.int64) + o0sum.to(tl.int64)
            f = tl.where(vm, 1 + score * room // total, 0)
            rem = TOTAL - vsum(f)
            best_score = vmax(tl.where(vm, score, -1))
            best = vmin(tl.where(vm & (score == best_score), idx, BV))
            f = f + tl.where(idx == best, rem, 0)
            if MODE == 0 or MODE == 3:
                row = lane * (i1 - i0).to(tl.int64) + (i - i0)
                tl.store(tab_ptr + row * v64 + idx, f.to(tl.int32), mask=vm)
        if MODE == 2:
            q = quantile(state, 0)
            cum = vcumsum(f)
            x = vsum((vm & (cum <= q)).to(tl.int32))
            x = tl.minimum(x, V - 1)
            tl.store(tok_ptr + toff + i, x)
        elif MODE != 3:
            x = tl.load(tok_ptr + toff + i)
        if MODE == 1 or MODE == 2:
            start = vsum(tl.where(idx < x, f, 0))
            freq = vsum(tl.where(idx == x, f, 0))
            if MODE == 1:
                tl.store(start_ptr + toff + i, start.to(tl.int32))
                tl.store(freq_ptr + toff + i, freq.to(tl.int32))
            else:
                state, pos = advance(state, pos, words_ptr, woff, start, freq, 0, i >= 0)
        if MODE != 3:
            # update: cond[ctx, x] += 1, halve the row above 4096; order0 likewise at 65536
            hit = (idx == x).to(tl.int32)
            c = c + hit
            c = tl.where(csum + 1 > 4096, c >> 1, c)
            tl.store(crow + idx, c, mask=vm)
            o0 = o0 + hit
            o0sum += 1
            if o0sum > 65536:
                o0 = o0 >> 1
                o0sum = vsum(o0)
        # the next token may read what this one wrote (its cond row, its decoded value)
        # from other threads of the program
        tl.debug_barrier()
    if MODE != 3:
        tl.store(o0_ptr + lane * v64 + idx, o0, mask=vm)
    if MODE == 2:
        tl.store(rst_ptr + lane, state.to(tl.int64, bitcast=True))
        tl.store(rpos_ptr + lane, pos)
