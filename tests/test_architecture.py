"""The package whiteboard of docs/design.md, checked: arrows between the parts, no import
circle anywhere, and no function-level imports inside `dnmf`.

Imports are read from the source with `ast` (nothing is imported), so an import hidden inside a
function or under ``if TYPE_CHECKING:`` counts like any other: a circle that only a lazy or a
typing-only import keeps from failing at run time is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("dnmf", "convae", "benchmarks", "perf", "experiments")

# part -> the parts it may import. Everything else is an arrow that must never be.
ALLOWED = {
    "dnmf": set(),
    "convae": set(),
    "benchmarks": {"dnmf", "convae"},
    "perf": {"dnmf", "convae", "benchmarks"},
    "experiments": {"dnmf", "convae", "benchmarks"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            if "results" in path.parts:  # scripts stored beside results are not the package
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The project modules one import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in PARTS:
                yield alias.name
        return
    if node.level:
        base = module.split(".")
        # A package's own __init__ is its module name; relative imports start from it.
        anchor = base if _is_package(module) else base[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        target = ".".join(anchor + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] not in PARTS:
        return
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        # `from pkg import name` imports the submodule when there is one, else pkg itself.
        yield sub if sub in MODULES else target


def _nearest_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every project import of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, child):
                    resolved = _nearest_module(target)
                    if resolved is not None and resolved != module:
                        found.append((resolved, child.lineno, in_function))
            walk(child, inner)

    walk(tree, False)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_the_packages():
    # Guards the checks below against passing vacuously (e.g. a moved root folder).
    assert {"dnmf", "dnmf.factorize", "convae", "benchmarks.cli"} <= set(MODULES)
    assert any(t == "dnmf.factorize" for t, _, _ in GRAPH["dnmf"])


@pytest.mark.parametrize("part", PARTS)
def test_arrows_between_parts_point_one_way(part):
    wrong = [
        f"{src}:{line} imports {dst}"
        for src, edges in GRAPH.items()
        if src.split(".")[0] == part
        for dst, line, _ in edges
        if dst.split(".")[0] != part and dst.split(".")[0] not in ALLOWED[part]
    ]
    assert not wrong, f"{part} may import only {sorted(ALLOWED[part])}:\n" + "\n".join(wrong)


def test_no_import_circle_anywhere():
    cycles = _cycles()
    assert not cycles, "import circles (every import counts, lazy and typing-only too):\n" + (
        "\n".join(" <-> ".join(c) for c in cycles)
    )


def test_no_function_level_import_in_dnmf():
    lazy = [
        f"{src}:{line} imports {dst}"
        for src, edges in GRAPH.items()
        if src.split(".")[0] == "dnmf" and src != "dnmf"  # the package's lazy attributes
        for dst, line, inside in edges
        if inside
    ]
    assert not lazy, "function-level imports inside dnmf:\n" + "\n".join(lazy)


def test_benchmarks_and_convae_use_only_public_dnmf_modules():
    # What a user of dnmf may import, the benchmark imports too: no ``dnmf._x`` module (perf/,
    # the library's own performance tools, and the tests may look inside).
    private = [
        f"{src}:{line} imports {dst}"
        for src, edges in GRAPH.items()
        if src.split(".")[0] in ("benchmarks", "convae")
        for dst, line, _ in edges
        if dst.split(".")[0] == "dnmf" and any(p.startswith("_") for p in dst.split(".")[1:])
    ]
    assert not private, "private dnmf modules imported:\n" + "\n".join(private)


def test_the_checker_finds_a_planted_circle(tmp_path, monkeypatch):
    # The cycle finder itself, on a graph with one circle and one tail.
    monkeypatch.setattr(
        __import__(__name__, fromlist=["GRAPH"]),
        "GRAPH",
        {"a": [("b", 1, False)], "b": [("c", 1, False)], "c": [("a", 1, True)], "d": []},
    )
    assert _cycles() == [["a", "b", "c"]]
