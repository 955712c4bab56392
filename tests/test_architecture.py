"""The package's shape: no import cycles, no imports hidden in functions, no oversized modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "makini_async"
# Files written by a generator, not by hand.
GENERATED = {"models/_generated.py", "resources/_generated.py"}
MAX_LINES = 800


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of the package that ``module`` imports, TYPE_CHECKING blocks included."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            # `from pkg import mod` imports the submodule when there is one.
            targets = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {module: _imports(module, path, known) for module, path in known.items()}
    # A package's __init__ re-exports its children: importing a child through the package's
    # face is not an arrow from the child back up to the package.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901 - Tarjan, in one piece
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles() -> None:
    """No module of the package imports, directly or through others, a module importing it."""
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself sees a loop when there is one."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_imports_the_package() -> None:
    """No function imports a module of the package: such imports only hide a cycle."""
    known = _modules()
    hidden: list[str] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    target = _resolve(module, path.name == "__init__.py", node)
                elif isinstance(node, ast.Import):
                    target = node.names[0].name
                else:
                    continue
                if target.split(".")[0] == "makini_async":
                    hidden.append(f"{module}.{function.name}: {target}")
    assert hidden == []


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.relative_to(PACKAGE).as_posix() not in GENERATED
    ],
    ids=lambda p: p.relative_to(PACKAGE).as_posix(),
)
def test_hand_written_modules_stay_small(path: Path) -> None:
    """No hand-written module passes 800 lines."""
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_no_module_reaches_into_another_ones_private_attributes() -> None:
    """The package carries no suppression of ruff's private-member check, except for aiohttp's
    one attribute that has no public switch."""
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "SLF001" in line and "_retry_connection" not in line
    ]
    assert found == []
