"""Where the shipped model zoo (the top-level ``models/`` folder) is found.

Searched in order: ``$NACC_MODELS``; ``models/`` of the checkout this package runs from
(also an editable install); ``<sys.prefix>/share/nacc/models`` (where ``pip install``
puts it, see setup.cfg's data_files).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def models_dir() -> Path:
    """The first existing models folder of the search order (the checkout's if none)."""
    checkout = Path(__file__).resolve().parent.parent / "models"
    candidates = [Path(os.environ["NACC_MODELS"])] if os.environ.get("NACC_MODELS") else []
    candidates += [checkout, Path(sys.prefix) / "share" / "nacc" / "models"]
    return next((c for c in candidates if c.is_dir()), checkout)


def shipped(name: str) -> Path:
    """Path of the shipped model folder ``name`` (it may not exist)."""
    return models_dir() / name
