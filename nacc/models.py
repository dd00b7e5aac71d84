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
from typing import TYPE_CHECKING

from nacc.errors import OptionError

if TYPE_CHECKING:
    from pathlib import Path

# model folders kept in the checkout only for the golden archives and tests that name them:
# trained on frames 0-299 of the dev clip with an older recipe, they code unseen frames well
# below the cm predictor, so they are neither listed nor installed (setup.cfg)
UNLISTED = frozenset({"commavq-dev-lstm", "commavq-dev-transformer"})


def _search_dirs() -> list[str]:
    """``search_dirs()`` as strings: the decode path (the cm prior's folder) imports this
    module, and pathlib is not imported there."""
    candidates = [os.environ["NACC_MODELS"]] if os.environ.get("NACC_MODELS") else []
    candidates += [_checkout_models(), os.path.join(sys.prefix, "share", "nacc", "models")]
    out: list[str] = []
    real: list[str] = []
    for c in candidates:
        if os.path.isdir(c) and os.path.realpath(c) not in real:
            out.append(c)
            real.append(os.path.realpath(c))
    return out


def _checkout_models() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "models")


def search_dirs() -> list[Path]:
    """The existing model folders of the search order."""
    from pathlib import Path

    return [Path(d) for d in _search_dirs()]


def models_dir() -> Path:
    """The first existing models folder of the search order (the checkout's if none)."""
    from pathlib import Path

    dirs = _search_dirs()
    return Path(dirs[0] if dirs else _checkout_models())


def shipped_dir(name: str) -> str:
    """``str(shipped(name))``, without importing pathlib."""
    dirs = _search_dirs()
    return next((os.path.join(d, name) for d in dirs if os.path.exists(os.path.join(d, name))),
                os.path.join(dirs[0] if dirs else _checkout_models(), name))


def shipped(name: str) -> Path:
    """Path of the model folder ``name``: in the first folder of the search order that has
    it (in models_dir() if none has; it may not exist)."""
    from pathlib import Path

    return Path(shipped_dir(name))


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
    if os.path.isdir(model) or "/" in model or os.sep in model or not model:
        return model
    for name, folder in zoo(listed_only=False):
        if name == model:
            return str(folder)
    raise OptionError(f"{model!r} is neither a model folder nor a model of the zoo "
                      "('nacc models' lists them)", "--model")
