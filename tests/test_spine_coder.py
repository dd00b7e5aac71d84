"""The coder: numba rANS words identical to constriction's, exact tables, golden words."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nacc import coder
from nacc.kernels.cpu import rans


def random_tables(rng, n, vocab, precision=24, peaked=True):
    """n random exact tables (each >= 1, total 2**precision)."""
    raw = rng.integers(1, 1000, size=(n, vocab)).astype(np.int64)
    if peaked and n:
        raw[np.arange(n), rng.integers(0, vocab, n)] += 10**6
    room = 2**precision - vocab
    f = raw * room // raw.sum(1, keepdims=True) + 1
    f[:, 0] += 2**precision - f.sum(1)
    return f.astype(np.int32)


@pytest.mark.parametrize("vocab,n", [(2, 1), (2, 3000), (3, 500), (1024, 2000), (65536, 40)])
def test_numba_words_equal_constriction(vocab, n):
    rng = np.random.default_rng(vocab + n)
    tables = random_tables(rng, n, vocab)
    symbols = rng.integers(0, vocab, n).astype(np.int32)
    w_numba = coder.encode_tables(symbols, tables, 24, backend="numba")
    w_con = coder.encode_tables(symbols, tables, 24, backend="constriction")
    assert w_numba.dtype == np.uint32
    np.testing.assert_array_equal(w_numba, w_con)
    for backend in ("numba", "constriction"):
        np.testing.assert_array_equal(coder.decode_tables(w_numba, tables, 24, backend), symbols)


@pytest.mark.parametrize("precision", [12, 16, 23])
def test_lower_precision_tables_are_shifted_exactly(precision):
    rng = np.random.default_rng(precision)
    tables = random_tables(rng, 300, 17, precision)
    symbols = rng.integers(0, 17, 300).astype(np.int32)
    words = coder.encode_tables(symbols, tables, precision)
    scaled = (tables.astype(np.int64) << (24 - precision)).astype(np.int32)
    np.testing.assert_array_equal(words, coder.encode_tables(symbols, scaled, 24, "constriction"))
    np.testing.assert_array_equal(coder.decode_tables(words, tables, precision), symbols)


def test_constriction_codes_the_integer_table_exactly():
    """probs = f - 1 with perfect=False gives scale 1.0, so constriction codes exactly f:
    its words equal those of the numba coder, which takes f as given, even where f has
    frequencies of 1, 2 and 3 (any rescaling would move those)."""
    f = np.array([1, 2, 3, 2**24 - 6], np.int32)
    rng = np.random.default_rng(3)
    symbols = rng.choice(4, size=400, p=[0.1, 0.1, 0.1, 0.7]).astype(np.int32)
    tables = np.tile(f, (400, 1))
    w_con = coder.encode_tables(symbols, tables, 24, backend="constriction")
    np.testing.assert_array_equal(w_con, coder.encode_tables(symbols, tables, 24))
    # 120 rare symbols at 2**24 / f[s] each: at least 120 * 22 bits
    assert 32 * len(w_con) >= coder.ideal_bits(f[symbols], 24) - 64


def test_golden_words_for_a_fixed_table():
    """Exact words for a fixed table and message (a change of coder arithmetic fails)."""
    table = np.array([2**23, 2**22, 2**21, 2**21 - 1, 1], np.int32)
    symbols = np.array([0, 1, 2, 3, 4, 0, 0, 1, 4, 4, 2, 3, 0], np.int32)
    words = coder.encode_tables(symbols, np.tile(table, (len(symbols), 1)), 24)
    assert [int(w) for w in words] == GOLDEN_WORDS
    rng = np.random.default_rng(7)
    tables = random_tables(rng, 5000, 1024)
    big = coder.encode_tables(rng.integers(0, 1024, 5000).astype(np.int32), tables, 24)
    assert hashlib.sha256(big.tobytes()).hexdigest() == GOLDEN_SHA256


GOLDEN_WORDS = [16777215, 239075327, 1057218567, 63490]
GOLDEN_SHA256 = "c4e4401ab66a6b7b2bfab464bda4a81f23e644e29e91cbafd2070712bd8be097"


def test_coded_size_within_0_1_percent_of_ideal(dev_clip):
    from nacc.predictors import get

    pred = get("prevframe")(1024, (8, 16))
    start, freq = pred.intervals(dev_clip.astype(np.int32))
    words = coder.encode_intervals(start, freq, pred.precision)
    ideal = coder.ideal_bits(freq, pred.precision)
    assert 32 * len(words) <= ideal * 1.001 + 64
    assert 32 * len(words) >= ideal - 64


def test_empty_and_single_symbol():
    assert len(rans.encode(np.zeros(0, np.uint32), np.zeros(0, np.uint32), 24)) == 0
    t = np.array([[2**24 - 1, 1]], np.int32)
    for s in (0, 1):
        w = coder.encode_tables(np.array([s], np.int32), t, 24)
        assert coder.decode_tables(w, t, 24)[0] == s
