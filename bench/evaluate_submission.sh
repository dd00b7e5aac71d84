#!/usr/bin/env bash
# Evaluate a commaVQ challenge zip the way the official evaluator does, end to end:
#
#   bench/evaluate_submission.sh SUBMISSION.zip ORIGINALS...
#
# ORIGINALS: directories of the original .npy segments (names relative to each), or
# webdataset shards (.tar / .tar.gz; names from each KEY.json's file_name).
#
# 1. checks the zip is a nacc submission, unzips it into an empty folder;
# 2. creates a fresh virtual environment (python3 -m venv; decompress.py pip-installs what
#    it needs from PyPI) -- or uses $EVAL_PYTHON instead, to skip that (the tests do);
# 3. runs decompress.py with OUTPUT_DIR set to the unzipped folder (as the official
#    compression/evaluate.sh does), from the work folder, without PYTHONPATH or NACC_*;
# 4. compares every original with its output, byte for byte (dtype, shape and header
#    included), and prints  Compression rate: X  = total tokens * 10 / 8 / zip size.
# Exit 0 when every file matches; 1 otherwise, with `nacc: FILE: message` on stderr.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 SUBMISSION.zip ORIGINALS_DIR_OR_SHARD..." >&2
    exit 2
fi
[ -f "$1" ] || { echo "nacc: $1: no such file" >&2; exit 1; }
zip=$(realpath -- "$1")
shift
originals=()
for o in "$@"; do
    [ -e "$o" ] || { echo "nacc: $o: no such file or directory" >&2; exit 1; }
    originals+=("$(realpath -- "$o")")
done

work=$(mktemp -d "${TMPDIR:-/tmp}/nacc-evaluate.XXXXXX")
trap 'rm -rf "$work"' EXIT
unpacked="$work/submission"
mkdir "$unpacked"

python3 - "$zip" <<'EOF'
import sys, zipfile
path = sys.argv[1]
try:
    names = set(zipfile.ZipFile(path).namelist())
except (zipfile.BadZipFile, OSError) as e:
    sys.exit(f"nacc: {path}: not a zip file ({e})")
if "decompress.py" not in names:
    sys.exit(f"nacc: {path}: not a commaVQ submission (no decompress.py at the top level)")
if "submission.nacc" not in names or not any(n.startswith("nacc_src/nacc/") for n in names):
    sys.exit(f"nacc: {path}: not a nacc submission (no submission.nacc / nacc_src/)")
EOF

if command -v unzip >/dev/null; then
    unzip -q "$zip" -d "$unpacked"
else
    python3 -m zipfile -e "$zip" "$unpacked"
fi

if [ -n "${EVAL_PYTHON:-}" ]; then
    py=$EVAL_PYTHON
else
    echo "evaluate: creating a fresh virtual environment" >&2
    python3 -m venv "$work/venv"
    py="$work/venv/bin/python"
fi

t0=$(date +%s)
# nothing of this machine's nacc may help: no PYTHONPATH, no NACC_* settings (a
# $NACC_MODELS would hide a zip that lacks its models)
(cd "$work" && env -u PYTHONPATH -u NACC_MODELS -u NACC_CACHE -u NACC_AOT \
    OUTPUT_DIR="$unpacked" "$py" "$unpacked/decompress.py")
echo "evaluate: decompress.py took $(( $(date +%s) - t0 )) s" >&2

"$py" - "$unpacked" "$zip" "${originals[@]}" <<'EOF'
import io, json, os, sys, tarfile
from pathlib import Path

import numpy as np

unpacked, zip_path = Path(sys.argv[1]), Path(sys.argv[2])
originals = [Path(p) for p in sys.argv[3:]]


def from_dir(root):
    files = sorted(p for p in root.rglob("*.npy") if p.is_file())
    if not files:
        sys.exit(f"nacc: {root}: no .npy files to compare with")
    for p in files:
        yield p.relative_to(root).as_posix(), p.read_bytes()


def from_shard(path):
    data, names = {}, {}
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            if not m.isfile():
                continue
            head, _, base = m.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{head}/{stem}" if head else stem
            if ext == "token.npy":
                data[key] = tar.extractfile(m).read()
            elif ext == "json":
                names[key] = json.loads(tar.extractfile(m).read()).get("file_name", key + ".npy")
    for key, raw in data.items():
        yield names.get(key, key + ".npy"), raw


n_files = n_tokens = 0
bad = []
seen = set()
items = ((name, raw) for o in originals for name, raw in (from_dir(o) if o.is_dir()
                                                          else from_shard(o)))
for name, raw in items:
    if name in seen:
        sys.exit(f"nacc: {name}: appears in two originals")
    seen.add(name)
    out = unpacked / name
    if not out.is_file():
        bad.append(f"nacc: {name}: missing from the decompressed output")
    elif out.read_bytes() != raw:
        bad.append(f"nacc: {name}: decompressed file differs from the original")
    n_files += 1
    n_tokens += int(np.load(io.BytesIO(raw), allow_pickle=False).size)
for line in bad:
    print(line, file=sys.stderr)
if bad:
    sys.exit(1)
size = zip_path.stat().st_size
print(f"evaluate: {n_files} file(s) byte-identical, {n_tokens} tokens, zip {size} bytes",
      file=sys.stderr)
print(f"Compression rate: {n_tokens * 10 / 8 / size:.4f}")
EOF
