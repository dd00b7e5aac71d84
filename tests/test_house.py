"""The shape of the package, read from its source: no circle of imports, no library module
that imports the command line, and no function outside the Triton kernels with more than 12
parameters (weights travel as packs).  Static: nothing of nacc is imported."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nacc"
MAX_PARAMS = 12
# Triton kernels take their pointers one by one (the language has no structs)
KERNEL_FOLDER = PACKAGE / "kernels" / "triton" / "jit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The nacc modules ``name`` imports anywhere in its file (top level or in functions)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {m: _imports(m, p, known) for m, p in mods.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first: those edges are implied, not
    # circles of the code's own making
    for m, deps in graph.items():
        deps -= {p for p in known if m.startswith(p + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_circle_of_imports():
    assert _cycles(_graph()) == []


def test_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_library_module_imports_the_command_line():
    graph = _graph()
    offenders = sorted(m for m, deps in graph.items()
                       if not (m == "nacc.cli" or m.startswith("nacc.cli.")
                               or m in ("nacc.__main__",))
                       and any(d == "nacc.cli" or d.startswith("nacc.cli.") for d in deps))
    assert offenders == []


def _is_click_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        text = ast.unparse(target)
        if text.endswith(("command", "group")) or ".command" in text:
            return True
    return False


def _wide_functions() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if KERNEL_FOLDER in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
            if a.args and a.args[0].arg in ("self", "cls"):
                n -= 1
            if n > MAX_PARAMS and not _is_click_command(node):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    return out


def test_no_function_takes_more_than_twelve_parameters():
    assert _wide_functions() == []
