"""One valid instance of every message dcent puts on the wire, built from fixed keys (no tests here).

What docs/protocol.md's test vectors are generated from (``python -m tests.protocol_vectors``),
and the seeds the fuzz tests mutate. Everything is deterministic: Ed25519 signatures are (RFC
8032), the keys come from fixed seeds, and the chain is a real one-validator genesis whose first
block is decided by the real consensus core, so the block, its proposal, the votes and the
commit certificate are exactly what a node would send.

Keys (the seeds are what docs/protocol.md publishes):

- ``PROVIDER``, seed ``01 x 32``: the validator of the sample chain, and the provider of the
  sample market messages (its validator key signs capacity, quotes, receipts);
- ``REQUESTER``, seed ``02 x 32``: a funded account; it signs the sample transactions and the
  requester's side of the contract;
- ``NODE``, seed ``03 x 32``: the provider node's libp2p identity (its peer id).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass

from node.p2p.identity import peer_id_from_seed
from protocol.blobs.merkle import BlobManifest, leaf_hash, merkle_root
from protocol.blobs.wire import BlobReply, BlobRequest
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import Broadcast, Commit, ConsensusConfig
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    PREVOTE,
    Block,
    CommitCertificate,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
    sign_vote,
)
from protocol.contracts import ContractTerms, SignedContract, UsageReceipt
from protocol.crypto import PrivateKey
from protocol.hardware import SIMULATED_UUID_PREFIX, GpuDevice
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.tx import (
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Grant,
    GrantRevoke,
    Msg,
    OpenEscrow,
    Refund,
    Settle,
    Stake,
    Transfer,
    Unstake,
    sign_tx,
)
from protocol.market.capacity import CapacityAnnouncement, OfferedLimits, sign_announcement
from protocol.market.delivery import (
    DeliveryAck,
    DeliveryHeader,
    DeliveryReady,
    JobOutput,
    JobStarted,
    OutputBlob,
    OutputFile,
    ResultDelivery,
    blob_listing_hash,
    delivery_limit,
    output_listing_hash,
)
from protocol.market.errors import NoMatchingGpus
from protocol.market.jobspec import SOURCE_BLOB, DataInput, EnvVar, InputFile, JobSpec, Resources
from protocol.market.messages import (
    ContractAccepted,
    ContractProposal,
    Quote,
    QuoteBody,
    QuoteRequest,
    Refusal,
    sign_quote,
)
from protocol.units import DCT

CHAIN_ID = "dcent-vectors"
#: 2023-11-14T22:13:20Z: the sample chain's first block time and every "now" below.
NOW_MS = 1_700_000_000_000
PROVIDER_SEED = bytes([1]) * 32
REQUESTER_SEED = bytes([2]) * 32
NODE_SEED = bytes([3]) * 32
PROVIDER = PrivateKey.from_seed(PROVIDER_SEED)
REQUESTER = PrivateKey.from_seed(REQUESTER_SEED)
NODE_PEER_ID = peer_id_from_seed(NODE_SEED)
FEE = 10_000
GPU_UUID = SIMULATED_UUID_PREFIX + "00000000-0000-0000-0000-000000000001"


def genesis() -> Genesis:
    """One validator (``PROVIDER``, 100 DCT bonded), ``REQUESTER`` funded with 1,000 DCT."""
    return dev_genesis(
        CHAIN_ID,
        [(PROVIDER.public_key.raw, 100 * DCT)],
        [(REQUESTER.address.raw, 1_000 * DCT), (PROVIDER.address.raw, 1_000 * DCT)],
        Params(min_fee=FEE),
    )


def tx(nonce: int, msg: Msg, key: PrivateKey = REQUESTER) -> bytes:
    return sign_tx(key, CHAIN_ID, nonce, FEE, msg)


def transfer_tx() -> bytes:
    return tx(1, Transfer(to=PROVIDER.address.raw, amount=5 * DCT))


@dataclass(frozen=True)
class DecidedHeight:
    """What the consensus core of the only validator sent and committed at height 1."""

    proposal: Proposal
    prevote: Vote
    precommit: Vote
    block: Block
    certificate: CommitCertificate


@functools.cache
def decided_height() -> DecidedHeight:
    """Height 1 of the sample chain, with :func:`transfer_tx` in it, decided by the real core."""
    doc = genesis()
    app = LedgerApp(genesis_state(doc), genesis_hash=doc.genesis_hash(), tx_source=lambda: [transfer_tx()])
    core = ConsensusCore(app, key=PROVIDER, config=ConsensusConfig())
    effects = core.start(NOW_MS)
    sent = [effect.message for effect in effects if isinstance(effect, Broadcast)]
    commits = [effect for effect in effects if isinstance(effect, Commit)]
    assert len(commits) == 1, "a one-validator chain decides its first height at once"
    proposal = next(m for m in sent if isinstance(m, Proposal))
    votes = [m for m in sent if isinstance(m, Vote)]
    prevote = next(v for v in votes if v.type == PREVOTE)
    precommit = next(v for v in votes if v.type != PREVOTE)
    return DecidedHeight(proposal, prevote, precommit, commits[0].block, commits[0].certificate)


def committed_block() -> CommittedBlock:
    decided = decided_height()
    return CommittedBlock(decided.block, decided.certificate)


def evidence() -> DuplicateVoteEvidence:
    """Two prevotes of the validator at height 1, round 0, for two different blocks."""
    first = sign_vote(PROVIDER, CHAIN_ID, 1, 0, PREVOTE, hashlib.sha256(b"block a").digest())
    second = sign_vote(PROVIDER, CHAIN_ID, 1, 0, PREVOTE, hashlib.sha256(b"block b").digest())
    return DuplicateVoteEvidence.from_votes(first, second)


def sync_request() -> SyncRequest:
    return SyncRequest(from_height=1, max_blocks=32)


def sync_response() -> SyncResponse:
    return SyncResponse((committed_block(),))


# --- market -----------------------------------------------------------------------------------
def gpu() -> GpuDevice:
    memory = 80 * 2**30
    return GpuDevice(
        uuid=GPU_UUID,
        name="H100 80GB",
        index=0,
        mig_index=-1,
        memory_total_bytes=memory,
        memory_free_bytes=memory,
        utilization_pct=-1,
        temperature_c=-1,
        power_mw=-1,
        compute_capability_major=9,
        compute_capability_minor=0,
        mig_enabled=False,
        parent_uuid="",
        driver_version="550.54.15",
        cuda_version=12040,
        pci_bus_id="",
        healthy=True,
        health_reason="",
        simulated=True,
    )


def announcement() -> CapacityAnnouncement:
    return sign_announcement(
        PROVIDER,
        CHAIN_ID,
        peer_id=NODE_PEER_ID,
        sequence=NOW_MS,
        gpus=(gpu(),),
        busy_gpu_uuids=(),
        price_per_gpu_second=1_000,
        collateral=10 * DCT,
        stake=100 * DCT,
        executors=("bubblewrap",),
        limits=OfferedLimits(
            cpu_millicores=16_000,
            memory_bytes=64 * 2**30,
            processes=32_768,
            disk_bytes=500 * 2**30,
            enforced=("cpu", "disk", "memory", "processes"),
            sandboxed=True,
        ),
        issued_at_ms=NOW_MS,
        expires_at_ms=NOW_MS + 30_000,
    )


def job_spec() -> JobSpec:
    return JobSpec(
        name="hello",
        argv=("python3", "run.py"),
        image="",
        env=(EnvVar("EPOCHS", "3"),),
        inputs=(InputFile("run.py", b"print('hello')\n"),),
        resources=Resources(
            gpu_count=1,
            min_memory_bytes=16 * 2**30,
            model_pattern="*H100*",
            min_compute_capability_major=8,
            min_compute_capability_minor=0,
            min_cuda_version=12000,
        ),
        max_runtime_s=60,
        max_price_per_gpu_second=2_000,
        output_limit_bytes=2**20,
        data=(DataInput("data/train.bin", SOURCE_BLOB, DATA_CID, "", b"", 200 * 2**20),),
    )


#: A dataset by content id in the sample spec, and the outputs of a blobs job.
DATA_CID = hashlib.sha256(b"dcent sample dataset").digest()
OUTPUT_BLOBS = (
    OutputBlob("model.bin", 500 * 2**20, hashlib.sha256(b"dcent sample model").digest()),
    OutputBlob("metrics.json", 42, hashlib.sha256(b"dcent sample metrics").digest()),
)


def blobs_delivery() -> ResultDelivery:
    """A delivery of a job whose outputs come as blobs: the receipt signs their listing."""
    blobs = tuple(sorted(OUTPUT_BLOBS, key=lambda item: item.path))
    signed = dataclasses.replace(receipt(), output_hash=blob_listing_hash(blobs))
    return ResultDelivery(
        receipt=signed,
        provider_sig=signed.sign(PROVIDER),
        files=(),
        stdout=b"",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        outputs_truncated=False,
        timed_out=False,
        blobs=blobs,
    )


def quote_request() -> QuoteRequest:
    return QuoteRequest(
        chain_id=CHAIN_ID,
        spec=job_spec(),
        requester=REQUESTER.public_key.raw,
        nonce=bytes(range(16)),
        deadline_height=200,
    )


def terms() -> ContractTerms:
    request = quote_request()
    return ContractTerms(
        chain_id=CHAIN_ID,
        requester=REQUESTER.public_key.raw,
        provider=PROVIDER.public_key.raw,
        job_hash=request.spec.job_hash(),
        gpu_uuids=(GPU_UUID,),
        price_per_gpu_second=1_000,
        max_gpu_seconds=request.spec.max_gpu_seconds,
        collateral=10 * DCT,
        deadline_height=request.deadline_height,
        salt=request.nonce,
    )


def quote() -> Quote:
    return sign_quote(PROVIDER, QuoteBody(quote_request().request_hash(), terms(), NOW_MS + 30_000))


def contract_proposal() -> ContractProposal:
    return ContractProposal(terms(), terms().sign(REQUESTER))


def contract_accepted() -> ContractAccepted:
    return ContractAccepted(terms().contract_hash(), terms().sign(PROVIDER))


def signed_contract() -> SignedContract:
    return SignedContract(terms(), terms().sign(REQUESTER), terms().sign(PROVIDER))


def refusal() -> Refusal:
    return Refusal.from_error(NoMatchingGpus("fewer than 1 free GPUs meet the job's resources"))


OUTPUTS = {"result.txt": b"hello\n"}


def receipt() -> UsageReceipt:
    return UsageReceipt(
        chain_id=CHAIN_ID,
        contract_hash=terms().contract_hash(),
        outcome="completed",
        gpu_ms=12_000,
        exit_status=0,
        output_hash=output_listing_hash(OUTPUTS),
    )


def delivery() -> ResultDelivery:
    return ResultDelivery(
        receipt=receipt(),
        provider_sig=receipt().sign(PROVIDER),
        files=tuple(OutputFile(path, content) for path, content in sorted(OUTPUTS.items())),
        stdout=b"hello\n",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        outputs_truncated=False,
        timed_out=False,
    )


def delivery_header() -> DeliveryHeader:
    """The first frame of the sample delivery (``/dcent/result/2.0.0``)."""
    return DeliveryHeader(receipt().contract_hash, len(delivery().encode()))


def delivery_ready() -> DeliveryReady:
    """The requester's go-ahead for the sample delivery: up to the job's delivery limit."""
    return DeliveryReady(terms().contract_hash(), delivery_limit(job_spec().output_limit_bytes))


def delivery_ack() -> DeliveryAck:
    return DeliveryAck(terms().contract_hash(), receipt().sign(REQUESTER))


def job_output() -> JobOutput:
    """A frame of live output for the sample contract (``/dcent/joblog/1.0.0``)."""
    return JobOutput(receipt().contract_hash, b"hello\n", b"")


def job_started() -> JobStarted:
    return JobStarted.sign(PROVIDER, terms())


# --- transactions of every kind ---------------------------------------------------------------
def txs_of_every_kind() -> dict[str, bytes]:
    """One signed transaction per kind (valid to decode; not all would apply in one state)."""
    contract_hash = terms().contract_hash()
    provider = PROVIDER
    return {
        "transfer": transfer_tx(),
        "stake": tx(2, Stake(amount=10 * DCT)),
        "unstake": tx(3, Unstake(amount=DCT)),
        "escrow_open": tx(4, OpenEscrow(signed_contract())),
        "escrow_settle": tx(
            5, Settle(receipt(), receipt().sign(PROVIDER), receipt().sign(REQUESTER)), provider
        ),
        "escrow_claim": tx(6, EscrowClaim(receipt(), receipt().sign(PROVIDER)), provider),
        "escrow_finalize": tx(7, EscrowFinalize(contract_hash), provider),
        "escrow_dispute": tx(8, EscrowDispute(contract_hash)),
        "escrow_refund": tx(9, Refund(contract_hash)),
        "gov_propose": tx(10, GovPropose(param="min_fee", value=20_000, deposit=10 * DCT)),
        "gov_vote": tx(11, GovVote(proposal_id=1, option="yes"), provider),
        "grant": tx(12, Grant(PROVIDER.address.raw, 50 * DCT, 100_000, ("escrow_open",))),
        "grant_revoke": tx(13, GrantRevoke(PROVIDER.address.raw)),
    }


# --- blobs ------------------------------------------------------------------------------------
BLOB = b"dcent" * 100


def blob_manifest() -> BlobManifest:
    chunk_size = 1 << 16
    chunks = [BLOB[i : i + chunk_size] for i in range(0, len(BLOB), chunk_size)]
    return BlobManifest(
        size=len(BLOB), chunk_size=chunk_size, root=merkle_root([leaf_hash(c) for c in chunks])
    )


def blob_requests() -> dict[str, BlobRequest]:
    cid = blob_manifest().content_id()
    return {
        "have": BlobRequest.have(cid),
        "leaves": BlobRequest.leaves(cid, 0, 1),
        "chunks": BlobRequest.chunks(cid, 0, 1),
    }


def blob_replies() -> dict[str, BlobReply]:
    return {"ok": BlobReply(0, ""), "not_here": BlobReply(1341, "no complete copy of this blob here")}
