"""The layers ARCHITECTURE.md draws, checked on the source: ``protocol`` depends on nothing of ours
and does no I/O; ``gpu`` depends only on ``protocol``; ``node`` may use both; nothing shipped
imports the tests or the benches.

Every import counts, including those inside functions, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Standard-library modules the deterministic core may not touch: I/O, processes, clocks,
#: randomness, threads and the event loop.
IO_AND_CLOCK = frozenset(
    {
        "asyncio", "datetime", "glob", "io", "logging", "multiprocessing", "os", "random", "secrets",
        "select", "selectors", "shutil", "signal", "socket", "sqlite3", "subprocess", "sys",
        "tempfile", "threading", "time", "urllib.request",
    }
)  # fmt: skip
THIRD_PARTY = {
    "protocol": frozenset({"cryptography", "msgpack", "nacl", "numpy"}),
    "gpu": frozenset({"pynvml", "trio"}),
}
OURS = {"protocol": frozenset({"protocol"}), "gpu": frozenset({"protocol", "gpu"})}


def imports(package: str) -> Iterator[tuple[str, int, str]]:
    """(file, line, module) for every absolute import under ``package``: the top-level package,
    or the dotted name where the rules name one."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                # urllib.parse is pure parsing; urllib.request is I/O: judge a dotted name whole
                # when the rules name it, else by its top-level package.
                yield (
                    str(path.relative_to(ROOT)),
                    node.lineno,
                    name if name in IO_AND_CLOCK else name.split(".")[0],
                )


@pytest.mark.parametrize("package", ["protocol", "gpu"])
def test_a_lower_layer_imports_only_what_its_layer_allows(package: str) -> None:
    stdlib = sys.stdlib_module_names - (IO_AND_CLOCK if package == "protocol" else frozenset())
    allowed = stdlib | THIRD_PARTY[package] | OURS[package] | {"__future__"}
    found = [
        f"{path}:{line} imports {module}" for path, line, module in imports(package) if module not in allowed
    ]
    assert found == []


def test_the_protocol_core_does_no_io_and_reads_no_clock() -> None:
    found = [
        f"{path}:{line} imports {module}"
        for path, line, module in imports("protocol")
        if module in IO_AND_CLOCK
    ]
    assert found == []


@pytest.mark.parametrize("package", ["protocol", "gpu", "node"])
def test_shipped_code_never_imports_tests_or_benches(package: str) -> None:
    found = [f"{path}:{line}" for path, line, module in imports(package) if module in {"tests", "bench"}]
    assert found == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan itself works: a core module importing the node layer is reported."""
    (tmp_path / "protocol").mkdir()
    (tmp_path / "protocol" / "leak.py").write_text("def f():\n    from node.daemon import Node\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert list(imports("protocol")) == [("protocol/leak.py", 2, "node")]


# --- no import cycle through the daemon and its operator endpoints ------------------------------

#: The modules the operator endpoints are made of, and the daemon that wires them: none of them
#: may sit on an import cycle (the RPC handlers and the metrics read narrow views, never the Node).
ENDPOINT_MODULES = ("node.daemon", "node.metrics", "node.rpc.")


def module_graph(package: str) -> dict[str, set[str]]:
    """Each module under ``package`` to the modules of ``package`` it imports (every import, those
    under TYPE_CHECKING or inside functions included)."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from node.rpc import views`` imports the module node.rpc.views.
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def endpoint_cycles(package: str = "node") -> list[list[str]]:
    return [
        component
        for component in cycles(module_graph(package))
        if any(member.startswith(ENDPOINT_MODULES) for member in component)
    ]


def test_no_import_cycle_runs_through_the_daemon_rpc_or_metrics() -> None:
    assert endpoint_cycles() == []


def test_the_cycle_check_sees_a_cycle_through_a_type_checking_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check itself works: metrics importing the daemon only for its type, while the daemon
    imports metrics, is a cycle (the circle the narrow views broke)."""
    (tmp_path / "node" / "rpc").mkdir(parents=True)
    (tmp_path / "node" / "daemon.py").write_text("from node.metrics import collect\n")
    (tmp_path / "node" / "metrics.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.daemon import Node\n"
    )
    (tmp_path / "node" / "rpc" / "views.py").write_text("from node import metrics\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert endpoint_cycles() == [["node.daemon", "node.metrics"]]
