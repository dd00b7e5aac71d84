"""``nacc.distributed``'s plan for ``compress --engine ray -o``: workers per GPU or per
``-T`` CPUs, and blocks split into runs of consecutive blocks (no Ray needed)."""
from __future__ import annotations

from nacc.distributed import split, workers


def test_one_worker_per_gpu():
    assert workers({"CPU": 64.0, "GPU": 8.0}, "cuda", 4) == (8, {"num_gpus": 1, "num_cpus": 1})
    assert workers({"CPU": 64.0, "GPU": 8.0}, "auto", 1) == (8, {"num_gpus": 1, "num_cpus": 1})
    # CPU tables, or no GPU in the cluster: one worker per -T CPUs
    assert workers({"CPU": 64.0, "GPU": 8.0}, "cpu", 4) == (16, {"num_cpus": 4})
    assert workers({"CPU": 2.0}, "auto", 1) == (2, {"num_cpus": 1})
    assert workers({"CPU": 2.0}, "cpu", 8) == (1, {"num_cpus": 8})


def test_split_keeps_block_order_and_balances_segments():
    plan = [[0], [1], [2], [3], [4], [5], [6]]
    runs = split(plan, 3)
    assert [b for r in runs for b in r] == plan
    assert [len(r) for r in runs] == [3, 2, 2]
    solid = [[0, 1, 2, 3], [4], [5], [6, 7]]
    runs = split(solid, 2)
    assert runs == [[[0, 1, 2, 3]], [[4], [5], [6, 7]]]
    assert split(plan, 1) == [plan] and split([[0]], 4) == [[[0]]]
    assert len(split(plan, 16)) == 7
