"""The config file's one schema: each TOML table is a frozen settings dataclass, read and written
from that class alone.

A table's keys are the dataclass's fields, typed by their annotations; its comments in the file
are the ``#:`` comments above each field; its defaults are the fields' defaults; its range checks
are the class's own ``__post_init__``. So a setting is added in one place, and the reader, the
template ``dcent init`` writes, the testnet's per-node configs and ``configs/node.toml`` all follow.

Annotations understood: ``int``, ``float``, ``bool``, ``str``, ``tuple[str, ...]``,
``Path | None`` (written as a string, "" for None) and ``Amount`` (an int of base units, written
and also accepted as ``"0.001 DCT"``).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from node.errors import NodeError
from protocol.errors import ProtocolError
from protocol.units import AmountError, format_amount, parse_amount

#: An int of base units that the file may write as a DCT amount string.
Amount = int

_T = TypeVar("_T")


class ConfigError(NodeError):
    """A config file or value the node cannot use; the message names ``table.key``."""

    code = 5001


_DOCS: dict[type, dict[str, str]] = {}


def field_docs(cls: type) -> dict[str, str]:
    """Each field's ``#:`` comment (the lines right above it), joined into one paragraph."""
    if cls in _DOCS:
        return _DOCS[cls]
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    tree = ast.parse(source)
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    previous: tuple[int, str] | None = None  # (last line, doc) of the field just above
    for statement in body.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        comment: list[str] = []
        index = statement.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#:"):
            comment.insert(0, lines[index].strip()[2:].strip())
            index -= 1
        doc = " ".join(comment)
        if not doc and previous is not None and previous[0] == statement.lineno - 1:
            doc = previous[1]  # a group of fields under one comment, with no blank line between
        if doc:
            docs[statement.target.id] = doc
        previous = (statement.end_lineno or statement.lineno, doc) if doc else None
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in vars(base):
            docs = {**field_docs(base), **docs}
    _DOCS[cls] = docs
    return docs


def read_table(
    section: dict[str, Any], name: str, cls: type[_T], *, fixed: dict[str, Any] | None = None
) -> _T:
    """Build ``cls`` from TOML table ``name``. Unknown keys are refused with the nearest known
    name; ``fixed`` fields are set by the caller and are not keys of the table. Raises
    :class:`ConfigError`."""
    fixed = fixed or {}
    known = {item.name: item for item in fields(cls) if item.name not in fixed}  # type: ignore[arg-type]
    for key in sorted(set(section) - set(known)):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{name}.{key}: unknown setting{hint}")
    values: dict[str, Any] = dict(fixed)
    for key, value in section.items():
        values[key] = _read_value(f"{name}.{key}", str(known[key].type), value)
    try:
        return cls(**values)
    except (NodeError, ProtocolError) as exc:
        message = exc.message if exc.message.startswith(f"{name}.") else f"{name}: {exc.message}"
        raise ConfigError(message) from None


def _read_value(where: str, kind: str, value: object) -> object:
    if kind == "Amount":
        if isinstance(value, str):
            try:
                return parse_amount(value)
            except AmountError as exc:
                raise ConfigError(f"{where}: {exc.message}") from None
        kind = "int"
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind == "Path | None":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value) if value else None
    expected = {"int": int, "float": float, "bool": bool, "str": str}.get(kind)
    assert expected is not None, f"{where}: the schema cannot read a field annotated {kind}"
    if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
    if expected is int and value < 0:  # type: ignore[operator]
        raise ConfigError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def render_table(name: str, settings: object, *, skip: frozenset[str] = frozenset()) -> str:
    """Table ``name`` as TOML: each field with its ``#:`` comment above it."""
    docs = field_docs(type(settings))
    out = [f"[{name}]"] if name else []
    shown = ""
    for item in fields(settings):  # type: ignore[arg-type]
        if item.name in skip:
            continue
        doc = docs.get(item.name, "")
        if doc and doc != shown:  # a group's comment once, above its first field
            out.extend(f"# {line}" for line in textwrap.wrap(doc, 96))
        shown = doc
        out.append(f"{item.name} = {_render_value(str(item.type), getattr(settings, item.name))}")
    return "\n".join(out) + "\n"


def _render_value(kind: str, value: object) -> str:
    if kind == "Amount":
        assert isinstance(value, int)
        return json.dumps(format_amount(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return '""'
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(str(value))
