"""Where the Triton kernels run, and loading them once per flavor.

A *backend* is ``(flavor, torch device)``:

* ``"cuda"`` (or ``"cuda:N"``): compiled kernels on a CUDA GPU;
* ``"interpret"``: the same kernel source under Triton's interpreter on torch CPU tensors.
  It is exact (integer results equal the GPU's) and slow (about 0.1 GOP/s): tests and toy
  runs only.

Triton decides between compiling and interpreting when a ``@triton.jit`` decorator runs, from
``triton.knobs.runtime.interpret`` (the ``TRITON_INTERPRET`` variable).  ``kernels(flavor)``
therefore executes the modules of ``nacc.kernels.triton.jit`` under a scoped setting of that
knob, as ``nacc.kernels.triton.jit`` itself for "cuda" and as a private copy
``nacc.kernels.triton._interpret`` for "interpret"; nothing global is changed, both can
coexist in one process, and a module is imported only when a driver first needs it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from nacc.errors import NaccError

JIT_DIR = Path(__file__).with_name("jit")
_JIT_PKG = __name__.rsplit(".", 1)[0] + ".jit"
_INTERP_PKG = __name__.rsplit(".", 1)[0] + "._interpret"


def triton_importable() -> bool:
    try:
        import torch  # noqa: F401
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    """True when torch sees a CUDA device and triton imports."""
    if not triton_importable():
        return False
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Backend:
    flavor: str          # "cuda" | "interpret"
    device: str          # torch device string: "cuda", "cuda:1", "cpu"

    @property
    def kernels(self) -> Kernels:
        return kernels(self.flavor)

    def __str__(self) -> str:
        return "triton-interpreter" if self.flavor == "interpret" else f"triton-{self.device}"


def resolve(device: str) -> Backend | None:
    """The backend for a device string; None for "cpu" (and for "auto" without a GPU)."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return None
    if d == "auto":
        return Backend("cuda", "cuda") if cuda_available() else None
    if d == "interpret":
        if not triton_importable():
            raise NaccError("--device interpret: torch and triton are not installed")
        return Backend("interpret", "cpu")
    if d in ("cuda", "gpu") or d.startswith("cuda:"):
        if not triton_importable():
            raise NaccError(f"--device {device}: torch and triton are not installed "
                            "(pip install 'nacc[gpu]')")
        if not cuda_available():
            raise NaccError(f"--device {device}: no CUDA GPU is available to torch "
                            "(use --device cpu or auto)")
        return Backend("cuda", "cuda" if d == "gpu" else d)
    raise NaccError(f"unknown device {device!r} (cpu, cuda, cuda:N, auto, interpret)")


@contextlib.contextmanager
def _interpret_scope(flag: bool):
    """Decorate ``@triton.jit`` functions as interpreted (``flag``) or compiled, restoring the
    previous setting afterwards (``triton.knobs`` on Triton >= 3.4, the variable before)."""
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        with knobs.runtime.scope():
            knobs.runtime.interpret = flag
            yield
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if flag else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


class Kernels:
    """The kernel modules of one flavor, imported on first use (``kernels("cuda").prevframe``).

    "cuda" imports ``nacc.kernels.triton.jit.<name>``; "interpret" imports the same files as
    ``nacc.kernels.triton._interpret.<name>`` (a package whose path is the ``jit`` folder),
    so relative imports between kernel modules stay within the flavor."""

    def __init__(self, flavor: str):
        if flavor not in ("cuda", "interpret"):
            raise ValueError(f"unknown kernel flavor {flavor!r}")
        self.flavor = flavor
        self.package = _JIT_PKG if flavor == "cuda" else _INTERP_PKG

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self.flavor == "interpret" and _INTERP_PKG not in sys.modules:
            pkg = types.ModuleType(_INTERP_PKG)
            pkg.__path__ = [str(JIT_DIR)]
            pkg.__package__ = _INTERP_PKG
            sys.modules[_INTERP_PKG] = pkg
        with _interpret_scope(self.flavor == "interpret"):
            mod = importlib.import_module(f"{self.package}.{name}")
        setattr(self, name, mod)
        return mod


_LOADED: dict[str, Kernels] = {}


def kernels(flavor: str) -> Kernels:
    """The kernels of ``flavor`` ("cuda" or "interpret")."""
    if flavor not in _LOADED:
        _LOADED[flavor] = Kernels(flavor)
    return _LOADED[flavor]
