"""A gpt model rebuilt from its public checkpoint, and checked against an archive's hash.

A commaVQ submission does not carry gpt2m's weights (the challenge counts the commaVQ
repository, which holds gpt2m as its submodule ``gpt2m/``, as available): its
``decompress.py`` calls ``obtain_model`` to rebuild the model folder from the checkpoint and
decodes only when the folder's weights hash to the archive's model hash.

A *source* is a URL (``file://``, ``http://``, ``https://``) or a path; a relative path is
looked up against the working directory, then against each of ``bases`` (``decompress.py``
passes the folder above the unzipped submission, which is the commaVQ repository's root
when its ``compression/evaluate.sh`` runs it).  ``COMMAVQ_GPT2M`` is the default source.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from nacc.errors import NaccError

COMMAVQ_GPT2M = "gpt2m/pytorch_model.bin"
_CHUNK = 1 << 22


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("file", "http", "https")


def locate(source: str, workdir: Path, bases: Sequence[Path] = ()) -> Path:
    """The local checkpoint file of ``source``; an http(s) URL is downloaded into
    ``workdir`` (under the URL's file name, whose suffix tells the checkpoint's kind)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_file():
            raise NaccError(f"{source}: no such checkpoint file")
        return path
    if parsed.scheme in ("http", "https"):
        name = Path(parsed.path).name or "checkpoint.bin"
        target = workdir / name
        print(f"nacc: downloading the gpt checkpoint {source}", file=sys.stderr)
        try:
            with urllib.request.urlopen(source, timeout=60) as r, target.open("wb") as f:
                shutil.copyfileobj(r, f, _CHUNK)
        except OSError as e:
            raise NaccError(f"{source}: download failed ({e})") from None
        return target
    path = Path(source)
    tried = [path] if path.is_absolute() else [Path.cwd() / path, *(Path(b) / path
                                                                    for b in bases)]
    for p in tried:
        if p.is_file():
            return p
    raise NaccError(f"{source}: gpt checkpoint not found (looked at "
                    f"{', '.join(str(p) for p in tried)})")


def weights_digest(folder: Path) -> bytes:
    """sha256 of the model folder's weights file (the hash an archive records)."""
    from nacc.gpt.modelfile import read_config

    _, info = read_config(folder)
    h = hashlib.sha256()
    with (folder / str(info["weights"])).open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def obtain_model(source: str, dest: Path, expected: bytes, heads: int, act_bits: int,
                 bases: Sequence[Path] = ()) -> Path:
    """Import the checkpoint of ``source`` into the new folder ``dest`` (a download goes
    beside it) and return ``dest``; NaccError unless its weights hash to ``expected``."""
    from nacc.gpt.importer import import_gpt

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = locate(source, dest.parent, bases)
    import_gpt(path, dest, heads=heads, act_bits=act_bits)
    got = weights_digest(dest)
    if got != expected:
        raise NaccError(f"{source}: imports to a model of weights sha256 {got.hex()[:16]}, "
                        f"the archive was coded with {expected.hex()[:16]} (not the "
                        "checkpoint the submission was built from)")
    return dest
