"""Which frames the shipped priors and models were fitted on, so that a rate measured on
them is never mistaken for a held-out rate (``nacc bench`` says when an input overlaps).

Every shipped prior and model was fitted on frames of the real dev clip
``tests/data/commavq_dev.npy`` (600 frames of 8x16 tokens).  ``devclip-frames.u64`` (beside
this module, 4800 bytes, so that a pip install has it without the clip) holds one
fingerprint per frame of that clip: the first 8 bytes of the blake2b hash of the frame's
tokens as little-endian int16, read as a little-endian uint64 (``fingerprints``; a test
checks the file against the clip).  ``FITTED`` names the frames each one saw.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FRAMES_FILE = Path(__file__).resolve().parent / "devclip-frames.u64"

# what was fitted on which frames [start, stop) of the dev clip (their own records: the cm
# priors' priors.json "fitted_on", the model folders' MODEL.md)
FITTED = {
    "the cm prior commavq-v5 (the default)": (0, 600),
    "the cm prior commavq-v4": (0, 450),
    "the cm priors commavq-v2 and commavq-v3": (0, 300),
    "the unlisted models commavq-dev-lstm and commavq-dev-transformer": (0, 300),
}


def fingerprints(tokens: np.ndarray) -> np.ndarray:
    """uint64 fingerprint of every frame of ``tokens`` (T, H, W) (see the module doc)."""
    t = np.ascontiguousarray(tokens, dtype="<i2")
    return np.array([int.from_bytes(hashlib.blake2b(f.tobytes(), digest_size=8).digest(),
                                    "little") for f in t], dtype=np.uint64)


def dev_frames() -> np.ndarray:
    """The dev clip's frame fingerprints (uint64, 600)."""
    return np.frombuffer(FRAMES_FILE.read_bytes(), dtype="<u8").astype(np.uint64)


def overlaps(tokens: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(what, mask)`` for every entry of FITTED that saw a frame of ``tokens`` (T, H, W):
    ``mask`` (bool, T) marks the frames it was fitted on.  Empty for other frame shapes."""
    if tokens.ndim != 3 or tokens.shape[1:] != (8, 16) or not len(tokens):
        return []
    dev = dev_frames()
    mine = fingerprints(tokens)
    out = []
    for what, (a, b) in FITTED.items():
        mask = np.isin(mine, dev[a:b])
        if mask.any():
            out.append((what, mask))
    return out
