"""The import rules of DESIGN.md §1, checked on every module (new ones included) by reading their imports.

- The service catalog is pure: standard library only.
- The emulator imports nothing from the package but the catalog.
- Each I/O library stays in the one module that owns that edge: HTTP to Elasticsearch in
  `reconciler.client`, YAML in `reconciler.manifests`, the command line in `reconciler.cli`; the
  planner and the plan import none of them.
`make lint` also runs the same layering through import-linter (pyproject.toml).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"
IO_LIBRARIES = {"httpx", "yaml", "typer", "rich", "uvicorn", "starlette", "structlog"}
# Which modules may import each edge library (prefix match on the module name).
OWNERS = {
    "httpx": ("reconciler.client",),
    "yaml": ("reconciler.manifests",),
    "typer": ("reconciler.cli",),
    "uvicorn": ("reconciler.emulator",),
    "starlette": ("reconciler.emulator",),
}
PURE = ("reconciler.catalog", "reconciler.planner", "reconciler.plan")


def modules() -> dict[str, set[str]]:
    """Every module of the package and the absolute names it imports."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
                imports.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[name] = imports
    return found


MODULES = modules()


def internal(imports: set[str]) -> set[str]:
    return {i for i in imports if i.startswith("reconciler.") and i.count(".") >= 1}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_follow_the_rules(name: str) -> None:
    imports = MODULES[name]
    roots = {i.split(".")[0] for i in imports}
    if name.startswith("reconciler.emulator"):
        outside = {
            i for i in internal(imports) if not i.startswith(("reconciler.emulator", "reconciler.catalog"))
        }
        assert not outside, f"the emulator may import only the catalog from the package: {outside}"
    if name.startswith(PURE):
        stdlib = set(sys.stdlib_module_names) | {"__future__"}
        impure = {r for r in roots if r not in stdlib and r != "reconciler"} & (IO_LIBRARIES | {"httpx"})
        assert not impure, f"{name} is pure but imports {impure}"
    if name == "reconciler.catalog":
        assert not internal(imports), "the catalog imports nothing from the package"
        assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots
    for library, owners in OWNERS.items():
        if library in roots:
            assert name.startswith(owners), f"{name} imports {library}, which belongs to {owners}"


def test_every_module_says_what_it_does() -> None:
    for path in PACKAGE.rglob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path} has no module docstring"
