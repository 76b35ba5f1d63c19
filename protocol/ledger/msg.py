"""The base of every transaction message, and the field checks they share.

Its own module so that the message families (protocol.ledger.tx, protocol.ledger.tx_liquidity)
can share them while tx.py's registry imports every family.
"""

from __future__ import annotations

from typing import ClassVar

from protocol.crypto import ADDRESS_LEN
from protocol.encoding import Record
from protocol.ledger.errors import InvalidAmount, MalformedTx

#: The largest amount any message carries: the encodable range of a signed 64-bit integer.
MAX_MSG_AMOUNT = 2**63 - 1
MAX_MONIKER = 64


class Msg(Record):
    """A transaction's payload; ``KIND`` is its tag on the wire."""

    __slots__ = ()
    KIND: ClassVar[str]


def positive_amount(value: int, field: str) -> None:
    if not 0 < value <= MAX_MSG_AMOUNT:
        raise InvalidAmount(f"{field}: must be between 1 and {MAX_MSG_AMOUNT} base units")


def check_moniker(moniker: str, field: str) -> None:
    if len(moniker) > MAX_MONIKER or not moniker.isprintable():
        raise MalformedTx(f"{field}: at most {MAX_MONIKER} printable characters")


def check_address(value: bytes, field: str) -> None:
    if len(value) != ADDRESS_LEN:
        raise MalformedTx(f"{field}: an address is 20 bytes")
