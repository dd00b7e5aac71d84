"""The ``gpt`` predictor's Triton kernels under the interpreter: logits and tables equal the
numpy reference ``nacc.gpt.intref`` exactly (window pass of several lanes, KV-cache steps,
the TABLE and its intervals), and the coder round-trips through them.  Tiny models only:
the interpreter costs about 1 s per step of a 2-layer model."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

from gpt_models import clip, tiny_checkpoint

from nacc import coder
from nacc.errors import NaccError
from nacc.gpt.intref import Cache, GPTConfig, Runner
from nacc.predictors import get
from nacc.predictors.base import check_table

CFG = GPTConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, n_vocab=17, n_positions=24)
FS = (2, 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from nacc.gpt.importer import import_gpt

    d = tmp_path_factory.mktemp("gpttriton")
    import_gpt(tiny_checkpoint(d / "m.bin", CFG, seed=3), d / "model", heads=2)
    return str(d / "model")


@pytest.fixture(scope="module")
def engine(folder):
    from nacc.gpt.modelfile import load_model
    from nacc.kernels.triton.gpt import GptTriton

    model, _ = load_model(folder)
    return model, GptTriton(model, "interpret")


def test_triton_gpt_window_and_steps_equal_intref(engine):
    """Two lanes in one window pass, then the same lanes as a context pass plus KV-cache
    steps (one lane feeding two ids in a step, as after a frame's last token), give the
    reference's logits and tables bit for bit."""
    model, eng = engine
    run = Runner(model)
    rng = np.random.default_rng(5)
    a = rng.integers(0, CFG.n_vocab, 16)
    b = rng.integers(0, CFG.n_vocab, 9)
    ref = [run.feed(x, Cache(CFG, 16)) for x in (a, b)]
    cache = eng.new_cache(3, 16)
    got = eng.feed([(2, a), (0, b)], cache, [None, [8, 3]]).cpu().numpy()
    np.testing.assert_array_equal(got[:16], ref[0])
    np.testing.assert_array_equal(got[16:], ref[1][[8, 3]])
    import torch

    tab = eng.tables(torch.from_numpy(got[:6])).cpu().numpy()
    np.testing.assert_array_equal(tab, run.tables(ref[0][:6]))
    # steps: lane a from position 6 one id at a time, lane b two ids then one
    cache.n[:] = 0
    eng.feed([(0, a[:6]), (1, b[:5])], cache)
    z = eng.feed([(0, a[6:7]), (1, b[5:7])], cache, [[0], [1]]).cpu().numpy()
    np.testing.assert_array_equal(z, np.stack([ref[0][6], ref[1][6]]))
    z = eng.feed([(1, b[7:8]), (0, a[7:8])], cache, [[0], [0]]).cpu().numpy()
    np.testing.assert_array_equal(z, np.stack([ref[1][7], ref[0][7]]))
    assert list(cache.n) == [8, 8, 0]
    syms = rng.integers(0, CFG.vocab, 2).astype(np.int32)
    start, freq = eng.intervals(torch.from_numpy(z), torch.from_numpy(syms))
    t = run.tables(z)
    np.testing.assert_array_equal(freq.numpy(), t[[0, 1], syms])
    np.testing.assert_array_equal(start.numpy(), [t[0, :syms[0]].sum(), t[1, :syms[1]].sum()])


def test_triton_gpt_refuses_wide_activations(tmp_path):
    from nacc.gpt.importer import import_gpt
    from nacc.gpt.modelfile import load_model
    from nacc.kernels.triton.gpt import GptTriton

    import_gpt(tiny_checkpoint(tmp_path / "m.bin", CFG), tmp_path / "model", heads=2,
               act_bits=12)
    model, _ = load_model(tmp_path / "model")
    with pytest.raises(NaccError, match="8 activation bits"):
        GptTriton(model, "interpret")


@pytest.mark.slow
def test_triton_gpt_round_trip_equals_cpu(folder):
    """Tables and intervals of every window (windows of two videos batched as lanes) equal
    the CPU predictor's; the CPU's words decode on the Triton path (two segments stepped
    together, and through the driver interface) to the tokens."""
    from nacc.kernels.triton.drivers import LaneBatch
    from nacc.kernels.triton.gpt import GptDriver, GptLanes
    from nacc.kernels.triton.runtime import Backend

    pred = get("gpt")(16, FS, model=folder, window=3, stride=2)
    tok, other = clip(CFG, 4), clip(CFG, 2, seed=9)
    gl = GptLanes(pred, "interpret", lanes=2)
    tabs = gl.video_tables([tok, other])
    for v, t in zip((tok, other), tabs, strict=True):
        check_table(t, 16, pred.precision)
        np.testing.assert_array_equal(t, np.concatenate(list(pred.tables(v))))
    words = []
    for v, (s, f) in zip((tok, other), gl.video_intervals([tok, other]), strict=True):
        s0, f0 = pred.intervals(v)
        np.testing.assert_array_equal(s, s0)
        np.testing.assert_array_equal(f, f0)
        words.append(coder.encode_intervals(s0, f0, pred.precision))
    dec = gl.decode_lanes([(words[0], 4), (words[1], 2), (np.zeros(0, np.uint32), 0)])
    np.testing.assert_array_equal(dec[0], tok)
    np.testing.assert_array_equal(dec[1], other)
    assert dec[2].shape == (0, *FS)
    drv = GptDriver(pred, Backend("interpret", "cpu"))
    start, freq = drv.intervals(LaneBatch.for_tokens([other, tok], "cpu"), drv.new_state(2))
    ivs = [pred.intervals(v) for v in (other, tok)]
    np.testing.assert_array_equal(start.numpy(), np.concatenate([s for s, _ in ivs]))
    np.testing.assert_array_equal(freq.numpy(), np.concatenate([f for _, f in ivs]))
    # the driver's decode unpacks a LaneBatch for decode_lanes (stepped above): one frame
    first = other[:1]
    batch = LaneBatch.for_words([coder.encode_intervals(*pred.intervals(first), pred.precision)],
                                [first.size], "cpu")
    drv.decode(batch, drv.new_state(1))
    np.testing.assert_array_equal(batch.token_arrays()[0], first.ravel())
    batch = LaneBatch.for_tokens([other], "cpu")
    st = drv.new_state(1)
    ref = np.concatenate(list(pred.tables(other)))
    for i in range(3):
        np.testing.assert_array_equal(drv.peek(batch, st, i).numpy(), ref[i])
        drv.push(batch, st, i)


_COMPILE_GPT = """
import json
from nacc.kernels.triton.compile_check import compile_all
from nacc.kernels.triton.gpt import compile_variants
done = compile_all(90, only="gpt ", extra=compile_variants())
print(json.dumps({k: [len(a["cubin"]), "s32.s8.s8" in a["ptx"]] for k, a in done}))
"""


@pytest.mark.slow
def test_triton_gpt_kernels_compile_for_sm90():
    """Every launch of the gpt driver at gpt2m's shape compiles for sm_90 (fresh process,
    see test_triton.py's compile test); LIN and attention run on int8 tensor cores."""
    pytest.importorskip("triton.backends.nvidia")
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from nacc.kernels.triton.gpt import compile_variants

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _COMPILE_GPT], capture_output=True, text=True,
                         env=env, cwd=root, check=True).stdout
    done = json.loads(out.strip().splitlines()[-1])
    assert sorted(done) == sorted(v[0] for v in compile_variants())
    assert all(size > 0 for size, _ in done.values())
    assert all(int8 for k, (_, int8) in done.items() if "lin_" in k or "attention" in k)
