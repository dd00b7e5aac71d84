"""Kernels per compute backend: ``cpu/`` (numba, always there) and the optional backends of
``BACKENDS``, looked up by device name.

A predictor declares which backends have its kernels (``Predictor.kernels``: backend name ->
module of its drivers); a backend module offers ``accelerate(pred, device)``, which returns
a predictor with the same identity and tables computed on ``device``, or ``pred`` itself
where it cannot (see ``nacc.kernels.triton``).  The bytes never depend on the device.
"""
from __future__ import annotations

import importlib

from nacc.errors import NaccError

# backend name -> (module offering accelerate(pred, device), the device names it serves;
# a name ending in ":" also serves "name:N")
BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "triton": ("nacc.kernels.triton", ("auto", "cuda", "cuda:", "gpu", "interpret")),
}


def backend_of(device: str) -> str | None:
    """The backend serving ``device`` (None for "cpu"); NaccError for an unknown device."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return None
    for name, (_, devices) in BACKENDS.items():
        if any(d == x or (x.endswith(":") and d.startswith(x)) for x in devices):
            return name
    known = ["cpu"] + [x + "N" if x.endswith(":") else x
                       for _, devices in BACKENDS.values() for x in devices]
    raise NaccError(f"unknown device {device!r} ({', '.join(known)})")


def on_device(pred, device: str):
    """``pred`` with its tables computed on ``device`` (``pred`` itself for "cpu")."""
    name = backend_of(device)
    if name is None:
        return pred
    return importlib.import_module(BACKENDS[name][0]).accelerate(pred, device)
