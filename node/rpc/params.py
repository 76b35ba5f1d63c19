"""Declared param schemas: each method lists its params, their types and their defaults.

A param type converts one decoded JSON value into the Python value its handler takes, or raises
:class:`~node.rpc.errors.InvalidParams` with a message that names the param. Types are small on
purpose: what a wallet sends is integers, strings, booleans, hex byte strings, addresses, lists
and (for structured specs) plain objects.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from node.rpc.errors import InvalidParams
from protocol.crypto import Address, InvalidAddressError


class _Required:
    """The marker for "this param has no default"."""

    _instance: _Required | None = None

    def __new__(cls) -> _Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()

# Longest decimal string accepted for an int: far above 2**64, far below Python's int-parse limit.
_MAX_INT_DIGITS = 80
_DECIMAL = re.compile(r"-?[0-9]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class ParamType:
    """Converts a decoded JSON value to the handler's value; ``describe()`` names it in the docs."""

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: object, where: str) -> object:
        """Return the converted value. Raises :class:`InvalidParams` naming ``where``."""
        raise NotImplementedError

    def _refuse(self, value: object, where: str) -> InvalidParams:
        return InvalidParams(
            f"param {where!r}: expected {self.describe()}, got {_type_name(value)}",
            {"param": where},
        )


@dataclass(frozen=True, slots=True)
class Int(ParamType):
    """A JSON integer, or a decimal string for values a JavaScript number cannot hold exactly."""

    min: int | None = None
    max: int | None = None

    def describe(self) -> str:
        bounds = ""
        if self.min is not None or self.max is not None:
            low = "" if self.min is None else str(self.min)
            high = "" if self.max is None else str(self.max)
            bounds = f" in [{low}, {high}]"
        return f"int{bounds}"

    def convert(self, value: object, where: str) -> object:
        if type(value) is int:
            number = value
        elif type(value) is str and len(value) <= _MAX_INT_DIGITS and _DECIMAL.fullmatch(value):
            number = int(value)
        else:
            raise self._refuse(value, where)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise InvalidParams(f"param {where!r}: {number} is not {self.describe()}", {"param": where})
        return number


@dataclass(frozen=True, slots=True)
class Str(ParamType):
    max_len: int = 4096

    def describe(self) -> str:
        return "str"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not str:
            raise self._refuse(value, where)
        if len(value) > self.max_len:
            raise InvalidParams(f"param {where!r}: longer than {self.max_len} characters", {"param": where})
        return value


@dataclass(frozen=True, slots=True)
class Bool(ParamType):
    def describe(self) -> str:
        return "bool"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not bool:
            raise self._refuse(value, where)
        return value


@dataclass(frozen=True, slots=True)
class HexBytes(ParamType):
    """Hex text (an optional ``0x`` prefix, either case) converted to ``bytes``."""

    length: int | None = None
    max_len: int = 1 << 20

    def describe(self) -> str:
        return "hex bytes" if self.length is None else f"hex bytes[{self.length}]"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not str:
            raise self._refuse(value, where)
        digits = value[2:] if value[:2] in ("0x", "0X") else value
        if len(digits) > 2 * self.max_len or not _HEX.fullmatch(digits):
            raise InvalidParams(f"param {where!r}: not an even-length hex string", {"param": where})
        raw = bytes.fromhex(digits)
        if self.length is not None and len(raw) != self.length:
            raise InvalidParams(
                f"param {where!r}: expected {self.length} bytes, got {len(raw)}", {"param": where}
            )
        return raw


@dataclass(frozen=True, slots=True)
class AddressParam(ParamType):
    """A checksummed ``dct1...`` address, converted to :class:`protocol.crypto.Address`."""

    def describe(self) -> str:
        return "address"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not str:
            raise self._refuse(value, where)
        try:
            return Address.parse(value)
        except InvalidAddressError as exc:
            raise InvalidParams(f"param {where!r}: {exc.message}", {"param": where}) from None


@dataclass(frozen=True, slots=True)
class ListOf(ParamType):
    """A JSON array whose items all have one type; the handler gets a ``list``."""

    item: ParamType
    max_len: int = 1000

    def describe(self) -> str:
        return f"list[{self.item.describe()}]"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not list:
            raise self._refuse(value, where)
        if len(value) > self.max_len:
            raise InvalidParams(f"param {where!r}: more than {self.max_len} items", {"param": where})
        return [self.item.convert(item, f"{where}[{index}]") for index, item in enumerate(value)]


@dataclass(frozen=True, slots=True)
class Object(ParamType):
    """A JSON object passed through as a ``dict``; the handler validates its shape."""

    def describe(self) -> str:
        return "object"

    def convert(self, value: object, where: str) -> object:
        if type(value) is not dict:
            raise self._refuse(value, where)
        return value


@dataclass(frozen=True, slots=True)
class Param:
    """One declared param. Without a ``default`` it is required; with one, it may be omitted or null."""

    name: str
    type: ParamType
    doc: str = ""
    default: object = field(default=REQUIRED)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_json(self) -> str:
        """The default as JSON text for the docs (``repr`` when it has no JSON form)."""
        try:
            return json.dumps(self.default)
        except (TypeError, ValueError):
            return repr(self.default)

    def default_value(self) -> object:
        """The default as a JSON value for ``rpc_methods`` (its ``repr`` when it has no JSON form)."""
        try:
            json.dumps(self.default)
        except (TypeError, ValueError):
            return repr(self.default)
        return self.default


def check_param_names(params: Sequence[Param]) -> str | None:
    """Return why ``params`` is not a valid schema, or None."""
    seen: set[str] = set()
    for param in params:
        if not _PARAM_NAME.fullmatch(param.name):
            return f"param name {param.name!r} is not snake_case"
        if param.name in seen:
            return f"param {param.name!r} is declared twice"
        if not isinstance(param.type, ParamType):
            return f"param {param.name!r} has no ParamType"
        seen.add(param.name)
    return None


def bind_params(params: Sequence[Param], raw: object) -> dict[str, object]:
    """Match a request's ``params`` (absent, an object or an array) to the schema.

    Returns the handler's keyword arguments. Raises :class:`InvalidParams` naming the first param
    that is unknown, missing, surplus or of the wrong type.
    """
    given: dict[str, object]
    if raw is None:
        given = {}
    elif isinstance(raw, list):
        if len(raw) > len(params):
            raise InvalidParams(f"expected at most {len(params)} positional params, got {len(raw)}")
        given = {param.name: value for param, value in zip(params, raw, strict=False)}
    elif isinstance(raw, Mapping):
        known = {param.name for param in params}
        unknown = sorted(str(key) for key in raw if key not in known)
        if unknown:
            raise InvalidParams(f"unknown param {unknown[0]!r}", {"param": unknown[0]})
        given = dict(raw)
    else:  # pragma: no cover - the dispatcher refuses other params values as -32600 first
        raise InvalidParams("params must be an object or an array")
    kwargs: dict[str, object] = {}
    for param in params:
        value = given.get(param.name)
        if value is None:
            if param.required:
                why = "must not be null" if param.name in given else "is required"
                raise InvalidParams(f"param {param.name!r} {why}", {"param": param.name})
            # A copy, so that a handler mutating a list default cannot change the next call's.
            kwargs[param.name] = copy.deepcopy(param.default)
        else:
            kwargs[param.name] = param.type.convert(value, param.name)
    return kwargs
