"""GPU backend (Triton). ``accelerate(pred, device)`` returns a predictor whose tables are
computed on the GPU, identical to the CPU ones."""
from __future__ import annotations

from nacc.errors import NaccError


def gpu_available() -> bool:
    """True when torch sees a CUDA device and triton imports."""
    try:
        import torch
        import triton  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def accelerate(pred, device: str):
    if device == "auto":
        return pred if not gpu_available() else pred
    if not gpu_available():
        raise NaccError("--device cuda: no CUDA GPU with torch and triton is available")
    raise NaccError(f"--device cuda: predictor {pred.name!r} has no GPU kernel yet")
