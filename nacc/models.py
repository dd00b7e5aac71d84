"""The model zoo: where shipped models are found, models by name, models by hash.

Folders searched, in order: ``$NACC_MODELS`` (the user's own); ``models/`` of the checkout
this package runs from (also an editable install); ``<sys.prefix>/share/nacc/models``
(where ``pip install`` puts the shipped ones, see setup.cfg's data_files).  A neural model
is a subfolder holding ``config.json``; ``--model NAME`` finds it by its folder name, and
an archive whose recorded model path does not load here is decoded with the zoo's model of
the recorded hash (``nacc.codec.archive_predictor``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from nacc.errors import OptionError

# model folders kept in the checkout only for the golden archives and tests that name them:
# trained on frames 0-299 of the dev clip with an older recipe, they code unseen frames well
# below the cm predictor, so they are neither listed nor installed (setup.cfg)
UNLISTED = frozenset({"commavq-dev-lstm", "commavq-dev-transformer"})


def search_dirs() -> list[Path]:
    """The existing model folders of the search order."""
    checkout = Path(__file__).resolve().parent.parent / "models"
    candidates = [Path(os.environ["NACC_MODELS"])] if os.environ.get("NACC_MODELS") else []
    candidates += [checkout, Path(sys.prefix) / "share" / "nacc" / "models"]
    out: list[Path] = []
    for c in candidates:
        if c.is_dir() and all(c.resolve() != o.resolve() for o in out):
            out.append(c)
    return out


def models_dir() -> Path:
    """The first existing models folder of the search order (the checkout's if none)."""
    dirs = search_dirs()
    return dirs[0] if dirs else Path(__file__).resolve().parent.parent / "models"


def shipped(name: str) -> Path:
    """Path of the model folder ``name``: in the first folder of the search order that has
    it (in models_dir() if none has; it may not exist)."""
    return next((d / name for d in search_dirs() if (d / name).exists()), models_dir() / name)


def zoo(listed_only: bool = True) -> Iterator[tuple[str, Path]]:
    """``(name, folder)`` of every model folder in the search order (a name found twice:
    the first); without the UNLISTED ones unless ``listed_only`` is False."""
    seen = set()
    for d in search_dirs():
        for f in sorted(d.iterdir()):
            if f.name in seen or not (f / "config.json").is_file():
                continue
            if listed_only and f.name in UNLISTED:
                continue
            seen.add(f.name)
            yield f.name, f


def resolve(model: str) -> str:
    """The folder ``model`` means: itself when it is a folder or looks like a path (the
    loader then says what is wrong with it), else the zoo's model of that name;
    OptionError (``--model``) when it is neither."""
    model = str(model)
    if Path(model).is_dir() or "/" in model or os.sep in model or not model:
        return model
    for name, folder in zoo(listed_only=False):
        if name == model:
            return str(folder)
    raise OptionError(f"{model!r} is neither a model folder nor a model of the zoo "
                      "('nacc models' lists them)", "--model")
