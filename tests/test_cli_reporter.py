"""``nacc.cli.common.Reporter.failure``: the one path from an exception to ``nacc: WHERE: msg``."""
from __future__ import annotations

import errno

import numpy as np

from nacc.cli import common
from nacc.errors import NaccError
from nacc.kernels.cpu import neural


def _report(capsys, e: Exception) -> tuple[str, int]:
    rep = common.Reporter(0, False)
    rep.failure("in\x1b.npy", e)
    return capsys.readouterr().err, rep.failed


def test_failure_nacc_error(capsys):
    assert _report(capsys, NaccError("bad header")) == ("nacc: in\\x1b.npy: bad header\n", 1)


def test_failure_os_error_uses_strerror(capsys):
    e = OSError(errno.ENOENT, "No such file or directory", "in.npy")
    assert _report(capsys, e) == ("nacc: in\\x1b.npy: No such file or directory\n", 1)
    assert _report(capsys, OSError("plain")) == ("nacc: in\\x1b.npy: plain\n", 1)


def test_failure_other_is_unexpected(capsys):
    assert _report(capsys, KeyError("k")) == (
        "nacc: in\\x1b.npy: unreadable input (KeyError: 'k')\n", 1)
    assert _report(capsys, MemoryError()) == ("nacc: in\\x1b.npy: out of memory\n", 1)


def test_first_slot():
    cand = np.array([5, 3, 5, 7, 3, 3], np.int64)
    got = [bool(neural._first_slot(cand, j)) for j in range(len(cand))]
    assert got == [True, True, False, True, False, False]
