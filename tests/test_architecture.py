"""The architecture holds (issue 15, docs/architecture.md): the layers and the DuckDB boundary as
import-linter contracts (pyproject.toml, [tool.importlinter]), and, over every import statement of the
package (also those inside functions; not ``if TYPE_CHECKING:`` blocks): no import cycles between modules,
no module importing another's ``_private`` name, and no SQL written outside ``viscurate.store``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import viscurate

PACKAGE = Path(viscurate.__file__).parent
REPO = PACKAGE.parent.parent

# SQL statements, not words: a keyword followed by what only a statement has
_SQL = re.compile(r"\b(SELECT\b[\s\S]+\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|"
                  r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|INDEX|VIEW|MACRO)\b|DROP\s+(TABLE|INDEX|VIEW)\b)")


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: set[str] = field(default_factory=set)
    private_imports: list[str] = field(default_factory=list)


def _modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = Module(".".join(parts), path, is_package, ast.parse(path.read_text(), str(path)))
    return out


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skip


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The module ``name`` names, or the one holding it (``pkg.mod.attr`` -> ``pkg.mod``)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> dict[str, Module]:
    """Every module of the package with the package modules it imports."""
    modules = _modules()
    for mod in modules.values():
        skip = _type_checking_nodes(mod.tree)
        base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
        for node in ast.walk(mod.tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                origin = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module or ""
                targets = [(f"{origin}.{a.name}", a.name) for a in node.names]
            else:
                continue
            for target, imported_name in targets:
                if not target.startswith("viscurate"):
                    continue
                found = _resolve(target, modules)
                if found and found != mod.name:
                    mod.imports.add(found)
                    if imported_name and imported_name.startswith("_") and not imported_name.startswith("__") \
                            and found != target:  # a name inside another module, not a module
                        mod.private_imports.append(f"{imported_name} from {found}")
    return modules


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(modules[root].imports)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(modules[child].imports))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


@pytest.fixture(scope="module")
def graph() -> dict[str, Module]:
    return import_graph()


def test_the_cycle_finder_finds_a_cycle():
    a = Module("a", Path("a"), False, ast.parse(""), {"b"})
    b = Module("b", Path("b"), False, ast.parse(""), {"c"})
    c = Module("c", Path("c"), False, ast.parse(""), {"a", "d"})
    d = Module("d", Path("d"), False, ast.parse(""), set())
    assert import_cycles({"a": a, "b": b, "c": c, "d": d}) == [["a", "b", "c"]]
    c.imports = {"d"}
    assert import_cycles({"a": a, "b": b, "c": c, "d": d}) == []


def test_no_import_cycles_between_modules(graph):
    assert len(graph) > 50  # the whole package was read
    cycles = import_cycles(graph)
    detail = []
    for group in cycles:
        members = set(group)
        detail += [f"{m} -> {t}" for m in group for t in sorted(graph[m].imports & members)]
    assert not cycles, f"{len(cycles)} import cycle group(s):\n" + "\n".join(detail)


def test_no_module_imports_another_modules_private_names(graph):
    found = [f"{m.name}: {p}" for m in graph.values() for p in m.private_imports]
    assert not found, "\n".join(found)


def _strings_outside_docstrings(tree: ast.Module) -> list[tuple[int, str]]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
    return out


def test_only_the_store_writes_sql(graph):
    assert _SQL.search("SELECT count(*) FROM samples") and not _SQL.search("select the samples from a list")
    found = []
    for mod in graph.values():
        if mod.name.startswith("viscurate.store"):
            continue
        found += [f"{mod.path.relative_to(REPO)}:{line}: {text[:80]!r}"
                  for line, text in _strings_outside_docstrings(mod.tree) if _SQL.search(text)]
    assert not found, "\n".join(found)


def test_the_catalog_has_no_public_sql():
    from viscurate.store.catalog import Catalog
    assert not hasattr(Catalog, "sql")


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: the layers, and DuckDB only in the store."""
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(REPO / "pyproject.toml")) == 0


@pytest.mark.parametrize("module", ["viscurate.pipeline.ingest", "viscurate.pipeline.label.infer",
                                    "viscurate.pipeline.label.worker", "viscurate.media", "viscurate.models"])
def test_what_worker_processes_import_never_loads_the_store(module):
    """Workers preload these (pipeline/pool.py): a top-level import of the catalog anywhere below them
    would put DuckDB and pyarrow into every worker (import-linter allows such an import: it is downward)."""
    import subprocess
    import sys

    code = (f"import importlib, sys; importlib.import_module({module!r}); "
            "print(sorted(m for m in ('duckdb', 'pyarrow', 'viscurate.store.catalog') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_cli_command_has_its_place_in_help():
    """A command a group module adds must be named in ``cli.app.COMMAND_ORDER`` (else it is listed last)."""
    from viscurate.cli.app import COMMAND_ORDER, app

    registered = {c.name for c in app.registered_commands}
    assert registered == set(COMMAND_ORDER), (registered ^ set(COMMAND_ORDER))
