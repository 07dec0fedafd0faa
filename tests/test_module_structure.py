"""The package reads top-down: no two modules of ``replay`` import each other (at module level,
inside functions or under TYPE_CHECKING alike)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "replay"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # "from . import rest"
    return {m for m in out if m == "replay" or m.startswith("replay.")}


def test_no_two_modules_import_each_other() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if a in graph.get(b, set()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert pairs == [], f"modules that import each other: {pairs}"


def test_the_server_endpoints_do_not_import_the_app() -> None:
    for name in ("rest", "ws_account", "ws_trade", "ws_common"):
        assert "replay.server.app" not in _imports(PACKAGE / "server" / f"{name}.py"), name
