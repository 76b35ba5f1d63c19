"""Result delivery, ``/dcent/result/2.0.0``: the provider's outputs and signed usage receipt, and
the requester's countersignature.

One delivery is one stream, provider to requester, header first::

    provider                                            requester
    DeliveryHeader(contract_hash, size)              ->
                                                     <- DeliveryReady(contract_hash, max_bytes)
                                                        or Refusal(code, message), then reset
    ResultDelivery(receipt, provider_sig, files, logs) ->   (one frame of exactly ``size`` bytes)
                                                     <- DeliveryAck(contract hash, requester_sig)
                                                        or Refusal(code, message)

The header lets the requester refuse before it reads a byte of the body: a delivery for no open
contract of its own, from another peer than the contract's provider, or larger than
:func:`delivery_limit` of the job's output limit. (Version 1 sent the body at once, so a stranger
could make a node read a quarter of a gigabyte before anything was checked.)

The requester countersigns only what it can check itself: the receipt is for this contract and
chain, signed by the contract's provider, within the contract's GPU-seconds (the receipt meters
GPU-milliseconds), and the files it received hash to the receipt's ``output_hash`` (:func:`output_listing_hash`, a hash anyone holding
the files can recompute). It cannot check the metering beyond the contract's cap; the ledger pays by the
receipt's outcome, never more than the maximum cost (:mod:`protocol.ledger.escrow`). A refused delivery leaves the provider the unilateral
path: claim with its own signature, which the requester may dispute (see
:mod:`protocol.ledger.escrow`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.contracts import HASH_LEN, ContractTerms, UsageReceipt
from protocol.crypto import SIGNATURE_LEN, PrivateKey, verify
from protocol.encoding import DecodeError, Record, decode, encode, sign_bytes
from protocol.market.errors import (
    ForgedReceipt,
    MalformedMessage,
    OutputHashMismatch,
    OutputModeMismatch,
    ReceiptForOtherContract,
    ReceiptOverLimit,
)
from protocol.market.messages import Refusal

RESULT_PROTOCOL_ID = "/dcent/result/2.0.0"
OUTPUT_LISTING_DOMAIN = "dcent/outputs/v1"
#: The listing of outputs returned as blobs: what the receipt's ``output_hash`` signs for a job
#: whose spec says ``output_mode = "blobs"``.
BLOB_LISTING_DOMAIN = "dcent/outputs/blobs/v1"
CONTENT_ID_LEN = 32
MAX_OUTPUT_FILES = 4096
MAX_OUTPUT_PATH_BYTES = 1024
#: Logs travel capped as the executor capped them; this bounds what a peer may send regardless.
MAX_LOG_BYTES = 4 * 1024 * 1024
#: A delivery header or a ready answer is a few dozen bytes.
MAX_DELIVERY_HEADER_BYTES = 256
#: Encoding overhead of the delivery envelope and of each output file's entry (besides its path).
_ENVELOPE_BYTES = 4096
_PER_FILE_BYTES = 32
_INT63_MAX = 2**63 - 1


def delivery_limit(output_limit_bytes: int) -> int:
    """The largest delivery frame a requester takes for a job allowed ``output_limit_bytes`` of
    outputs: the outputs, both logs at their cap, and the encoding's overhead at the most files."""
    files = MAX_OUTPUT_FILES * (MAX_OUTPUT_PATH_BYTES + _PER_FILE_BYTES)
    return output_limit_bytes + 2 * MAX_LOG_BYTES + files + _ENVELOPE_BYTES


#: What one output blob's entry adds to a delivery besides its path (content id, size, keys).
_PER_BLOB_BYTES = 96


def blob_delivery_limit() -> int:
    """The largest delivery of a job whose outputs come as blobs: logs, and a listing of the most
    entries at the longest paths (the outputs themselves travel on ``/dcent/blob/1.0.0``)."""
    return delivery_limit(MAX_OUTPUT_FILES * _PER_BLOB_BYTES)


def output_listing_hash(files: Mapping[str, bytes]) -> bytes:
    """SHA-256 over the canonical listing of ``files``: anyone holding the files can recompute it.

    The listing is the canonical msgpack of ``["dcent/outputs/v1", [[path, size, sha256(content)],
    ...]]`` with paths in ascending order. An empty output set has a hash too.
    """
    listing = [[path, len(files[path]), hashlib.sha256(files[path]).digest()] for path in sorted(files)]
    return hashlib.sha256(encode([OUTPUT_LISTING_DOMAIN, listing])).digest()


def blob_listing_hash(blobs: Sequence[OutputBlob]) -> bytes:
    """SHA-256 over the canonical listing of outputs returned as blobs: ``["dcent/outputs/blobs/v1",
    [[path, size, content_id], ...]]``, paths ascending. A content id binds its blob's Merkle root
    and size (:mod:`protocol.blobs.merkle`), so a receipt that signs this hash signs every output's
    root: the requester verifies each chunk it fetches against it."""
    listing = [[item.path, item.size, item.content_id] for item in sorted(blobs, key=lambda b: b.path)]
    return hashlib.sha256(encode([BLOB_LISTING_DOMAIN, listing])).digest()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedMessage(message)


@dataclass(frozen=True, slots=True)
class OutputFile(Record):
    path: str
    content: bytes

    def __post_init__(self) -> None:
        _check_output_path(self.path)


def _check_output_path(path: str) -> None:
    size = len(path.encode("utf-8", "surrogatepass"))
    parts = path.split("/")
    _check(
        0 < size <= MAX_OUTPUT_PATH_BYTES
        and "\x00" not in path
        and not path.startswith("/")
        and not any(part in ("", ".", "..") for part in parts),
        f"output path {path[:64]!r}: a relative path without '', '.' or '..' parts",
    )


@dataclass(frozen=True, slots=True)
class OutputBlob(Record):
    """One output returned by reference: its path under ``out/``, its size and its content id."""

    path: str
    size: int
    content_id: bytes

    def __post_init__(self) -> None:
        _check_output_path(self.path)
        _check(0 <= self.size <= _INT63_MAX, "output blob size: not negative")
        _check(len(self.content_id) == CONTENT_ID_LEN, "output blob content_id: 32 bytes")


@dataclass(frozen=True, slots=True)
class ResultDelivery(Record):
    receipt: UsageReceipt
    provider_sig: bytes
    files: tuple[OutputFile, ...]
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    outputs_truncated: bool
    timed_out: bool
    #: Outputs by reference (``output_mode = "blobs"``); then ``files`` is empty.
    blobs: tuple[OutputBlob, ...] = ()

    def __post_init__(self) -> None:
        _check(len(self.provider_sig) == SIGNATURE_LEN, "delivery.provider_sig: a 64-byte signature")
        _check(len(self.files) <= MAX_OUTPUT_FILES, f"delivery.files: at most {MAX_OUTPUT_FILES}")
        _check(len(self.blobs) <= MAX_OUTPUT_FILES, f"delivery.blobs: at most {MAX_OUTPUT_FILES}")
        _check(not (self.files and self.blobs), "delivery: outputs inline or as blobs, not both")
        paths = [item.path for item in self.files]
        _check(paths == sorted(set(paths)), "delivery.files: ascending paths, each once")
        blob_paths = [item.path for item in self.blobs]
        _check(blob_paths == sorted(set(blob_paths)), "delivery.blobs: ascending paths, each once")
        _check(
            len(self.stdout) <= MAX_LOG_BYTES and len(self.stderr) <= MAX_LOG_BYTES,
            f"delivery logs: at most {MAX_LOG_BYTES} bytes each",
        )

    def file_map(self) -> dict[str, bytes]:
        return {item.path: item.content for item in self.files}

    def output_bytes(self) -> int:
        return sum(len(item.content) for item in self.files) + sum(item.size for item in self.blobs)


@dataclass(frozen=True, slots=True)
class DeliveryAck(Record):
    contract_hash: bytes
    requester_sig: bytes

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "ack.contract_hash: a 32-byte hash")
        _check(len(self.requester_sig) == SIGNATURE_LEN, "ack.requester_sig: a 64-byte signature")


@dataclass(frozen=True, slots=True)
class DeliveryHeader(Record):
    """The first frame of a delivery: whose contract, and the size of the delivery frame."""

    contract_hash: bytes
    size: int

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "header.contract_hash: a 32-byte hash")
        _check(0 < self.size <= _INT63_MAX, "header.size: a positive frame size")


@dataclass(frozen=True, slots=True)
class DeliveryReady(Record):
    """The requester takes the delivery the header announced, up to ``max_bytes``."""

    contract_hash: bytes
    max_bytes: int

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "ready.contract_hash: a 32-byte hash")
        _check(0 < self.max_bytes <= _INT63_MAX, "ready.max_bytes: positive")


def check_delivery(
    terms: ContractTerms, delivery: ResultDelivery, *, output_limit_bytes: int, blobs: bool = False
) -> None:
    """Would the requester of ``terms`` countersign ``delivery``? Raises a
    :class:`~protocol.market.errors.DeliveryRejected` subclass naming what is wrong.

    With ``blobs`` (the spec's ``output_mode = "blobs"``) the outputs come as content ids whose
    listing must hash to the receipt's ``output_hash``; the requester countersigns only after it
    has fetched every one of them, each chunk verified against its content id."""
    receipt = delivery.receipt
    if receipt.contract_hash != terms.contract_hash() or receipt.chain_id != terms.chain_id:
        raise ReceiptForOtherContract("receipt.contract_hash: not the contract this result is for")
    if not receipt.verify(terms.provider, delivery.provider_sig):
        raise ForgedReceipt("delivery.provider_sig: not the contract provider's signature over the receipt")
    if receipt.gpu_ms > terms.max_gpu_seconds * 1000:
        raise ReceiptOverLimit(
            f"receipt.gpu_ms: {receipt.gpu_ms} is over the contract's {terms.max_gpu_seconds} GPU-seconds"
        )
    if delivery.output_bytes() > output_limit_bytes:
        raise ReceiptOverLimit(
            f"delivery.files: {delivery.output_bytes()} bytes, the job allows {output_limit_bytes}"
        )
    if blobs:
        if delivery.files:
            raise OutputModeMismatch("delivery.files: this job's outputs come back as blobs")
        if blob_listing_hash(delivery.blobs) != receipt.output_hash:
            raise OutputHashMismatch(
                "delivery.blobs: their listing does not hash to the receipt's output_hash"
            )
        return
    if delivery.blobs:
        raise OutputModeMismatch("delivery.blobs: this job's outputs come back inline")
    if output_listing_hash(delivery.file_map()) != receipt.output_hash:
        raise OutputHashMismatch("delivery.files: they do not hash to the receipt's output_hash")


DeliveryAnswer = DeliveryAck | DeliveryReady | Refusal
_ANSWER_TAGS: dict[str, type[DeliveryAck] | type[DeliveryReady] | type[Refusal]] = {
    "ack": DeliveryAck,
    "ready": DeliveryReady,
    "refusal": Refusal,
}


def encode_answer(answer: DeliveryAnswer) -> bytes:
    tag = next(tag for tag, cls in _ANSWER_TAGS.items() if isinstance(answer, cls))
    return encode({"body": answer.to_wire(), "type": tag})


def decode_answer(data: bytes) -> DeliveryAnswer:
    """Decode the requester's answer. Raises :class:`MalformedMessage` only."""
    try:
        value = decode(data)
        if type(value) is not dict or set(value) != {"body", "type"}:
            raise MalformedMessage("a delivery answer is a map of body and type")
        cls = _ANSWER_TAGS.get(value["type"]) if type(value["type"]) is str else None
        if cls is None:
            raise MalformedMessage("unknown delivery answer type")
        answer = cls.from_wire(value["body"])
        assert isinstance(answer, DeliveryAck | DeliveryReady | Refusal)
        return answer
    except MalformedMessage:
        raise
    except DecodeError as exc:
        raise MalformedMessage(f"malformed delivery answer: {exc.message}") from None


def decode_header(data: bytes) -> DeliveryHeader:
    """Decode a delivery header. Raises :class:`MalformedMessage` only."""
    try:
        return DeliveryHeader.decode(data)
    except MalformedMessage:
        raise
    except DecodeError as exc:
        raise MalformedMessage(f"malformed delivery header: {exc.message}") from None


def decode_delivery(data: bytes) -> ResultDelivery:
    """Decode a delivery. Raises :class:`MalformedMessage` only."""
    try:
        return ResultDelivery.decode(data)
    except MalformedMessage:
        raise
    except DecodeError as exc:
        raise MalformedMessage(f"malformed result delivery: {exc.message}") from None


# --- progress ---------------------------------------------------------------------------------
STATUS_PROTOCOL_ID = "/dcent/jobstatus/1.0.0"
STATUS_DOMAIN = "job_status"
JOB_STARTED = "running"


@dataclass(frozen=True, slots=True)
class JobStarted(Record):
    """The provider tells the requester its job's process started (informational: it moves the
    requester's view from escrowed to running; nothing is paid on it)."""

    contract_hash: bytes
    provider_sig: bytes

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "started.contract_hash: a 32-byte hash")
        _check(len(self.provider_sig) == SIGNATURE_LEN, "started.provider_sig: a 64-byte signature")

    @staticmethod
    def signed_bytes(chain_id: str, contract_hash: bytes) -> bytes:
        return sign_bytes(chain_id, STATUS_DOMAIN, encode([JOB_STARTED, contract_hash]))

    @classmethod
    def sign(cls, key: PrivateKey, terms: ContractTerms) -> JobStarted:
        contract_hash = terms.contract_hash()
        return cls(contract_hash, key.sign(cls.signed_bytes(terms.chain_id, contract_hash)))

    def verify(self, terms: ContractTerms) -> bool:
        return self.contract_hash == terms.contract_hash() and verify(
            terms.provider, self.provider_sig, self.signed_bytes(terms.chain_id, self.contract_hash)
        )


# --- live output ------------------------------------------------------------------------------
LOG_PROTOCOL_ID = "/dcent/joblog/1.0.0"
#: One frame of live output carries at most this much of each stream.
MAX_LIVE_CHUNK_BYTES = 64 * 1024
MAX_LIVE_FRAME_BYTES = 2 * MAX_LIVE_CHUNK_BYTES + 256


@dataclass(frozen=True, slots=True)
class JobOutput(Record):
    """What a running job printed since the last frame, streamed by its provider to its
    requester on ``/dcent/joblog/1.0.0`` as it prints (one stream per job, frames in order).
    Informational, like :class:`JobStarted`: the delivery carries the complete capped logs, and
    nothing is paid on these."""

    contract_hash: bytes
    stdout: bytes
    stderr: bytes

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "output.contract_hash: a 32-byte hash")
        _check(
            len(self.stdout) <= MAX_LIVE_CHUNK_BYTES and len(self.stderr) <= MAX_LIVE_CHUNK_BYTES,
            f"output: at most {MAX_LIVE_CHUNK_BYTES} bytes of each stream per frame",
        )
        _check(bool(self.stdout or self.stderr), "output: a frame carries some output")


def decode_output(data: bytes) -> JobOutput:
    """Decode one live-output frame. Raises :class:`MalformedMessage` only."""
    try:
        return JobOutput.decode(data)
    except MalformedMessage:
        raise
    except DecodeError as exc:
        raise MalformedMessage(f"malformed job output: {exc.message}") from None
