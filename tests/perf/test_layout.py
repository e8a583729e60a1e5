"""perf/'s layout: the tools share code only through the private shared modules.

Every ``python -m perf.<tool>`` module may import ``perf._cli``, ``perf._problems``,
``perf._timing``, ``perf._traces``, ``perf._fits``, …, but never another tool module (what two
tools share lives in a shared module), and a shared module never imports a tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

PERF = Path(__file__).resolve().parents[2] / "perf"


def _perf_imports(path: Path) -> set[str]:
    """The ``perf`` modules ``path`` imports, at any depth of the file (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("perf.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "perf":
                found |= {a.name for a in node.names}
            elif node.module.startswith("perf."):
                found.add(node.module.split(".")[1])
    return found


def test_tools_import_only_the_shared_modules():
    modules = {p.stem: p for p in PERF.glob("*.py") if p.stem != "__init__"}
    tools = {n for n in modules if not n.startswith("_")}
    assert {"nmf_speed", "time_to_target", "solver_validation"} <= tools  # the walk sees them
    wrong = {
        name: sorted(_perf_imports(path) & tools)
        for name, path in modules.items()
        if _perf_imports(path) & tools
    }
    assert wrong == {}, f"perf modules importing a tool module: {wrong}"
