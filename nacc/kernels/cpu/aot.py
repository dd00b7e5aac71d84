"""Ahead-of-time compiled build of the CPU hot path (``numba.pycc``), cached per user.

A short ``nacc compress``/``decompress`` spends most of its time importing numba and starting
LLVM, not coding.  This module compiles the kernels of the fast paths -- the same Python
functions, by the same numba, so the results are identical -- into a plain CPython extension
that needs neither numba nor LLVM to load:

    rans_encode(start u32[N], freq u32[N], precision) -> u32 words   (rans.encode)
    cm_enc_pass(tokens, cfg, perm, S, TB) -> (start, freq)             (cm.enc_pass)
    cm_dec_pass(words, n, cfg, perm, inv, S, TB) -> int32 tokens       (cm.dec_pass)
    cm_apply_counters(ht, kinds, values, nodes, counters, cfg)        (cm.apply_counters)

``kernels()`` returns them, or None; callers then use the numba JIT kernels (the reference,
and the fallback).  pycc does not check argument types (a wrong dtype would crash), so each
entry point is wrapped in a check that sends any other types to the JIT kernel; like the JIT
kernels (``nogil=True``) they release the GIL.  The extension is built on first use into
``$NACC_CACHE`` (default ``$XDG_CACHE_HOME/nacc``, else ``~/.cache/nacc``) under
``aot-<key>/``, where the key hashes the kernel sources, numba's, numpy's and Python's
versions and the platform; a build runs in a child process, in a temporary folder renamed
into place when complete (a file lock keeps concurrent first runs from building twice).  A
failed build leaves ``aot-<key>.failed`` (its log) and is not retried until
``python -m nacc.kernels.cpu.aot build`` is run.  ``NACC_AOT=0`` disables the extension
(``NACC_AOT=1`` is the default); ``python -m nacc.kernels.cpu.aot build|status|path``.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig

MODULE = "_nacc_aot"
_HERE = os.path.dirname(os.path.abspath(__file__))
# the sources the extension is compiled from, relative to this folder (any change gives a
# new cache key); ../../spec.py holds CODER_PRECISION, which the kernels compile in
SOURCES = ("aot.py", "rans.py", "cm.py", "cmstate.py", "../../spec.py")
BUILD_TIMEOUT_S = 900

_loaded = None          # the CompiledKernels once loaded
_tried = False          # load attempted in this process (success or not)
_error = ""             # why the extension is not in use (for ``status``)


def enabled() -> bool:
    return os.environ.get("NACC_AOT", "1").strip().lower() not in ("0", "no", "off", "false")


def cache_root() -> str:
    root = os.environ.get("NACC_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        root = os.path.join(base, "nacc")
    return root


def _numba_version_text() -> bytes:
    """numba's version file, read without importing numba ("" when numba is absent)."""
    out = b""
    for pkg in ("numba", "llvmlite"):
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            out += pkg.encode() + b":absent;"
            continue
        path = os.path.join(list(spec.submodule_search_locations)[0], "_version.py")
        try:
            with open(path, "rb") as f:
                out += pkg.encode() + b":" + f.read() + b";"
        except OSError:
            out += pkg.encode() + b":" + path.encode() + b";"
    return out


def key() -> str:
    import numpy as np

    h = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(_HERE, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    h.update(_numba_version_text())
    h.update(f"{np.__version__}|{sys.version}|{sys.implementation.cache_tag}|"
             f"{sysconfig.get_config_var('EXT_SUFFIX')}|{sysconfig.get_platform()}|"
             f"{os.uname().machine if hasattr(os, 'uname') else ''}".encode())
    return h.hexdigest()[:20]


def build_dir() -> str:
    return os.path.join(cache_root(), f"aot-{key()}")


def _ext_path(folder: str) -> str:
    return os.path.join(folder, MODULE + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def _import(path: str):
    loader = importlib.machinery.ExtensionFileLoader(MODULE, path)
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    if spec is None:
        raise ImportError(f"{path}: not an extension module")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _arr(a, dtype, ndim, write=False) -> bool:
    import numpy as np

    return (isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.ndim == ndim
            and a.flags.c_contiguous and a.flags.aligned and (a.flags.writeable or not write))


_STATE = (("uint32", 1), ("int32", 2), ("int32", 1), ("uint32", 1), ("int32", 2), ("int32", 1))


def _state_ok(S, TB) -> bool:
    return (isinstance(S, tuple) and len(S) == len(_STATE)
            and all(_arr(a, d, n, write=True) for a, (d, n) in zip(S, _STATE))
            and isinstance(TB, tuple) and len(TB) == 3 and all(_arr(t, "int32", 1) for t in TB))


class CompiledKernels:
    """The extension's entry points, each behind a check of its arguments: pycc's wrappers do
    not check dtypes or layouts (a mismatch would crash), so arguments that do not have the
    compiled types go to the numba JIT kernel instead (same results, see the module doc)."""

    def __init__(self, ext):
        self.ext = ext
        self.__file__ = ext.__file__

    def rans_encode(self, start, freq, precision):
        if _arr(start, "uint32", 1) and _arr(freq, "uint32", 1) and start.shape == freq.shape:
            return self.ext.rans_encode(start, freq, int(precision))
        from nacc.kernels.cpu import rans

        return rans.encode(start, freq, precision)

    def cm_enc_pass(self, tokens, cfg, perm, S, TB):
        if (_arr(tokens, "int32", 1) and _arr(cfg, "int64", 1) and _arr(perm, "int64", 1)
                and _state_ok(S, TB)):
            return self.ext.cm_enc_pass(tokens, cfg, perm, S, TB)
        from nacc.kernels.cpu import cm

        return cm.enc_pass(tokens, cfg, perm, S, TB)

    def cm_dec_pass(self, words, n, cfg, perm, inv, S, TB):
        if (_arr(words, "uint32", 1) and _arr(cfg, "int64", 1) and _arr(perm, "int64", 1)
                and _arr(inv, "int64", 1) and _state_ok(S, TB)):
            return self.ext.cm_dec_pass(words, int(n), cfg, perm, inv, S, TB)
        from nacc.kernels.cpu import cm

        return cm.dec_pass(words, n, cfg, perm, inv, S, TB)

    def cm_apply_counters(self, ht, kinds, values, nodes, counters, cfg):
        if (_arr(ht, "uint32", 1, write=True) and _arr(kinds, "int64", 1)
                and _arr(values, "int64", 1) and _arr(nodes, "int64", 1)
                and _arr(counters, "uint32", 1) and _arr(cfg, "int64", 1)
                and kinds.shape == values.shape == nodes.shape == counters.shape):
            return self.ext.cm_apply_counters(ht, kinds, values, nodes, counters, cfg)
        from nacc.kernels.cpu import cm

        return cm.apply_counters(ht, kinds, values, nodes, counters, cfg)


def kernels():
    """The compiled kernels (a ``CompiledKernels``), or None (disabled, or no build
    possible): the caller then runs the numba JIT kernels, which give identical results."""
    global _loaded, _tried, _error
    if not enabled():
        return None
    if _tried:
        return _loaded
    _tried = True
    try:
        folder = build_dir()
        path = _ext_path(folder)
        if not os.path.exists(path):
            if os.path.exists(folder + ".failed"):
                _error = f"an earlier build failed (log: {folder}.failed)"
                return None
            os.makedirs(os.path.dirname(folder), exist_ok=True)  # no cache folder: no build
            from nacc.kernels.cpu import compile_notice

            compile_notice.show()
            ok, log = _build_in_child(folder)
            if not ok:
                _error = f"build failed (log: {folder}.failed)"
                return None
        _loaded = CompiledKernels(_import(path))
    except Exception as e:  # noqa: BLE001  (any problem: fall back to the JIT kernels)
        _error = f"{type(e).__name__}: {e}"
        _loaded = None
    return _loaded


def status() -> str:
    k = kernels()
    if k is not None:
        return f"in use: {k.__file__}"
    return "disabled (NACC_AOT=0)" if not enabled() else f"not in use: {_error}"


# ---------------------------------------------------------------------------------------
# building
def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))


def _build_in_child(folder: str) -> tuple[bool, str]:
    """Build in a child process (numba stays out of this one); records a failure."""
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        r = subprocess.run([sys.executable, "-m", "nacc.kernels.cpu.aot", "build", "--quiet",
                            "--dir", folder], capture_output=True, env=env,
                           timeout=BUILD_TIMEOUT_S)
        ok = r.returncode == 0 and os.path.exists(_ext_path(folder))
        log = (r.stdout + r.stderr).decode(errors="replace")
    except (OSError, subprocess.SubprocessError) as e:
        ok, log = False, f"{type(e).__name__}: {e}"
    if not ok:
        try:
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            with open(folder + ".failed", "w") as f:
                f.write(log)
        except OSError:
            pass
    return ok, log


def _signatures():
    from numba import types as t

    u32 = t.Array(t.uint32, 1, "C")
    i32 = t.Array(t.int32, 1, "C")
    i64 = t.Array(t.int64, 1, "C")
    i32_2 = t.Array(t.int32, 2, "C")
    state = t.Tuple((u32, i32_2, i32, u32, i32_2, i32))        # cmstate.new_state
    tables = t.UniTuple(i32, 3)                                 # cmstate.TABLES
    return {
        "rans_encode": (u32(u32, u32, t.int64), "rans", "encode"),
        "cm_enc_pass": (t.Tuple((u32, u32))(i32, i64, i64, state, tables), "cm", "enc_pass"),
        "cm_dec_pass": (i32(u32, t.int64, i64, i64, i64, state, tables), "cm", "dec_pass"),
        "cm_apply_counters": (t.none(u32, i64, i64, i64, u32, i64), "cm", "apply_counters"),
    }


def build(folder: str | None = None, verbose: bool = True) -> str:
    """Compile the extension into ``folder`` (default: ``build_dir()``), atomically; returns
    the extension's path.  Imports numba; when this process has not imported it yet, numba
    compiles with an empty cache of its own (removed after), never from the user's."""
    import fcntl
    import shutil
    import tempfile
    import time

    fresh_cache = None
    if "numba" not in sys.modules:
        # compile every callee from its source: numba's disk cache does not notice a change
        # to a module whose constants a cached function froze in (e.g. cmstate's C_* slots)
        fresh_cache = tempfile.mkdtemp(prefix="nacc-aot-numba-cache-")
        os.environ["NUMBA_CACHE_DIR"] = fresh_cache
    import numba.pycc.compiler as pycc_compiler
    from numba.pycc import CC

    from nacc.kernels.cpu import cm, rans

    class _NoGilFlags(pycc_compiler.Flags):
        """The kernels are ``nogil=True`` under the JIT; pycc's wrappers would keep the GIL
        (callers such as the Triton batch driver code lanes from threads)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _NoGilFlags  # type: ignore[misc]  # pycc has no option for it

    try:
        folder = folder or build_dir()
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        with open(folder + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.exists(_ext_path(folder)):
                return _ext_path(folder)
            t0 = time.perf_counter()
            tmp = tempfile.mkdtemp(prefix=".aot-build-", dir=parent)
            try:
                cc = CC(MODULE)
                cc.output_dir = tmp
                cc.verbose = False
                mods = {"rans": rans, "cm": cm}
                for name, (sig, mod, fn) in _signatures().items():
                    cc.export(name, sig)(getattr(mods[mod], fn).py_func)
                cc.compile()
                if not os.path.exists(_ext_path(tmp)):
                    raise RuntimeError(f"pycc wrote no {os.path.basename(_ext_path(tmp))}")
                _import(_ext_path(tmp))     # loads in this process before it goes live
                try:
                    os.rename(tmp, folder)
                except OSError:
                    if not os.path.exists(_ext_path(folder)):
                        raise
            finally:
                if os.path.exists(tmp):
                    shutil.rmtree(tmp, ignore_errors=True)
            try:
                os.unlink(folder + ".failed")
            except OSError:
                pass
            if verbose:
                print(f"nacc: built {_ext_path(folder)} in {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr)
    finally:
        if fresh_cache:
            shutil.rmtree(fresh_cache, ignore_errors=True)
    return _ext_path(folder)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nacc.kernels.cpu.aot",
                                 description="ahead-of-time build of nacc's CPU kernels")
    ap.add_argument("command", choices=("build", "status", "path"))
    ap.add_argument("--dir", default=None, help="build folder [the per-user cache]")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.command == "path":
        print(a.dir or build_dir())
        return 0
    if a.command == "status":
        print(status())
        return 0
    try:
        build(a.dir, verbose=not a.quiet)
    except Exception as e:  # noqa: BLE001  (reported, exit 1: the build is optional)
        print(f"nacc: AOT build failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
