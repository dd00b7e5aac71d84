"""The ``gpt`` predictor: the contract's four paths and the lanes give identical tables
under the stride policy, archives round-trip, parameters are recorded."""
from __future__ import annotations

import numpy as np
import pytest

from nacc import api, coder
from nacc.errors import NaccError
from nacc.gpt.policy import Window, windows
from nacc.predictors import base, get

pytest.importorskip("torch")

from gpt_models import TINY, clip, tiny_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from nacc.gpt.importer import import_gpt

    d = tmp_path_factory.mktemp("gptpred")
    import_gpt(tiny_checkpoint(d / "m.bin"), d / "model", heads=4)
    return str(d / "model")


def test_policy_windows():
    assert windows(7, 4, 2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 7)]
    assert windows(8, 4, 4) == [Window(0, 0, 4), Window(4, 4, 8)]
    assert windows(3, 4, 1) == [Window(0, 0, 3)]
    assert windows(0, 4, 1) == []


@pytest.mark.parametrize("stride", [1, 3])
def test_four_paths_and_lanes_give_identical_tables(folder, stride):
    pred = get("gpt")(16, (2, 3), model=folder, window=4, stride=stride)
    tokens = clip(TINY, 7)
    ref = np.concatenate(list(pred.tables(tokens)))
    base.check_table(ref, 16, pred.precision)
    assert ref.shape == (tokens.size, 16)
    st = pred.stepper()
    for i, x in enumerate(tokens.ravel()):
        np.testing.assert_array_equal(st.table(), ref[i], err_msg=f"step {i}")
        st.push(int(x))
    start, freq = pred.intervals(tokens)
    flat = tokens.ravel()
    np.testing.assert_array_equal(freq, ref[np.arange(len(ref)), flat])
    words = coder.encode_intervals(start, freq, pred.precision)
    np.testing.assert_array_equal(pred.decode(words, len(tokens)), tokens)
    np.testing.assert_array_equal(base.Predictor.decode(pred, words, len(tokens)), tokens)
    # lanes of different lengths decode together exactly as alone
    other = clip(TINY, 3, seed=9)
    w2 = coder.encode_intervals(*pred.intervals(other), pred.precision)
    got = list(pred.decode_lanes([(words, 7), (w2, 3), (np.zeros(0, np.uint32), 0)]))
    np.testing.assert_array_equal(got[0], tokens)
    np.testing.assert_array_equal(got[1], other)
    assert got[2].shape == (0, 2, 3)


def test_stride_changes_tables_and_is_recorded(folder):
    tokens = clip(TINY, 6)
    a = np.concatenate(list(get("gpt")(16, (2, 3), model=folder, window=4, stride=1)
                            .tables(tokens)))
    b = np.concatenate(list(get("gpt")(16, (2, 3), model=folder, window=4, stride=4)
                            .tables(tokens)))
    assert np.array_equal(a[:24], b[:24]) and not np.array_equal(a[24:], b[24:])
    data = api.compress(tokens, predictor="gpt", vocab=16, model=folder, window=4, stride=2)
    info = api.info(data)
    assert info.predictor == "gpt" and info.params["stride"] == 2 and info.params["window"] == 4
    np.testing.assert_array_equal(api.decompress(data).reshape(tokens.shape), tokens)


def test_bad_parameters_are_refused(folder):
    with pytest.raises(NaccError, match="codes, data has"):
        get("gpt")(1024, (2, 3), model=folder)
    with pytest.raises(NaccError, match="exceeds the window"):
        get("gpt")(16, (2, 3), model=folder, window=4, stride=5)
    pred = get("gpt")(16, (8, 16), model=folder)
    with pytest.raises(NaccError, match="needs 2580 positions, the model has 80"):
        list(pred.tables(np.zeros((2, 8, 16), np.int32)))


@pytest.mark.slow      # compiles cm's external-input kernels when no other test did
def test_cm_mixes_a_gpt_folder(tmp_path):
    from nacc.gpt.importer import import_gpt

    cfg = TINY._replace(n_positions=20 * 7)        # cm runs gpt's default 20-frame windows
    import_gpt(tiny_checkpoint(tmp_path / "m.bin", cfg), tmp_path / "model", heads=4)
    folder = str(tmp_path / "model")
    tokens = clip(TINY, 5)
    pred = get("cm")(16, (2, 3), model=folder)
    assert pred.params() == {"prior": "none", "model": folder}
    ref = np.concatenate(list(pred.tables(tokens)))
    base.check_table(ref, 16, pred.precision)
    st = pred.stepper()
    for i, x in enumerate(tokens.ravel()):
        np.testing.assert_array_equal(st.table(), ref[i], err_msg=f"step {i}")
        st.push(int(x))
    data = api.compress(tokens, predictor="cm", vocab=16, model=folder)
    np.testing.assert_array_equal(api.decompress(data).reshape(tokens.shape), tokens)
    alone = api.compress(tokens, predictor="cm", vocab=16)
    assert api.info(data).model_hash != api.info(alone).model_hash
