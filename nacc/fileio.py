"""File output shared by the CLI, the API, ``nacc bench`` and ``nacc submission``: atomic
writes (a temporary file beside the target, then a rename) that leave nothing behind on an
error or a signal, the refusal to write binary data to a terminal, and the all-or-nothing
writing of a folder of segments (``write_folder``)."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
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


# -- folder output (archives of several segments) ----------------------------------------
def _safe_member(root: Path, name: str) -> Path:
    """``root / name`` for a member name the container accepted (checked again here)."""
    from nacc import container

    why = container.check_name(name)
    if why is not None:
        raise NaccError(f"unsafe segment name {name!r} in archive: {why}")
    return root / name


def _is_dir_nofollow(p: Path) -> bool:
    return stat.S_ISDIR(os.lstat(p).st_mode)


def _check_folder_target(root: Path, names: list[str], force: bool) -> None:
    """Refuse, before decoding, what writing ``names`` under ``root`` would do wrong:
    overwrite a file without ``force``, replace a folder, or follow a symlink (or pass a
    file) below ``root`` out of it.  ``root`` itself may be a symlink the user named."""
    if not root.exists():
        if os.path.lexists(root):
            raise NaccError(f"{root} is a broken symlink")
        return
    if not root.is_dir():
        raise NaccError(f"{root} exists and is not a folder")
    for name in names:
        parts = name.split("/")
        p = root
        for part in parts[:-1]:
            p = p / part
            if not os.path.lexists(p):
                break
            if not _is_dir_nofollow(p):
                raise NaccError(f"{p} is a symlink or a file; refusing to write through it")
        else:
            t = root / name
            if os.path.lexists(t):
                if not os.path.islink(t) and t.is_dir():
                    raise NaccError(f"{t} is a folder")
                if not force:
                    raise NaccError(f"{t} already exists (use -f to overwrite)")


def _merge_into(root: Path, tmp: Path, names: list[str], undo: list) -> None:
    """Move the files ``names`` from ``tmp`` into the existing folder ``root``, opening
    every folder below ``root`` without following symlinks; ``undo`` collects the paths
    created (folders and new files), in order."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    root_fd = os.open(root, flags)
    try:
        for name in names:
            parts = name.split("/")
            fds = [root_fd]
            try:
                for i, part in enumerate(parts[:-1]):
                    try:
                        os.mkdir(part, 0o777, dir_fd=fds[-1])
                        undo.append(root.joinpath(*parts[:i + 1]))
                    except FileExistsError:
                        pass
                    try:
                        fds.append(os.open(part, flags | os.O_NOFOLLOW, dir_fd=fds[-1]))
                    except OSError:
                        raise NaccError(f"{root / name}: a symlink or file on its path; "
                                        "refusing to write through it") from None
                try:
                    os.lstat(parts[-1], dir_fd=fds[-1])
                    existed = True
                except FileNotFoundError:
                    existed = False
                os.replace(tmp / name, parts[-1], dst_dir_fd=fds[-1])
                if not existed:
                    undo.append(root / name)
            finally:
                for fd in fds[1:]:
                    os.close(fd)
    finally:
        os.close(root_fd)


def _roll_back(undo: list) -> None:
    """Remove what ``_merge_into`` created, newest first."""
    for p in reversed(undo):
        try:
            if _is_dir_nofollow(p):
                p.rmdir()
            else:
                p.unlink()
        except OSError:
            pass
    undo.clear()


def write_folder(root: Path, names: list[str], items, force: bool) -> int:
    """Write the ``(name, bytes)`` ``items`` (in the order of ``names``) as files under
    ``root``, all or nothing: each is written as it comes (memory does not grow with their
    number) into a temporary folder beside ``root``, which is renamed to ``root`` at the
    end, or, when ``root`` exists, whose files are then moved into it.  On any failure,
    Ctrl-C, SIGTERM or SIGHUP, everything written is removed.  Returns the file count."""
    _check_folder_target(root, names, force)
    made_parents = []
    parent = root.parent
    while not parent.exists():
        made_parents.append(parent)
        parent = parent.parent
    undo: list = []
    tmp = None
    with signals_raise():
        try:
            for p in reversed(made_parents):
                p.mkdir()
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp",
                                        dir=root.parent))
            n = 0
            mode = 0o666 & ~umask()
            for (name, data), want in zip(items, names):
                if name != want:
                    raise NaccError(f"segment {name!r} decoded out of order")
                path = _safe_member(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "xb") as f:
                    f.write(data)
                os.chmod(path, mode)
                n += 1
            if n != len(names):
                raise NaccError(f"{n} of {len(names)} segments decoded")
            if not os.path.lexists(root):
                os.chmod(tmp, 0o777 & ~umask())
                os.rename(tmp, root)
                tmp = None
            else:
                _merge_into(root, tmp, names, undo)
                undo.clear()
            made_parents = []
        except BaseException:
            _roll_back(undo)
            raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for p in made_parents:
                try:
                    p.rmdir()
                except OSError:
                    pass
    return n
