"""``--engine ray``: run ``nacc compress`` / ``nacc decompress`` over a Ray cluster.

Each input is one Ray task (with ``-o``, all inputs go into one archive: one task).  A task
runs the ordinary command for its input in a child process on whichever node Ray picks
(``python -m nacc.cli compress [options] INPUT`` in the caller's working directory), so
every archive and every restored file is byte-identical to the local run, and so are the
messages; the driver prints each task's output in input order and exits 1 if any failed.

Tasks read their inputs and write their outputs themselves: on a cluster, paths must name
the same files on every node (a shared filesystem mounted at the same path), and nacc must
be installed on every node (``pip install 'nacc[ray]'``), or shipped with a Ray runtime
environment.  Each task reserves ``-T`` CPUs.

``compress -o ARCHIVE`` spreads the *segments* instead (``compress_segments``): the driver
reads the inputs and plans the blocks as the local run does, splits them into one run of
consecutive blocks per worker, and writes the header and the workers' blocks in order, so the
archive is byte-identical to the local one (blocks are coded independently).  A worker is one
Ray task reserving one GPU with ``--device cuda|auto`` on a cluster that has GPUs (one
worker per GPU), else ``-T`` CPUs; segments travel through Ray's object store, and a
``--model`` folder must exist at the same path on every node.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from nacc.codec import Options

# options that only steer the driver, never forwarded to a task
_DRIVER_ONLY = {"engine", "address", "inputs", "output", "to_stdout"}


def _argv_of(ctx: click.Context) -> list[str]:
    """The command's options (without inputs and -o) as command-line words."""
    out: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in _DRIVER_ONLY:
            continue
        value = ctx.params.get(param.name)
        flag = max(param.opts, key=len)
        if param.count:
            out += [flag] * int(value or 0)
        elif param.is_flag:
            if value:
                out.append(flag)
        elif param.multiple:                      # --param KEY=VALUE pairs
            for key, val in value or ():
                out += [flag, f"{key}={val}"]
        elif value is not None:
            if isinstance(value, tuple):          # --frame-shape (h, w)
                value = "x".join(str(v) for v in value)
            out += [flag, str(value)]
    return out


def _run(argv: list[str], cwd: str) -> tuple[int, bytes, bytes]:
    """One task: the ordinary CLI in a child process; (exit code, stdout, stderr)."""
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "nacc.cli", *argv], cwd=cwd, env=env,
                       capture_output=True, check=False)
    return r.returncode, r.stdout, r.stderr


def connect(address: str | None):
    """``ray``, initialised: the running instance if this process has one, else the cluster
    at ``address``, else a new local instance."""
    try:
        import ray
    except ImportError:
        raise click.ClickException("--engine ray needs Ray: pip install 'nacc[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(logging_level="ERROR", log_to_driver=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    return ray


def jobs_of(ctx: click.Context) -> list[list[str]]:
    """One argv per task: the subcommand, its options, then -o/inputs."""
    p = ctx.params
    base = [str(ctx.command.name), *_argv_of(ctx)]
    if p.get("to_stdout") or "-" in p["inputs"] or p.get("output") == "-":
        raise click.UsageError("--engine ray writes files; stdin/stdout (-, -c) are local only")
    if p.get("output") is not None:
        return [base + ["-o", p["output"], "--", *p["inputs"]]]
    return [base + ["--", i] for i in p["inputs"]]


def run_cli(ctx: click.Context) -> None:
    """Run the current compress/decompress command with one Ray task per job; exits."""
    if ctx.params.get("engine") != "ray":
        raise click.UsageError("--address needs --engine ray")
    jobs = jobs_of(ctx)
    ray = connect(ctx.params.get("address"))
    cpus = int(ctx.params.get("threads") or 1)
    task = ray.remote(num_cpus=cpus, max_retries=0)(_run)
    cwd = os.getcwd()
    refs = [task.remote(argv, cwd) for argv in jobs]
    failed = 0
    for ref in refs:
        code, out, err = ray.get(ref)
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
        failed |= code != 0
    sys.exit(1 if failed else 0)


# -- segments over workers (compress -o) -----------------------------------------------
def workers(resources: dict, device: str, threads: int) -> tuple[int, dict]:
    """``(number of workers, Ray resources of each)`` for a cluster's total ``resources``:
    one per GPU when tables are computed on a GPU and the cluster has GPUs, else one per
    ``threads`` CPUs."""
    gpus = int(resources.get("GPU", 0))
    if device in ("cuda", "auto") and gpus > 0:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(resources.get("CPU", 1)) // threads), {"num_cpus": threads}


def split(plan: list[list[int]], n: int) -> list[list[list[int]]]:
    """``plan``'s blocks in ``n`` (or fewer) runs of consecutive blocks, of about equal
    numbers of segments."""
    total = sum(len(b) for b in plan)
    runs: list[list[list[int]]] = [[]]
    done = 0
    for b in plan:
        if runs[-1] and done >= total * len(runs) / n:
            runs.append([])
        runs[-1].append(b)
        done += len(b)
    return runs


def _encode_run(segments, opts: Options, threads: int, rel_plan) -> list[bytes]:
    """One worker: the blocks of its segments (the header piece dropped)."""
    from nacc import codec

    return list(codec.compress_segments(segments, opts, threads, rel_plan))[1:]


def compress_segments(segments: Sequence, opts: Options, threads: int,
                      plan: list[list[int]], address: str | None = None) -> Iterator[bytes]:
    """``nacc.codec.compress_segments`` with the blocks coded by Ray workers: the same
    pieces (header, then blocks in order), the same bytes."""
    from nacc import codec

    ray = connect(address)
    n, res = workers(ray.cluster_resources(), opts.device, threads)
    task = ray.remote(max_retries=0, **res)(_encode_run)
    refs = []
    for run in split(plan, n):
        idx = [k for b in run for k in b]
        pos = {k: i for i, k in enumerate(idx)}
        refs.append(task.remote([segments[k] for k in idx], opts, threads,
                                [[pos[k] for k in b] for b in run]))
    # the header from a CPU predictor (the driver need not have a GPU; the header is the same)
    fs = codec.frame_shape_of(segments[plan[0][0]][1].shape, opts.frame_shape)
    cpu = dataclasses.replace(opts, device="cpu")
    yield codec.archive_header(opts, cpu.build(opts.vocab, fs), len(segments), len(plan))
    for ref in refs:
        yield from ray.get(ref)
