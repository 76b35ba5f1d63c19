"""One name per concept: no public class name is defined in two modules of the package.

Two classes with one name make every import a guess (``Proposal``: a block proposal or a
governance one?) and every stack trace ambiguous. The check reads the source with ``ast``, so it
sees classes that are never imported and classes defined under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "gpu", "node")


def public_classes(source: str) -> list[str]:
    """The public classes a module defines at its top level (also under ``if``/``try``)."""
    names: list[str] = []
    pending: list[ast.stmt] = list(ast.parse(source).body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, ast.ClassDef):
            if not statement.name.startswith("_"):
                names.append(statement.name)
        elif isinstance(statement, ast.If | ast.Try):
            pending.extend(statement.body)
            pending.extend(statement.orelse)
            if isinstance(statement, ast.Try):
                pending.extend(statement.finalbody)
                for handler in statement.handlers:
                    pending.extend(handler.body)
    return names


def duplicate_class_names(sources: dict[str, str]) -> dict[str, list[str]]:
    """Class name -> the modules defining it, for every name more than one module defines."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, source in sorted(sources.items()):
        for name in public_classes(source):
            where[name].append(module)
    return {name: modules for name, modules in sorted(where.items()) if len(modules) > 1}


def package_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_no_public_class_name_is_defined_twice() -> None:
    duplicates = duplicate_class_names(package_sources())
    assert not duplicates, "public class names defined in more than one module:\n" + "\n".join(
        f"  {name}: {', '.join(modules)}" for name, modules in duplicates.items()
    )


def test_the_check_names_a_duplicate_and_ignores_private_and_nested_classes() -> None:
    sources = {
        "protocol/a.py": "class Proposal:\n    class Inner: ...\nclass _Hidden: ...\n",
        "node/b.py": "import typing\nif typing.TYPE_CHECKING:\n    class Proposal: ...\nclass _Hidden: ...\n",
        "gpu/c.py": "class Inner: ...\n",
    }
    assert duplicate_class_names(sources) == {"Proposal": ["node/b.py", "protocol/a.py"]}
