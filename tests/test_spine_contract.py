"""Every predictor that needs no model honours the contract: exact tables, and identical
tables from the reference, step, encode and decode paths."""
from __future__ import annotations

import numpy as np
import pytest

from nacc import coder
from nacc.errors import NaccError
from nacc.predictors import available, base, get

MODEL_FREE = [n for n in available() if not base.required_params(get(n))]


def clips(dev):
    rng = np.random.default_rng(0)
    yield "real", np.ascontiguousarray(dev[:4, :, :]).astype(np.int32), 1024
    yield "random-v37", rng.integers(0, 37, size=(4, 3, 5)).astype(np.int32), 37
    yield "copying-v2", np.tile(rng.integers(0, 2, size=(1, 2, 3)), (5, 1, 1)).astype(np.int32), 2
    yield "one-frame", rng.integers(0, 300, size=(1, 4, 4)).astype(np.int32), 300


@pytest.mark.parametrize("name", MODEL_FREE)
def test_four_paths_give_identical_tables(name, dev_clip):
    for label, tokens, vocab in clips(dev_clip):
        pred = get(name)(vocab, tokens.shape[1:])
        ref = np.concatenate(list(pred.tables(tokens)))
        base.check_table(ref, vocab, pred.precision)
        assert ref.shape == (tokens.size, vocab), label
        # step path
        st = pred.stepper()
        for i, x in enumerate(tokens.ravel()):
            np.testing.assert_array_equal(st.table(), ref[i], err_msg=f"{name}/{label} step {i}")
            st.push(int(x))
        # encode path
        start, freq = pred.intervals(tokens)
        flat = tokens.ravel()
        order = np.arange(vocab) if pred.order is None else np.asarray(pred.order)
        lay = np.ascontiguousarray(ref[:, np.argsort(order)])      # tables in layout order
        pos = order[flat]
        cdf = np.concatenate([np.zeros((len(ref), 1), np.int64), np.cumsum(lay, 1)], 1)
        np.testing.assert_array_equal(freq, ref[np.arange(len(ref)), flat], err_msg=label)
        np.testing.assert_array_equal(start, cdf[np.arange(len(ref)), pos], err_msg=label)
        # words: fast encode == constriction on the reference tables; decode path inverts
        words = coder.encode_intervals(start, freq, pred.precision)
        np.testing.assert_array_equal(
            words, coder.encode_tables(pos, lay, pred.precision, backend="constriction"))
        np.testing.assert_array_equal(pred.decode(words, len(tokens)), tokens, err_msg=label)
        # generic decode path (stepper + coder) agrees with the fused one
        np.testing.assert_array_equal(base.Predictor.decode(pred, words, len(tokens)), tokens)


@pytest.mark.parametrize("name", MODEL_FREE)
def test_rebuilt_from_params_is_identical(name, small_clip):
    tokens = small_clip.astype(np.int32)
    a = get(name)(1024, (8, 16))
    b = get(name)(1024, (8, 16), **a.params())
    assert a.model_hash() == b.model_hash()
    for x, y in zip(a.intervals(tokens), b.intervals(tokens)):
        np.testing.assert_array_equal(x, y)


# every name an archive may carry; a predictor is added to this list, never removed from it
RELEASED = ["cm", "lstm", "prevframe", "transformer", "uniform"]


def test_registry_names_are_stable():
    assert set(RELEASED) <= set(available())
    assert MODEL_FREE == ["cm", "prevframe", "uniform"]
    with pytest.raises(NaccError, match="unknown predictor 'nope'"):
        get("nope")


def test_uniform_table_spec():
    from nacc.predictors.uniform import uniform_table

    t = uniform_table(1000, 24)
    assert t[0] == 2**24 // 1000 + 1 and t[-1] == 2**24 // 1000
    assert int(t.astype(np.int64).sum()) == 2**24
