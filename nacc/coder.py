"""Entropy coder: rANS at 24-bit precision, words identical to constriction's stack coder.

Two implementations produce the same u32 words (a test asserts it):

* ``backend="numba"`` (default): ``nacc.kernels.cpu.rans``, fed ``(start, freq)`` intervals,
  so an encoder never has to hold every table of a segment at once.
* ``backend="constriction"``: ``constriction.stream.stack.AnsCoder`` with
  ``Categorical(perfect=False)`` fed whole tables.  A table ``f`` (each >= 1, total 2**24) is
  passed as ``probs = f - 1``; constriction then adds one count per symbol with scale 1.0, so
  it codes exactly ``f``.

A predictor's tables have total ``2**P`` with ``P <= 24``; both backends code them at 24 bits
after shifting every frequency left by ``24 - P`` (exact).  This module is the only one that
imports constriction.  The numba kernels are imported on first use; ``encode_intervals`` runs
their ahead-of-time build when there is one (``nacc.kernels.cpu.aot``; identical words).
"""
from __future__ import annotations

import numpy as np

from nacc.kernels.cpu import aot
from nacc.spec import CODER_PRECISION  # every table is coded at 2**24 (see the module doc)


def _rans():
    from nacc.kernels.cpu import rans

    return rans


def _shift(precision: int) -> int:
    if not 1 <= precision <= CODER_PRECISION:
        raise ValueError(f"table precision {precision} outside 1..{CODER_PRECISION}")
    return CODER_PRECISION - precision


def encode_intervals(start: np.ndarray, freq: np.ndarray, precision: int) -> np.ndarray:
    """rANS words for symbols given by their intervals (coding order) in tables of total
    ``2**precision``."""
    s = _shift(precision)
    start = np.ascontiguousarray(start, dtype=np.uint32)
    freq = np.ascontiguousarray(freq, dtype=np.uint32)
    if s:
        start = start << np.uint32(s)
        freq = freq << np.uint32(s)
    A = aot.kernels()
    if A is not None:
        return A.rans_encode(start, freq, CODER_PRECISION)
    return _rans().encode(start, freq, CODER_PRECISION)


def encode_tables(symbols: np.ndarray, tables: np.ndarray, precision: int,
                  backend: str = "numba") -> np.ndarray:
    """rANS words for ``symbols`` (n,) under ``tables`` (n, V) int32 of total ``2**precision``."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    tables = np.ascontiguousarray(tables, dtype=np.int32)
    if backend == "numba":
        start = np.empty(len(symbols), np.uint32)
        freq = np.empty(len(symbols), np.uint32)
        _rans().intervals_from_tables(tables, symbols, start, freq, 0)
        return encode_intervals(start, freq, precision)
    if backend == "constriction":
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        probs = (tables.astype(np.float64) * 2.0 ** _shift(precision)) - 1.0
        coder.encode_reverse(symbols, _family(), np.ascontiguousarray(probs))
        return np.asarray(coder.get_compressed(), dtype=np.uint32)
    raise ValueError(f"unknown coder backend {backend!r}")


def decode_tables(words: np.ndarray, tables: np.ndarray, precision: int,
                  backend: str = "numba") -> np.ndarray:
    """Inverse of ``encode_tables`` when every table is known up front."""
    tables = np.ascontiguousarray(tables, dtype=np.int32)
    words = np.ascontiguousarray(words, dtype=np.uint32)
    if backend == "numba":
        s = _shift(precision)
        scaled = tables << np.int32(s) if s else tables
        return _rans().decode_with_tables(words, scaled, CODER_PRECISION)
    if backend == "constriction":
        import constriction

        coder = constriction.stream.stack.AnsCoder(words)
        probs = (tables.astype(np.float64) * 2.0 ** _shift(precision)) - 1.0
        return np.asarray(coder.decode(_family(), np.ascontiguousarray(probs)), dtype=np.int32)
    raise ValueError(f"unknown coder backend {backend!r}")


def _family():
    import constriction

    # perfect=False explicitly: 0.5.0 still defaults to perfect=True, which re-optimises
    # the table (and runs ~1000x slower).
    return constriction.stream.model.Categorical(perfect=False)


class StepDecoder:
    """Decode one symbol at a time from tables computed on the fly (generic decode path)."""

    def __init__(self, words: np.ndarray, precision: int):
        self._words = np.ascontiguousarray(words, dtype=np.uint32)
        self._shift = _shift(precision)
        self._k = _rans()
        state, pos = self._k.dec_init(self._words)
        self._state = np.array([state, pos], dtype=np.uint64)

    def decode(self, table: np.ndarray) -> int:
        """The next symbol, given its int32 (V,) table."""
        return int(self._k.decode_step(self._state, self._words, np.asarray(table, np.int32),
                                       self._shift))


def ideal_bits(freq: np.ndarray, precision: int) -> float:
    """Sum of -log2(freq / 2**precision): the size an ideal coder would reach (reporting
    only; never used to decide anything that is coded)."""
    f = np.asarray(freq, dtype=np.float64)
    return float(precision * f.size - np.log2(f).sum())
