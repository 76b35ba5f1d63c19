"""Reading what people type (amounts, ratios, parameter values) and what a node answers.

Amounts are parsed by :func:`protocol.units.parse_amount`, the one parser the whole project uses:
``"1.5"`` and ``"1.5 DCT"`` are DCT, ``"1500base"`` is base units. Ratios (1e18-scaled integers in
the ledger) are typed as percentages, ``"75%"``, or as the raw scaled integer.

The node's answers follow the RPC contract (amounts as decimal strings, heights and nonces as
integers): the readers here turn a malformed answer into :class:`BadNodeAnswer` instead of a
``KeyError`` deep in a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from node.wallet.errors import BadNodeAnswer, InvalidArgument
from protocol.crypto import Address, InvalidAddressError
from protocol.ledger.errors import InvalidParamValue, UnknownParam
from protocol.ledger.params import AMOUNT_PARAMS, GOVERNANCE_BOUNDS, PARAM_BOUNDS, RATIO_PARAMS, describe
from protocol.units import DEC, MAX_AMOUNT, AmountError, parse_amount

#: Amount parameters (``AMOUNT_PARAMS``) are typed like any amount ("10 DCT", "5000base"); ratio
#: parameters (``RATIO_PARAMS``) as "75%" or the raw integer.

AMOUNT_HELP = '"1.5" or "1.5 DCT" (DCT), or "1500base" (base units)'


def parse_amount_arg(text: str, what: str, *, allow_zero: bool = False) -> int:
    """An amount typed on the command line, in base units. Raises InvalidArgument."""
    try:
        value = parse_amount(text)
    except AmountError as exc:
        raise InvalidArgument(f"{what}: {exc.message}; write {AMOUNT_HELP}") from None
    if value == 0 and not allow_zero:
        raise InvalidArgument(f"{what}: must be more than zero")
    return value


def parse_ratio(text: str, what: str) -> int:
    """``"75%"`` -> 0.75 * 1e18 exactly; a plain integer is taken as already 1e18-scaled.

    Raises InvalidArgument for anything else, a negative value, or a percentage finer than the
    ledger's 1e-18 resolution.
    """
    cleaned = text.strip()
    if cleaned.endswith("%"):
        try:
            percentage = Decimal(cleaned[:-1].strip())
        except InvalidOperation:
            raise InvalidArgument(f"{what}: {text!r} is not a percentage") from None
        if not percentage.is_finite() or abs(percentage.adjusted()) > 40:
            raise InvalidArgument(f"{what}: {text!r} is not a percentage between 0% and 100%")
        with localcontext() as exact:
            # Enough digits that scaling never rounds: a finer value must be refused, not cut.
            exact.prec = len(percentage.as_tuple().digits) + 60
            scaled = percentage * DEC / 100
        if scaled != scaled.to_integral_value():
            raise InvalidArgument(f"{what}: {text!r} is not a percentage with at most 16 decimals")
        value = int(scaled)
    elif cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= 40:
        value = int(cleaned)
    else:
        raise InvalidArgument(f'{what}: write a percentage ("75%") or a 1e18-scaled integer, not {text!r}')
    if value < 0:
        raise InvalidArgument(f"{what}: must not be negative")
    return value


def parse_param_value(param: str, text: str) -> int:
    """The ledger value of governance parameter ``param`` typed as ``text``.

    Checks the name and the parameter's closed range, as the ledger will; whether the value fits
    the chain's other parameters (``inflation_min <= inflation_max``, ...) only the ledger knows.
    Raises UnknownParam, InvalidParamValue (ledger errors) or InvalidArgument.
    """
    bounds = PARAM_BOUNDS.get(param)
    if bounds is None:
        raise UnknownParam(f"unknown parameter {param!r}; one of: {', '.join(sorted(PARAM_BOUNDS))}")
    if param in RATIO_PARAMS:
        value = parse_ratio(text, param)
    elif param in AMOUNT_PARAMS:
        value = parse_amount_arg(text, param, allow_zero=True)
    else:
        cleaned = text.strip()
        if not (cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= 40):
            raise InvalidArgument(f"{param}: a whole number, not {text!r}")
        value = int(cleaned)
    low, high = GOVERNANCE_BOUNDS.get(param, bounds)
    if not low <= value <= high:
        raise InvalidParamValue(
            f"{param}: governance keeps it within [{describe(param, low)}, {describe(param, high)}]; "
            f"{describe(param, value)} asked"
        )
    return value


def parse_address(text: str, what: str) -> Address:
    """A ``dct1...`` address typed by a person. Raises InvalidArgument naming the typo."""
    try:
        return Address.parse(text)
    except InvalidAddressError as exc:
        raise InvalidArgument(f"{what}: {exc.message}") from None


def looks_like_address(text: str) -> bool:
    return text.strip().lower().startswith("dct1")


# --------------------------------------------------------------------------------------------
# Reading a node's answers
# --------------------------------------------------------------------------------------------


def answer_object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadNodeAnswer(f"{what}: the node answered {type(value).__name__}, not an object")
    return value


def answer_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadNodeAnswer(f"{what}: the node answered {type(value).__name__}, not an array")
    return value


def answer_amount(document: Mapping[str, Any], key: str, what: str) -> int:
    """A base-unit amount the node sent as a decimal string (an integer is tolerated)."""
    value = document.get(key)
    if type(value) is int and 0 <= value <= MAX_AMOUNT:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    raise BadNodeAnswer(f"{what}: {key} is {value!r}, not an amount of base units")


def answer_int(document: Mapping[str, Any], key: str, what: str) -> int:
    value = document.get(key)
    if type(value) is not int:
        raise BadNodeAnswer(f"{what}: {key} is {value!r}, not an integer")
    return value


def answer_str(document: Mapping[str, Any], key: str, what: str) -> str:
    value = document.get(key)
    if not isinstance(value, str):
        raise BadNodeAnswer(f"{what}: {key} is {value!r}, not a string")
    return value
