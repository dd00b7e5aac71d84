"""One line on stderr when a first run compiles kernels (numba's cache is cold, or the
ahead-of-time build of ``aot`` runs): ``nacc: compiling kernels (first run only)...``.

Printed at most once per process, and only when stderr is a terminal or ``enable(True)``
was called (the CLI's ``-v``); never in pipes or logs otherwise, and never after
``enable(False, quiet=True)`` (the CLI's ``-q``).  The CLI calls ``enable`` once per
command (``nacc.cli.common.Reporter``).  ``install()`` listens to
numba's ``numba:compile`` event, which fires only when a function is really compiled, not
when it is loaded from the cache.
"""
from __future__ import annotations

import sys

MESSAGE = "nacc: compiling kernels (first run only)..."
_verbose = False
_quiet = False
_shown = False
_installed = False


def enable(verbose: bool, quiet: bool = False) -> None:
    """Show the line also when stderr is not a terminal (``verbose``: ``-v``), or never
    (``quiet``: ``-q``)."""
    global _verbose, _quiet
    _verbose = bool(verbose)
    _quiet = bool(quiet)


def show() -> None:
    """Print the line (once per process) if stderr is a terminal or verbose is on."""
    global _shown
    if _shown or _quiet:
        return
    try:
        wanted = _verbose or sys.stderr.isatty()
    except (AttributeError, ValueError):   # no stderr, or a closed one
        wanted = False
    if wanted:
        _shown = True
        print(MESSAGE, file=sys.stderr, flush=True)


def install() -> None:
    """Call ``show`` on numba's first real compilation in this process."""
    global _installed
    if _installed:
        return
    _installed = True
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            show()

        def on_end(self, ev):
            pass

    event.register("numba:compile", _Listener())
