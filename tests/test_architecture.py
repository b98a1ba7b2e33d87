"""The package's shape as rules that fail: no import cycles, no imports hidden in functions,
the layering of clinops/docs/architecture.md, and one idea per file (a file over 400 lines is
named in architecture.md with the reason it is one idea).

These read the source as text (``ast``); nothing is imported or run.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clinops", "serving")
MAX_LINES = 400

# Third-party modules a function may import on purpose (heavy, optional, or slow to import):
# the import must carry a comment on its line or the line above saying why.
DEFERRABLE = {
    "matplotlib", "evidently", "mlflow", "shap", "playwright", "pyspark", "snakemake", "papermill",
    "nbformat", "nbconvert", "boto3", "botocore", "hvac", "cyclonedx", "grafana_foundation_sdk",
    "uvicorn", "IPython", "statsmodels", "psycopg", "sqlglot", "dvc", "river", "psutil", "httpx",
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.AST) -> list[str]:
    """The project modules an import statement names (``from a import b`` names ``a.b`` when
    ``b`` is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")
            if MODULES[module].name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
                 for alias in node.names]
    out = []
    for name in names:
        while name and name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            out.append(name)
    return out


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, int, str, bool]]]:
    """Module-level import graph, and every import inside a function or class body
    (module, line, imported name, has a comment)."""
    graph: dict[str, set[str]] = defaultdict(set)
    inner = []
    for module, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top_level = set()
        for node in tree.body:
            # imports guarded by `if TYPE_CHECKING:` / try-except at module level still run at
            # import time (or never): they are top-level for the cycle rule
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    break
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    top_level.add(id(sub))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if id(node) in top_level:
                if not _type_checking_only(tree, node):
                    graph[module].update(_targets(module, node))
                continue
            name = node.module if isinstance(node, ast.ImportFrom) and not node.level else (
                node.names[0].name if isinstance(node, ast.Import) else "." * node.level + (node.module or ""))
            commented = _commented(lines, node.lineno)
            inner.append((module, node.lineno, name or "", commented))
    return graph, inner


def _commented(lines: list[str], lineno: int) -> bool:
    """An import carries a comment: on its line, on the line above, or at the head of the run
    of import lines it belongs to."""
    i = lineno - 1
    while i >= 0:
        text = lines[i].strip()
        if "#" in text:
            return True
        if i < lineno - 1 and not text.startswith(("import ", "from ")) and not text.endswith((",", "(")):
            return False
        i -= 1
    return False


def _type_checking_only(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            if any(sub is node for sub in ast.walk(stmt)):
                return True
    return False


GRAPH, INNER = _imports()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for targets in graph.values() for w in targets}):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    # a package __init__ that re-exports its submodules is not a cycle with them
    graph = {m: {t for t in targets if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


def test_no_imports_hidden_in_functions():
    hidden = []
    for module, line, name, commented in INNER:
        root = name.lstrip(".").split(".")[0]
        if name.startswith(".") or root in PACKAGES:
            # a project module deferred on purpose (it pulls in a heavy optional dependency, or
            # must not load before a fork) says so in a comment
            if not commented:
                hidden.append(f"{MODULES[module].relative_to(ROOT)}:{line}: imports {name} inside a function "
                              "without a comment saying why it is deferred")
        elif root in DEFERRABLE and not commented:
            hidden.append(f"{MODULES[module].relative_to(ROOT)}:{line}: defers {name} without a comment saying why")
        elif root not in DEFERRABLE:
            hidden.append(f"{MODULES[module].relative_to(ROOT)}:{line}: imports {name} inside a function "
                          "(only heavy optional dependencies are deferred, with a comment)")
    assert hidden == []


@pytest.mark.parametrize("lower, upper", [
    ("clinops.data", "clinops.tasks"), ("clinops.data", "clinops.pipeline"),
    ("clinops.tasks", "clinops.pipeline"), ("clinops.tasks", "clinops.workflow"),
    ("clinops", "serving"),
])
def test_layering(lower, upper):
    """``lower`` never imports ``upper`` (data knows no task, tasks know no workflow, the package
    never imports the server)."""
    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    wrong = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if within(m, lower)
                   for t in targets if within(t, upper))
    assert wrong == []


def _large_files_named_in_architecture() -> dict[str, str]:
    text = (ROOT / "clinops" / "docs" / "architecture.md").read_text()
    section = text.split("## Files over 400 lines", 1)
    assert len(section) == 2, "architecture.md has no '## Files over 400 lines' section"
    named = {}
    for row in re.findall(r"^\| `([^`]+\.py)` \| ([^|]+)\|", section[1], flags=re.M):
        named[row[0]] = row[1].strip()
    return named


def test_every_file_over_400_lines_is_one_idea_said_why():
    named = _large_files_named_in_architecture()
    large = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in MODULES.values()}
    unexplained = sorted(f"{p} ({n} lines)" for p, n in large.items() if n > MAX_LINES and p not in named)
    stale = sorted(p for p in named if large.get(p, 0) <= MAX_LINES)
    assert unexplained == [], "over 400 lines and not named with its reason in architecture.md"
    assert stale == [], "named in architecture.md as over 400 lines but is not (or is gone)"


# The levels of clinops/docs/architecture.md ("Package map"): a module imports only from its own
# level or lower-numbered ones.
LEVELS = {
    "clinops.policy": 0, "clinops.statefiles": 0, "clinops.labels": 0, "clinops.bootstrap": 0,
    "clinops.config": 0,
    "clinops.data": 1, "clinops.features": 1, "clinops.report": 1,
    "clinops.tasks": 2,
    "clinops.drift": 3, "clinops.fairness": 3, "clinops.governance": 3, "clinops.privacy": 3, "clinops.audit": 3,
    "clinops.settings": 4,
    "clinops.bundle": 5, "clinops.uncertainty": 5, "clinops.modeling": 5, "clinops.lineage": 5,
    "clinops.monitoring": 5,
    "clinops.pipeline": 6, "clinops.workflow": 6, "clinops.workflow_cli": 6, "clinops.task_table": 6,
    "clinops.reproduction": 6, "clinops.reviewer": 6, "clinops.ops": 6, "clinops.cli": 6, "clinops.__main__": 6,
    "clinops": 6, "serving": 7,
}


def _level(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LEVELS:
            return LEVELS[".".join(parts[:n])]
    raise KeyError(f"{module}: no level in LEVELS (add it here and to architecture.md)")


def test_every_module_has_a_level():
    for module in MODULES:
        _level(module)


def test_imports_go_only_to_the_same_or_a_lower_level():
    upward = sorted(f"{m} (level {_level(m)}) -> {t} (level {_level(t)})" for m, targets in GRAPH.items()
                    for t in targets if _level(t) > _level(m))
    assert upward == []
