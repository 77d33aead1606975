"""The package's import graph points one way: no cycle (deferred imports included), and each layer
imports only the layers below it."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"


def _modules() -> dict[str, Path]:
    mods = {}
    for file in SRC.rglob("*.py"):
        parts = file.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = file
    return mods


MODULES = _modules()


def _targets(module: str, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if not node.level:
        base = node.module or ""
    else:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _graph() -> dict[str, set[str]]:
    """Module -> the vaekit modules it imports anywhere (functions and TYPE_CHECKING included)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, file in MODULES.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    while target not in MODULES and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in MODULES and target not in (module, "vaekit"):
                        edges[module].add(target)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


#: package -> packages it must never import (directly; the no-cycle test covers the rest).
FORBIDDEN = {
    "vaekit.models": ("vaekit.train", "vaekit.evaluation", "vaekit.cli", "vaekit.viz"),
    "vaekit.estimators": ("vaekit.models", "vaekit.train", "vaekit.evaluation", "vaekit.cli"),
    "vaekit.data": (
        "vaekit.models",
        "vaekit.estimators",
        "vaekit.train",
        "vaekit.evaluation",
        "vaekit.viz",
        "vaekit.cli",
    ),
    "vaekit.checkpoint": ("vaekit.models", "vaekit.train", "vaekit.cli", "vaekit.data"),
    # the run folder's lock sits with the foundations: it knows errors and the run's file names
    "vaekit.lock": (
        "vaekit.config",
        "vaekit.files",
        "vaekit.checkpoint",
        "vaekit.models",
        "vaekit.train",
        "vaekit.cli",
    ),
    "vaekit.train": ("vaekit.evaluation", "vaekit.cli", "vaekit.viz"),
    "vaekit.evaluation": ("vaekit.cli", "vaekit.viz"),
    "vaekit.export": (
        "vaekit.train",
        "vaekit.evaluation",
        "vaekit.cli",
        "vaekit.viz",
        "vaekit.data",
    ),
    "vaekit.media": ("vaekit.train", "vaekit.evaluation", "vaekit.cli"),
    # disentanglement metrics judge a model's encoder on data with factors; they train nothing
    "vaekit.metrics": ("vaekit.train", "vaekit.evaluation", "vaekit.cli", "vaekit.viz"),
    "vaekit.settings": ("vaekit.evaluation", "vaekit.cli", "vaekit.viz"),
    "vaekit.viz": ("vaekit.train", "vaekit.evaluation", "vaekit.cli"),
    # the server sits at the top beside the command line: it serves trained models
    "vaekit.serve": ("vaekit.cli", "vaekit.train"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_below(package: str) -> None:
    edges = _graph()
    wrong = sorted(
        f"{m} imports {t}"
        for m, targets in edges.items()
        if _within(m, package)
        for t in targets
        if any(_within(t, f) for f in FORBIDDEN[package])
    )
    assert not wrong, wrong


def test_nothing_below_the_command_line_imports_it() -> None:
    users = sorted(
        m
        for m, targets in _graph().items()
        if not _within(m, "vaekit.cli") and any(_within(t, "vaekit.cli") for t in targets)
    )
    assert users == ["vaekit._entry"], users


def test_only_the_command_line_imports_the_server() -> None:
    users = sorted(
        m
        for m, targets in _graph().items()
        if not _within(m, "vaekit.serve") and any(_within(t, "vaekit.serve") for t in targets)
    )
    assert users == ["vaekit.cli.serve"], users


def test_a_cycle_is_found_where_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
