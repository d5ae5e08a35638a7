"""Layers point one way: the library never imports the command line, and no two modules import each other.

Every `import` counts, at the top of a file or inside a function (a function-local import hides a cycle
from Python, not from a reader). And the package's own modules are imported at the top of a file: a
function-local one (outside cli.py and commands/, which keep `glassgpt --help` fast) must say why, in a
comment `# imported here: <why>` on its line or the line above."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glassgpt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from the source (nothing is imported to build it)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_at_the_top_and_inside_functions():
    graph = import_graph()
    assert "glassgpt.model" in graph["glassgpt.train"]  # top of the file
    assert "glassgpt.inspect.qk" in graph["glassgpt.callbacks"]  # inside make_qk_tracker
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_library_never_imports_the_command_line():
    offenders = {name: sorted(t for t in targets if t.startswith("glassgpt.commands"))
                 for name, targets in import_graph().items()
                 if name != "glassgpt.cli" and not name.startswith("glassgpt.commands")}
    assert {name: t for name, t in offenders.items() if t} == {}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


# ----------------------------------------------------------------------------- function-local imports

WHY = "# imported here:"


def unexplained_local_imports(source: str) -> list[int]:
    """Lines of imports of the package's own modules (relative, or `glassgpt...`) inside a function that carry
    no `# imported here: <why>` comment on their lines or the line above."""
    lines = source.splitlines()
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            own = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("glassgpt"))
                   or isinstance(node, ast.Import) and any(a.name.split(".")[0] == "glassgpt" for a in node.names))
            if own and not any(WHY in lines[i - 1] for i in range(max(1, node.lineno - 1), node.end_lineno + 1)):
                found.append(node.lineno)
    return sorted(set(found))


def test_the_local_import_check_catches_what_it_should():
    source = (
        "import torch\n"
        "from .model import GPT\n"
        "def a():\n    from .train import train\n"  # caught
        "def b():\n    import glassgpt.load\n"  # caught
        "def c():\n    from .plots import save  # imported here: matplotlib only when drawing\n"
        "def d():\n    # imported here: the two modules would import each other\n    from . import load\n"
        "def e():\n    import json\n    from safetensors import safe_open\n"  # not the package's own
        "class K:\n    def f(self):\n        from ..io import (read_json,\n                          write_json)\n"
    )
    assert unexplained_local_imports(source) == [4, 6, 17]


def test_the_package_imports_its_own_modules_at_the_top():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "cli.py" or rel.startswith("commands/"):
            continue
        offenders += [f"glassgpt/{rel}:{line}" for line in unexplained_local_imports(path.read_text(encoding="utf-8"))]
    assert offenders == [], f"move these imports to the top of the file, or say why not ({WHY} ...)"
