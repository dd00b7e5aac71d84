"""``nacc submission``: a commaVQ compression-challenge zip.

    nacc submission INPUT... -o submission.zip [-f] [--predictor NAME] [-T N] [--no-minify]

The zip holds, and its size counts, everything the decompressor needs beyond PyPI::

    decompress.py       OUTPUT_DIR=dir python decompress.py  writes every segment, byte-exact
    submission.nacc     one nacc archive of all segments (stored, not deflated)
    nacc_src/nacc/...   the nacc modules that decoding imports (docstrings/comments stripped
                        unless --no-minify)
    nacc_src/models/... shipped model files that decoding reads (e.g. the cm prior), from
                        wherever nacc.models finds them (a checkout's models/, or
                        <prefix>/share/nacc/models of a pip install)
    nacc_src/model/...  the --model folder, if any -- except a gpt model's: the challenge
                        counts the commaVQ repository (gpt2m) as available, so decompress.py
                        rebuilds that folder from the public checkpoint (``gpt_source``,
                        ``nacc.gpt.source``) and checks its hash against the archive's

Which modules and files go in is measured, not listed: a child process decodes the first
segment with an audit hook on ``open`` and reports the nacc modules it imported, the files
it read, and the third-party distributions it used; those become ``decompress.py``'s pip
requirements (nacc's own version specifiers where it declares one, else the exact version
installed here).

Before the zip is written it is tested with nothing but itself (``self_test``): unzipped
into an empty folder, its ``decompress.py`` runs under ``python -I`` in a clean
environment, must restore the first segment byte for byte, and must not open any file of
the installed nacc package or its models folder (so a zip that lacks, say, the cm prior
fails here, not at the evaluator).

Segment names are those of the inputs (a webdataset shard's json ``file_name``, a
directory's relative paths, a file's name), so ``OUTPUT_DIR/name`` is where the official
evaluator looks.  ``bench/evaluate_submission.sh ZIP ORIGINALS`` runs the whole flow in a
fresh virtual environment and prints the rate.
"""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nacc.errors import NaccError

ARCHIVE = "submission.nacc"
SCRIPT = "decompress.py"
SRC = "nacc_src"
MODELS = "models"                 # nacc_src/models: the shipped models decoding reads
RESERVED = {ARCHIVE, SCRIPT, SRC}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SKIP_PARTS = {"__pycache__", ".venv", "tests", ".git"}
_SKIP_DIR_SUFFIXES = (".egg-info", ".dist-info")
_SKIP_SUFFIXES = {".pyc", ".nbi", ".nbc"}

# run in a child process: decode the first segment and report what was used
_TRACE = r"""
import json, os, sys
opened = set()
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        opened.add(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(_hook)
archive, root = sys.argv[1], sys.argv[2]
extra = [a[1:] for a in sys.argv[3:] if a.startswith("+")]
blocked = {a for a in sys.argv[3:] if not a.startswith("+")}
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
sys.path.insert(0, root)
from nacc import codec, container
from nacc.predictors import base
header, blocks = container.read_archive(open(archive, "rb").read())
codec.decode_block(blocks[0], header)
import importlib
for m in extra:
    importlib.import_module(m)
mods = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
models = sys.modules.get("nacc.models")
sys.stdout.write(json.dumps({"opened": sorted(opened), "modules": mods,
                             "predictor_module": base.get(header.predictor).__module__,
                             "models_dir": str(models.models_dir()) if models else None}))
"""


# run in a child process (python -I, clean environment, cwd a temp dir): the zip's
# decompress.py as __main__, recording every file it opens
_SELFTEST = r"""
import json, os, runpy, sys
opened = set()
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        opened.add(os.path.abspath(os.fsdecode(args[0])))
script, report = sys.argv[1], sys.argv[2]
sys.argv = [script]
sys.addaudithook(_hook)
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(report, "w") as f:
        json.dump(sorted(opened), f)
"""
SELFTEST_SEGMENTS = 1
SELFTEST_TIMEOUT_S = 1800
# what decompress.py imports to rebuild a gpt model from its public checkpoint
GPT_MODULES = ("nacc.gpt.source", "nacc.gpt.importer", "nacc.gpt.torchfile")


@dataclass
class Plan:
    """What goes into the zip besides the archive."""
    files: dict[str, bytes] = field(default_factory=dict)      # zip path -> bytes
    requirements: list[str] = field(default_factory=list)     # pip specifiers
    modules: list[str] = field(default_factory=list)          # import names to check
    path_params: dict[str, str] = field(default_factory=dict)  # param -> zip path
    gpt: dict = field(default_factory=dict)   # where the gpt model comes from (gpt_source)


def package_root() -> Path:
    """The folder holding the ``nacc`` package (the checkout, or site-packages)."""
    return Path(__file__).resolve().parent.parent


def minify(source: str, where: str) -> str:
    """Python source without docstrings and comments (same code objects otherwise)."""
    tree = ast.parse(source, where)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                     ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def _declared_requirements() -> dict[str, str]:
    """nacc's own install requirements (no extras), by normalised distribution name."""
    try:
        reqs = metadata.requires("nacc") or []
    except metadata.PackageNotFoundError:
        return {}
    out = {}
    for r in reqs:
        if "extra ==" in r:
            continue
        spec = r.split(";")[0].strip()
        name = re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0]
        out[_norm(name)] = spec
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def trace(archive_bytes: bytes, root: Path, blocked: tuple[str, ...] = (),
          extra: tuple[str, ...] = ()) -> dict | str:
    """Decode the first segment in a child process, then import the modules ``extra``;
    what it imported and opened (or the error text).  Modules in ``blocked`` are made to
    look absent."""
    with tempfile.TemporaryDirectory(prefix="nacc-submission-") as d:
        path = Path(d) / ARCHIVE
        path.write_bytes(archive_bytes)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        # trace the portable path (numba JIT): an ahead-of-time build in this user's cache
        # (nacc.kernels.cpu.aot) would hide the kernel modules and numba from the trace
        env["NACC_AOT"] = "0"
        r = subprocess.run([sys.executable, "-c", _TRACE, str(path), str(root), *blocked,
                            *(f"+{m}" for m in extra)],
                           capture_output=True, env=env, cwd=d)
    if r.returncode != 0:
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return " / ".join(tail)
    return json.loads(r.stdout)


def optional_predictors(root: Path) -> list[str]:
    """The predictor modules that ``nacc.predictors`` imports only if present."""
    src = (root / "nacc" / "predictors" / "__init__.py").read_text()
    m = re.search(r"for _optional in \(([^)]*)\)", src)
    names = re.findall(r"[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']", m.group(1)) if m else []
    return [f"nacc.predictors.{n}" for n in names]


def trace_minimal(archive_bytes: bytes, root: Path, predictor: str,
                  extra: tuple[str, ...] = ()) -> dict:
    """Trace decoding (and importing ``extra``) with the optional predictor modules the
    archive does not use made absent (they need not ship); if that fails, trace again with
    everything."""
    from nacc.predictors import base

    used = base.get(predictor).__module__
    unused = tuple(m for m in optional_predictors(root) if m != used)
    if unused:
        small = trace(archive_bytes, root, unused, extra)
        if isinstance(small, dict):
            return small
    full = trace(archive_bytes, root, (), extra)
    if isinstance(full, str):
        raise NaccError(f"decoding the archive in a child process failed: {full}")
    return full


def _under(p: Path, folder: Path | None) -> bool:
    return folder is not None and (p == folder or folder in p.parents)


def _skipped(p: Path) -> bool:
    return (bool(_SKIP_PARTS & set(p.parts)) or p.suffix in _SKIP_SUFFIXES
            or any(part.endswith(_SKIP_DIR_SUFFIXES) for part in p.parts))


def plan(archive_bytes: bytes, do_minify: bool = True, gpt: dict | None = None) -> Plan:
    """Measure what decoding ``archive_bytes`` needs (see the module docstring).  With
    ``gpt`` (``gpt_source``'s dict) the model folder stays out of the zip and the modules
    that rebuild it from its checkpoint go in."""
    from nacc import container

    header, _ = container.read_header(archive_bytes)
    header_params = header.params
    root = package_root()
    used = trace_minimal(archive_bytes, root, header.predictor, GPT_MODULES if gpt else ())
    out = Plan(gpt=dict(gpt or {}))
    # nacc modules: their source files
    for name, file in sorted(used["modules"].items()):
        if file and (name == "nacc" or name.startswith("nacc.")):
            p = Path(file).resolve()
            rel = p.relative_to(root)
            src = p.read_text()
            out.files[f"{SRC}/{rel.as_posix()}"] = (minify(src, str(p)) if do_minify
                                                    else src).encode()
    # data files read while decoding: a --model folder, and the shipped models (the cm
    # prior) wherever nacc.models found them: the checkout's models/, or
    # <prefix>/share/nacc/models of a pip install, or $NACC_MODELS; in the zip they are
    # nacc_src/models/, which decompress.py makes nacc use.  Only paths below those roots
    # are tested for skipped parts (an install inside a .venv is normal).
    model = header_params.get("model")
    model_path = Path(model).resolve() if isinstance(model, str) and model else None
    zoo = Path(used["models_dir"]).resolve() if used.get("models_dir") else None
    package = root / "nacc"
    for f in used["opened"]:
        p = Path(f).resolve()
        if not p.is_file() or p.suffix == ".py":
            continue
        if model_path is not None and _under(p, model_path):
            if gpt:
                continue
            base = model_path if model_path.is_dir() else model_path.parent
            out.files[f"{SRC}/model/{p.relative_to(base).as_posix()}"] = p.read_bytes()
            out.path_params["model"] = f"{SRC}/model" + ("" if model_path.is_dir()
                                                         else f"/{model_path.name}")
        elif zoo is not None and _under(p, zoo) and p != zoo and not _skipped(p.relative_to(zoo)):
            out.files[f"{SRC}/{MODELS}/{p.relative_to(zoo).as_posix()}"] = p.read_bytes()
        elif _under(p, package) and not _skipped(p.relative_to(root)):
            out.files[f"{SRC}/{p.relative_to(root).as_posix()}"] = p.read_bytes()
    # third-party distributions: those nacc declares (their own dependencies follow from
    # pip); without nacc's metadata, every imported distribution at its installed version
    declared = _declared_requirements()
    dists_of = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    tops = sorted({n.split(".")[0] for n, f in used["modules"].items() if f})
    for top in tops:
        if top in stdlib or top == "nacc" or top.startswith("_") or top not in dists_of:
            continue
        for dist in dists_of[top]:
            key = _norm(dist)
            if declared and key not in declared:
                continue
            spec = declared.get(key) or f"{dist}=={metadata.version(dist)}"
            if spec not in out.requirements:
                out.requirements.append(spec)
            if top not in out.modules:
                out.modules.append(top)
    return out


def gpt_source(model, checkpoint: str, expected: bytes) -> dict:
    """The zip's record of where its gpt model comes from (``Plan.gpt``), checked now: the
    checkpoint at ``checkpoint`` (a path or URL, ``nacc.gpt.source``) must import, with the
    head count and activation bits of the folder ``model``, to weights of sha256
    ``expected`` (the archive's model hash), else NaccError."""
    from nacc.gpt.modelfile import read_config
    from nacc.gpt.source import obtain_model

    cfg, _ = read_config(model)
    with tempfile.TemporaryDirectory(prefix="nacc-gpt-") as d:
        obtain_model(checkpoint, Path(d) / "model", expected, cfg.n_head, cfg.act_bits)
    return {"checkpoint": checkpoint, "heads": cfg.n_head, "act_bits": cfg.act_bits}


def decompress_script(p: Plan) -> str:
    template = (Path(__file__).parent / "submission_template.py").read_text()
    config = {"archive": ARCHIVE, "requirements": p.requirements, "modules": p.modules,
              "path_params": p.path_params, "gpt": p.gpt}
    line = "CONFIG: dict = {}  # filled in by `nacc submission`"
    if line not in template:
        raise NaccError("submission template lacks its CONFIG line")
    return template.replace(line, f"CONFIG = {config!r}")


def _zip_entry(z: zipfile.ZipFile, name: str, data: bytes, stored: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    z.writestr(info, data, compresslevel=None if stored else 9)


def build_zip(archive_bytes: bytes, p: Plan) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        _zip_entry(z, SCRIPT, decompress_script(p).encode(), stored=False)
        for name in sorted(p.files):
            _zip_entry(z, name, p.files[name], stored=False)
        _zip_entry(z, ARCHIVE, archive_bytes, stored=True)
    return buf.getvalue()


def self_test(data: bytes, expected: list[tuple[str, bytes]],
              sample: int = SELFTEST_SEGMENTS, cwd: Path | None = None,
              forbid: tuple[Path, ...] = ()) -> float:
    """Unzip ``data`` into an empty temporary folder and run its ``decompress.py`` there
    with nothing else: ``python -I`` (no PYTHONPATH, no user site), a clean environment
    (PATH, a fresh HOME, OUTPUT_DIR, NACC_AOT=0: the JIT kernels from the zip's source),
    cwd the temporary folder (or ``cwd``: where a relative gpt checkpoint is found),
    writing only the first ``sample`` segments.  NaccError unless it exits 0, writes
    exactly ``expected``'s first ``sample`` (name, .npy bytes), and opened no file of this
    installation's nacc package or models folder, nor below a folder of ``forbid`` (the gpt
    model folder, which the zip rebuilds from its checkpoint).  Returns the seconds it
    took."""
    import time

    from nacc.models import models_dir

    own = [package_root() / "nacc", models_dir().resolve(), *(Path(f).resolve()
                                                              for f in forbid)]
    with tempfile.TemporaryDirectory(prefix="nacc-selftest-") as tmp:
        d = Path(tmp).resolve()
        sub, out, home = d / "submission", d / "out", d / "home"
        sub.mkdir()
        home.mkdir()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            z.extractall(sub)
        report = d / "opened.json"
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home),
               "LANG": "C.UTF-8", "OUTPUT_DIR": str(out), "NACC_AOT": "0",
               "NACC_SUBMISSION_SAMPLE": str(sample)}
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-I", "-c", _SELFTEST, str(sub / SCRIPT),
                                str(report)], cwd=cwd or d, env=env, capture_output=True,
                               timeout=SELFTEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise NaccError(f"self-test: decompress.py from the zip alone ran past "
                            f"{SELFTEST_TIMEOUT_S} s") from None
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise NaccError("self-test: decompress.py from the zip alone failed (exit "
                            f"{r.returncode}): {' / '.join(tail)}")
        for name, raw in expected[:sample]:
            got = out / name
            if not got.is_file():
                raise NaccError(f"self-test: decompress.py from the zip alone did not write "
                                f"{name}")
            if got.read_bytes() != raw:
                raise NaccError(f"self-test: decompress.py from the zip alone wrote {name} "
                                "differently from the original")
        for f in json.loads(report.read_text()):
            p = Path(f)
            if not _under(p, d) and any(_under(p, o) for o in own):
                raise NaccError(f"self-test: decompress.py read {p} from this installation, "
                                "not from the zip (the zip is incomplete)")
    return dt


def check_names(names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise NaccError(f"two segments are named {n!r}; they would overwrite each other")
        seen.add(n)
        top = PurePosixPath(n).parts[0]
        if top in RESERVED:
            raise NaccError(f"segment name {n!r} clashes with the submission's own {top!r}")
