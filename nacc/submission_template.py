#!/usr/bin/env python3
"""Decompress this nacc submission: OUTPUT_DIR=dir python decompress.py

Writes every original segment to $OUTPUT_DIR under its dataset name, byte for byte (the
original .npy files).  Installs its dependencies from PyPI when they are missing; the nacc
source and any models it needs are in this zip (nacc_src/; the shipped models in
nacc_src/models, used whatever $NACC_MODELS says); a gpt model is rebuilt from its public
checkpoint (CONFIG["gpt"]: gpt2m of the commaVQ repository, or the path or URL given to
`nacc submission --checkpoint`) and must hash to the archive's model hash.
NACC_SUBMISSION_SAMPLE=N writes only the first N segments (the self-test of `nacc
submission`).  Made by `nacc submission`."""
import importlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIG: dict = {}  # filled in by `nacc submission`
HERE = Path(__file__).resolve().parent


def fail(where, msg):
    print(f"nacc: {where}: {msg}", file=sys.stderr)
    sys.exit(1)


def ensure_requirements():
    missing = []
    for mod in CONFIG["modules"]:
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        print(f"decompress.py: installing {' '.join(CONFIG['requirements'])}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *CONFIG["requirements"]])
        importlib.invalidate_caches()


def gpt_model(expected, override):
    """``override`` with ``model`` the gpt model folder rebuilt from its public checkpoint
    in a temporary folder (removed at exit), checked against ``expected`` (the archive's
    model hash); ``override`` unchanged when the archive needs no gpt model."""
    gpt = CONFIG.get("gpt")
    if not gpt:
        return override
    import atexit
    import shutil
    import tempfile

    from nacc.gpt.source import obtain_model

    work = Path(tempfile.mkdtemp(prefix="nacc-gpt-"))
    atexit.register(shutil.rmtree, work, True)
    print(f"decompress.py: rebuilding the gpt model from {gpt['checkpoint']}", file=sys.stderr)
    folder = obtain_model(gpt["checkpoint"], work / "model", expected, gpt["heads"],
                          gpt["act_bits"], bases=(HERE.parent, HERE))
    return {**(override or {}), "model": str(folder)}


def main():
    out = os.environ.get("OUTPUT_DIR") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not out:
        print("usage: OUTPUT_DIR=dir python decompress.py", file=sys.stderr)
        sys.exit(2)
    archive = HERE / CONFIG["archive"]
    if not archive.is_file() or not (HERE / "nacc_src" / "nacc").is_dir():
        fail(HERE, "not a nacc submission (archive or nacc_src/ missing)")
    ensure_requirements()
    if (HERE / "nacc_src" / "models").is_dir():
        os.environ["NACC_MODELS"] = str(HERE / "nacc_src" / "models")
    sys.path.insert(0, str(HERE / "nacc_src"))
    from nacc import codec, container
    from nacc.errors import NaccError
    from nacc.fileio import write_folder

    root = Path(out)
    t0 = time.perf_counter()
    override = {k: str(HERE / v) for k, v in CONFIG["path_params"].items()} or None
    try:
        buf = archive.read_bytes()
        header, blocks = container.read_archive(buf)
        names = [seg.name for seg in container.segments_of(blocks)]
        del blocks
        override = gpt_model(header.model_hash, override)
        sample = int(os.environ.get("NACC_SUBMISSION_SAMPLE") or 0)
        if sample:
            names = names[:sample]
        threads = 1 if sample else max(1, min(os.cpu_count() or 1, header.n_segments))
        # all or nothing, with the CLI's file modes (nacc.fileio.write_folder): a bad
        # segment leaves OUTPUT_DIR as it was
        items = itertools.islice(codec.decompress_archive(buf, threads, override), len(names))
        n = write_folder(root, names, items, force=True)
    except NaccError as e:
        fail(archive.name, str(e))
    except OSError as e:
        fail(root, e.strerror or str(e))
    print(f"decompress.py: {n} segment(s) -> {root} in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
