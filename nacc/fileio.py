"""File output shared by the CLI, the API, ``nacc bench`` and ``nacc submission``: atomic
writes (a temporary file beside the target, then a rename) that leave nothing behind on an
error or a signal, and the refusal to write binary data to a terminal."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from nacc.errors import NaccError


def check_binary_stdout() -> None:
    """NaccError when stdout is a terminal (binary data is never written to one)."""
    if sys.stdout.isatty():
        raise NaccError("refusing to write binary data to a terminal (use -o or redirect)")


def umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` in this process
    (SIGINT raises KeyboardInterrupt already), so that the ``finally`` blocks that remove
    temporary files run when the process is killed.  A forked child that inherits the
    handler dies of the signal as by default.  No-op outside the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def write_atomic(dest: str, chunks: Iterable[bytes], force: bool) -> int:
    """Write ``chunks`` to ``dest`` via a temporary file beside it and a rename; ``-`` is
    stdout.  Returns bytes written.  The temporary file is created when the first chunk is
    ready and removed on any failure, Ctrl-C, SIGTERM or SIGHUP: nothing is left behind
    (only SIGKILL can leave it)."""
    if dest == "-":
        check_binary_stdout()
        n = 0
        for c in chunks:
            sys.stdout.buffer.write(c)
            n += len(c)
        sys.stdout.buffer.flush()
        return n
    target = Path(dest)
    if target.exists() and not force:
        raise NaccError(f"{dest} already exists (use -f to overwrite)")
    with signals_raise():
        it = iter(chunks)
        first = next(it, b"")
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                       dir=target.parent if str(target.parent) else ".")
            n = 0
            with os.fdopen(fd, "wb") as f:
                f.write(first)
                n += len(first)
                for c in it:
                    f.write(c)
                    n += len(c)
            os.chmod(tmp, 0o666 & ~umask())
            os.replace(tmp, target)
            tmp = None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return n
