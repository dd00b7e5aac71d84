"""``--engine ray``: one Ray task per input, outputs byte-identical to the local run.

Starts a small local Ray instance (2 CPUs) in this process; a second driver process joins it
with ``--address``.  Skipped when Ray is not installed (``pip install 'nacc[ray]'``)."""
from __future__ import annotations

import importlib.util
import os
import subprocess

import numpy as np
import pytest

from conftest import NACC, ROOT, cli_in_process

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nacc[ray]')")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    # Ray's workers (started by this process's raylet) import this checkout's nacc
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([old] if old else [])])
    ctx = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                   log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


invoke = cli_in_process


@pytest.fixture
def inputs(tmp_path, dev_clip):
    for d in ("local", "ray"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "a.npy", dev_clip[:30])
        np.save(tmp_path / d / "b.npy", dev_clip[30:70])
        (tmp_path / d / "seg").mkdir()
        np.save(tmp_path / d / "seg" / "c.npy", dev_clip[70:80])
    return tmp_path


def test_ray_matches_local(cluster, inputs):
    files = ["a.npy", "b.npy", "seg"]
    args = ["compress", "-q", "--predictor", "prevframe", *files]
    assert invoke(args, inputs / "local").exit_code == 0
    r = invoke(args + ["--engine", "ray"], inputs / "ray")
    assert r.exit_code == 0, r.output
    for f in files:
        assert (inputs / "ray" / f"{f}.nacc").read_bytes() == \
            (inputs / "local" / f"{f}.nacc").read_bytes()
    # decompress over Ray: byte-identical originals, one task per archive
    for f in ("a.npy", "b.npy"):
        (inputs / "ray" / f).rename(inputs / "ray" / f"{f}.orig")
    r = invoke(["decompress", "--engine", "ray", "a.npy.nacc", "b.npy.nacc"], inputs / "ray")
    assert r.exit_code == 0, r.output
    for f in ("a.npy", "b.npy"):
        assert (inputs / "ray" / f).read_bytes() == (inputs / "local" / f).read_bytes()
    # a failing task is reported like the local run (name, message, exit 1)
    r = invoke(["compress", "--engine", "ray", "a.npy", "missing.npy"], inputs / "ray")
    assert r.exit_code == 1
    assert "nacc: a.npy: a.npy.nacc already exists" in r.output
    assert "nacc: missing.npy: No such file or directory" in r.output


def test_address_joins_a_running_cluster(cluster, inputs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([*NACC, "compress", "-q", "--predictor", "prevframe", "--engine", "ray",
                        "--address", cluster, "-o", "both.nacc", "a.npy", "b.npy"],
                       cwd=inputs / "ray", capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    r = invoke(["compress", "-q", "--predictor", "prevframe", "-o", "both.nacc", "a.npy",
                "b.npy"], inputs / "local")
    assert (inputs / "ray" / "both.nacc").read_bytes() == \
        (inputs / "local" / "both.nacc").read_bytes()


def test_usage_errors(inputs):
    r = invoke(["compress", "--address", "x:1", "a.npy"], inputs / "ray")
    assert r.exit_code == 2 and "--address needs --engine ray" in r.output
    r = invoke(["compress", "--engine", "ray", "-c", "a.npy"], inputs / "ray")
    assert r.exit_code == 2 and "stdin/stdout" in r.output


def test_task_argv_keeps_predictor_params():
    import click

    from nacc import distributed
    from nacc.cli import coding

    ctx = coding.compress.make_context("compress", ["--param", "prior=none", "--frame-shape",
                                                    "8x16", "-q", "a.npy"])
    argv = distributed.jobs_of(ctx)[0]
    assert argv[:1] == ["compress"] and argv[-2:] == ["--", "a.npy"]
    assert "--param" in argv and argv[argv.index("--param") + 1] == "prior=none"
    assert argv[argv.index("--frame-shape") + 1] == "8x16"
    assert isinstance(ctx, click.Context)


def test_segments_spread_over_workers(cluster, tmp_path, dev_clip):
    """compress -o over Ray: the segments of one archive coded by 2 CPU workers (the
    cluster's 2 CPUs, -T 1), byte-identical to the local run; likewise with the gpt
    predictor (a tiny model) and solid groups."""
    from nacc import distributed

    assert distributed.workers(ray.cluster_resources(), "auto", 1)[0] == 2
    d = tmp_path / "segs"
    d.mkdir()
    for i in range(5):
        np.save(d / f"s{i}.npy", dev_clip[20 * i:20 * i + 12 + i])
    runs = [["--predictor", "prevframe"], ["--predictor", "prevframe", "--solid-group", "2"]]
    if importlib.util.find_spec("torch"):      # the gpt predictor's tiny model needs torch
        from gpt_models import tiny_checkpoint

        from nacc.gpt.importer import import_gpt
        from nacc.gpt.intref import GPTConfig

        cfg = GPTConfig(n_layer=1, d_model=16, n_head=2, d_ff=32, n_vocab=17, n_positions=160)
        import_gpt(tiny_checkpoint(tmp_path / "ck.bin", cfg), tmp_path / "gpt", heads=2)
        g = tmp_path / "g"
        g.mkdir()
        rng = np.random.default_rng(0)
        for i in range(3):
            np.save(g / f"g{i}.npy", rng.integers(0, 16, (4 + i, 2, 3)).astype(np.int16))
        runs.append(["--predictor", "gpt", "--model", tmp_path / "gpt", "--vocab", "16"])
    for k, extra in enumerate(runs):
        src = g if "gpt" in extra else d
        local = invoke(["compress", "-q", "-o", f"local{k}.nacc", *extra, src], tmp_path)
        assert local.exit_code == 0, local.output
        r = invoke(["compress", "-q", "--engine", "ray", "-o", f"ray{k}.nacc", *extra, src],
                   tmp_path)
        assert r.exit_code == 0, r.output
        assert (tmp_path / f"ray{k}.nacc").read_bytes() == \
            (tmp_path / f"local{k}.nacc").read_bytes()
