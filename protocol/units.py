"""Units of account and fixed-point ratios. No floats reach the ledger: they stop here."""

from __future__ import annotations

from decimal import Decimal, Inexact, InvalidOperation, localcontext

from protocol.errors import ProtocolError

#: Base units per DCT.
DCT = 10**9
#: Scale of fixed-point ratios (as Cosmos SDK's 18-decimal ``Dec``).
DEC = 10**18
#: The largest amount the ledger holds in one place (a signed 64-bit integer).
MAX_AMOUNT = 2**63 - 1


class AmountError(ProtocolError):
    code = 1201


def percent(value: int | str) -> int:
    """A ratio in DEC units from a percentage: ``percent("33.4")`` is exactly 0.334 * DEC."""
    return int(Decimal(str(value)) * DEC / 100)


def parse_amount(text: str) -> int:
    """Parse ``"1.5"`` or ``"1.5 DCT"`` (DCT) or ``"1500base"`` (base units) into base units.

    Raises :class:`AmountError` for anything else, including more than 9 decimals and more than
    :data:`MAX_AMOUNT` base units.
    """
    cleaned = text.strip()
    if cleaned.endswith("base"):
        digits = cleaned[: -len("base")].strip()
        # isdigit() alone admits "²" (int() then fails) and non-ASCII digits.
        if not (digits.isascii() and digits.isdigit()):
            raise AmountError(f"not a whole number of base units: {text!r}")
        significant = digits.lstrip("0") or "0"  # int() refuses over 4300 digits: check first
        if len(significant) > len(str(MAX_AMOUNT)) or int(significant) > MAX_AMOUNT:
            raise AmountError(f"amount too large: {text!r}")
        return int(significant)
    if cleaned.upper().endswith("DCT"):
        cleaned = cleaned[:-3].strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise AmountError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise AmountError(f"amount must be a non-negative number: {text!r}")
    if value > Decimal(MAX_AMOUNT).scaleb(-9):  # an exact comparison; "1e999999999" stops here
        raise AmountError(f"amount too large: {text!r}")
    with localcontext() as exact:
        # Enough precision that scaling never rounds (the default 28 digits would turn
        # "1.0000000000000000000000000001" into exactly 1 DCT); any rounding left is an error.
        exact.prec = len(value.as_tuple().digits) + 10
        exact.traps[Inexact] = True
        try:
            base = value * DCT
        except Inexact:
            raise AmountError(f"more than 9 decimal places: {text!r}") from None
    if base != base.to_integral_value():
        raise AmountError(f"more than 9 decimal places: {text!r}")
    return int(base)


def format_amount(base_units: int) -> str:
    """``1500000000`` -> ``"1.5 DCT"``; exact, no rounding."""
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), DCT)
    frac_text = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}{'.' + frac_text if frac_text else ''} DCT"


def format_ratio(ratio: int) -> str:
    """A DEC ratio as a percentage string, exact to 4 places: ``"33.4%"``."""
    value = Decimal(ratio) * 100 / DEC
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"
