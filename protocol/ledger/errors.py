"""Ledger errors: one class per failure, each with a stable numeric code (2000-2999).

Every ledger error means the transaction or block is invalid and the state is unchanged.
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class LedgerError(ProtocolError):
    code = 2000
    #: Position of the offending transaction when raised from ``apply_block``.
    tx_index: int | None = None


# --- transaction envelope --------------------------------------------------------------------
class MalformedTx(LedgerError):
    code = 2001


class WrongChainId(LedgerError):
    code = 2002


class BadSignature(LedgerError):
    code = 2003


class BadNonce(LedgerError):
    code = 2004


class FeeTooLow(LedgerError):
    code = 2005


class InsufficientFunds(LedgerError):
    code = 2006


class InvalidAmount(LedgerError):
    code = 2007


class UnknownTxKind(MalformedTx):
    code = 2008


class AmountOverflow(LedgerError):
    """An amount or running total would leave the range the ledger encodes (0 to 2^63 - 1)."""

    code = 2009


# --- staking and slashing -------------------------------------------------------------------
class InsufficientStake(LedgerError):
    code = 2010


class Tombstoned(LedgerError):
    code = 2011


class UnknownValidator(LedgerError):
    code = 2012


class ValidatorExists(LedgerError):
    """The sender already operates a validator (one per operator address)."""

    code = 2013


class ConsensusKeyTaken(LedgerError):
    """Another validator already votes with this consensus key."""

    code = 2014


class BadKeyProof(LedgerError):
    """The consensus key did not sign the operator's address: declaring a key one does not hold
    would let anyone make a stranger's node vote for them."""

    code = 2015


class InvalidCommission(LedgerError):
    """A commission outside the validator's declared maximum or maximum change."""

    code = 2016


class CommissionChangeTooSoon(InvalidCommission):
    """A second commission change within ``unbonding_period`` blocks of the last one."""

    code = 2017


class NotJailed(LedgerError):
    code = 2018


class JailPeriodNotOver(LedgerError):
    code = 2019


# --- escrow ---------------------------------------------------------------------------------
class UnknownContract(LedgerError):
    code = 2020


class ContractExists(LedgerError):
    code = 2021


class ContractClosed(LedgerError):
    """The contract was already settled, refunded or disputed (a double settle, a replayed refund)."""

    code = 2022


class RefundTooEarly(LedgerError):
    code = 2023


class NotAParty(LedgerError):
    code = 2024


class ContractExpired(LedgerError):
    code = 2025


class BadContractSignature(LedgerError):
    code = 2026


class ReceiptMismatch(LedgerError):
    code = 2027


class FreeContract(InvalidAmount):
    """A contract priced at 0 per GPU-second: refused (see ``protocol.ledger.escrow``)."""

    code = 2028


# --- governance -----------------------------------------------------------------------------
class UnknownParam(LedgerError):
    code = 2030


class InvalidParamValue(LedgerError):
    code = 2031


class DepositTooLow(LedgerError):
    code = 2032


class UnknownProposal(LedgerError):
    code = 2033


class VotingClosed(LedgerError):
    code = 2034


class NoVotingPower(LedgerError):
    code = 2035


class InvalidVoteOption(LedgerError):
    code = 2036


# --- provider claims and disputes -----------------------------------------------------------
class ClaimPending(LedgerError):
    """The escrow already carries the provider's unilateral claim (a second claim)."""

    code = 2050


class NoClaim(LedgerError):
    """Finalize or dispute of an escrow that carries no pending claim."""

    code = 2051


class DisputeWindowOpen(LedgerError):
    """Finalize before the dispute window of the claim has passed."""

    code = 2052


class DisputeWindowClosed(LedgerError):
    """Dispute after the dispute window of the claim has passed."""

    code = 2053


class RefundBlockedByClaim(ClaimPending):
    """Refund while the provider's claim is pending: the requester must dispute it instead."""

    code = 2054


# --- delegations ----------------------------------------------------------------------------
class TooManyDelegations(LedgerError):
    """An account may hold shares of at most ``MAX_DELEGATIONS`` validators (a bound on the work
    a vote's tally does for it)."""

    code = 2060


class RedelegationInProgress(LedgerError):
    """Redelegating stake that itself arrived by a redelegation still in progress: hopping from
    validator to validator would keep it out of reach of the first one's slashing."""

    code = 2061


class ValidatorHasNoTokens(LedgerError):
    """Delegating to a validator slashed down to nothing: its shares are worth nothing, so no
    price for new ones exists."""

    code = 2062


class NotAValidator(LedgerError):
    """``stake``/``unstake`` bond to the sender's own validator; the sender has none."""

    code = 2063


# --- grants (spending authorizations) --------------------------------------------------------
class InvalidGrant(LedgerError):
    """A grant whose terms are out of range: an expiry not ahead of the chain or too far ahead,
    a kind that cannot be granted, a grant to oneself."""

    code = 2070


class NoGrant(LedgerError):
    """The payer gave the sender no grant (never, revoked, or replaced by nothing)."""

    code = 2071


class GrantExpired(LedgerError):
    """The grant's expiry height has passed."""

    code = 2072


class GrantExhausted(LedgerError):
    """What the grant has left is less than the escrow would lock."""

    code = 2073


class GrantKindNotAllowed(LedgerError):
    """The grant does not cover this kind of message."""

    code = 2074


class TooManyGrants(LedgerError):
    """A granter already has ``MAX_GRANTS_PER_GRANTER`` live grants (bounds the state one
    account can make every replica keep)."""

    code = 2075


# --- blocks and genesis ---------------------------------------------------------------------
class BadBlockHeight(LedgerError):
    code = 2040


class GenesisError(LedgerError):
    """A genesis document is invalid; the message names the field."""

    code = 2090


class InvariantError(LedgerError):
    """A supply or sign invariant does not hold: a bug in the ledger, never the user's fault."""

    code = 2099


class ArithmeticFault(InvariantError):
    """Executing a block raised an arithmetic error (an overflow, a division by zero): a ledger
    bug that the bounds should have made impossible. The block is refused like any invalid one,
    so a proposer that picks it up does not crash."""

    code = 2097
