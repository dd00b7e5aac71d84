"""A compile check: every kernel compiled for a GPU target, without a GPU.

Triton's compiler runs on any machine (it ships ``ptxas``); compiling each kernel and mode
for, e.g., ``sm_90`` catches type errors, unsupported operations and layout problems that
the interpreter does not see.  It runs no kernel on a device.
``python -m nacc.kernels.triton.compile_check [ARCH [LABEL]]`` compiles everything (only the
variants whose label contains LABEL, e.g. "cm") and prints one line per variant; the tests
call ``compile_all``.  The launches of the neural kernels (``neural_variants``) are recorded
from a run of a tiny model under the interpreter, so their signatures and constexprs are
exactly the ones the driver makes.
"""
from __future__ import annotations

import sys

import numpy as np

from .jit import DECODE, INTERVALS, PEEK, PUSH, TABLES

MODES = {"TABLES": TABLES, "INTERVALS": INTERVALS, "DECODE": DECODE, "PEEK": PEEK,
         "PUSH": PUSH}


def variants():
    """``(label, kernel name, signature, constexprs, options)`` of every launch the drivers
    make (integer arguments typed as Triton types them when their value fits 32 bits)."""
    out = []
    for bv in (16, 1024):
        out.append((f"uniform_tables BV={bv}", ("uniform", "uniform_tables"),
                    {"tab_ptr": "*i32", "n_rows": "i32", "V": "i32", "base": "i32",
                     "r": "i32", "BV": "constexpr"}, {"BV": bv}, {}))
    out.append(("uniform_intervals", ("uniform", "uniform_intervals"),
                {"tok_ptr": "*i32", "start_ptr": "*i32", "freq_ptr": "*i32", "n": "i32",
                 "base": "i32", "r": "i32", "BLOCK": "constexpr"}, {"BLOCK": 1024}, {}))
    out.append(("uniform_decode", ("uniform", "uniform_decode"),
                {"tok_ptr": "*i32", "toff_ptr": "*i64", "tlen_ptr": "*i32", "words_ptr": "*i64",
                 "woff_ptr": "*i64", "rst_ptr": "*i64", "rpos_ptr": "*i64", "n_lanes": "i32",
                 "max_len": "i32", "base": "i32", "r": "i32", "SHIFT": "i32",
                 "LANES": "constexpr"}, {"LANES": 32}, {"num_warps": 1}))
    pf_sig = {"tok_ptr": "*i32", "toff_ptr": "*i64", "tlen_ptr": "*i32", "cond_ptr": "*i32",
              "o0_ptr": "*i32", "tab_ptr": "*i32", "start_ptr": "*i32", "freq_ptr": "*i32",
              "words_ptr": "*i64", "woff_ptr": "*i64", "rst_ptr": "*i64", "rpos_ptr": "*i64",
              "i0": "i32", "i1": "i32", "V": "i32", "C": "i32", "FS": "i32",
              "MODE": "constexpr", "BV": "constexpr"}
    for mname, mode in MODES.items():
        for bv in (16, 1024):
            out.append((f"prevframe {mname} BV={bv}", ("prevframe", "prevframe_kernel"),
                        pf_sig, {"MODE": mode, "BV": bv}, {"num_warps": 4, "num_stages": 1}))
    cm_sig = {"tok_ptr": "*i32", "toff_ptr": "*i64", "tlen_ptr": "*i32", "cfg_ptr": "*i64",
              "perm_ptr": "*i32", "inv_ptr": "*i32", "sq_ptr": "*i32", "st_ptr": "*i32",
              "rt_ptr": "*i32", "ht_ptr": "*i32", "w_ptr": "*i32", "apm_ptr": "*i32",
              "mc_ptr": "*i32", "cw_ptr": "*i32", "capm_ptr": "*i32", "HTS": "i32", "WS": "i32",
              "APMS": "i32", "MCS": "i32", "CWS": "i32", "CAPMS": "i32", "scr": "*i64",
              "NLP": "i32", "tab_ptr": "*i32", "start_ptr": "*i32", "freq_ptr": "*i32",
              "words_ptr": "*i64", "woff_ptr": "*i64", "rst_ptr": "*i64", "rpos_ptr": "*i64",
              "i0": "i32", "i1": "i32", "MODE": "constexpr", "LANES": "constexpr"}
    for mname, mode in MODES.items():
        out.append((f"cm {mname} LANES=32", ("cm", "cm_kernel"), cm_sig,
                    {"MODE": mode, "LANES": 32}, {"num_warps": 1, "num_stages": 1}))
    return out


_TYPES = {"int8": "*i8", "int32": "*i32", "int64": "*i64"}


def _arg_type(value) -> str:
    """Triton's signature type of one launch argument (a torch tensor or a Python int)."""
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    return _TYPES[str(value.dtype).removeprefix("torch.")]


def neural_variants(model_folder: str, vocab: int, frame_shape: tuple[int, int],
                    tokens) -> list[tuple]:
    """Variants (as ``variants()``) of every distinct neural kernel launch the driver makes
    to encode and decode ``tokens`` with the model in ``model_folder``, recorded from a run
    under the interpreter."""
    import inspect

    from nacc import coder
    from nacc.predictors.base import build

    from .base import LaneBatch
    from .neural import NeuralDriver
    from .runtime import Backend

    pred = build(_arch_of(model_folder), vocab, frame_shape, {"model": model_folder})
    drv = NeuralDriver(pred, Backend("interpret", "cpu"))
    seen: dict = {}

    def record(kernel, grid, *args, **kwargs):
        fn = kernel.fn if hasattr(kernel, "fn") else kernel
        names = list(inspect.signature(fn).parameters)
        sig = {n: _arg_type(a) for n, a in zip(names, args)}
        sig.update({n: "constexpr" for n in kwargs})
        consts = dict(sorted(kwargs.items()))
        key = (fn.__name__, tuple(sig.items()), tuple(consts.items()))
        if key not in seen:
            label = f"{drv.arch} {fn.__name__} " + " ".join(f"{k}={v}" for k, v in consts.items())
            seen[key] = (label, ("neural", fn.__name__), sig, consts, {})
        kernel[grid](*args, **kwargs)

    drv._run = record  # type: ignore[method-assign]  # record each launch, then run it
    tok = np.ascontiguousarray(tokens, np.int32)
    start, freq = drv.intervals(LaneBatch.for_tokens([tok], "cpu"), drv.new_state(1))
    words = coder.encode_intervals(start.numpy()[:tok.size].view(np.uint32),
                                   freq.numpy()[:tok.size].view(np.uint32), pred.precision)
    drv.decode(LaneBatch.for_words([words], [tok.size], "cpu"), drv.new_state(1))
    list(drv.tables(LaneBatch.for_tokens([tok], "cpu"), drv.new_state(1), 0, 1))
    return list(seen.values())


def _arch_of(model_folder: str) -> str:
    import json
    from pathlib import Path

    return str(json.loads((Path(model_folder) / "config.json").read_text())["arch"])


def compile_all(arch: int = 90, only: str | None = None, exclude: str | None = None,
                extra: list[tuple] | None = None) -> list[tuple[str, dict]]:
    """Compile every variant for ``sm_<arch>`` (labels containing ``only``, not containing
    ``exclude``; ``extra``: more variants, e.g. ``neural_variants``); returns ``(label, asm
    dict)`` pairs and raises on the first failure.  The ``cm`` kernel takes about 30 s of CPU
    per mode."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .runtime import kernels

    ks = kernels("cuda")
    target = GPUTarget("cuda", arch, 32)
    done = []
    for label, (mod, fn), sig, consts, opts in variants() + list(extra or []):
        if (only and only not in label) or (exclude and exclude in label):
            continue
        src = ASTSource(fn=getattr(getattr(ks, mod), fn), signature=sig, constexprs=consts)
        # integer kernels: floating-point fusion is irrelevant; asking for it explicitly
        # keeps Triton 3.9 from warning about its changing default
        compiled = triton.compile(src, target=target, options={"enable_fp_fusion": False, **opts})
        done.append((label, compiled.asm))
    return done


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arch = int(argv[0]) if argv else 90
    only = argv[1] if len(argv) > 1 else None
    for label, asm in compile_all(arch, only):
        print(f"sm_{arch} {label}: ptx {len(asm['ptx'])} chars, cubin {len(asm['cubin'])} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
