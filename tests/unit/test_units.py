"""Amounts and ratios: exact parsing and formatting, typed errors for everything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.units import (
    DCT,
    DEC,
    MAX_AMOUNT,
    AmountError,
    format_amount,
    format_ratio,
    parse_amount,
    percent,
)


def test_percent_is_exact() -> None:
    assert percent(50) == DEC // 2
    assert percent("33.4") == 334 * 10**15
    assert percent("0.0001") == 10**12
    assert percent(100) == DEC
    assert percent(0) == 0


@pytest.mark.parametrize(
    ("text", "base_units"),
    [
        ("1", DCT),
        ("1.5", 1_500_000_000),
        ("1.5 DCT", 1_500_000_000),
        ("  2 dct ", 2 * DCT),
        ("0.000000001", 1),
        ("1.000000000000", DCT),  # trailing zeros are not extra precision
        ("1e3", 1_000 * DCT),
        ("1500base", 1_500),
        ("0base", 0),
        ("9223372036854775807base", MAX_AMOUNT),
        ("9223372036.854775807", MAX_AMOUNT),
    ],
)
def test_parse_amount(text: str, base_units: int) -> None:
    assert parse_amount(text) == base_units


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "-1",
        "1.0000000001",  # ten decimals
        "1.0000000000000000000000000001",  # beyond Decimal's default precision: must not round
        "1e-1000010",
        "NaN",
        "Infinity",
        "0x10",
        "1.5base",
        "-5base",
        "base",
        "\u00b2base",  # superscript two: str.isdigit() says yes, int() says no
        "\u0661\u0662base",  # Arabic-Indic digits
        "9223372036854775808base",
        "9223372036.854775808",
        "1e999999999",
        "1" * 5000 + "base",
    ],
)
def test_parse_amount_refuses_with_a_typed_error(text: str) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(text)
    assert caught.value.code == 1201


def test_format_amount() -> None:
    assert format_amount(1_500_000_000) == "1.5 DCT"
    assert format_amount(0) == "0 DCT"
    assert format_amount(1) == "0.000000001 DCT"
    assert format_amount(-2 * DCT) == "-2 DCT"


@given(st.integers(0, MAX_AMOUNT))
def test_format_then_parse_round_trips(base_units: int) -> None:
    assert parse_amount(format_amount(base_units)) == base_units


def test_format_ratio() -> None:
    assert format_ratio(percent("33.4")) == "33.4%"
    assert format_ratio(DEC) == "100%"
    assert format_ratio(percent("0.0001")) == "0.0001%"
