"""The package's architecture, checked on its source (docs/architecture.md states each rule).

The import graph of gitext is built from the source with `ast`: module-level imports, imports
inside functions and imports under `if TYPE_CHECKING:` alike (a type named from a higher layer
is still a dependency on it). The tests fail on any cycle, on any import from a higher layer
into a lower one, and on the other rules of docs/architecture.md, naming the module and line.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitext"

# Layer of each top-level part of gitext; a module may import its own layer or lower ones.
# git and storage share a rank but are siblings: neither imports the other.
LAYER0 = {"gitext", "gitext.errors", "gitext.log", "gitext.fsutil", "gitext.progress"}
RANKS = {"formats": 1, "git": 2, "storage": 2, "repo": 3, "ml": 4, "cli": 5}
SIBLINGS = {frozenset({"git", "storage"})}
ENTRY = {"gitext.__main__": 5}

# Third-party (and slow standard-library) modules that may be imported inside a function, so
# that starting git-mlx (every hook, every filter process) does not pay for them.
HEAVY = {"yaml", "ruamel", "pygit2", "boto3", "botocore", "paramiko", "sqlite3", "ctypes", "filelock",
         "zstandard", "vl_convert",
         "gitext.storage._cdc"}  # the optional C chunker: its absence is handled where it is loaded
# Function-local imports of the package's own modules that keep start-up cheap: a Context
# opens its store, stat cache, remotes and transfers on first use (a checkout's hook with
# nothing to do loads none of them; docs/architecture.md, "Start-up"), and the settings
# parse chunking settings into the store's type only when the store is opened; hydration
# and the filter load the storage code (repair, packs, the store, zstandard, thread pools) only
# when they have files to write, so a checkout's hook that finds none, and a filter process
# git starts for a command that sends it nothing, stay cheap.
LAZY = {
    ("gitext.repo.hydrate", "gitext.storage.repair"),
    ("gitext.repo.hydrate", "gitext.storage.transfer"),  # (the fused path: only when downloading)
    ("gitext.repo.filters", "gitext.storage.repair"),
    ("gitext.repo.filters", "gitext.repo.hydrate"),  # (files git delayed, written at the end)
    ("gitext.repo.context", "gitext.storage.store"),
    ("gitext.repo.context", "gitext.storage.statcache"),
    ("gitext.repo.context", "gitext.storage.sharedcache"),
    ("gitext.repo.context", "gitext.storage.remotes.factory"),
    ("gitext.repo.context", "gitext.storage.transfer"),
    ("gitext.repo.context", "gitext.repo.lfsremote"),  # (urllib3: only for an lfs remote)
    ("gitext.repo.config", "gitext.storage.store"),
    # the clean filter's tensor planning: only when a file of 1 MiB or more is cleaned
    ("gitext.repo.deltas", "gitext.formats.tensors"),
    ("gitext.repo.deltas", "gitext.storage.store"),
    ("gitext.repo.deltas", "gitext.storage.codecs"),
    ("gitext.repo.deltas", "gitext.git.scan"),
}
# Where a Context (or a Config) may be built from the current directory.
DISCOVER_OK = {"cli", "repo"}


@dataclass(frozen=True)
class Import:
    source: str      # importing module
    target: str      # imported module (a gitext module, or a top-level third-party name)
    line: int
    local: bool      # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(names: set[str], base: str, alias: str) -> str:
    """`from base import alias`: the submodule base.alias if there is one, else base."""
    return f"{base}.{alias}" if f"{base}.{alias}" in names else base


def imports_of(name: str, path: Path, names: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_fn = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit_one(sub, in_fn, True)
                for sub in child.orelse:
                    visit_one(sub, in_fn, type_only)
                continue
            visit_one(child, in_fn, type_only)

    def visit_one(node: ast.AST, local: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name if alias.name.startswith("gitext") else alias.name.split(".")[0]
                if target.startswith("gitext"):
                    while target not in names:
                        target = target.rpartition(".")[0]
                found.append(Import(name, target, node.lineno, local, type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("gitext"):
                for alias in node.names:
                    found.append(Import(name, _resolve(names, module, alias.name), node.lineno,
                                        local, type_only))
            else:
                found.append(Import(name, module.split(".")[0], node.lineno, local, type_only))
        visit(node, local, type_only)

    visit(tree, False, False)
    return found


def graph() -> list[Import]:
    mods = modules()
    names = set(mods) | {"gitext.storage._cdc"}  # (a compiled extension, typed by _cdc.pyi)
    return [imp for name, path in mods.items() for imp in imports_of(name, path, names)]


def part(name: str) -> str:
    """The layer a module belongs to: "0" for the base modules, else its subpackage."""
    if name in LAYER0:
        return "0"
    if name in ENTRY:
        return "entry"
    return name.split(".")[1]


def rank(name: str) -> int:
    p = part(name)
    return 0 if p == "0" else ENTRY[name] if p == "entry" else RANKS[p]


def where(imp: Import) -> str:
    path = modules()[imp.source].relative_to(PACKAGE.parent)
    kind = " (inside a function)" if imp.local else " (TYPE_CHECKING)" if imp.type_only else ""
    return f"{path}:{imp.line}: {imp.source} imports {imp.target}{kind}"


def internal(edges: list[Import]) -> list[Import]:
    return [e for e in edges if e.target.startswith("gitext") and e.target != e.source]


# -- the graph itself --------------------------------------------------------------------------
def test_every_module_has_a_layer() -> None:
    unknown = [n for n in modules() if part(n) not in {"0", "entry", *RANKS}]
    assert not unknown, f"modules outside the layers of docs/architecture.md: {unknown}"


def test_the_graph_is_built_from_the_source() -> None:
    """The parser sees what is there (a graph it cannot read would pass every rule)."""
    edges = internal(graph())
    pairs = {(e.source, e.target) for e in edges}
    assert ("gitext.repo.context", "gitext.repo.config") in pairs
    assert any(e.local for e in edges) and any(e.type_only for e in edges)
    assert ("gitext.storage.store", "gitext.formats.pointer") in pairs
    assert len(modules()) > 40


def find_cycle(edges: list[Import]) -> list[str] | None:
    """A cycle in the graph as a list of modules (first == last), or None."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        succ.setdefault(e.source, set()).add(e.target)
    state: dict[str, int] = {}   # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(succ.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(succ):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(internal(graph()))
    assert cycle is None, "import cycle (module-level, in-function and TYPE_CHECKING imports " \
                          "all count): " + " -> ".join(cycle or [])


def test_find_cycle_finds_one() -> None:
    """The cycle finder on a graph with a cycle (so a pass above means something)."""
    edges = [Import("a", "b", 1, False, False), Import("b", "c", 1, True, False),
             Import("c", "a", 1, False, True), Import("c", "d", 1, False, False)]
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle(edges[:2]) is None


def test_imports_point_down() -> None:
    bad = []
    for e in internal(graph()):
        src, dst = part(e.source), part(e.target)
        if src == dst:
            continue
        if rank(e.target) > rank(e.source) or frozenset({src, dst}) in SIBLINGS:
            bad.append(where(e))
    assert not bad, "imports from a lower layer into a higher one (docs/architecture.md):\n" + \
        "\n".join(bad)


def test_layer0_is_standard_library_only() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = [where(e) for e in graph() if part(e.source) == "0"
           and not e.target.startswith("gitext") and e.target not in stdlib]
    assert not bad, "\n".join(bad)


def test_function_local_imports_only_for_heavy_modules() -> None:
    """Inside a function: the heavy third-party modules (start-up time), the LAZY edges above,
    and anything in cli/, where each command loads what it needs when it runs (`git mlx
    --version` and every hook build the whole parser)."""
    bad = []
    for e in graph():
        if not e.local or e.type_only:
            continue
        if e.target in HEAVY or (e.source, e.target) in LAZY:
            continue
        if part(e.source) in ("cli", "entry"):
            continue
        bad.append(where(e))
    assert not bad, "move these imports to the top of their module:\n" + "\n".join(bad)


# -- other rules of docs/architecture.md ---------------------------------------------------------
def calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(n.lineno, ast.unparse(n.func)) for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_context_is_built_only_by_cli_and_repo() -> None:
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {func}()"
           for name, path in modules().items() if part(name) not in DISCOVER_OK
           for line, func in calls(path)
           if func in ("Context.discover", "Config.discover")]
    assert not bad, "a Context is passed down, never built in a lower layer:\n" + "\n".join(bad)


def test_only_cli_writes_to_stdout() -> None:
    bad = []
    for name, path in modules().items():
        if part(name) in ("cli", "entry"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "print" \
                    and not any(k.arg == "file" for k in node.keywords):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: print() to stdout")
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.stdout":
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: sys.stdout")
    assert not bad, "only gitext/cli writes to stdout:\n" + "\n".join(bad)


def test_only_cli_exits() -> None:
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {func}()"
           for name, path in modules().items() if part(name) not in ("cli", "entry")
           for line, func in calls(path) if func in ("sys.exit", "exit", "os._exit", "quit")]
    assert not bad, "only gitext/cli maps errors to exit codes:\n" + "\n".join(bad)


@pytest.mark.parametrize("rule", ["upward", "local"])
def test_rules_catch_a_violation(rule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above on a planted violation: a storage module importing the repo layer."""
    names = set(modules())
    src = tmp_path / "planted.py"
    body = "from gitext.repo.context import Context\n" if rule == "upward" else \
        "def f():\n    import json\n"
    src.write_text(body)
    found = imports_of("gitext.storage.planted", src, names)
    assert found
    if rule == "upward":
        assert rank(found[0].target) > rank("gitext.storage.store")
    else:
        assert found[0].local and found[0].target not in HEAVY


def test_the_architecture_diagram_names_every_module() -> None:
    """docs/architecture.md draws each layer with its modules: a module added, moved or
    renamed without the drawing following fails here."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    diagram = doc.split("## Rules", 1)[0]
    lines = [line for line in diagram.splitlines() if line.startswith("    ")]
    missing = []
    for name in modules():
        parts = name.split(".")
        if parts[-1] in ("gitext", "__main__") or len(parts) == 1:
            continue
        layer = part(name)
        if layer == "0":
            rows = [line for line in lines if "L0" in line]
        else:
            start = next(i for i, line in enumerate(lines) if f"{layer}/" in line)
            rows = lines[start:start + 4]
        if not any(parts[-1] in re.findall(r"[a-z_0-9]+", row) for row in rows):
            missing.append(name)
    assert not missing, f"docs/architecture.md's drawing lacks {missing}"
