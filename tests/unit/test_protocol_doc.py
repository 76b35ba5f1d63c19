"""docs/protocol.md against the code: every test vector in it, and every protocol id and topic.

The vectors are parsed out of the document here, with a parser of our own (not the generator's
code), and checked against the code that runs on the wire: the bytes decode to the stated value
and the value encodes to the bytes; the code's decoder accepts the bytes and gives the same
record; the identifying hash is the code's; every signature's sign-bytes are what the code
computes, the signature verifies, and it is what the published seeds sign. Then every protocol
id and topic string in the code (``/dcent/...``, the libp2p protocols the host negotiates) must
be named in the document.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify_push.identify_push import ID_PUSH as IDENTIFY_PUSH_ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID

from node.p2p.framing import FRAME_HEADER
from node.p2p.identity import peer_id_from_seed
from node.services import consensus_wire
from protocol.blobs.merkle import BlobManifest
from protocol.blobs.wire import BlobReply, BlobRequest
from protocol.consensus.messages import (
    CommitCertificate,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
)
from protocol.contracts import SignedContract, UsageReceipt
from protocol.crypto import PrivateKey, address_of, verify
from protocol.encoding import DecodeError, decode, encode, sign_bytes
from protocol.ledger.tx import EscrowClaim, OpenEscrow, Settle, decode_tx
from protocol.market import delivery as delivery_wire
from protocol.market import messages as market_wire
from protocol.market.capacity import decode_announcement

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
CHAIN_ID = "dcent-vectors"


# --------------------------------------------------------------------------------------------
# Parsing the document
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocVector:
    name: str
    decoder: str
    data: bytes
    value: object
    #: For transactions: the decoded ``body``.
    body: object
    digest: bytes | None
    #: (public key, sign-bytes, signature)
    signatures: tuple[tuple[bytes, bytes, bytes], ...]


class DiagParser:
    """CBOR diagnostic notation, the subset the document uses: h'hex' (whitespace allowed
    inside), JSON strings, integers, true/false, arrays and maps."""

    _TOKEN = re.compile(
        r"""\s*(?:(?P<hex>h'[0-9a-fA-F\s]*')|(?P<str>"(?:[^"\\]|\\.)*")|(?P<int>-?\d+)"""
        r"""|(?P<word>true|false)|(?P<punct>[\[\]{}:,]))"""
    )

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = self._TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"cannot parse diagnostic notation at {text[position : position + 40]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def parse(self) -> object:
        value = self._value()
        if self.index != len(self.tokens):
            raise ValueError("trailing tokens after the value")
        return value

    def _next(self) -> tuple[str, str]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _expect(self, punct: str) -> None:
        kind, text = self._next()
        if (kind, text) != ("punct", punct):
            raise ValueError(f"expected {punct!r}, got {text!r}")

    def _peek(self) -> str:
        return self.tokens[self.index][1]

    def _value(self) -> object:
        kind, text = self._next()
        if kind == "hex":
            return bytes.fromhex("".join(text[2:-1].split()))
        if kind == "str":
            return json.loads(text)
        if kind == "int":
            return int(text)
        if kind == "word":
            return text == "true"
        if text == "[":
            items: list[object] = []
            while self._peek() != "]":
                items.append(self._value())
                if self._peek() == ",":
                    self._next()
            self._expect("]")
            return items
        if text == "{":
            entries: dict[str, object] = {}
            while self._peek() != "}":
                key = self._value()
                assert isinstance(key, str) and key not in entries, f"bad or repeated key {key!r}"
                self._expect(":")
                entries[key] = self._value()
                if self._peek() == ",":
                    self._next()
            self._expect("}")
            return entries
        raise ValueError(f"unexpected {text!r}")


_BLOCK = re.compile(r"<!-- vector (?P<name>[a-z0-9-]+) -->\n```vector\n(?P<body>.*?)```", re.DOTALL)
_FIELD = re.compile(r"^(?P<key>[a-z_]+):(?P<rest>.*)$")


def _fields(body: str) -> dict[str, str]:
    """``key: value`` lines; indented lines continue the previous field."""
    fields: dict[str, str] = {}
    current = None
    for line in body.splitlines():
        match = _FIELD.match(line)
        if match and not line.startswith(" "):
            current = match["key"]
            fields[current] = match["rest"].strip()
        elif current is not None:
            fields[current] += "\n" + line
        elif line.strip():
            raise ValueError(f"text outside a field: {line!r}")
    return fields


def parse_vectors(text: str) -> list[DocVector]:
    vectors = []
    for block in _BLOCK.finditer(text):
        fields = _fields(block["body"])
        assert fields["name"] == block["name"], f"vector {block['name']} names itself {fields['name']!r}"
        signatures = ()
        if "signatures" in fields:
            entries = DiagParser(fields["signatures"]).parse()
            assert isinstance(entries, list)
            signatures = tuple((e["key"], e["signed"], e["sig"]) for e in entries)  # type: ignore[index]
        vectors.append(
            DocVector(
                name=fields["name"],
                decoder=fields["decoder"],
                data=bytes.fromhex("".join(fields["hex"].split())),
                value=DiagParser(fields["value"]).parse(),
                body=DiagParser(fields["body"]).parse() if "body" in fields else None,
                digest=bytes.fromhex(fields["digest"]) if "digest" in fields else None,
                signatures=signatures,
            )
        )
    return vectors


DOC_TEXT = DOC.read_text()
VECTORS = parse_vectors(DOC_TEXT)


# --------------------------------------------------------------------------------------------
# What the code says about each kind of vector
# --------------------------------------------------------------------------------------------

#: A signature as the code sees it: (signer's public key or address, or None when the message does
#: not name its signer; sign-bytes, or None when they cannot be derived from the message alone;
#: the signature).
CodeSignature = tuple[bytes | None, bytes | None, bytes]


def _vote_signature(vote: Vote) -> CodeSignature:
    return (vote.validator, vote.sign_bytes(CHAIN_ID), vote.signature)


def _certificate_signatures(certificate: CommitCertificate) -> list[CodeSignature]:
    return [_vote_signature(vote) for vote in certificate.precommits()]


def _contract_signatures(contract: SignedContract) -> list[CodeSignature]:
    terms = contract.terms
    signed = sign_bytes(terms.chain_id, "contract", terms.encode())
    return [
        (terms.requester, signed, contract.requester_sig),
        (terms.provider, signed, contract.provider_sig),
    ]


def _receipt_signed(receipt: UsageReceipt) -> bytes:
    return sign_bytes(receipt.chain_id, "receipt", receipt.encode())


def _consensus(message: object) -> tuple[object, bytes | None, list[CodeSignature]]:
    if isinstance(message, Vote):
        return consensus_wire.encode_message(message), None, [_vote_signature(message)]
    if isinstance(message, DuplicateVoteEvidence):
        sigs = [_vote_signature(message.vote_a), _vote_signature(message.vote_b)]
        return consensus_wire.encode_message(message), None, sigs
    if isinstance(message, Proposal):
        sig = (message.block.proposer, message.sign_bytes(CHAIN_ID), message.signature)
        return consensus_wire.encode_message(message), message.block.hash, [sig]
    assert isinstance(message, CommittedBlock)
    encoded = consensus_wire.encode_message(message)
    return encoded, message.block.hash, _certificate_signatures(message.certificate)


def _tx(raw: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    tx = decode_tx(raw)
    sigs: list[CodeSignature] = [(tx.public_key, sign_bytes(tx.chain_id, "tx", tx.body), tx.signature)]
    msg = tx.msg
    if isinstance(msg, OpenEscrow):
        sigs += _contract_signatures(msg.contract)
    elif isinstance(msg, Settle):
        signed = _receipt_signed(msg.receipt)
        sigs += [(None, signed, msg.provider_sig), (None, signed, msg.requester_sig)]
    elif isinstance(msg, EscrowClaim):
        sigs += [(None, _receipt_signed(msg.receipt), msg.provider_sig)]
    return tx.raw, hashlib.sha256(raw).digest(), sigs


def _market(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    message = market_wire.decode_message(data)
    encoded = market_wire.encode_message(message)
    if isinstance(message, market_wire.QuoteRequest):
        return encoded, message.request_hash(), []
    if isinstance(message, market_wire.Quote):
        terms = message.terms
        signed = sign_bytes(terms.chain_id, "quote", message.body.encode())
        return encoded, None, [(terms.provider, signed, message.provider_sig)]
    if isinstance(message, market_wire.ContractProposal):
        terms = message.terms
        signed = sign_bytes(terms.chain_id, "contract", terms.encode())
        return encoded, terms.contract_hash(), [(terms.requester, signed, message.requester_sig)]
    if isinstance(message, market_wire.ContractAccepted):
        return encoded, None, [(None, None, message.provider_sig)]
    return encoded, None, []


def _delivery(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    delivery = delivery_wire.decode_delivery(data)
    # Outputs as blobs are signed through their listing; inline ones through their contents.
    digest = (
        delivery_wire.blob_listing_hash(delivery.blobs)
        if delivery.blobs
        else delivery_wire.output_listing_hash(delivery.file_map())
    )
    return delivery.encode(), digest, [(None, _receipt_signed(delivery.receipt), delivery.provider_sig)]


def _delivery_answer(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    answer = delivery_wire.decode_answer(data)
    sigs: list[CodeSignature] = []
    if isinstance(answer, delivery_wire.DeliveryAck):
        sigs = [(None, None, answer.requester_sig)]
    return delivery_wire.encode_answer(answer), None, sigs


def _job_started(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    notice = delivery_wire.JobStarted.decode(data)
    signed = delivery_wire.JobStarted.signed_bytes(CHAIN_ID, notice.contract_hash)
    return notice.encode(), None, [(None, signed, notice.provider_sig)]


def _capacity(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    ann = decode_announcement(data)
    signed = sign_bytes(CHAIN_ID, "capacity", ann.body())
    return ann.encode(), ann.announcement_hash(), [(ann.provider, signed, ann.signature)]


def _record(
    cls: type, digest: Callable[[object], bytes] | None = None
) -> Callable[[bytes], tuple[object, bytes | None, list[CodeSignature]]]:
    def run(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
        record = cls.decode(data)  # type: ignore[attr-defined]
        sigs: list[CodeSignature] = []
        if isinstance(record, SyncResponse):
            for committed in record.blocks:
                sigs += _certificate_signatures(committed.certificate)
        return record.encode(), digest(record) if digest else None, sigs

    return run


def _tx_batch(data: bytes) -> tuple[object, bytes | None, list[CodeSignature]]:
    batch = decode(data)
    assert type(batch) is list and all(type(raw) is bytes and decode_tx(raw) for raw in batch)
    return encode(batch), None, []


#: decoder name -> bytes -> (the code's re-encoding, the code's digest, the code's signatures).
DECODERS: dict[str, Callable[[bytes], tuple[object, bytes | None, list[CodeSignature]]]] = {
    "capacity": _capacity,
    "consensus": lambda data: _consensus(consensus_wire.decode_message(data)),
    "sync_request": _record(SyncRequest),
    "sync_response": _record(SyncResponse),
    "tx": _tx,
    "tx_batch": _tx_batch,
    "market": _market,
    "delivery": _delivery,
    "delivery_answer": _delivery_answer,
    "job_started": _job_started,
    "delivery_header": _record(delivery_wire.DeliveryHeader),
    "job_output": _record(delivery_wire.JobOutput),
    "blob_request": _record(BlobRequest),
    "blob_reply": _record(BlobReply),
    "blob_manifest": _record(BlobManifest, lambda manifest: manifest.content_id()),  # type: ignore[attr-defined]
}
MESSAGE_VECTORS = [v for v in VECTORS if v.decoder in DECODERS]
KEY_VECTORS = [v for v in VECTORS if v.decoder == "key"]
SEEDS = {PrivateKey.from_seed(v.data).public_key.raw: PrivateKey.from_seed(v.data) for v in KEY_VECTORS}


def test_the_document_has_vectors_of_every_kind() -> None:
    decoders = {v.decoder for v in VECTORS}
    assert decoders == {*DECODERS, "key", "frame", "sign_bytes"}
    assert len({v.name for v in VECTORS}) == len(VECTORS), "two vectors share a name"
    # Every block marker holds a vector: none left empty.
    assert DOC_TEXT.count("<!-- vector ") == len(VECTORS)


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=[v.name for v in MESSAGE_VECTORS])
def test_message_vector_matches_the_code(vector: DocVector) -> None:
    # The stated value is exactly what the bytes decode to, and encodes to exactly those bytes.
    assert decode(vector.data) == vector.value
    assert encode(vector.value) == vector.data
    # The code's decoder for this message accepts the bytes, and its encoder gives them back.
    encoded, digest, code_sigs = DECODERS[vector.decoder](vector.data)
    assert encoded == vector.data
    assert digest == vector.digest
    if vector.decoder == "tx":
        tx = decode_tx(vector.data)
        assert vector.body == decode(tx.body) and encode(vector.body) == tx.body
        assert vector.body["kind"] == tx.msg.KIND  # type: ignore[index]
    # Every signature the message carries is listed, over the sign-bytes the code computes,
    # and verifies.
    assert len(code_sigs) == len(vector.signatures)
    for (signer, signed, sig), (doc_key, doc_signed, doc_sig) in zip(
        code_sigs, vector.signatures, strict=True
    ):
        assert sig == doc_sig
        if signed is not None:
            assert signed == doc_signed
        if signer is not None:
            assert signer in (doc_key, address_of(doc_key))
        assert verify(doc_key, doc_sig, doc_signed)
        assert SEEDS[doc_key].sign(doc_signed) == doc_sig, "not reproducible from the published seeds"


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=[v.name for v in MESSAGE_VECTORS])
def test_a_changed_vector_is_refused(vector: DocVector) -> None:
    # The checks above can fail: one more byte, or a flipped signature, is refused.
    with pytest.raises(DecodeError):
        decode(vector.data + b"\x00")
    for doc_key, doc_signed, doc_sig in vector.signatures:
        assert not verify(doc_key, bytes([doc_sig[0] ^ 1]) + doc_sig[1:], doc_signed)


@pytest.mark.parametrize("vector", KEY_VECTORS, ids=[v.name for v in KEY_VECTORS])
def test_key_vector_matches_the_code(vector: DocVector) -> None:
    key = PrivateKey.from_seed(vector.data)
    assert vector.value == {
        "address": str(key.address),
        "address_raw": key.address.raw,
        "peer_id": peer_id_from_seed(vector.data),
        "public_key": key.public_key.raw,
    }


def test_frame_and_sign_bytes_vectors_match_the_code() -> None:
    (frame,) = [v for v in VECTORS if v.decoder == "frame"]
    (length,) = FRAME_HEADER.unpack(frame.data[: FRAME_HEADER.size])
    assert frame.data[FRAME_HEADER.size :] == frame.value and length == len(frame.value)  # type: ignore[arg-type]
    (example,) = [v for v in VECTORS if v.decoder == "sign_bytes"]
    domain, chain_id, kind, payload = example.value  # type: ignore[misc]
    assert domain == "dcent/sig/v1"
    assert sign_bytes(chain_id, kind, payload) == example.data


# --------------------------------------------------------------------------------------------
# Every protocol id and topic of the code is in the document
# --------------------------------------------------------------------------------------------


def _code_protocol_ids() -> set[str]:
    """Every string literal in protocol/ and node/ that starts with ``/dcent/``; in f-strings the
    placeholders read ``<chain>`` (the only thing ids are formatted with)."""
    found = set()
    for path in [*(ROOT / "protocol").rglob("*.py"), *(ROOT / "node").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(
                    part.value if isinstance(part, ast.Constant) else "<chain>" for part in node.values
                )
            else:
                continue
            # Whole literals only: docstrings mention ids inside prose.
            if re.fullmatch(r"/dcent/[A-Za-z0-9<>/._-]+", text):
                found.add(text)
    return found


def test_every_protocol_id_and_topic_of_the_code_is_specified() -> None:
    code_ids = _code_protocol_ids()
    # The scan finds what the node registers (a guard against the scan finding nothing).
    assert {"/dcent/<chain>/capacity/1", "/dcent/<chain>/consensus/1", "/dcent/tx/1.0.0"} <= code_ids
    libp2p_ids = {NOISE_ID, YAMUX_ID, PROTOCOL_ID_V11, IDENTIFY_ID, IDENTIFY_PUSH_ID, "/ipfs/ping/1.0.0"}
    missing = sorted(i for i in code_ids | {str(i) for i in libp2p_ids} if f"`{i}`" not in DOC_TEXT)
    assert not missing, f"docs/protocol.md does not specify {missing}"
