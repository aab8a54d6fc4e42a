"""The shape of DESIGN.md §1, checked on every module (new ones included).

- **A pure core.** The catalog, the manifest model, the state records, the plan, its views, the
  planner and the renderer do no I/O: nothing they import, even indirectly, is a module of the
  package that does I/O or a library that does, and none of them imports the standard library's
  I/O modules (files, sockets, processes, the terminal).
- **The pipeline reads left to right** (`manifests -> desired + client -> live + storage -> prior
  => planner -> Plan => render | applier`): modules are ordered in layers, and no module imports
  one in a layer above its own, nor a sibling in its own layer.
- **Each edge library has one owner**: HTTP to Elasticsearch in `client`, YAML in `manifests`, the
  command line in `cli`, the server in the emulator. The emulator imports nothing from the
  package but the catalog; the catalog nothing but itself.
- **Small modules and functions**: no module over 600 lines but data tables, no function over 60.

`make lint` also runs the layering through import-linter (pyproject.toml).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"
IO_LIBRARIES = {"httpx", "httpcore", "yaml", "typer", "click", "rich", "uvicorn", "starlette", "structlog"}
STDLIB_IO = {
    "os",
    "io",
    "pathlib",
    "socket",
    "subprocess",
    "tempfile",
    "shutil",
    "getpass",
    "asyncio",
    "time",
}
# Which modules may import each edge library (prefix match on the module name).
OWNERS = {
    "httpx": ("reconciler.client",),
    "yaml": ("reconciler.manifests",),
    "typer": ("reconciler.cli",),
    "uvicorn": ("reconciler.emulator",),
    "starlette": ("reconciler.emulator",),
}
CATALOG = "reconciler.catalog"
PURE = (CATALOG, "reconciler.model", "reconciler.state", "reconciler.plan", "reconciler.views",
        "reconciler.planner", "reconciler.updates", "reconciler.plancheck", "reconciler.render", "reconciler.sensitive")  # fmt: skip
# Top to bottom: a module may import modules of the layers below its own, never above or beside.
LAYERS = (
    ("reconciler.cli",),
    ("reconciler.cli_envs",),
    ("reconciler.cli_base",),
    ("reconciler.environments",),
    ("reconciler.options",),
    ("reconciler.workflows", "reconciler.display", "reconciler.offline"),
    ("reconciler.importer", "reconciler.reports", "reconciler.takeover"),
    ("reconciler.applier", "reconciler.session", "reconciler.render"),
    ("reconciler.progress",),
    ("reconciler.plancheck",),
    ("reconciler.planner",),
    ("reconciler.updates",),
    ("reconciler.views",),
    ("reconciler.plan",),
    ("reconciler.lease",),
    ("reconciler.storage",),
    ("reconciler.client",),
    ("reconciler.connection",),
    ("reconciler.manifests",),
    ("reconciler.overlays", "reconciler.project"),
    ("reconciler.manifests_yaml",),
    ("reconciler.resolver",),
    ("reconciler.model",),
    ("reconciler.state",),
    ("reconciler.sensitive",),
    (CATALOG,),
)
DATA_TABLES = {"reconciler/catalog/table.py"}


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
GRAPH = grimp.build_graph("reconciler", include_external_packages=True)


def internal(imports: set[str]) -> set[str]:
    return {i for i in imports if i.startswith("reconciler.") and i.count(".") >= 1}


def layer_of(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in layer):
            return index
    return None


def owner(name: str) -> str:
    """The layer entry a module belongs to (the catalog package counts as one)."""
    return CATALOG if name.startswith(CATALOG) else name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_follow_the_rules(name: str) -> None:
    imports = MODULES[name]
    roots = {i.split(".")[0] for i in imports}
    if name.startswith("reconciler.emulator"):
        outside = {i for i in internal(imports) if not i.startswith(("reconciler.emulator", CATALOG))}
        assert not outside, f"the emulator may import only the catalog from the package: {outside}"
    if name == CATALOG or name.startswith(f"{CATALOG}."):
        outside = {i for i in internal(imports) if not i.startswith(f"{CATALOG}.")}
        assert not outside, f"the catalog imports nothing from the package but itself: {outside}"
        assert roots <= set(sys.stdlib_module_names) | {"__future__", "reconciler"}, roots
    for library, owners in OWNERS.items():
        if library in roots:
            assert name.startswith(owners), f"{name} imports {library}, which belongs to {owners}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(PURE)))
def test_the_core_is_pure_even_through_what_it_imports(name: str) -> None:
    direct_io = {i.split(".")[0] for i in MODULES[name]} & STDLIB_IO
    assert not direct_io, f"{name} is pure but imports {direct_io}"
    reached = GRAPH.find_upstream_modules(name)
    impure_libraries = {m for m in reached if m.split(".")[0] in IO_LIBRARIES}
    assert not impure_libraries, f"{name} reaches I/O libraries: {impure_libraries}"
    impure_modules = {m for m in reached if m.startswith("reconciler.") and not m.startswith(PURE)}
    assert not impure_modules, f"{name} reaches modules that do I/O: {impure_modules}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer_of(n) is not None))
def test_no_module_imports_one_above_or_beside_it(name: str) -> None:
    mine = layer_of(name)
    assert mine is not None
    for imported in internal(MODULES[name]):
        theirs = layer_of(imported)
        if theirs is None or owner(imported) == owner(name):
            continue
        assert theirs > mine, f"{name} (layer {mine}) imports {imported} (layer {theirs})"


def test_every_module_has_a_layer() -> None:
    unplaced = {n for n in MODULES if layer_of(n) is None and not n.startswith("reconciler.emulator")}
    assert unplaced <= {"reconciler", "reconciler.__main__"}, unplaced


def test_the_catalog_has_its_table_and_rules() -> None:
    assert {f"{CATALOG}.table", f"{CATALOG}.checks"} <= set(MODULES)


def test_every_module_says_what_it_does() -> None:
    for path in PACKAGE.rglob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path} has no module docstring"


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE.parent))
        text = path.read_text()
        if relative not in DATA_TABLES and len(text.splitlines()) > 600:
            too_long.append(f"{relative}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    too_long.append(f"{relative}:{node.lineno}: {node.name} has {length} lines")
    assert not too_long, too_long


def test_the_applier_never_reads_what_only_explains_a_change() -> None:
    """DESIGN.md §1: apply branches on the action and sends the plan's requests; the fields that
    explain a change (reasons, diff, replace paths, references) are for display only."""
    explaining = {"reasons", "diff", "replace_paths", "references", "referenced"}
    for module in ("applier.py", "workflows.py"):
        tree = ast.parse((PACKAGE / module).read_text())
        read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & explaining
        assert not read, f"reconciler/{module} reads {read}"


def test_validate_loads_no_cluster_code() -> None:
    """`validate` needs no cluster, and as a pre-commit hook it runs on every commit: it loads
    neither the HTTP client nor the workflows that talk to clusters, nor structlog (its start-up
    went from 0.62 s to 0.40 s on the build machine when they were taken out)."""
    heavy = ("httpx", "structlog", "reconciler.client", "reconciler.applier", "reconciler.workflows")
    script = (
        "import sys\n"
        "from reconciler.cli import main\n"
        f"sys.argv = ['reconciler', 'validate', '--offline', '--manifests', {str(PACKAGE.parent / 'manifests')!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    code = stop.code\n"
        f"print(code, [name for name in {heavy!r} if name in sys.modules])\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout.split("\n")[-2] == "0 []", found
