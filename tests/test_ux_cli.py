"""The command line a zstd/xz user expects: usage errors exit 2 once, the -d/-t/-l
shorthands, --version, summaries on terminals or with -v only, the compress progress
count, write errors naming the output, models by name and by hash (nacc.models)."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli_in_process
from nacc.predictors import available


def out(r) -> str:
    """The output of an in-process run without the first-run compile notice (shown in
    pipes too, whenever numba's cache is cold)."""
    from nacc.kernels.cpu.compile_notice import MESSAGE

    return r.output.replace(MESSAGE + "\n", "")


@pytest.fixture
def two_clips(tmp_path, dev_clip):
    for name, k in (("a.npy", 0), ("b.npy", 20)):
        np.save(tmp_path / name, dev_clip[k:k + 4])
    return tmp_path


@pytest.mark.parametrize("args, option, message", [
    (["--predictor", "zz"], "--predictor",
     f"unknown predictor 'zz' (known: {', '.join(available())})"),
    (["--param", "foo=1"], "--param", "predictor 'cm': got an unexpected keyword argument "
                                      "'foo'"),
    (["--predictor", "lstm"], "--model", "predictor 'lstm': missing a required argument: "
                                         "'model' (needs --model)"),
    (["--predictor", "lstm", "--model", "nowhere"], "--model",
     "'nowhere' is neither a model folder nor a model of the zoo ('nacc models' lists them)"),
])
@pytest.mark.parametrize("command", ["compress", "verify"])
def test_option_errors_exit_2_said_once(two_clips, command, args, option, message):
    r = cli_in_process([command, *args, "a.npy", "b.npy"], two_clips)
    assert r.exit_code == 2
    assert out(r).count(message) == 1
    assert f"Error: Invalid value for '{option}': {message}\n" in out(r)
    assert sorted(p.name for p in two_clips.iterdir()) == ["a.npy", "b.npy"]


def test_a_model_folder_that_does_not_load_is_said_once(two_clips):
    r = cli_in_process(["compress", "--predictor", "lstm", "--model", "./m", "a.npy", "b.npy"],
                       two_clips)
    assert (r.exit_code, out(r)) == (1, "nacc: m: no config.json (not a model folder)\n")


def test_decoder_model_name_is_a_usage_error(two_clips):
    r = cli_in_process(["decompress", "--model", "nowhere", "a.npy.nacc"], two_clips)
    assert r.exit_code == 2 and "Invalid value for '--model'" in out(r)


def test_shorthands_version_and_summaries(two_clips, monkeypatch):
    from nacc import __version__
    from nacc.cli import common

    r = cli_in_process(["compress", "--predictor", "prevframe", "a.npy"], two_clips)
    assert (r.exit_code, out(r)) == (0, "")            # not a terminal: quiet
    assert out(cli_in_process(["-t", "a.npy.nacc"], two_clips)) == ""
    r = cli_in_process(["-t", "-v", "a.npy.nacc"], two_clips)
    assert (r.exit_code, out(r)) == (0, "a.npy.nacc: OK (1 segment(s))\n")
    (two_clips / "a.npy").rename(two_clips / "orig.npy")
    r = cli_in_process(["-d", "a.npy.nacc"], two_clips)
    assert (r.exit_code, out(r)) == (0, "")
    assert (two_clips / "a.npy").read_bytes() == (two_clips / "orig.npy").read_bytes()
    r = cli_in_process(["-l", "a.npy.nacc"], two_clips)
    assert r.exit_code == 0 and out(r).startswith("a.npy.nacc: nacc format ")
    # a terminal shows the summaries without -v (no times), -q never
    monkeypatch.setattr(common, "_isatty", lambda stream: True)
    r = cli_in_process(["-d", "-f", "a.npy.nacc"], two_clips)
    assert out(r) == "a.npy.nacc: 1 segment(s) -> a.npy\n"
    r = cli_in_process(["compress", "-f", "--predictor", "prevframe", "a.npy"], two_clips)
    n = (two_clips / "a.npy.nacc").stat().st_size
    assert out(r) == (f"a.npy: rate {4 * 128 * 10 / 8 / n:.4f}, {8 * n / 512:.4f} "
                        f"bits/token, {n} bytes -> a.npy.nacc\n")
    assert out(cli_in_process(["-t", "-q", "a.npy.nacc"], two_clips)) == ""
    for flag in ("--version", "-V"):
        assert out(cli_in_process([flag], two_clips)) == f"nacc {__version__}\n"
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: nacc.__version__"


def test_python_dash_m_nacc(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nacc", "--version"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert (r.returncode, r.stdout) == (0, "nacc 0.1.0\n")


def test_compile_notice_in_pipes_unless_quiet():
    from nacc.cli.common import Reporter
    from nacc.kernels.cpu import compile_notice as cn

    Reporter(0, False)
    assert (cn._verbose, cn._quiet) == (True, False)
    Reporter(0, True)
    assert cn._quiet
    cn.enable(False)


def test_progress_counts_blocks_not_the_header(two_clips, monkeypatch):
    from nacc.cli import coding

    seen = []

    def fake(items, total, rep, what, unit="seg"):
        items = list(items)
        seen.append((len(items), total, unit))
        return items

    monkeypatch.setattr(coding, "progress", fake)
    r = cli_in_process(["compress", "--predictor", "prevframe", "a.npy", "b.npy", "-o", "ab"],
                       two_clips)
    assert r.exit_code == 0 and seen == [(2, 2, "block")]
    seen.clear()
    cli_in_process(["compress", "--predictor", "prevframe", "--solid-group", "2", "a.npy",
                    "b.npy", "-o", "ab2"], two_clips)
    assert seen == [(1, 1, "block")]


def test_write_error_names_the_output(two_clips):
    r = cli_in_process(["compress", "--predictor", "prevframe", "a.npy", "-o", "no/x.nacc"],
                       two_clips)
    assert (r.exit_code, out(r)) == (1, "nacc: no/x.nacc: No such file or directory\n")
    cli_in_process(["compress", "--predictor", "prevframe", "a.npy"], two_clips)
    r = cli_in_process(["decompress", "a.npy.nacc", "-o", "no/a.npy"], two_clips)
    assert (r.exit_code, out(r)) == (1, "nacc: no/a.npy: No such file or directory\n")


# -- the zoo ------------------------------------------------------------------------------
def test_models_lists_the_zoo_without_the_unlisted(tmp_path, monkeypatch):
    from nacc import models

    monkeypatch.delenv("NACC_MODELS", raising=False)
    r = cli_in_process(["models"], tmp_path)
    assert r.exit_code == 0 and "commavq-dev-" not in out(r)
    assert "  commavq-v4                   vocab 1024, fitted on commavq_dev.npy frames " \
           "0-449\n" in out(r)
    assert sorted(n for n, _ in models.zoo(listed_only=False)) == sorted(models.UNLISTED)
    zoo = tmp_path / "zoo"
    shutil.copytree(ROOT / "models" / "commavq-dev-lstm", zoo / "mini")
    monkeypatch.setenv("NACC_MODELS", str(zoo))
    r = cli_in_process(["models"], tmp_path)
    assert "  mini                         lstm, vocab 1024, 8x16 frames, weights " \
           "2539a981764a213e" in out(r)
    assert models.resolve("mini") == str(zoo / "mini")
    assert models.resolve("commavq-dev-lstm") == str(ROOT / "models" / "commavq-dev-lstm")
    assert models.shipped("cm-prior") == ROOT / "models" / "cm-prior"   # zoo without it


def test_setup_cfg_installs_the_listed_models_only():
    """A plain ``pip install`` puts the shipped folders under <prefix>/share/nacc/models
    (nacc.models.search_dirs): setup.cfg's data_files list each file of each listed
    folder; the UNLISTED ones (kept for golden archives and tests) are not installed."""
    from nacc import models

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    files = setup["options.data_files"]
    folders = sorted(p.name for p in (ROOT / "models").iterdir()
                     if p.is_dir() and p.name not in models.UNLISTED)
    assert sorted(k.removeprefix("share/nacc/models/") for k in files) == folders
    for name in folders:
        if name != "cm-prior":
            assert sorted(files[f"share/nacc/models/{name}"].split()) == sorted(
                f"models/{name}/{p.name}" for p in (ROOT / "models" / name).iterdir())


@pytest.mark.slow     # neural kernels: seconds
def test_model_by_name_and_archive_found_by_hash(tmp_path, dev_clip, monkeypatch):
    """--model NAME codes with the zoo's model; an archive whose recorded model path does
    not exist where it is decoded is decoded with the zoo's model of its hash."""
    zoo = tmp_path / "zoo"
    shutil.copytree(ROOT / "models" / "commavq-dev-lstm", zoo / "mini")
    monkeypatch.setenv("NACC_MODELS", str(zoo))
    np.save(tmp_path / "c.npy", dev_clip[450:453])
    r = cli_in_process(["compress", "--predictor", "lstm", "--model", "mini", "c.npy"], tmp_path)
    assert r.exit_code == 0, out(r)
    # a copy of the model beside the data, named by a relative path
    shutil.copytree(zoo / "mini", tmp_path / "here")
    r = cli_in_process(["compress", "--predictor", "lstm", "--model", "./here", "c.npy", "-o",
                        "rel.nacc"], tmp_path)
    assert r.exit_code == 0, out(r)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("c.npy.nacc", "rel.nacc"):
        shutil.copy(tmp_path / name, elsewhere / name)
        r = cli_in_process(["decompress", name, "-o", name + ".npy"], elsewhere)
        assert r.exit_code == 0, out(r)
        assert (elsewhere / (name + ".npy")).read_bytes() == (tmp_path / "c.npy").read_bytes()
    # without the zoo the relative path is not found here: the hint names --model
    from nacc import models

    monkeypatch.setattr(models, "search_dirs", lambda: [])
    r = cli_in_process(["test", "rel.nacc"], elsewhere)
    assert r.exit_code == 1 and "no model of the zoo has its hash; pass --model" in out(r)
    assert cli_in_process(["test", "--model", "../here", "rel.nacc"], elsewhere).exit_code == 0
