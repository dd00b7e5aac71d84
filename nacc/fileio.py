"""File input and output shared by the CLI, the API, ``nacc bench`` and ``nacc submission``.

Output: atomic writes (a temporary file beside the target, then a rename) that leave nothing
behind on an error or a signal, the refusal to write binary data to a terminal, and the
all-or-nothing writing of a folder of segments (``write_folder``).  Without ``force`` a file
is published by ``link`` (which fails on an existing name), so two runs writing one output
cannot both succeed; with it, never over a file that ``protect`` names (an input), nor over
anything but a regular file (an existing FIFO or character device is written into, as zstd
and xz do; other special files are refused).  Temporary names carry the writer's pid
(``.NAME.nacc-PID-XXXX.tmp``); a later write into the same folder removes those of writers
that no longer run (``clean_stale``), so SIGKILL leaves nothing for good.

Input of files nacc did not write: ``open_input`` and ``read_regular`` open without blocking
on a FIFO, check the file type with fstat before reading, and bound the bytes read;
``load_json`` is a strict JSON parse (NaN and Infinity refused) of such a file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from nacc.errors import NaccError

if TYPE_CHECKING:
    from pathlib import Path


def check_binary_stdout() -> None:
    """NaccError when stdout is a terminal (binary data is never written to one)."""
    if sys.stdout.isatty():
        raise NaccError("refusing to write binary data to a terminal (use -o or redirect)")


def umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block SIGTERM, SIGHUP and SIGINT in this thread while active (they stay pending and
    are delivered when it ends): for forking workers, so that no signal lands between a
    fork and the bookkeeping that knows about the child.  Children forked meanwhile
    inherit the mask and must unblock (``unblock_signals``).  No-op where unsupported."""
    import signal

    sigs = {getattr(signal, n) for n in _SIGNALS if hasattr(signal, n)}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_signals() -> None:
    """Unblock what ``signals_blocked`` blocked (in a forked child)."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK,
                               {getattr(signal, n) for n in _SIGNALS if hasattr(signal, n)})


@contextlib.contextmanager
def signals_raise() -> Iterator[list[int]]:
    """While active, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` in this process
    (SIGINT raises KeyboardInterrupt already), so that the ``finally`` blocks that remove
    temporary files run when the process is killed.  A forked child that inherits the
    handler dies of the signal as by default.  Yields the list of signals caught: an
    exception raised where Python ignores exceptions (a weakref callback during an import,
    a ``__del__``) is lost, so writers check it before publishing (``check_signals``), and
    the block ends with the SystemExit the signal asked for.  No-op outside the main
    thread."""
    import signal
    import threading

    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        caught.append(signum)
        raise SystemExit(128 + signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield caught
        check_signals(caught)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def check_signals(caught: list[int]) -> None:
    """SystemExit for the first signal ``signals_raise`` caught (if its own was lost)."""
    if caught:
        raise SystemExit(128 + caught[0])


# -- identities --------------------------------------------------------------------------
def identity(st: os.stat_result) -> tuple[int, int]:
    """``(device, inode)``: the file, however its path is spelled."""
    return st.st_dev, st.st_ino


def file_state(path: str) -> tuple[int, ...] | None:
    """``(device, inode, size, mtime_ns, ctime_ns)`` of a regular file (following
    symlinks), None when there is none: taken before an input is read and again before it
    is removed, so that a file replaced or rewritten meanwhile is kept."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def identities(paths: Iterable[str]) -> set[tuple[int, int]]:
    """The ``(device, inode)`` of each path that exists (following symlinks)."""
    out = set()
    for p in paths:
        try:
            out.add(identity(os.stat(p)))
        except OSError:
            pass
    return out


def remove_if_unchanged(path: str, state: tuple[int, ...] | None,
                        content: bytes | None = None) -> None:
    """Remove the input ``path`` if it is still the file of ``state`` (``file_state`` taken
    before it was read), unchanged, and (when given) holds exactly ``content`` (file times
    can miss a rewrite within one clock tick); else NaccError and the file is kept."""
    if state is None or file_state(path) != state or (
            content is not None and read_regular(path, len(content), "input") != content):
        raise NaccError(f"{path} changed or was replaced while nacc read it; kept")
    os.unlink(path)


# -- stale temporary files ---------------------------------------------------------------
_TMP = re.compile(r"^\..*\.nacc-(\d+)-[A-Za-z0-9_]+\.tmp$")


def _tmp_prefix(name: str) -> str:
    return f".{name}.nacc-{os.getpid()}-"


def _new_tmp(folder: str | Path, name: str) -> tuple[int, str]:
    """``(fd, path)`` of a new empty file ``.NAME.nacc-PID-XXXX.tmp`` in ``folder`` (mode
    0600, opened O_EXCL, close-on-exec), as ``tempfile.mkstemp`` makes it: here because
    ``nacc decompress`` writes its output through this module, and tempfile imports shutil,
    random, bz2 and lzma (~6 ms of a process's start)."""
    flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    for _ in range(100):
        path = os.path.abspath(os.path.join(folder, f"{_tmp_prefix(name)}{os.urandom(6).hex()}"
                                                    ".tmp"))
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", os.fspath(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                 # EPERM: someone else's live process
        return True
    return True


def clean_stale(folder: str | Path) -> int:
    """Remove the temporary files and folders (``.NAME.nacc-PID-XXXX.tmp``) that writers
    killed by SIGKILL left in ``folder``: those whose PID no longer runs and that this user
    owns (a reused PID keeps them, on the safe side).  Returns how many were removed;
    errors are ignored (cleaning is best effort)."""
    n = 0
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return 0
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    for e in entries:
        m = _TMP.match(e.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if uid is not None and st.st_uid != uid:
                continue
            if stat.S_ISDIR(st.st_mode):
                import shutil

                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            n += 1
        except OSError:
            pass
    return n


# -- single-file output ------------------------------------------------------------------
def _target_stat(dest: str) -> os.stat_result | None:
    try:
        return os.stat(dest)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return None
        raise


def _check_replace(dest: str, st: os.stat_result | None, force: bool,
                   protect: set[tuple[int, int]]) -> None:
    """NaccError unless the existing file ``st`` at ``dest`` (None: none) may be
    replaced: a regular file, with ``force``, and none of the ``protect`` identities."""
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise NaccError(f"{dest} is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise NaccError(f"{dest} exists and is not a regular file (nacc replaces only "
                        "regular files)")
    if identity(st) in protect:
        raise NaccError(f"output {dest} is an input of this command (choose another -o)")
    if not force:
        raise NaccError(f"{dest} already exists (use -f to overwrite)")


def _write_into(dest: str, chunks: Iterable[bytes]) -> int:
    """Write into an existing FIFO or character device (no temporary file, no rename)."""
    fd = os.open(dest, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    n = 0
    with os.fdopen(fd, "wb") as f:
        st = os.fstat(f.fileno())
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise NaccError(f"{dest} changed type while nacc opened it")
        for c in chunks:
            f.write(c)
            n += len(c)
    return n


def publish(tmp: str, dest: str, force: bool, protect: set[tuple[int, int]]) -> None:
    """Give the finished temporary file ``tmp`` the name ``dest``: without ``force`` by
    ``link`` (atomic, fails if ``dest`` exists: two writers cannot both succeed) and
    ``unlink``; with it by ``rename``, after checking once more what it replaces."""
    if not force:
        try:
            os.link(tmp, dest, follow_symlinks=False)
        except FileExistsError:
            raise NaccError(f"{dest} already exists (use -f to overwrite)") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV,
                               errno.EMLINK):
                raise
            # a file system without hard links: the check and the rename are two steps
            if os.path.lexists(dest):
                raise NaccError(f"{dest} already exists (use -f to overwrite)") from None
            os.rename(tmp, dest)
            return
        os.unlink(tmp)
        return
    _check_replace(dest, _target_stat(dest), True, protect)
    os.replace(tmp, dest)


def write_atomic(dest: str, chunks: Iterable[bytes], force: bool,
                 protect: Iterable[str] = (), written: list | None = None) -> int:
    """Write ``chunks`` to ``dest`` via a temporary file beside it, then ``publish``;
    ``-`` is stdout; an existing FIFO or character device is written into.  Returns bytes
    written; appends the ``(device, inode)`` of the published file to ``written`` (none for
    stdout, a FIFO or a device).  Never replaces a file that one of the ``protect`` paths
    names.  The temporary file is created when the first chunk is ready and removed on any
    failure, Ctrl-C, SIGTERM or SIGHUP (SIGKILL: by a later write, ``clean_stale``)."""
    dest = os.fspath(dest)
    if dest == "-":
        check_binary_stdout()
        n = 0
        for c in chunks:
            sys.stdout.buffer.write(c)
            n += len(c)
        sys.stdout.buffer.flush()
        return n
    keep = identities(protect)
    st = _target_stat(dest)
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        return _write_into(dest, chunks)
    _check_replace(dest, st, force, keep)
    # the folder and name of ``dest`` as pathlib splits them (pathlib is not imported here:
    # nacc decompress writes its output through this function)
    folder, name = os.path.split(dest.rstrip(os.sep) or dest)
    folder = folder or "."
    clean_stale(folder)
    with signals_raise() as caught:
        it = iter(chunks)
        first = next(it, b"")
        tmp = None
        try:
            fd, tmp = _new_tmp(folder, name)
            n = 0
            with os.fdopen(fd, "wb") as f:
                f.write(first)
                n += len(first)
                for c in it:
                    f.write(c)
                    n += len(c)
                os.fchmod(f.fileno(), 0o666 & ~umask())
                ident = identity(os.fstat(f.fileno()))
            check_signals(caught)
            publish(tmp, dest, force, keep)
            tmp = None
            if written is not None:
                written.append(ident)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
    return n


# -- bounded reads of files nacc did not write -------------------------------------------
def open_input(path: str | os.PathLike, streams: bool = True) -> tuple[int, os.stat_result]:
    """``(fd, fstat)`` of ``path`` opened for reading without blocking on a FIFO that has
    no writer; NaccError unless it is a regular file, or (``streams``) a FIFO or character
    device (then blocking again, read as a stream).  The caller closes ``fd``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            pass
        elif streams and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            os.set_blocking(fd, True)
        elif stat.S_ISDIR(st.st_mode):
            raise NaccError(f"{path} is a folder")
        else:
            raise NaccError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; NaccError naming
    ``path`` if it is a FIFO, device, socket or folder (checked by fstat after an open that
    does not block) or holds more.  For files nacc did not write (model folders, priors)."""
    fd, st = open_input(path, streams=False)
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise NaccError(f"{path}: {st.st_size} bytes, more than the {limit} a {what} "
                            "may have")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NaccError(f"{path}: more than the {limit} bytes a {what} may have")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_json(path: str | os.PathLike, limit: int = 1 << 20, what: str = "JSON file"):
    """The strict JSON value of the regular file ``path`` (``read_regular``; NaN, Infinity
    and -Infinity refused); NaccError naming the file for anything wrong."""
    data = read_regular(path, limit, what)
    try:
        return json.loads(data.decode("utf8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise NaccError(f"{path}: not JSON ({type(e).__name__}: {e})") from None


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


def _check_folder_target(root: Path, names: list[str], force: bool,
                         protect: set[tuple[int, int]]) -> None:
    """Refuse, before decoding, what writing ``names`` under ``root`` would do wrong:
    overwrite a file without ``force``, replace a folder, a special file or a ``protect``
    file (an input), or follow a symlink (or pass a file) below ``root`` out of it.
    ``root`` itself may be a symlink the user named."""
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
                st = os.lstat(t)
                if stat.S_ISDIR(st.st_mode):
                    raise NaccError(f"{t} is a folder")
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    raise NaccError(f"{t} exists and is not a regular file (nacc replaces "
                                    "only regular files)")
                if identity(st) in protect:
                    raise NaccError(f"{t} is an input of this command; refusing to replace "
                                    "it")
                if not force:
                    raise NaccError(f"{t} already exists (use -f to overwrite)")


def _place(tmp: Path, name: str, last: str, dir_fd: int, where: Path, force: bool,
           protect: set[tuple[int, int]]) -> bool:
    """Move ``tmp / name`` to ``last`` in the folder ``dir_fd`` (``where`` names it):
    without ``force`` by link and unlink (never over an existing file), with it by rename,
    after checking what it replaces.  True when nothing was there before."""
    if not force:
        try:
            os.link(tmp / name, last, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            raise NaccError(f"{where} already exists (use -f to overwrite)") from None
        os.unlink(tmp / name)
        return True
    try:
        st: os.stat_result | None = os.lstat(last, dir_fd=dir_fd)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISDIR(st.st_mode) or identity(st) in protect
                           or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode))):
        raise NaccError(f"{where}: refusing to replace it (a folder, a special file or an "
                        "input)")
    os.replace(tmp / name, last, dst_dir_fd=dir_fd)
    return st is None


def _merge_into(root: Path, tmp: Path, names: list[str], undo: list, force: bool,
                protect: set[tuple[int, int]]) -> None:
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
                if _place(tmp, name, parts[-1], fds[-1], root / name, force, protect):
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


def write_folder(root: Path, names: list[str], items, force: bool,
                 protect: Iterable[str] = ()) -> int:
    """Write the ``(name, bytes)`` ``items`` (in the order of ``names``) as files under
    ``root``, all or nothing: each is written as it comes (memory does not grow with their
    number) into a temporary folder beside ``root``, which is renamed to ``root`` at the
    end, or, when ``root`` exists, whose files are then moved into it (``_place``: never
    over an existing file without ``force``, never over a ``protect`` file).  On any
    failure, Ctrl-C, SIGTERM or SIGHUP, everything written is removed.  Returns the file
    count."""
    import shutil  # here, not at the top: the single-file path need not import them
    import tempfile
    from pathlib import Path

    keep = identities(protect)
    _check_folder_target(root, names, force, keep)
    made_parents = []
    parent = root.parent
    while not parent.exists():
        made_parents.append(parent)
        parent = parent.parent
    undo: list = []
    tmp = None
    with signals_raise() as caught:
        try:
            for p in reversed(made_parents):
                p.mkdir()
            clean_stale(root.parent)
            tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(root.name), suffix=".tmp",
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
            os.chmod(tmp, 0o777 & ~umask())
            check_signals(caught)
            staged = tmp
            try:
                if os.path.lexists(root):
                    raise FileExistsError
                os.rename(tmp, root)        # atomic; fails on a folder that is not empty
                tmp = None
            except OSError as e:
                if not isinstance(e, FileExistsError) and e.errno not in (errno.ENOTEMPTY,
                                                                          errno.EEXIST):
                    raise
                _merge_into(root, staged, names, undo, force, keep)
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


MAX_INPUT_BYTES = 1 << 36      # what read_input reads at most (an archive)
MAX_CONFIG_BYTES = 1 << 20     # a model folder's config.json, a prior index
MAX_MODEL_FILE_BYTES = 1 << 28  # a model's weights, a prior's tables


def read_input(path: str, magic: bytes = b"", limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path`` (``-``: stdin; a regular file, FIFO or character device, see
    ``open_input``), at most ``limit``; when they do not start with ``magic`` only its
    length is read (the caller's parser refuses them), so ``/dev/zero`` costs nothing."""
    if path == "-":
        return _read_bounded(sys.stdin.buffer, path, magic, limit)
    fd, st = open_input(path)
    with os.fdopen(fd, "rb") as f:
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise NaccError(f"{st.st_size} bytes, more than the {limit} nacc reads")
        return _read_bounded(f, path, magic, limit)


def _read_bounded(f, path: str, magic: bytes, limit: int) -> bytes:
    head = f.read(len(magic))
    if head != magic:
        return head
    buf = bytearray(head)
    while len(buf) <= limit:
        c = f.read(min(1 << 24, limit + 1 - len(buf)))
        if not c:
            return bytes(buf)
        buf += c
    raise NaccError(f"more than the {limit} bytes nacc reads")


def read_written(path: str, ident: tuple[int, int] | None) -> bytes:
    """The bytes of the file this process wrote at ``path`` (``ident``, from
    ``write_atomic``'s ``written``); NaccError if ``path`` is now another file (replaced by
    another run) or nothing was published there (a FIFO, a device)."""
    if ident is None:
        raise NaccError(f"{path} is not a regular file nacc wrote; it cannot be read back")
    fd, st = open_input(path, streams=False)
    with os.fdopen(fd, "rb") as f:
        if identity(st) != ident:
            raise NaccError(f"{path} was replaced after nacc wrote it")
        return f.read()


def unlink_written(path: str, ident: tuple[int, int] | None) -> None:
    """Remove ``path`` if it is still the file this process wrote (``ident``)."""
    try:
        if ident is not None and identity(os.stat(path)) == ident:
            os.unlink(path)
    except OSError:
        pass
