"""Market errors: one class per failure, each with a stable numeric code (4010-4999).

4001 is :class:`protocol.contracts.ContractFormatError`. The classes are split by whose fault the
failure is, so the node can answer the right party:

    4010-4019  the user's: a job spec that does not validate (the message starts with the field)
    4020-4029  a peer's capacity announcement: malformed, forged, expired, replayed
    4030-4039  a peer's negotiation message: malformed, forged, expired, mismatched, out of order
    4040-4049  a provider's reasons to refuse a request for quote (nobody's fault: no deal)
    4050-4059  how a negotiation ended without a contract on the requester's side

Every market error means the input was refused and nothing was changed. A provider refuses a
request or a contract by sending a :class:`~protocol.market.negotiation.Refusal` that carries the
code of the error it would have raised, so the same numbers travel between peers.
"""

from __future__ import annotations

from protocol.encoding import DecodeError
from protocol.errors import ProtocolError


class MarketError(ProtocolError):
    code = 4000


# --- the user's: job specs ------------------------------------------------------------------
class JobSpecError(MarketError):
    """A job spec that does not validate. The message starts with the field's path, e.g.
    ``resources.gpu_count: must be between 1 and 64``."""

    code = 4010


# --- a peer's: capacity announcements --------------------------------------------------------
class AnnouncementError(MarketError):
    """A capacity announcement refused; the peer that gossiped it is at fault."""

    code = 4020


class InvalidAnnouncement(AnnouncementError):
    """Fields out of range or contradicting each other (a busy GPU that is not listed, ...)."""

    code = 4021


class ForgedAnnouncement(AnnouncementError):
    """The signature is not the provider's over this announcement on this chain."""

    code = 4022


class ExpiredAnnouncement(AnnouncementError):
    code = 4023


class AnnouncementFromFuture(AnnouncementError):
    """Issued later than our clock plus the allowed skew."""

    code = 4024


class AnnouncementValidityTooLong(AnnouncementError):
    """Valid for longer than peers keep an announcement: it would outlive a provider's crash."""

    code = 4025


class StaleAnnouncement(AnnouncementError):
    """A sequence number at or below the provider's newest one: a replay or an older copy."""

    code = 4026


class CapacityTableFull(AnnouncementError):
    """A new provider while the table holds its maximum number of providers."""

    code = 4027


# --- a peer's: negotiation messages ----------------------------------------------------------
class NegotiationError(MarketError):
    """A negotiation message refused; the peer that sent it is at fault."""

    code = 4030


class MalformedMessage(NegotiationError, DecodeError):
    """Bytes that are not one market message: too large, unknown type tag, bad encoding.

    A :class:`~protocol.encoding.DecodeError` too, so decoding raises only that family.
    """

    code = 4031


class InvalidMarketMessage(NegotiationError):
    """A message whose fields are out of range (a nonce of the wrong length, a bad key, ...)."""

    code = 4032


class ForgedQuote(NegotiationError):
    """The quote's signature is not the expected provider's over its canonical bytes."""

    code = 4033


class QuoteExpired(NegotiationError):
    code = 4034


class QuoteMismatch(NegotiationError):
    """A quote that does not answer our request: another request, provider, chain, GPU set,
    a price above the job's maximum, ..."""

    code = 4035


class ContractMismatch(NegotiationError):
    """Contract terms that are not exactly the quote's; the message names the differing fields."""

    code = 4036


class ForgedContractSignature(NegotiationError):
    """A contract signature that does not verify over the contract's canonical bytes."""

    code = 4037


class WrongMarketChain(NegotiationError):
    code = 4038


class OutOfOrderEvent(NegotiationError):
    """An event the negotiation's current state does not allow; the state is unchanged."""

    code = 4039


# --- a provider's reasons to refuse a request ------------------------------------------------
class RequestNotServed(MarketError):
    """The provider cannot or will not serve this request; nobody misbehaved."""

    code = 4040


class NoMatchingGpus(RequestNotServed):
    """Fewer free GPUs meet the job's resources than it asks for."""

    code = 4041


class PriceBelowAsk(RequestNotServed):
    """The job's maximum price per GPU-second is below the provider's price."""

    code = 4042


class ExecutorNotOffered(RequestNotServed):
    """The job needs an executor (a container engine, a sandbox) the provider does not offer."""

    code = 4043


class DeadlineTooSoon(RequestNotServed):
    """The contract deadline leaves the provider too few blocks to run the job and settle."""

    code = 4044


class LimitsNotOffered(RequestNotServed):
    """The job's resource limits exceed what the provider sells one job, or ask for a limit its
    kernel cannot enforce (a sandboxed provider never pretends to)."""

    code = 4045


class ProviderNotReady(RequestNotServed):
    """The provider's sandbox has not passed its self-test: it sells nothing until it does."""

    code = 4046


# --- requester-side outcomes ----------------------------------------------------------------
class NegotiationFailed(MarketError):
    """Why a negotiation ended without a contract, as recorded in its failure."""

    code = 4050


class NegotiationTimedOut(NegotiationFailed):
    """The peer did not answer before the deadline."""

    code = 4051


class NegotiationAbandoned(NegotiationFailed):
    """We gave up on this peer: it sent a message we refused, or the stream broke."""

    code = 4052


class NoOffersLeft(NegotiationFailed):
    """Every ranked offer was tried and none led to a contract."""

    code = 4053


# --- result delivery (``/dcent/result/1.0.0``) -------------------------------------------------
class DeliveryRejected(MarketError):
    """The requester refuses to countersign a delivered result (the provider's fault)."""

    code = 4060


class ReceiptForOtherContract(DeliveryRejected):
    """The receipt names another contract or chain than the one delivered for."""

    code = 4061


class ForgedReceipt(DeliveryRejected):
    """The receipt's provider signature does not verify under the contract's provider key."""

    code = 4062


class OutputHashMismatch(DeliveryRejected):
    """The delivered files do not hash to the receipt's ``output_hash``."""

    code = 4063


class ReceiptOverLimit(DeliveryRejected):
    """The receipt meters more GPU-seconds than the contract allows, or the outputs exceed the
    job's output limit."""

    code = 4064


class OutputModeMismatch(DeliveryRejected):
    """Outputs inline for a job whose spec asks for blobs, or the other way round."""

    code = 4065


class OutputsUnavailable(DeliveryRejected):
    """The outputs a receipt lists as blobs could not be fetched from the provider and verified
    against their content ids: nothing is countersigned."""

    code = 4066


class InputsTooLarge(RequestNotServed):
    """The job's inputs by reference (and image archive) are more than this provider fetches."""

    code = 4047


class QuoteNotPriced(RequestNotServed):
    """This provider quotes in an asset whose DCT pool has no time-weighted price now, so no
    escrow of its contract could open (the ledger would refuse it: ``NoQuotePrice``)."""

    code = 4048


class ImageTagNotTrusted(RequestNotServed):
    """The job names its container image only by a tag (not by ID, not bound to an image archive
    by content id), and this provider runs images by content: a tag in its store could be anyone's
    (``podman load`` moves tags). Refused before any quote, as its executor would refuse the job
    at start (``ImageNameNotTrusted`` 5322): one rule for both,
    :func:`protocol.market.image_trust.image_refusal`."""

    code = 4049
