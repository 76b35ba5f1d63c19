"""Canonical msgpack: one byte string per value, every other form rejected with ``DecodeError``;
typed records; domain-separated sign-bytes; decoder fuzzing."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.contracts import ContractTerms, SignedContract, UsageReceipt
from protocol.encoding import (
    INT_MAX,
    INT_MIN,
    MAX_NESTING,
    DecodeError,
    EncodeError,
    Record,
    decode,
    encode,
    sign_bytes,
)
from protocol.errors import ProtocolError
from protocol.ledger.params import Params

from .ledger_helpers import make_terms, mutations, settle_msg, sign_contract

FUZZ = settings(max_examples=settings().max_examples * 5)

scalars = st.one_of(
    st.integers(INT_MIN, INT_MAX),
    st.booleans(),
    st.binary(max_size=40),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)


# --- encode / decode ---------------------------------------------------------------------------


@given(values)
def test_round_trip(value: object) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), max_size=8), st.randoms())
def test_map_encoding_ignores_insertion_order(mapping: dict[str, int], rng: object) -> None:
    items = list(mapping.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    assert encode(dict(items)) == encode(mapping)


def test_known_bytes() -> None:
    value = {"b": [True, b"\x00", "x", -1, 300], "a": 1}
    assert encode(value).hex() == "82a16101a16295c3c40100a178ffcd012c"


def test_keys_are_ordered_by_utf8_bytes() -> None:
    # U+FFFF sorts before U+10000 in UTF-8 (and code points), though not in UTF-16.
    keys = ["\U00010000", "\uffff", "z", "é", "Z", ""]
    data = encode(dict.fromkeys(keys, 0))
    decoded = decode(data)
    assert isinstance(decoded, dict)
    assert list(decoded) == sorted(keys, key=lambda k: k.encode())
    assert list(decoded) == ["", "Z", "z", "é", "\uffff", "\U00010000"]


def test_tuples_encode_as_lists() -> None:
    assert encode((1, (2, 3))) == encode([1, [2, 3]])


def test_integer_range_is_signed_and_unsigned_64_bit() -> None:
    for edge in (INT_MIN, -1, 0, 127, 128, 255, 256, 65_535, 65_536, 2**32, INT_MAX):
        assert decode(encode(edge)) == edge


class Opaque:
    """A value of no encodable type, with a repr that is the same in every process (test ids must
    be: pytest-xdist's workers compare their collections)."""

    def __repr__(self) -> str:
        return "Opaque()"


@pytest.mark.parametrize(
    "value",
    [INT_MAX + 1, INT_MIN - 1, 1.5, None, {1: 2}, {b"k": 1}, {"a": {None}}, bytearray(b"x"), [Opaque()]],
    ids=repr,
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(EncodeError) as caught:
        encode(value)
    assert caught.value.code == 1002


# --- non-canonical forms -------------------------------------------------------------------------

NON_CANONICAL = {
    "uint8 for a fixint": "cc05",
    "uint16 for a uint8": "cd00ff",
    "uint64 for a fixint": "cf0000000000000001",
    "int8 for a positive fixint": "d005",
    "int16 for a negative fixint": "d1ffff",
    "int64 for an int8": "d3ffffffffffffff80",
    "str8 for a short string": "d90161",
    "str16 for a short string": "da000161",
    "bin16 for short bytes": "c5000100",
    "array16 for a short array": "dc000101",
    "map16 for a short map": "de0001a16101",
    "unsorted keys": "82a16201a16102",
    "duplicate keys": "82a16101a16102",
    "float32": "ca3f800000",
    "float64": "cb3ff0000000000000",
    "nil": "c0",
    "nil in a list": "9101c0",
    "nil as a map value": "81a161c0",
    "fixext1": "d40100",
    "timestamp ext": "d6ff00000001",
    "ext8": "c7010501",
    "trailing bytes": "0100",
    "two values": "a161a162",
    "integer key": "810101",
    "bytes key": "81c4016101",
    "invalid utf-8": "a1ff",
    "truncated string": "a3616263"[:-2],
    "truncated array": "9301",
    "reserved byte 0xc1": "c1",
    "empty input": "",
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_forms_are_rejected(name: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(bytes.fromhex(NON_CANONICAL[name]))
    assert caught.value.code == 1001


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 990, 1000, 1023, 1024, 100_000])
def test_deep_nesting_is_a_decode_error(depth: int) -> None:
    # 1000-1024 deep passes msgpack's own limit and used to exhaust Python's recursion limit
    # in the canonical check (RecursionError, not a DecodeError: found by fuzzing, issue 18).
    with pytest.raises(DecodeError):
        decode(b"\x91" * depth + b"\x00")
    with pytest.raises(DecodeError):
        decode(b"\x81\xa1k" * depth + b"\x00")


def test_nesting_up_to_the_bound_decodes() -> None:
    assert decode(b"\x91" * MAX_NESTING + b"\x00") is not None


def test_only_bytes_are_decoded() -> None:
    with pytest.raises(DecodeError):
        decode("82a16101")  # type: ignore[arg-type]
    # Buffers are decoded too (the annotation says bytes; the check admits any buffer).
    assert decode(bytearray(encode([1, 2]))) == [1, 2]  # type: ignore[arg-type]
    assert decode(memoryview(encode("x"))) == "x"  # type: ignore[arg-type]


# --- records -----------------------------------------------------------------------------------


class SampleError(ProtocolError):
    code = 1999


@dataclass(frozen=True, slots=True)
class Inner(Record):
    label: str


@dataclass(frozen=True, slots=True)
class Sample(Record):
    count: int
    flag: bool
    blob: bytes
    name: str
    tags: tuple[str, ...]
    inner: Inner
    inners: tuple[Inner, ...]

    def __post_init__(self) -> None:
        if self.count < 0:
            raise SampleError("sample.count: must not be negative")


SAMPLE = Sample(3, True, b"\x01", "n", ("a", "b"), Inner("i"), (Inner("x"), Inner("y")))


def test_record_round_trip() -> None:
    assert Sample.decode(SAMPLE.encode()) == SAMPLE
    assert Sample.from_wire(SAMPLE.to_wire()) == SAMPLE
    assert SAMPLE.to_wire()["inners"] == [{"label": "x"}, {"label": "y"}]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": 1}, "unknown fields ['extra']"),
        ({"count": None}, "missing field"),
        ({"count": True}, "Sample.count: expected int"),
        ({"flag": 1}, "Sample.flag: expected bool"),
        ({"blob": "x"}, "Sample.blob: expected bytes"),
        ({"name": b"n"}, "Sample.name: expected str"),
        ({"tags": "ab"}, "Sample.tags: expected a list"),
        ({"tags": ["a", 1]}, "Sample.tags[1]: expected str"),
        ({"inner": ["i"]}, "Sample.inner: expected a map"),
        ({"inner": {"label": 1}}, "Sample.inner.label: expected str"),
        ({"inners": [{"label": "x"}, {}]}, "Sample.inners[1]"),
        ({"count": -1}, "sample.count: must not be negative"),
    ],
)
def test_record_decoding_names_the_bad_field(change: dict[str, object], expected: str) -> None:
    wire = {**SAMPLE.to_wire(), **change}
    if wire["count"] is None:
        del wire["count"]
    with pytest.raises(DecodeError) as caught:
        Sample.decode(encode(wire))
    assert expected in caught.value.message
    assert caught.value.code == 1001


def test_record_from_a_non_map() -> None:
    with pytest.raises(DecodeError):
        Sample.decode(encode([1, 2, 3]))


# --- sign bytes --------------------------------------------------------------------------------


def test_sign_bytes_are_bound_to_chain_kind_and_payload() -> None:
    base = sign_bytes("chain-a", "tx", b"payload")
    assert base == sign_bytes("chain-a", "tx", b"payload")
    assert (
        len({base, sign_bytes("chain-b", "tx", b"payload"), sign_bytes("chain-a", "vote", b"payload")}) == 3
    )
    assert sign_bytes("chain-a", "tx", b"payload2") != base
    # Length-prefixed fields: moving characters between chain id and kind changes the bytes.
    assert sign_bytes("ab", "c", b"") != sign_bytes("a", "bc", b"")
    assert decode(base) == ["dcent/sig/v1", "chain-a", "tx", b"payload"]


@pytest.mark.parametrize("args", [(b"chain", "tx", b""), ("chain", "tx", "payload"), ("chain", None, b"")])
def test_sign_bytes_refuse_wrong_types(args: tuple[object, object, object]) -> None:
    with pytest.raises(EncodeError):
        sign_bytes(*args)  # type: ignore[arg-type]


# --- fuzzing ---------------------------------------------------------------------------------

TERMS = make_terms()
RECORD_CORPUS: list[tuple[type[Record], bytes]] = [
    (ContractTerms, TERMS.encode()),
    (SignedContract, sign_contract(TERMS).encode()),
    (UsageReceipt, settle_msg(TERMS, 5).receipt.encode()),
    (Params, Params().encode()),
    (Sample, SAMPLE.encode()),
]


def _decode_is_canonical_or_refused(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


def _record_decode_is_canonical_or_refused(record: type[Record], data: bytes) -> None:
    try:
        value = record.decode(data)
    except DecodeError:
        return
    assert value.encode() == data


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_decode_only_canonically(data: bytes) -> None:
    _decode_is_canonical_or_refused(data)
    for record, _ in RECORD_CORPUS:
        _record_decode_is_canonical_or_refused(record, data)


@FUZZ
@given(st.data())
def test_mutated_values_raise_only_decode_error(data: st.DataObject) -> None:
    original = encode(data.draw(values))
    _decode_is_canonical_or_refused(data.draw(mutations(original)))


@FUZZ
@given(st.data())
def test_mutated_records_raise_only_decode_error(data: st.DataObject) -> None:
    record, original = data.draw(st.sampled_from(RECORD_CORPUS))
    mutated = data.draw(mutations(original))
    _decode_is_canonical_or_refused(mutated)
    _record_decode_is_canonical_or_refused(record, mutated)


@FUZZ
@given(
    st.sampled_from(RECORD_CORPUS), st.sampled_from(RECORD_CORPUS), st.integers(0, 500), st.integers(0, 500)
)
def test_spliced_records_raise_only_decode_error(
    first: tuple[type[Record], bytes], second: tuple[type[Record], bytes], cut_1: int, cut_2: int
) -> None:
    spliced = first[1][: cut_1 % (len(first[1]) + 1)] + second[1][cut_2 % (len(second[1]) + 1) :]
    _record_decode_is_canonical_or_refused(first[0], spliced)


@given(st.integers(0, 2**64 - 1), st.sampled_from(["B", ">H", ">I", ">Q"]))
def test_every_wider_integer_form_than_needed_is_rejected(value: int, fmt: str) -> None:
    prefix = {"B": b"\xcc", ">H": b"\xcd", ">I": b"\xce", ">Q": b"\xcf"}[fmt]
    if value >= 2 ** (8 * struct.calcsize(fmt)):
        return
    data = prefix + struct.pack(fmt, value)
    if data == encode(value):
        assert decode(data) == value
    else:
        with pytest.raises(DecodeError):
            decode(data)


def test_msgpack_accepts_what_we_refuse() -> None:
    # A guard on the test above: the plain library does decode these, so the refusals are ours.
    assert msgpack.unpackb(bytes.fromhex("cc05")) == 5
    assert msgpack.unpackb(bytes.fromhex("82a16201a16102")) == {"b": 1, "a": 2}


@dataclass(frozen=True, slots=True)
class Extended(Record):
    """A record that gained two fields kept off the wire at their defaults."""

    label: str
    note: str = ""
    weight: int = 0

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("note", "weight")


def test_fields_omitted_at_their_default_keep_the_older_encoding() -> None:
    assert Extended("a").encode() == Inner("a").encode()
    assert Extended.decode(Inner("a").encode()) == Extended("a")
    both = Extended("a", "n", 2)
    assert both.to_wire() == {"label": "a", "note": "n", "weight": 2}
    assert Extended.decode(both.encode()) == both
    assert Extended.decode(encode({"label": "a", "weight": 2})) == Extended("a", "", 2)


@pytest.mark.parametrize(
    "wire",
    [
        {"label": "a", "note": ""},  # at its default: one encoding per value
        {"label": "a", "weight": 0},
        {"label": "a", "other": 1},
        {"note": "n"},
    ],
)
def test_an_omittable_field_sent_at_its_default_or_an_unknown_field_is_refused(
    wire: dict[str, object],
) -> None:
    with pytest.raises(DecodeError):
        Extended.decode(encode(wire))
