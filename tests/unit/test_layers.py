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
    "protocol": frozenset({"cryptography", "msgpack", "numpy"}),
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
