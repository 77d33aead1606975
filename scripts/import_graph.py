"""Print vaekit's import graph as text: each module, its line count, and the vaekit modules it
imports (deferred imports included), from the bottom layer up. Used for docs/architecture.md.

    python scripts/import_graph.py
"""

from __future__ import annotations

import ast
import sys
from graphlib import TopologicalSorter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"


def modules() -> dict[str, Path]:
    out = {}
    for file in sorted(SRC.rglob("*.py")):
        parts = file.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for module, file in mods.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                package = module.split(".")
                if file.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                targets = names or [node.module or ""]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t not in (module, "vaekit"):
                    edges[module].add(t)
    return edges


def main() -> int:
    mods = modules()
    edges = imports(mods)
    try:
        order = list(TopologicalSorter(edges).static_order())
    except Exception as err:  # graphlib.CycleError
        print(f"cycle: {err}", file=sys.stderr)
        return 1
    for m in order:
        lines = len(mods[m].read_text().splitlines())
        deps = ", ".join(sorted(d.removeprefix("vaekit.") for d in edges[m])) or "-"
        print(f"{m.removeprefix('vaekit.') or 'vaekit':24} {lines:5}  {deps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
