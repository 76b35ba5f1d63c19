"""Builders shared by the market tests (this module holds no tests of its own): deterministic
keys, GPU records, signed capacity announcements, job specs, a funded test chain, and one
complete negotiation to replay and tamper with."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from gpu.simulated import parse_gpu_spec
from protocol.contracts import SignedContract
from protocol.crypto import PrivateKey
from protocol.hardware import SIMULATED_UUID_PREFIX, GpuDevice
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.market.capacity import CapacityAnnouncement, OfferedLimits, sign_announcement
from protocol.market.jobspec import JobSpec
from protocol.market.matching import Offer, match
from protocol.market.messages import ContractAccepted, ContractProposal, Quote, QuoteRequest, Refusal
from protocol.market.negotiation import ProviderNegotiation, ProviderPolicy, RequesterNegotiation

CHAIN_ID = "dcent-market-test"
OTHER_CHAIN_ID = "dcent-other-chain"
#: A fixed "now" for the pure core: 2023-11-14T22:13:20Z.
NOW_MS = 1_700_000_000_000
GIB = 2**30
H100_NAME = "NVIDIA H100 80GB HBM3"
MIN_FEE = 10
#: A sandboxed provider that enforces every limit, with room for any default job.
OFFERED_LIMITS = OfferedLimits(
    cpu_millicores=16_000,
    memory_bytes=64 * 2**30,
    processes=65_536,
    disk_bytes=512 * 2**30,
    enforced=("cpu", "disk", "memory", "processes"),
    sandboxed=True,
)


@functools.cache
def key(label: str) -> PrivateKey:
    return PrivateKey.from_label(label)


def pub(label: str) -> bytes:
    return key(label).public_key.raw


def gpu(
    uuid: str = "GPU-00000000-0000-0000-0000-000000000001",
    *,
    name: str = H100_NAME,
    memory_gib: int = 80,
    free_gib: int | None = None,
    compute_capability: tuple[int, int] = (9, 0),
    cuda_version: int = 12040,
    healthy: bool = True,
    mig_enabled: bool = False,
    parent_uuid: str = "",
    mig_index: int = -1,
) -> GpuDevice:
    """A plausible probed GPU (or MIG unit with ``parent_uuid``); simulated iff its UUID says so.

    A negative ``free_gib`` means NVML could not tell (``-1``).
    """
    memory = memory_gib * GIB
    return GpuDevice(
        uuid=uuid,
        name=name,
        index=0,
        mig_index=mig_index,
        memory_total_bytes=memory,
        memory_free_bytes=memory if free_gib is None else max(-1, free_gib * GIB),
        utilization_pct=-1 if parent_uuid else 0,
        temperature_c=40,
        power_mw=-1 if parent_uuid else 70_000,
        compute_capability_major=compute_capability[0],
        compute_capability_minor=compute_capability[1],
        mig_enabled=mig_enabled or bool(parent_uuid),
        parent_uuid=parent_uuid,
        driver_version="550.54.15",
        cuda_version=cuda_version,
        pci_bus_id="00000000:17:00.0",
        healthy=healthy,
        health_reason="" if healthy else "nvmlDeviceGetTemperature: GPU is lost",
        simulated=uuid.startswith(SIMULATED_UUID_PREFIX),
    )


def uuid_n(n: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{n:012d}"


def announce(
    label: str,
    gpus: tuple[GpuDevice, ...] | None = None,
    *,
    price: int = 1_000,
    collateral: int = 5_000,
    stake: int = 1_000_000,
    executors: tuple[str, ...] = ("bubblewrap",),
    limits: OfferedLimits = OFFERED_LIMITS,
    busy: tuple[str, ...] = (),
    sequence: int = 1,
    issued_at_ms: int = NOW_MS,
    validity_ms: int = 60_000,
    chain_id: str = CHAIN_ID,
    signer: str | None = None,
    quote: str = "",
    quote_price: int = 0,
) -> CapacityAnnouncement:
    """``label``'s signed announcement (signed by ``signer`` instead, to forge one); ``quote``
    and ``quote_price``: priced in that asset."""
    signing_key = key(signer or label)
    ann = sign_announcement(
        signing_key,
        chain_id,
        peer_id=f"12D3KooW{label}",
        sequence=sequence,
        gpus=gpus if gpus is not None else (gpu(),),
        busy_gpu_uuids=busy,
        price_per_gpu_second=price,
        collateral=collateral,
        stake=stake,
        executors=executors,
        limits=limits,
        issued_at_ms=issued_at_ms,
        expires_at_ms=issued_at_ms + validity_ms,
        quote=quote,
        quote_price_per_gpu_second=quote_price,
    )
    if signer is not None:
        # Claim to be ``label`` while carrying ``signer``'s signature.
        ann = dataclasses.replace(ann, provider=pub(label))
    return ann


def spec_document(**overrides: Any) -> dict[str, Any]:
    """A valid job document; ``resources`` keys given in ``resources=`` are merged in."""
    doc: dict[str, Any] = {
        "name": "unit-test-job",
        "argv": ["python3", "-c", "print('hi')"],
        "max_runtime_s": 600,
        "max_price_per_gpu_second": 2_000,
        "resources": {"gpu_count": 1},
    }
    resources = overrides.pop("resources", {})
    doc["resources"] = {**doc["resources"], **resources}
    doc.update(overrides)
    return doc


def make_spec(**overrides: Any) -> JobSpec:
    return JobSpec.from_document(spec_document(**overrides))


# --- a funded chain for escrow ------------------------------------------------------------------
TEST_PARAMS = Params(min_fee=MIN_FEE, min_validator_stake=100, unbonding_period=3)
VALIDATOR = "validator-0"
FUNDED = ("alice", "bob", "carol", "dave")
BALANCE = 10**15


def funded_state() -> LedgerState:
    """Height 0 of a chain where one validator is bonded and every FUNDED label has a balance."""
    genesis = dev_genesis(
        CHAIN_ID,
        [(pub(VALIDATOR), 1_000_000)],
        [(key(label).address.raw, BALANCE) for label in FUNDED],
        TEST_PARAMS,
    )
    return genesis_state(genesis)


# --- a negotiation between "alice" (requester) and "bob" (provider) -------------------------------
REQUESTER = "alice"
PROVIDER = "bob"
PROVIDER_PRICE = 1_000
PROVIDER_COLLATERAL = 5_000
DEADLINE_HEIGHT = 50
MIN_DEADLINE_HEIGHT = 20
NONCE = b"nonce-for-tests!"
#: Two declared GPUs, as a testnet provider would sell them.
PROVIDER_GPUS = parse_gpu_spec("2xH100-80GB", "bob-node")


def provider_policy(label: str = PROVIDER, **overrides: Any) -> ProviderPolicy:
    settings: dict[str, Any] = {
        "key": key(label),
        "chain_id": CHAIN_ID,
        "price_per_gpu_second": PROVIDER_PRICE,
        "collateral": PROVIDER_COLLATERAL,
        "executors": frozenset({"bubblewrap"}),
        "quote_validity_ms": 30_000,
        "limits": OFFERED_LIMITS,
    }
    settings.update(overrides)
    return ProviderPolicy(**settings)


def offer_of(label: str, spec: JobSpec, *, price: int = PROVIDER_PRICE) -> Offer:
    """What matching makes of ``label``'s announcement of PROVIDER_GPUS (at ``price``)."""
    ann = announce(label, PROVIDER_GPUS, price=price, collateral=PROVIDER_COLLATERAL)
    [offer] = match(spec, [ann], now_ms=NOW_MS, min_provider_stake=0)
    return offer


def deal_spec() -> JobSpec:
    return make_spec(resources={"gpu_count": 2}, max_runtime_s=600, max_price_per_gpu_second=2_000)


def new_requester(
    spec: JobSpec | None = None, *, nonce: bytes = NONCE, chain_id: str = CHAIN_ID
) -> RequesterNegotiation:
    spec = spec or deal_spec()
    return RequesterNegotiation(
        key=key(REQUESTER),
        chain_id=chain_id,
        spec=spec,
        offer=offer_of(PROVIDER, spec),
        nonce=nonce,
        deadline_height=DEADLINE_HEIGHT,
        response_timeout_ms=10_000,
    )


def provider_answer(
    provider: ProviderNegotiation, request: QuoteRequest, now_ms: int = NOW_MS
) -> Quote | Refusal:
    return provider.receive_request(
        request, now_ms=now_ms, free_gpus=PROVIDER_GPUS, min_deadline_height=MIN_DEADLINE_HEIGHT
    )


@dataclasses.dataclass(frozen=True)
class Exchange:
    """Every message of one successful negotiation with nonce NONCE, for replaying and tampering."""

    request: QuoteRequest
    quote: Quote
    proposal: ContractProposal
    accepted: ContractAccepted
    contract: SignedContract


@functools.cache
def good_exchange() -> Exchange:
    requester = new_requester()
    provider = ProviderNegotiation(provider_policy())
    request = requester.start(NOW_MS)
    quote = provider_answer(provider, request)
    assert isinstance(quote, Quote)
    proposal = requester.receive(quote, NOW_MS)
    assert proposal is not None
    accepted = provider.receive_contract(proposal, NOW_MS)
    assert isinstance(accepted, ContractAccepted)
    contract = requester.receive_accepted(accepted)
    return Exchange(request, quote, proposal, accepted, contract)
