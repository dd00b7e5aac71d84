"""nacc.neural.synth: seeded generation and the exact limit."""
import numpy as np

from nacc.neural import synth


def test_seeded_any_shape():
    cfg = synth.SynthConfig(vocab=37)
    a, _ = synth.generate((4, 3, 5), 7, cfg)
    b, _ = synth.generate((4, 3, 5), 7, cfg)
    c, _ = synth.generate((4, 3, 5), 8, cfg)
    assert a.shape == (4, 3, 5) and a.dtype == np.int32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 37


def test_limit_is_a_distribution():
    """Summing 2**-bits over every value of a token gives 1 (the limit is a true law)."""
    cfg = synth.SynthConfig(vocab=9)
    v, _ = synth.generate((3, 3, 4), 5, cfg)
    for pos in [(0, 0, 0), (1, 2, 1), (2, 2, 3)]:
        idx = np.ravel_multi_index(pos, v.shape)
        tot = 0.0
        for s in range(9):
            w = v.copy()
            w[pos] = s
            tot += 2.0 ** -synth.code_lengths(w, cfg)[idx]
        assert abs(tot - 1.0) < 1e-9


def test_limit_below_simple_baselines():
    v, _ = synth.generate((40, 8, 16), 3)
    bits = synth.code_lengths(v)
    assert bits.shape == (v.size,)
    assert 0.5 < bits.mean() < 10.0  # far below log2(1024) = 10


def test_stream_seeded_and_disjoint():
    """The training stream is a pure function of (step, seed), never repeats a video, and
    never yields a corpus() video (e.g. the bench's test videos, seed 2), not even the one
    whose integer seed equals its own words padded with zeros."""
    cfg = synth.SynthConfig(vocab=37)
    a = synth.stream(5, 2, (2, 2, 3), 7, cfg)
    assert [v.tolist() for v in a] == [[[[0, 35, 31], [35, 35, 35]], [[35, 4, 9], [2, 4, 9]]],
                                       [[[20, 15, 15], [16, 31, 31]], [[1, 0, 12], [20, 15, 28]]]]
    assert all(np.array_equal(u, v) for u, v in zip(a, synth.stream(5, 2, (2, 2, 3), 7, cfg)))
    shape = (3, 4, 4)
    seven = synth.generate(shape, 7, cfg)[0]
    assert np.array_equal(synth.generate(shape, (7, 0, 0), cfg)[0], seven)  # why the tag
    assert not np.array_equal(synth.stream(0, 1, shape, 7, cfg)[0], seven)
    seen = {v.tobytes() for s in range(20) for v in synth.stream(s, 8, shape, 1, cfg)}
    assert len(seen) == 160
    assert not seen & {v.tobytes() for seed in (1, 2) for v in synth.corpus(8, shape, seed, cfg)}
