"""GPU backend (Triton): predictor tables computed by Triton kernels, bit-exact with the CPU.

``accelerate(pred, device)`` returns a predictor with the same contract and identity as
``pred`` (name, params, model hash, precision) whose tables come from the kernels:

* ``"auto"``: the GPU when torch sees CUDA, triton imports and ``pred`` has a kernel, else
  ``pred`` unchanged (also, with a warning, when the kernel fails to compile or its first-use
  self-check against the CPU fails);
* ``"cuda"`` / ``"cuda:N"``: the GPU, or NaccError when there is none or ``pred`` has no
  kernel;
* ``"interpret"``: the same kernels under Triton's interpreter on CPU tensors (exact, slow;
  for tests);
* ``"cpu"``: ``pred`` unchanged.

A ``TritonPredictor``'s lane methods (``intervals_lanes``, ``decode_lanes``; the lane
runner in ``nacc.kernels.triton.runner``) run many segments per launch; that is where the
GPU wins, and the archive pipeline (``nacc.codec``) hands them batches of lanes.  The bytes
never depend on the device or the batch.

Kernels exist for ``uniform``, ``prevframe``, ``cm``, ``transformer`` and ``lstm`` (each
following its predictor's integer spec; tests compare every path with the CPU under the
interpreter).

Layout: ``jit/`` holds the kernel sources (one module per predictor), ``runtime`` loads them
per backend, ``base`` holds the driver base class and registry, ``drivers`` and ``neural`` the
drivers (device buffers and launches; each registers itself), ``predictor`` wraps a CPU
predictor, ``runner`` runs many lanes per launch and ``batch`` is its public face,
``compile_check`` compiles every kernel for a GPU target without a GPU (a check).
"""
from __future__ import annotations

from nacc.errors import NaccError

from .runtime import Backend, cuda_available, resolve


def gpu_available() -> bool:
    """True when torch sees a CUDA device and triton imports."""
    return cuda_available()


def has_kernel(pred) -> bool:
    """True when ``pred`` (a predictor, its class or its name) has Triton kernels."""
    from .base import has_kernel as _has

    return _has(getattr(pred, "inner", pred))


def accelerate(pred, device: str):
    """``pred`` with its tables computed on ``device`` (see the module docstring)."""
    from .predictor import TritonPredictor

    if isinstance(pred, TritonPredictor):
        pred = pred.inner
    d = (device or "cpu").strip().lower()
    if d == "auto":
        backend = resolve("auto")
        if backend is None or not has_kernel(pred):
            return pred
        try:
            return _checked(TritonPredictor(pred, backend))
        except Exception as err:  # noqa: BLE001 (auto never fails: the CPU computes the same)
            import warnings

            from .runner import GpuFallbackWarning

            warnings.warn(f"--device auto: the GPU path of {pred.name!r} is unusable here "
                          f"({err}); computing on the CPU", GpuFallbackWarning, stacklevel=2)
            return pred
    backend = resolve(d)
    if backend is None:
        return pred
    if not has_kernel(pred):
        raise NaccError(f"--device {device}: predictor {pred.name!r} has no GPU kernel "
                        "(use --device cpu or auto)")
    try:
        return _checked(TritonPredictor(pred, backend))
    except NaccError:
        raise
    except Exception as err:
        raise NaccError(f"--device {device}: the GPU kernel of {pred.name!r} failed to run "
                        f"({type(err).__name__}: {err}); use --device cpu") from err


def _checked(tp):
    """``tp`` after its first-use self-check (``predictor.self_check``: a small clip coded
    on both sides; NaccError on any difference, kernel compile errors propagate)."""
    from .predictor import self_check

    self_check(tp.inner, tp.backend)
    return tp


def encode_many(pred, token_arrays, batch=None, device=None, threads=None):
    """rANS words of many token arrays (see ``nacc.kernels.triton.batch``)."""
    from .batch import encode_many as _f

    return _f(pred, token_arrays, batch, device, threads)


def decode_many(pred, segments, batch=None, device=None):
    """Tokens of many ``(words, n_frames)`` segments (see ``nacc.kernels.triton.batch``)."""
    from .batch import decode_many as _f

    return _f(pred, segments, batch, device)


__all__ = ["Backend", "NaccError", "accelerate", "decode_many", "encode_many",
           "gpu_available", "has_kernel"]
