"""Triton kernel sources, one module per predictor plus the shared rANS decode step.

These modules are never imported directly by the rest of nacc: ``nacc.kernels.triton.runtime``
loads them once per *flavor* ("cuda": compiled ``triton.jit`` kernels; "interpret": the same
source under Triton's interpreter, on torch CPU tensors), so that both can live in one
process without touching ``TRITON_INTERPRET``.  Inside the package, modules import each
other relatively (``from .rans import ...``) so that a flavor's kernels call that flavor's
helpers.

Conventions shared by every kernel:

* a *lane* is one segment; lane ``b`` owns tokens ``tok[toff[b] : toff[b] + tlen[b]]`` of a
  flat int32 buffer and its own predictor state (int64 offsets everywhere: a batch may hold
  more than 2**31 state entries);
* ``MODE`` (constexpr) picks what a launch does with tokens ``[i0, min(i1, tlen[b]))``:
  TABLES (write the full table of each token, then update), INTERVALS (write start/freq of the
  known token, then update), DECODE (rANS-decode the token, write it, then update), PEEK (the
  table of token ``i0`` only, no update), PUSH (update with the known token ``i0`` only);
* rANS decoding follows ``nacc.kernels.cpu.rans`` word for word (u64 state, u32 words read
  from the back, coder precision 24; tables of total 2**P are scaled by ``24 - P``).
"""
TABLES = 0
INTERVALS = 1
DECODE = 2
PEEK = 3
PUSH = 4
