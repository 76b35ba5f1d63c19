"""The negotiation state machines of ``/dcent/market/1.0.0``, one per side, and the requester's plan.

Pure, in the manner of h11: each side is a small state machine whose lifecycle is a table of
``(state, event) -> next state``. A method call is an event; it is checked against the table
first, so an event the current state does not allow raises :class:`OutOfOrderEvent` and changes
nothing. Time is the ``now_ms`` argument; nothing here reads a clock, sleeps or does I/O. The
host sends what the methods return (see :mod:`protocol.market.messages`) and calls
:meth:`on_timer` when ``timer_at_ms`` passes.

Requester: ``IDLE -> QUOTE_REQUESTED -> QUOTED -> CONTRACT_SENT -> AGREED``, and ``FAILED`` from
any waiting state on a refusal, a timeout, or :meth:`~RequesterNegotiation.abandon`. A message
it refuses (a forged, expired or mismatched quote or countersignature) raises a typed
:class:`~protocol.market.errors.MarketError` and leaves the state as it was; the host then
abandons the peer with that error, and :class:`NegotiationPlan` moves on to the next provider.

Provider: ``AWAITING_REQUEST -> QUOTED -> AGREED``, or ``FAILED`` when it refuses the request or
the contract (its reply is then a :class:`~protocol.market.messages.Refusal` with the error's
code), when its quote expires unanswered, or when abandoned. It countersigns only terms that are
exactly the ones it quoted, before the quote's expiry, signed by the requester it quoted.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from protocol.contracts import ContractFormatError, ContractTerms, SignedContract
from protocol.crypto import PrivateKey
from protocol.errors import ProtocolError
from protocol.hardware import GpuDevice
from protocol.market.capacity import OfferedLimits
from protocol.market.errors import (
    ContractMismatch,
    DeadlineTooSoon,
    ExecutorNotOffered,
    ForgedContractSignature,
    ForgedQuote,
    ImageTagNotTrusted,
    InputsTooLarge,
    InvalidMarketMessage,
    LimitsNotOffered,
    MarketError,
    NegotiationAbandoned,
    NegotiationTimedOut,
    NoMatchingGpus,
    OutOfOrderEvent,
    ProviderNotReady,
    QuoteExpired,
    QuoteMismatch,
    WrongMarketChain,
)
from protocol.market.image_trust import image_refusal
from protocol.market.jobspec import JobSpec
from protocol.market.matching import Offer, limits_refusal, select_gpus
from protocol.market.messages import (
    MIN_NONCE_LEN,
    ContractAccepted,
    ContractProposal,
    MarketMessage,
    Quote,
    QuoteBody,
    QuoteRequest,
    Refusal,
    sign_quote,
)
from protocol.market.quoting import check_quoted_terms, terms_price
from protocol.market.quoting import transfer_surcharge as transfer_surcharge

DEFAULT_RESPONSE_TIMEOUT_MS = 10_000
DEFAULT_QUOTE_VALIDITY_MS = 30_000
#: What a provider fetches for one job unless its config says otherwise: 64 GiB.
DEFAULT_MAX_TRANSFER_BYTES = 64 * 2**30
#: Nonces the plan derives are the shortest a request accepts: 128 bits.
NONCE_LEN = MIN_NONCE_LEN
_NONCE_DOMAIN = b"dcent/market/nonce/v1\x00"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a negotiation ended without a contract: a stable code and words for people."""

    code: int
    message: str

    @classmethod
    def of(cls, error: ProtocolError) -> Failure:
        return cls(error.code, error.message)


def _differing_fields(expected: ContractTerms, got: ContractTerms) -> list[str]:
    wire_expected, wire_got = expected.to_wire(), got.to_wire()
    return [name for name in wire_expected if wire_expected[name] != wire_got[name]]


# --------------------------------------------------------------------------------------------
# Requester
# --------------------------------------------------------------------------------------------


class RequesterState(enum.Enum):
    IDLE = "idle"
    QUOTE_REQUESTED = "quote_requested"
    QUOTED = "quoted"
    CONTRACT_SENT = "contract_sent"
    AGREED = "agreed"
    FAILED = "failed"


class RequesterEvent(enum.Enum):
    SEND_REQUEST = "send_request"
    RECEIVE_QUOTE = "receive_quote"
    SEND_CONTRACT = "send_contract"
    RECEIVE_ACCEPTED = "receive_accepted"
    RECEIVE_REFUSAL = "receive_refusal"
    TIMER = "timer"
    ABANDON = "abandon"


_R = RequesterState
_RE = RequesterEvent
REQUESTER_TRANSITIONS: Mapping[tuple[RequesterState, RequesterEvent], RequesterState] = MappingProxyType(
    {
        (_R.IDLE, _RE.SEND_REQUEST): _R.QUOTE_REQUESTED,
        (_R.QUOTE_REQUESTED, _RE.RECEIVE_QUOTE): _R.QUOTED,
        (_R.QUOTED, _RE.SEND_CONTRACT): _R.CONTRACT_SENT,
        (_R.CONTRACT_SENT, _RE.RECEIVE_ACCEPTED): _R.AGREED,
        (_R.QUOTE_REQUESTED, _RE.RECEIVE_REFUSAL): _R.FAILED,
        (_R.CONTRACT_SENT, _RE.RECEIVE_REFUSAL): _R.FAILED,
        (_R.QUOTE_REQUESTED, _RE.TIMER): _R.FAILED,
        (_R.QUOTED, _RE.TIMER): _R.FAILED,
        (_R.CONTRACT_SENT, _RE.TIMER): _R.FAILED,
        (_R.IDLE, _RE.ABANDON): _R.FAILED,
        (_R.QUOTE_REQUESTED, _RE.ABANDON): _R.FAILED,
        (_R.QUOTED, _RE.ABANDON): _R.FAILED,
        (_R.CONTRACT_SENT, _RE.ABANDON): _R.FAILED,
    }
)
REQUESTER_TERMINAL = frozenset({RequesterState.AGREED, RequesterState.FAILED})


class RequesterNegotiation:
    """The requester's side of one negotiation with the provider of ``offer``."""

    def __init__(
        self,
        *,
        key: PrivateKey,
        chain_id: str,
        spec: JobSpec,
        offer: Offer,
        nonce: bytes,
        deadline_height: int,
        response_timeout_ms: int = DEFAULT_RESPONSE_TIMEOUT_MS,
        payer: bytes = b"",
    ) -> None:
        self._key = key
        self.chain_id = chain_id
        self.spec = spec
        self.offer = offer
        self.response_timeout_ms = response_timeout_ms
        self.state = RequesterState.IDLE
        self.failure: Failure | None = None
        #: When the host must call :meth:`on_timer`; None when no timer runs.
        self.timer_at_ms: int | None = None
        # Built now so that a bad argument fails here, not halfway through the exchange.
        self.request = QuoteRequest(
            chain_id=chain_id,
            spec=spec,
            requester=key.public_key.raw,
            nonce=nonce,
            deadline_height=deadline_height,
            payer=payer,
        )
        self._request_hash = self.request.request_hash()
        self.quote: Quote | None = None
        self.proposal: ContractProposal | None = None
        self.contract: SignedContract | None = None

    @property
    def finished(self) -> bool:
        return self.state in REQUESTER_TERMINAL

    def _next_state(self, event: RequesterEvent) -> RequesterState:
        """The state ``event`` leads to; raises :class:`OutOfOrderEvent` (nothing changes)."""
        target = REQUESTER_TRANSITIONS.get((self.state, event))
        if target is None:
            raise OutOfOrderEvent(f"requester: {event.value} is not allowed in state {self.state.value}")
        return target

    def _fail(self, target: RequesterState, failure: Failure) -> None:
        self.state = target
        self.failure = failure
        self.timer_at_ms = None

    # --- events --------------------------------------------------------------------------------
    def start(self, now_ms: int) -> QuoteRequest:
        """Send the request for quote; the answer is due ``response_timeout_ms`` from now."""
        self.state = self._next_state(RequesterEvent.SEND_REQUEST)
        self.timer_at_ms = now_ms + self.response_timeout_ms
        return self.request

    def receive_quote(self, quote: Quote, now_ms: int) -> None:
        """Accept a quote as the basis of the contract.

        Raises :class:`QuoteMismatch` (another request, provider or terms than the request and
        offer allow), :class:`WrongMarketChain`, :class:`ForgedQuote` or :class:`QuoteExpired`; the
        state is then unchanged.
        """
        target = self._next_state(RequesterEvent.RECEIVE_QUOTE)
        terms = quote.terms
        if quote.request_hash != self._request_hash:
            raise QuoteMismatch("quote.request_hash: the quote answers another request")
        if terms.provider != self.offer.provider:
            raise QuoteMismatch("quote.terms.provider: the quote is from another provider than asked")
        if terms.chain_id != self.chain_id:
            raise WrongMarketChain(f"quote.terms.chain_id: {terms.chain_id!r}, expected {self.chain_id!r}")
        if not quote.verify(self.chain_id):
            raise ForgedQuote("quote.provider_sig: not the provider's signature over this quote")
        if now_ms >= quote.expires_at_ms:
            raise QuoteExpired(f"quote expired at {quote.expires_at_ms} ms, now {now_ms} ms")
        self._check_terms(terms)
        self.quote = quote
        self.state = target
        # Past the quote's expiry there is nothing left to sign.
        self.timer_at_ms = quote.expires_at_ms

    def _check_terms(self, terms: ContractTerms) -> None:
        request, spec = self.request, self.spec
        expected = {
            "requester": request.requester,
            "job_hash": spec.job_hash(),
            "salt": request.nonce,
            "deadline_height": request.deadline_height,
            "max_gpu_seconds": spec.max_gpu_seconds,
            "payer": request.payer,
        }
        for name, value in expected.items():
            if getattr(terms, name) != value:
                raise QuoteMismatch(f"quote.terms.{name}: not what was requested")
        if terms.price_per_gpu_second > spec.max_price_per_gpu_second:
            raise QuoteMismatch(
                f"quote.terms.price_per_gpu_second: {terms.price_per_gpu_second} is above the job's "
                f"maximum {spec.max_price_per_gpu_second}"
            )
        check_quoted_terms(terms, self.offer, spec.max_price_per_gpu_second)
        if len(terms.gpu_uuids) != spec.resources.gpu_count:
            raise QuoteMismatch(
                f"quote.terms.gpu_uuids: {len(terms.gpu_uuids)} GPUs, the job asks for {spec.resources.gpu_count}"
            )
        unknown = sorted(set(terms.gpu_uuids) - set(self.offer.eligible_gpu_uuids))
        if unknown:
            raise QuoteMismatch(
                f"quote.terms.gpu_uuids: {', '.join(unknown)} not among the provider's announced GPUs that fit"
            )
        if terms.collateral < self.offer.collateral:
            raise QuoteMismatch(
                f"quote.terms.collateral: {terms.collateral} is below the announced {self.offer.collateral}"
            )

    def propose_contract(self, now_ms: int) -> ContractProposal:
        """Sign the quoted terms. Raises :class:`QuoteExpired` (state unchanged) past its expiry."""
        target = self._next_state(RequesterEvent.SEND_CONTRACT)
        assert self.quote is not None  # QUOTED is reached only with a quote
        if now_ms >= self.quote.expires_at_ms:
            raise QuoteExpired(f"quote expired at {self.quote.expires_at_ms} ms, now {now_ms} ms")
        terms = self.quote.terms
        self.proposal = ContractProposal(terms, terms.sign(self._key))
        self.state = target
        self.timer_at_ms = now_ms + self.response_timeout_ms
        return self.proposal

    def receive_accepted(self, accepted: ContractAccepted) -> SignedContract:
        """Take the provider's countersignature; returns the fully signed contract.

        Raises :class:`ContractMismatch` (it accepts another contract) or
        :class:`ForgedContractSignature`; the state is then unchanged.
        """
        target = self._next_state(RequesterEvent.RECEIVE_ACCEPTED)
        assert self.proposal is not None  # CONTRACT_SENT is reached only with a proposal
        terms = self.proposal.terms
        if accepted.contract_hash != terms.contract_hash():
            raise ContractMismatch("accepted.contract_hash: the provider accepted another contract")
        contract = SignedContract(terms, self.proposal.requester_sig, accepted.provider_sig)
        if not contract.is_fully_signed():
            raise ForgedContractSignature(
                "accepted.provider_sig: not the provider's signature over the terms"
            )
        self.contract = contract
        self.state = target
        self.timer_at_ms = None
        return contract

    def receive_refusal(self, refusal: Refusal) -> None:
        """The provider said no; the negotiation fails with the refusal's code."""
        self._fail(self._next_state(RequesterEvent.RECEIVE_REFUSAL), Failure(refusal.code, refusal.message))

    def on_timer(self, now_ms: int) -> bool:
        """The host's timer fired. Fails the negotiation if ``timer_at_ms`` has passed (a late
        answer, or a quote that expired before being signed) and returns True; otherwise, and
        in states without a timer, changes nothing and returns False."""
        if self.timer_at_ms is None or now_ms < self.timer_at_ms:
            return False
        target = self._next_state(RequesterEvent.TIMER)
        if self.state is RequesterState.QUOTED:
            failure = Failure.of(
                QuoteExpired(f"the quote expired at {self.timer_at_ms} ms before it was signed")
            )
        else:
            failure = Failure.of(
                NegotiationTimedOut(f"no answer in {self.response_timeout_ms} ms in state {self.state.value}")
            )
        self._fail(target, failure)
        return True

    def abandon(self, reason: ProtocolError | str) -> None:
        """Give up on this provider: ``reason`` is the error that refused its message, or words."""
        target = self._next_state(RequesterEvent.ABANDON)
        error = reason if isinstance(reason, ProtocolError) else NegotiationAbandoned(reason)
        self._fail(target, Failure.of(error))

    def receive(self, message: MarketMessage, now_ms: int) -> ContractProposal | None:
        """Dispatch a message from the provider. A quote is checked and signed at once, and the
        proposal returned for sending; an acceptance or a refusal ends the negotiation.

        Raises what the specific method raises, or :class:`OutOfOrderEvent` for a message a
        provider never sends; the state is then unchanged.
        """
        if isinstance(message, Quote):
            self.receive_quote(message, now_ms)
            return self.propose_contract(now_ms)
        if isinstance(message, ContractAccepted):
            self.receive_accepted(message)
        elif isinstance(message, Refusal):
            self.receive_refusal(message)
        else:
            raise OutOfOrderEvent(f"requester: a provider does not send {type(message).__name__}")
        return None


# --------------------------------------------------------------------------------------------
# Provider
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    """What a provider sells at: its key, chain, ask, collateral per contract, executors, and the
    limits one job may ask for. ``limits`` is None while the provider's sandbox has not passed its
    self-test: it then refuses every request (:class:`ProviderNotReady`)."""

    key: PrivateKey
    chain_id: str
    price_per_gpu_second: int
    collateral: int
    executors: frozenset[str]
    quote_validity_ms: int = DEFAULT_QUOTE_VALIDITY_MS
    limits: OfferedLimits | None = None
    #: The most bytes of inputs by reference (and image archive) it fetches for one job.
    max_transfer_bytes: int = DEFAULT_MAX_TRANSFER_BYTES
    #: Base units per GiB (started) of inputs by reference, added to the quote's price.
    transfer_price_per_gib: int = 0
    #: Quote in this asset ("" for DCT) at this many of its base units per GPU-second
    #: (``protocol.market.quoting``); ``price_per_gpu_second`` then only goes in announcements.
    quote: str = ""
    quote_price_per_gpu_second: int = 0
    #: Its executor's setting; False: a container image named only by a tag is refused (image_trust).
    allow_local_image_names: bool = False


class ProviderState(enum.Enum):
    AWAITING_REQUEST = "awaiting_request"
    QUOTED = "quoted"
    AGREED = "agreed"
    FAILED = "failed"


class ProviderEvent(enum.Enum):
    SEND_QUOTE = "send_quote"
    REFUSE_REQUEST = "refuse_request"
    COUNTERSIGN = "countersign"
    REFUSE_CONTRACT = "refuse_contract"
    TIMER = "timer"
    ABANDON = "abandon"


_P = ProviderState
_PE = ProviderEvent
PROVIDER_TRANSITIONS: Mapping[tuple[ProviderState, ProviderEvent], ProviderState] = MappingProxyType(
    {
        (_P.AWAITING_REQUEST, _PE.SEND_QUOTE): _P.QUOTED,
        (_P.AWAITING_REQUEST, _PE.REFUSE_REQUEST): _P.FAILED,
        (_P.QUOTED, _PE.COUNTERSIGN): _P.AGREED,
        (_P.QUOTED, _PE.REFUSE_CONTRACT): _P.FAILED,
        (_P.QUOTED, _PE.TIMER): _P.FAILED,
        (_P.AWAITING_REQUEST, _PE.ABANDON): _P.FAILED,
        (_P.QUOTED, _PE.ABANDON): _P.FAILED,
    }
)
PROVIDER_TERMINAL = frozenset({ProviderState.AGREED, ProviderState.FAILED})


class ProviderNegotiation:
    """The provider's side of one negotiation (one inbound stream)."""

    def __init__(self, policy: ProviderPolicy) -> None:
        self.policy = policy
        self.state = ProviderState.AWAITING_REQUEST
        self.failure: Failure | None = None
        #: When the host must call :meth:`on_timer` (the quote's expiry); None when none runs.
        self.timer_at_ms: int | None = None
        self.request: QuoteRequest | None = None
        self.quote: Quote | None = None
        self.contract: SignedContract | None = None

    @property
    def finished(self) -> bool:
        return self.state in PROVIDER_TERMINAL

    @property
    def reserved_gpu_uuids(self) -> tuple[str, ...]:
        """The GPUs quoted or sold: keep them from other quotes while QUOTED, run on them once AGREED."""
        if self.quote is None or self.state is ProviderState.FAILED:
            return ()
        return self.quote.terms.gpu_uuids

    def _require(self, *events: ProviderEvent) -> None:
        """Raise :class:`OutOfOrderEvent` unless the current state allows one of ``events``."""
        if not any((self.state, event) in PROVIDER_TRANSITIONS for event in events):
            names = " / ".join(event.value for event in events)
            raise OutOfOrderEvent(f"provider: {names} is not allowed in state {self.state.value}")

    def _transition(self, event: ProviderEvent) -> None:
        self.state = PROVIDER_TRANSITIONS[(self.state, event)]
        if self.finished:
            self.timer_at_ms = None

    def _refuse(self, event: ProviderEvent, error: ProtocolError) -> Refusal:
        self._transition(event)
        self.failure = Failure.of(error)
        return Refusal.from_error(error)

    # --- events --------------------------------------------------------------------------------
    def receive_request(
        self,
        request: QuoteRequest,
        *,
        now_ms: int,
        free_gpus: Iterable[GpuDevice],
        min_deadline_height: int,
        quote_twap: int | None = None,
    ) -> Quote | Refusal:
        """Quote for ``request`` on the first fitting units of ``free_gpus`` (the host's free,
        healthy, schedulable units), or refuse it. ``min_deadline_height`` is the earliest
        deadline that leaves time to run the job and settle. ``quote_twap``: for a policy quoting
        in an asset, the pool's time-weighted price the next block sees (None: none now).

        A refusal carries the code of :class:`WrongMarketChain`, :class:`InvalidMarketMessage`,
        :class:`ProviderNotReady`, :class:`ExecutorNotOffered`, :class:`ImageTagNotTrusted`,
        :class:`LimitsNotOffered`, :class:`PriceBelowAsk`, :class:`QuoteNotPriced`,
        :class:`DeadlineTooSoon`, :class:`NoMatchingGpus` or :class:`~protocol.contracts.ContractFormatError`.
        """
        self._require(ProviderEvent.SEND_QUOTE, ProviderEvent.REFUSE_REQUEST)
        self.request = request
        try:
            terms = self._terms_for(request, free_gpus, min_deadline_height, quote_twap)
        except (MarketError, ContractFormatError) as error:
            return self._refuse(ProviderEvent.REFUSE_REQUEST, error)
        body = QuoteBody(request.request_hash(), terms, now_ms + self.policy.quote_validity_ms)
        self.quote = sign_quote(self.policy.key, body)
        self._transition(ProviderEvent.SEND_QUOTE)
        self.timer_at_ms = body.expires_at_ms
        return self.quote

    def _terms_for(
        self,
        request: QuoteRequest,
        free_gpus: Iterable[GpuDevice],
        min_deadline_height: int,
        quote_twap: int | None,
    ) -> ContractTerms:
        policy, spec = self.policy, request.spec
        if request.chain_id != policy.chain_id:
            raise WrongMarketChain(
                f"quote_request.chain_id: {request.chain_id!r}, this provider is on {policy.chain_id!r}"
            )
        if request.requester == policy.key.public_key.raw:
            raise InvalidMarketMessage("quote_request.requester: a provider does not contract with itself")
        if policy.limits is None:
            raise ProviderNotReady(
                "this provider's sandbox has not passed its self-test; it sells nothing now"
            )
        if spec.executors.isdisjoint(policy.executors):
            raise ExecutorNotOffered(
                f"the job needs one of {', '.join(sorted(spec.executors))}; "
                f"this provider offers {', '.join(sorted(policy.executors))}"
            )
        image = image_refusal(
            spec.image,
            archive_bound=bool(spec.image_archive_id),
            allow_local_names=policy.allow_local_image_names,
        )
        if image is not None:
            raise ImageTagNotTrusted(image)
        refusal = limits_refusal(spec.limits, policy.limits)
        if refusal is not None:
            raise LimitsNotOffered(refusal)
        if spec.transfer_bytes > policy.max_transfer_bytes:
            raise InputsTooLarge(
                f"the job's inputs by reference are {spec.transfer_bytes} bytes; this provider "
                f"fetches at most {policy.max_transfer_bytes}"
            )
        priced = terms_price(
            spec,
            price_per_gpu_second=policy.price_per_gpu_second,
            transfer_price_per_gib=policy.transfer_price_per_gib,
            quote=policy.quote,
            quote_price=policy.quote_price_per_gpu_second,
            twap=quote_twap,
        )
        if request.deadline_height < min_deadline_height:
            raise DeadlineTooSoon(
                f"deadline height {request.deadline_height} is before {min_deadline_height}, the "
                "earliest that leaves time to run the job and settle"
            )
        gpu_uuids = select_gpus(spec, free_gpus)
        if gpu_uuids is None:
            raise NoMatchingGpus(f"fewer than {spec.resources.gpu_count} free GPUs meet the job's resources")
        return ContractTerms(
            chain_id=policy.chain_id,
            requester=request.requester,
            provider=policy.key.public_key.raw,
            job_hash=spec.job_hash(),
            gpu_uuids=gpu_uuids,
            price_per_gpu_second=priced.cap,
            max_gpu_seconds=spec.max_gpu_seconds,
            collateral=policy.collateral,
            deadline_height=request.deadline_height,
            salt=request.nonce,
            payer=request.payer,
            quote=priced.quote,
            quote_price_per_gpu_second=priced.quote_price_per_gpu_second,
        )

    def receive_contract(self, proposal: ContractProposal, now_ms: int) -> ContractAccepted | Refusal:
        """Countersign the requester's contract, or refuse it with the code of
        :class:`QuoteExpired`, :class:`ContractMismatch` (the message names the differing terms)
        or :class:`ForgedContractSignature`."""
        self._require(ProviderEvent.COUNTERSIGN, ProviderEvent.REFUSE_CONTRACT)
        assert self.quote is not None  # QUOTED is reached only with a quote
        quoted = self.quote.terms
        if now_ms >= self.quote.expires_at_ms:
            return self._refuse(
                ProviderEvent.REFUSE_CONTRACT,
                QuoteExpired(f"the quote expired at {self.quote.expires_at_ms} ms, now {now_ms} ms"),
            )
        if proposal.terms != quoted:
            differing = ", ".join(_differing_fields(quoted, proposal.terms))
            return self._refuse(
                ProviderEvent.REFUSE_CONTRACT,
                ContractMismatch(f"contract terms differ from the quote in: {differing}"),
            )
        if not quoted.verify(quoted.requester, proposal.requester_sig):
            return self._refuse(
                ProviderEvent.REFUSE_CONTRACT,
                ForgedContractSignature(
                    "contract.requester_sig: not the requester's signature over the quoted terms"
                ),
            )
        provider_sig = quoted.sign(self.policy.key)
        self.contract = SignedContract(quoted, proposal.requester_sig, provider_sig)
        self._transition(ProviderEvent.COUNTERSIGN)
        return ContractAccepted(quoted.contract_hash(), provider_sig)

    def on_timer(self, now_ms: int) -> bool:
        """The host's timer fired: once the quote has expired unanswered, the negotiation fails
        (the quoted GPUs are free again) and this returns True; otherwise nothing changes."""
        if self.timer_at_ms is None or now_ms < self.timer_at_ms:
            return False
        self._require(ProviderEvent.TIMER)
        self._transition(ProviderEvent.TIMER)
        self.failure = Failure.of(QuoteExpired(f"the quote expired at {self.timer_at_ms} ms unanswered"))
        self.timer_at_ms = None
        return True

    def abandon(self, reason: ProtocolError | str) -> None:
        """Give up on this requester (its stream broke, or it sent a message we refused)."""
        self._require(ProviderEvent.ABANDON)
        self._transition(ProviderEvent.ABANDON)
        error = reason if isinstance(reason, ProtocolError) else NegotiationAbandoned(reason)
        self.failure = Failure.of(error)

    def receive(self, message: MarketMessage, now_ms: int) -> ContractAccepted | Refusal:
        """Dispatch a contract proposal from the requester (requests need the host's free GPUs:
        call :meth:`receive_request`). Raises :class:`OutOfOrderEvent` for anything else."""
        if isinstance(message, ContractProposal):
            return self.receive_contract(message, now_ms)
        raise OutOfOrderEvent(f"provider: unexpected {type(message).__name__} in state {self.state.value}")


# --------------------------------------------------------------------------------------------
# The requester's plan: ranked offers, one negotiation at a time
# --------------------------------------------------------------------------------------------


def derive_nonce(seed: bytes, attempt: int) -> bytes:
    """The nonce (and contract salt) of attempt number ``attempt`` of a plan seeded by ``seed``."""
    return hashlib.sha256(_NONCE_DOMAIN + seed + attempt.to_bytes(4, "big")).digest()[:NONCE_LEN]


class NegotiationPlan:
    """Walk ranked offers until one negotiation agrees: on a refusal, a timeout or an abandoned
    peer, the next provider is tried.

    ``seed`` must be fresh randomness per job (the host draws it): each attempt's nonce, hence
    each contract's salt and hash, derives from it.
    """

    def __init__(
        self,
        *,
        key: PrivateKey,
        chain_id: str,
        spec: JobSpec,
        offers: Sequence[Offer],
        deadline_height: int,
        seed: bytes,
        response_timeout_ms: int = DEFAULT_RESPONSE_TIMEOUT_MS,
        payer: bytes = b"",
    ) -> None:
        if len(seed) < NONCE_LEN:
            raise InvalidMarketMessage(f"plan seed: at least {NONCE_LEN} bytes of fresh randomness")
        self._key = key
        self.chain_id = chain_id
        self.spec = spec
        self.offers = tuple(offers)
        self.deadline_height = deadline_height
        self._seed = seed
        self.response_timeout_ms = response_timeout_ms
        #: The contracts' payer (empty: the requester pays itself).
        self.payer = payer
        self.current: RequesterNegotiation | None = None
        self._past_failures: list[tuple[Offer, Failure]] = []
        self._next_index = 0

    @property
    def contract(self) -> SignedContract | None:
        """The agreed contract, once a negotiation reached AGREED."""
        return self.current.contract if self.current is not None else None

    @property
    def failures(self) -> list[tuple[Offer, Failure]]:
        """Each failed attempt's offer and why it failed, in the order tried."""
        current = self.current
        if current is not None and current.failure is not None:
            return [*self._past_failures, (current.offer, current.failure)]
        return list(self._past_failures)

    @property
    def exhausted(self) -> bool:
        """Every offer was tried and none agreed."""
        current_done = self.current is None or self.current.state is RequesterState.FAILED
        return self._next_index >= len(self.offers) and current_done

    def next_negotiation(self) -> RequesterNegotiation | None:
        """The negotiation with the next provider, or None when agreed or out of offers.

        Raises :class:`OutOfOrderEvent` while the current negotiation is still running: time it
        out or abandon it first.
        """
        current = self.current
        if current is not None:
            if not current.finished:
                raise OutOfOrderEvent("plan: the current negotiation is still running")
            if current.state is RequesterState.AGREED or self._next_index >= len(self.offers):
                return None
            assert current.failure is not None  # FAILED always records why
            self._past_failures.append((current.offer, current.failure))
        elif not self.offers:
            return None
        offer = self.offers[self._next_index]
        self.current = RequesterNegotiation(
            key=self._key,
            chain_id=self.chain_id,
            spec=self.spec,
            offer=offer,
            nonce=derive_nonce(self._seed, self._next_index),
            deadline_height=self.deadline_height,
            response_timeout_ms=self.response_timeout_ms,
            payer=self.payer,
        )
        self._next_index += 1
        return self.current
