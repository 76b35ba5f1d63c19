"""Errors of the liquidity modules (assets, pool, mining, standing offers), codes 2300-2349.

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


class UnknownOffer(LedgerError):
    """No standing offer with that id."""

    code = 2320


class OfferNotStanding(LedgerError):
    """The offer's period is over (or the offer is not standing any more)."""

    code = 2321


class ChallengeOpen(LedgerError):
    """A challenge is open on the offer: one at a time, and no withdrawal before it is resolved."""

    code = 2322


class NoChallenge(LedgerError):
    """An answer or a miss for an offer with no open challenge."""

    code = 2323


class ChallengeWindowOpen(LedgerError):
    """A miss recorded while the node may still answer."""

    code = 2324


class ChallengeWindowClosed(LedgerError):
    """An answer after the challenge's window."""

    code = 2325


class BadAvailabilityProof(LedgerError):
    """The answer is not the offer's node key's signature over the challenge's seed."""

    code = 2326


class OwnOffer(LedgerError):
    """A provider challenging or taking its own offer: it would prove nothing."""

    code = 2327


class TakePending(LedgerError):
    """The offer already has a take waiting for the provider (one at a time), or withdrawal with one pending."""

    code = 2328


class NoTake(LedgerError):
    """An acceptance or a refusal for an offer with no pending take."""

    code = 2329


class TakeWindowOpen(LedgerError):
    """A refusal recorded while the provider may still accept."""

    code = 2330


class TakeWindowClosed(LedgerError):
    """An acceptance after the take's window: the take is refused."""

    code = 2331


class CollateralTooLow(LedgerError):
    """A standing offer's collateral below ``standing_collateral_per_gpu`` per GPU."""

    code = 2332


class PriceTooHigh(LedgerError):
    """A standing offer priced above ``standing_max_price``: capacity nobody would buy cannot be tested by buying it."""

    code = 2333


class TooManyOffers(LedgerError):
    """The ledger holds at most ``MAX_OFFERS`` standing offers (the epoch's payout walks them)."""

    code = 2334


class TooManyGpus(LedgerError):
    """A take of more GPUs than the offer stands for."""

    code = 2335


class NoQuotePrice(LedgerError):
    """An offer quoted in an asset whose DCT pool has no time-weighted price over a whole
    ``twap_window`` yet (or no pool): a younger average is what its creator alone set."""

    code = 2336


class PoolTooShallow(LedgerError):
    """A take of an offer quoted in an asset whose DCT pool holds less than ``QUOTE_DEPTH`` times
    the DCT the take locks: a price that thin is cheap to hold away from the market."""

    code = 2337


class QuoteAboveCap(LedgerError):
    """A contract quoted in an asset whose price, at the pool's time-weighted price when its
    escrow opens, is more DCT per GPU-second than the requester's signed cap."""

    code = 2338
