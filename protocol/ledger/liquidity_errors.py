"""Errors of the liquidity modules (assets, pool, mining), codes 2300-2349.

Like every ledger error, each means the transaction is invalid and the state is unchanged.
"""

from __future__ import annotations

from protocol.ledger.errors import InsufficientFunds, LedgerError


class UnknownAsset(LedgerError):
    """No registered asset (or pool) of that symbol."""

    code = 2300


class AssetExists(LedgerError):
    """The symbol is registered or proposed already."""

    code = 2301


class TooManyAssets(LedgerError):
    """The ledger holds at most ``MAX_ASSETS`` assets, proposed or registered."""

    code = 2302


class NotIssuer(LedgerError):
    """Only an asset's issuer mints it."""

    code = 2303


class InsufficientAsset(InsufficientFunds):
    """A holding of an asset or of pool shares smaller than what is sent, deposited or sold."""

    code = 2304


class SlippageExceeded(LedgerError):
    """The trade would give less than the sender's limit (``min_out``, ``min_shares``, ...):
    the price moved (perhaps a front-runner) since the sender quoted it."""

    code = 2305


class DeadlinePassed(LedgerError):
    """A swap included in a block after its deadline height."""

    code = 2306


class AmountTooSmall(LedgerError):
    """A trade that rounds to nothing: no shares for the deposit, nothing out of a swap or a
    withdrawal. Refused rather than kept by the pool, so a mistake costs only its fee."""

    code = 2307


class PoolEmpty(LedgerError):
    """A swap or withdrawal from a pool that does not exist yet."""

    code = 2308


class NotBonded(LedgerError):
    """Unbonding more pool shares from the mining programme than the sender bonded there."""

    code = 2310


class MiningFull(LedgerError):
    """The programme holds at most ``MAX_MINING_BONDS`` bonds (bounds the epoch's payout work)."""

    code = 2311
