"""Canonical msgpack, typed records, and domain-separated sign-bytes.

One byte string per value: maps have ``str`` keys in ascending UTF-8 byte order, integers use
msgpack's shortest form, strings are ``str`` and byte strings are ``bin``. Only ``int`` (signed or
unsigned 64-bit), ``bool``, ``bytes``, ``str``, lists and maps exist; floats, nil and extension
types do not. :func:`decode` accepts exactly the bytes :func:`encode` produces: anything else
(trailing bytes, a non-minimal integer, unsorted or duplicate keys, a float) is a
:class:`DecodeError`, the one error decoding ever raises.

:class:`Record` turns frozen dataclasses into schema'd messages: decoding checks every field's
type and rejects unknown or missing fields, then the dataclass's own ``__post_init__`` validates
the values. Sign-bytes bind a signature to one chain and one message kind, so a signature over a
vote can never be replayed as a transaction, nor a testnet transaction on another chain.

Lists and maps nest at most 32 deep (``MAX_NESTING``): msgpack itself allows 1,024, and the
canonical check then raised ``RecursionError`` on a trio task's stack (found by fuzzing; one
gossiped message would have ended the node).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeAlias

import msgpack

from protocol.errors import ProtocolError

Value: TypeAlias = "int | bool | bytes | str | list[Value] | dict[str, Value]"

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
SIGN_DOMAIN = "dcent/sig/v1"
#: Lists and maps nested deeper than this are refused. The deepest dcent message nests 7 levels;
#: msgpack itself accepts 1024, past Python's recursion limit, so without this bound a peer's
#: 1,000-deep list made the check below raise RecursionError instead of DecodeError.
MAX_NESTING = 32


class DecodeError(ProtocolError):
    """Bytes or a value that are not a canonical encoding of what was expected."""

    code = 1001


class EncodeError(ProtocolError):
    """A value that has no canonical encoding (a float, None, an out-of-range int, ...)."""

    code = 1002


def _canonical(value: object) -> object:
    """Return ``value`` with every map's keys in canonical order, checking types on the way."""
    if type(value) is int:
        if not INT_MIN <= value <= INT_MAX:
            raise EncodeError(f"integer out of the 64-bit range: {value}")
        return value
    if isinstance(value, bool | bytes | str):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        out = {}
        for key in sorted(value, key=_key_order):
            out[key] = _canonical(value[key])
        return out
    raise EncodeError(f"type {type(value).__name__} has no canonical encoding")


def _key_order(key: object) -> str:
    # Code-point order of str is exactly the byte order of their UTF-8 encodings.
    if not isinstance(key, str):
        raise EncodeError(f"map keys must be str, not {type(key).__name__}")
    return key


def encode(value: object) -> bytes:
    """Return the canonical encoding of ``value``. Raises :class:`EncodeError`."""
    try:
        return msgpack.packb(_canonical(value), use_bin_type=True)  # type: ignore[no-any-return]
    except (OverflowError, ValueError) as exc:  # pragma: no cover - _canonical checks first
        raise EncodeError(str(exc)) from exc


_SCALAR_TYPES = frozenset({int, bool, bytes, str})


def _check_decoded(value: object, depth: int = 1) -> None:
    """Reject what msgpack accepts but the canonical form does not allow.

    Keys compare as ``str``: code-point order is exactly UTF-8 byte order.
    """
    kind = type(value)
    if depth > MAX_NESTING and kind in (dict, list):
        raise DecodeError(f"lists and maps nest at most {MAX_NESTING} deep")
    if kind is dict:
        previous: str | None = None
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise DecodeError("map keys must be strings")
            if previous is not None and key <= previous:
                raise DecodeError("map keys are not in canonical order")
            previous = key
            if type(item) not in _SCALAR_TYPES:
                _check_decoded(item, depth + 1)
    elif kind is list:
        for item in value:  # type: ignore[attr-defined]
            if type(item) not in _SCALAR_TYPES:
                _check_decoded(item, depth + 1)
    elif kind not in _SCALAR_TYPES:
        raise DecodeError(f"type {kind.__name__} is not allowed")


def decode(data: bytes) -> Value:
    """Decode one canonical value that fills ``data`` exactly. Raises :class:`DecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}") from None
    _check_decoded(value)
    # The remaining non-canonical forms (non-minimal ints and lengths, str8 for short strings,
    # duplicate keys collapsed by the decoder) all re-encode to different bytes.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("not the canonical encoding")
    return value  # type: ignore[no-any-return]


def sign_bytes(chain_id: str, kind: str, payload: bytes) -> bytes:
    """The bytes a key signs: ``payload`` bound to one chain and one message kind."""
    if type(chain_id) is not str or type(kind) is not str or type(payload) is not bytes:
        raise EncodeError("sign_bytes takes (str, str, bytes)")
    return msgpack.packb([SIGN_DOMAIN, chain_id, kind, payload], use_bin_type=True)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Typed records
# --------------------------------------------------------------------------------------------

_Decoder: TypeAlias = Callable[[object, str], object]


def _decode_int(value: object, where: str) -> int:
    if type(value) is not int:
        raise DecodeError(f"{where}: expected int, got {type(value).__name__}")
    return value


def _decode_bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise DecodeError(f"{where}: expected bool, got {type(value).__name__}")
    return value


def _decode_bytes(value: object, where: str) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"{where}: expected bytes, got {type(value).__name__}")
    return value


def _decode_str(value: object, where: str) -> str:
    if type(value) is not str:
        raise DecodeError(f"{where}: expected str, got {type(value).__name__}")
    return value


_SCALARS: dict[object, _Decoder] = {
    int: _decode_int,
    bool: _decode_bool,
    bytes: _decode_bytes,
    str: _decode_str,
}


def _decoder_for(hint: object) -> _Decoder:
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only homogeneous tuple[X, ...] fields are supported, not {hint}")
        item = _decoder_for(args[0])

        def decode_tuple(value: object, where: str) -> tuple[object, ...]:
            if type(value) is not list:
                raise DecodeError(f"{where}: expected a list, got {type(value).__name__}")
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

        return decode_tuple
    if isinstance(hint, type) and issubclass(hint, Record):
        record = hint
        return lambda value, where: record._from_wire(value, where)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        raise TypeError(f"union fields are not canonical, use a tagged record: {hint}")
    raise TypeError(f"unsupported record field type {hint!r}")


def _to_wire(value: object) -> object:
    if isinstance(value, Record):
        return value.to_wire()
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    return value


class Record:
    """Base for frozen dataclasses that travel as canonical maps.

    Subclasses are ``@dataclass(frozen=True, slots=True)`` with fields typed ``int``, ``bool``,
    ``bytes``, ``str``, ``tuple[X, ...]`` or another :class:`Record`; they validate their values
    in ``__post_init__`` by raising a :class:`ProtocolError` subclass.
    """

    __slots__ = ()
    _fields_cache: ClassVar[dict[type, tuple[tuple[str, _Decoder], ...]]] = {}
    #: Fields left off the wire while they hold their default (and refused on it when they do:
    #: one encoding per value). A field added this way keeps the bytes, hence the hashes and
    #: signatures, of every record that does not use it.
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
    _omitted_cache: ClassVar[dict[type, dict[str, object]]] = {}

    @classmethod
    def _wire_fields(cls) -> tuple[tuple[str, _Decoder], ...]:
        fields = Record._fields_cache.get(cls)
        if fields is None:
            hints = typing.get_type_hints(cls)
            fields = tuple(
                (f.name, _decoder_for(hints[f.name]))
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            )
            Record._fields_cache[cls] = fields
        return fields

    @classmethod
    def _omitted_defaults(cls) -> dict[str, object]:
        omitted = Record._omitted_cache.get(cls)
        if omitted is None:
            defaults = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
            omitted = {name: defaults[name] for name in cls.OMITTED_AT_DEFAULT}
            Record._omitted_cache[cls] = omitted
        return omitted

    def to_wire(self) -> dict[str, object]:
        omitted = self._omitted_defaults() if self.OMITTED_AT_DEFAULT else {}
        return {
            name: _to_wire(getattr(self, name))
            for name, _ in self._wire_fields()
            if name not in omitted or getattr(self, name) != omitted[name]
        }

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def _from_wire(cls, value: object, where: str) -> Self:
        if type(value) is not dict:
            raise DecodeError(f"{where}: expected a map, got {type(value).__name__}")
        fields = cls._wire_fields()
        omitted = cls._omitted_defaults() if cls.OMITTED_AT_DEFAULT else {}
        present = sum(1 for name, _ in fields if name in value)
        if present != len(value) or present < len(fields) - len(omitted):
            expected = {name for name, _ in fields}
            unknown = sorted(set(value) - expected)
            missing = sorted(expected - set(value) - set(omitted))
            raise DecodeError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        kwargs: dict[str, Any] = {}
        for name, decoder in fields:
            if name not in value:
                if name not in omitted:
                    raise DecodeError(f"{where}: missing field {name!r}")
                kwargs[name] = omitted[name]
                continue
            kwargs[name] = decoder(value[name], f"{where}.{name}")
            if name in omitted and kwargs[name] == omitted[name]:
                raise DecodeError(f"{where}.{name}: left off the wire at its default, not sent")
        try:
            return cls(**kwargs)
        except ProtocolError as exc:
            raise DecodeError(f"{where}: {exc.message}") from None

    @classmethod
    def from_wire(cls, value: object) -> Self:
        """Build from an already-decoded value. Raises :class:`DecodeError`."""
        return cls._from_wire(value, cls.__name__)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode from canonical bytes. Raises :class:`DecodeError`, and only that."""
        return cls._from_wire(decode(data), cls.__name__)
