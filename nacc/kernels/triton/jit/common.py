"""Vector reductions for the kernels, usable both compiled and interpreted.

``tl.sum`` / ``tl.max`` / ``tl.min`` / ``tl.cumsum`` are themselves ``@triton.jit`` functions
of ``triton.language.standard``, decorated when triton is imported: if that happened without
``TRITON_INTERPRET=1`` they cannot run under the interpreter.  The core builtins
``tl.reduce`` / ``tl.associative_scan`` with the standard combine functions are what those
functions lower to for int32/int64 inputs (identical code on the GPU), and the interpreter
recognises the same combine functions and runs them as numpy reductions.  So the kernels
call these helpers and work under either flavor whatever the import order.

All inputs here are int32 or int64 blocks, reduced along ``axis`` (a constexpr, default 0:
a 1-D vector; 1: each row of a 2-D block); results keep the input dtype (the standard
functions would widen only sub-32-bit integers).

``helper`` decorates device functions (functions that kernels call): ``triton.jit`` when
compiling; under the interpreter, the interpreter's own rewrite of the function, called
directly.  An interpreted ``@triton.jit`` device function re-patches ``triton.language`` on
every call, which made the ``cm`` kernel (thousands of small calls per token) several times
slower; the kernel launch already patches it once for the whole run.
"""
import os

import triton
import triton.language as tl


def _interpreting() -> bool:
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def helper(fn):
    """Decorator of device functions (see the module docstring)."""
    if _interpreting():
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(fn).rewrite()
    return triton.jit(fn)


@helper
def vsum(x, axis: tl.constexpr = 0):
    return tl.reduce(x, axis, tl.standard._sum_combine)


@helper
def vmax(x, axis: tl.constexpr = 0):
    return tl.reduce(x, axis, tl.standard._elementwise_max)


@helper
def vmin(x, axis: tl.constexpr = 0):
    return tl.reduce(x, axis, tl.standard._elementwise_min)


@helper
def vcumsum(x):
    return tl.associative_scan(x, 0, tl.standard._sum_combine)


def const(value: int):
    """A module-level integer constant for kernels: ``tl.constexpr`` when compiling (the
    compiler only reads globals that are constexpr), a plain int under the interpreter (whose
    loop indices are Python ints, and ``int % constexpr`` is not defined).  Evaluated when the
    kernel module is imported, i.e. inside ``runtime``'s flavor scope."""
    return int(value) if _interpreting() else tl.constexpr(int(value))
