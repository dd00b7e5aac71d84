"""``nacc`` command line, shaped like zstd/xz: the group and where each command lives.

    nacc compress INPUT... [-o OUT] [-c] [-f] [-k|--rm] [-T N] [--predictor NAME] [-v|-q]
    nacc decompress FILE.nacc... [-o OUT] [-c] [-f] [-T N]
    nacc test FILE.nacc...          decode and check, write nothing
    nacc verify INPUT...            compress + decompress in memory, report rate and times
    nacc info FILE.nacc...          header, rate, bits/token
    nacc models                     the model zoo: neural models by name, cm priors
    nacc train | bench | submission | import-gpt (their own modules; optional extras)

As in zstd and xz, ``nacc -d ARGS`` is ``nacc decompress ARGS``, ``-t`` is ``test`` and
``-l`` is ``info`` (list); ``nacc --version`` and ``python -m nacc`` work as expected.

One module per command group (``coding``: compress, decompress, test, verify, info;
``train``; ``bench``; ``submission``); ``common`` holds what they share.  Each command is
imported only when it is called, so ``nacc decompress`` never imports training code.  No
library module imports this package.  Errors: ``nacc: FILE: message`` on stderr; exit 0
ok, 1 data or runtime error, 2 usage.
"""
from __future__ import annotations

import importlib
import importlib.util

import click

from nacc import __version__

# command name -> "module:attribute"; a command whose module (or an extra it needs) is
# missing is not listed
COMMANDS = {
    "compress": "nacc.cli.coding:compress",
    "decompress": "nacc.cli.coding:decompress",
    "test": "nacc.cli.coding:test_cmd",
    "verify": "nacc.cli.coding:verify",
    "info": "nacc.cli.coding:info",
    "models": "nacc.cli.zoo:models",
    "train": "nacc.cli.train:train",
    "bench": "nacc.cli.bench:bench",
    "submission": "nacc.cli.submission:submission",
    "import-gpt": "nacc.cli.gpt:import_gpt_command",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


# zstd/xz shorthands: the first argument names the command
SHORTHANDS = {"-d": "decompress", "--decompress": "decompress", "-t": "test", "--test": "test",
              "-l": "info", "--list": "info"}


class _Group(click.Group):
    """A group whose commands are imported on first use (see ``COMMANDS``), and which reads
    the zstd/xz shorthands ``-d``, ``-t``, ``-l`` as their commands (``SHORTHANDS``)."""

    def parse_args(self, ctx, args):
        if args and args[0] in SHORTHANDS:
            args = [SHORTHANDS[args[0]], *args[1:]]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._known()))

    def _known(self):
        return {n: t for n, t in COMMANDS.items() if _module_exists(t.split(":")[0])}

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in COMMANDS:    # (only this command's module is looked up)
            mod, attr = COMMANDS[name].split(":")
            if _module_exists(mod):
                cmd = getattr(importlib.import_module(mod), attr)
        return cmd


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", message="nacc %(version)s")
def main():
    """nacc: lossless compression of VQ token videos (commaVQ and friends).

    Shorthands as in zstd and xz: nacc -d FILE (decompress), -t FILE (test), -l FILE
    (info)."""


def run(argv=None):
    """The ``nacc`` process (console script, ``bin/nacc``, ``python -m nacc``): ``main``, then
    a quick exit.  Once the command has returned, its outputs written and closed, the
    interpreter's teardown (freeing every module and array, ~20 ms with numpy loaded) buys
    nothing: the exit handlers run, the standard streams are flushed and the process ends with
    ``os._exit`` and the command's status.  Where another thread still runs, or a flush fails,
    the exit is the ordinary one (which then reports as Python does)."""
    import os
    import sys

    try:
        main(args=argv, prog_name="nacc")
        code = 0
    except SystemExit as e:
        code = e.code
    import threading

    if threading.active_count() > 1 or not isinstance(code, (int, type(None))):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code or 0)
