"""nacc: lossless compression of VQ token videos.  The Python API (``nacc.compress``,
``nacc.decompress``, ``nacc.open``, ...) lives in :mod:`nacc.api` and is loaded on first use,
so ``import nacc`` imports neither numba nor torch."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"   # the one definition (setup.cfg reads it; ``nacc --version`` prints it)
_API = ("compress", "decompress", "compress_segments", "compress_to", "open", "Archive",
        "ArchiveInfo", "info", "read_segments", "available_predictors")

__all__ = list(_API)

if TYPE_CHECKING:  # for type checkers and IDEs only
    from nacc.api import (  # noqa: F401  (names for type checkers; loaded lazily)
        Archive,
        ArchiveInfo,
        available_predictors,
        compress,
        compress_segments,
        compress_to,
        decompress,
        info,
        open,  # noqa: A004  (nacc.open is public API, as gzip.open)
        read_segments,
    )


def __getattr__(name: str):
    if name in _API:
        from nacc import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nacc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
