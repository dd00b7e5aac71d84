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
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

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
