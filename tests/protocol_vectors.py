"""Generate the test vectors of docs/protocol.md from the code (no tests here).

    .venv/bin/python -m tests.protocol_vectors           # print every vector block
    .venv/bin/python -m tests.protocol_vectors --write   # rewrite the blocks in docs/protocol.md

Each vector sits in the document as::

    <!-- vector NAME -->
    ```vector
    name: NAME
    decoder: DECODER
    hex:
      <the bytes, 64 hex digits a line>
    value:
      <the decoded value in CBOR diagnostic notation: h'..' for bytes, "..." for text>
    body:                       (transactions: the decoded body bytes)
    digest: <hex>               (optional: the message's identifying hash)
    signatures:                 (optional)
      [{"key": h'..', "signed": h'..', "sig": h'..'}, ...]
    ```

``tests/unit/test_protocol_doc.py`` parses the blocks back (with its own parser) and checks them
against the code; this module is only how they are written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from node.p2p.framing import FRAME_HEADER
from node.p2p.identity import peer_id_from_seed
from node.services.consensus_wire import encode_message as encode_consensus
from protocol.consensus.messages import CommitCertificate, Vote
from protocol.contracts import CONTRACT_DOMAIN, RECEIPT_DOMAIN
from protocol.crypto import PrivateKey
from protocol.encoding import decode, encode, sign_bytes
from protocol.market.capacity import CAPACITY_DOMAIN
from protocol.market.delivery import blob_listing_hash, encode_answer, output_listing_hash
from protocol.market.messages import QUOTE_DOMAIN
from protocol.market.messages import encode_message as encode_market
from tests import wire_samples as samples

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
HEX_PER_LINE = 64
KEYS = {
    samples.PROVIDER.public_key.raw: samples.PROVIDER,
    samples.REQUESTER.public_key.raw: samples.REQUESTER,
}


@dataclass(frozen=True)
class Vector:
    name: str
    decoder: str
    data: bytes
    digest: bytes | None = None
    #: (signer's public key, signed bytes, signature)
    signatures: tuple[tuple[bytes, bytes, bytes], ...] = ()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _hex_lines(data: bytes, indent: str) -> str:
    text = data.hex()
    return "\n".join(indent + text[i : i + HEX_PER_LINE] for i in range(0, len(text), HEX_PER_LINE)) or indent


def diag(value: object, indent: str = "  ") -> str:
    """CBOR diagnostic notation (RFC 8949 section 8), one map entry or list item a line; long
    byte strings wrap inside ``h'...'`` (RFC 8610 appendix G allows whitespace there)."""
    inner = indent + "  "
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bytes):
        text = value.hex()
        if len(text) <= HEX_PER_LINE:
            return f"h'{text}'"
        lines = [text[i : i + HEX_PER_LINE] for i in range(0, len(text), HEX_PER_LINE)]
        return "h'" + ("\n" + inner).join(lines) + "'"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [inner + diag(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(key)}: {diag(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    raise TypeError(f"no diagnostic notation for {type(value).__name__}")


def render(vector: Vector) -> str:
    if vector.decoder == "frame":
        value = vector.data[FRAME_HEADER.size :]
    elif vector.decoder == "key":
        key = PrivateKey.from_seed(vector.data)
        value = {
            "address": str(key.address),
            "address_raw": key.address.raw,
            "peer_id": peer_id_from_seed(vector.data),
            "public_key": key.public_key.raw,
        }
    else:
        value = decode(vector.data)
    lines = [
        f"name: {vector.name}",
        f"decoder: {vector.decoder}",
        "hex:",
        _hex_lines(vector.data, "  "),
        "value:",
        "  " + diag(value, "  "),
    ]
    if vector.decoder == "tx":
        assert isinstance(value, dict) and isinstance(value["body"], bytes)
        lines += ["body:", "  " + diag(decode(value["body"]), "  ")]
    if vector.digest is not None:
        lines.append(f"digest: {vector.digest.hex()}")
    if vector.signatures:
        entries = [{"key": key, "signed": signed, "sig": sig} for key, signed, sig in vector.signatures]
        lines += ["signatures:", "  " + diag(entries, "  ")]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The vectors
# --------------------------------------------------------------------------------------------

CHAIN = samples.CHAIN_ID
P = samples.PROVIDER.public_key.raw
R = samples.REQUESTER.public_key.raw


def _vote_sig(vote: Vote) -> tuple[bytes, bytes, bytes]:
    return (P, vote.sign_bytes(CHAIN), vote.signature)


def _certificate_sigs(certificate: CommitCertificate) -> tuple[tuple[bytes, bytes, bytes], ...]:
    return tuple(_vote_sig(vote) for vote in certificate.precommits())


def _contract_sigs() -> tuple[tuple[bytes, bytes, bytes], ...]:
    terms = samples.terms()
    signed = sign_bytes(CHAIN, CONTRACT_DOMAIN, terms.encode())
    return ((R, signed, terms.sign(samples.REQUESTER)), (P, signed, terms.sign(samples.PROVIDER)))


def _receipt_signed() -> bytes:
    return sign_bytes(CHAIN, RECEIPT_DOMAIN, samples.receipt().encode())


def _blobs_receipt_signed() -> bytes:
    return sign_bytes(CHAIN, RECEIPT_DOMAIN, samples.blobs_delivery().receipt.encode())


def _tx_sigs(kind: str, raw: bytes) -> tuple[tuple[bytes, bytes, bytes], ...]:
    envelope = decode(raw)
    assert isinstance(envelope, dict)
    body, key, sig = envelope["body"], envelope["public_key"], envelope["signature"]
    assert isinstance(body, bytes) and isinstance(key, bytes) and isinstance(sig, bytes)
    outer = ((key, sign_bytes(CHAIN, "tx", body), sig),)
    receipt_signed = _receipt_signed()
    inner: tuple[tuple[bytes, bytes, bytes], ...] = ()
    if kind == "escrow_open":
        inner = _contract_sigs()
    elif kind == "escrow_settle":
        inner = (
            (P, receipt_signed, samples.receipt().sign(samples.PROVIDER)),
            (R, receipt_signed, samples.receipt().sign(samples.REQUESTER)),
        )
    elif kind == "escrow_claim":
        inner = ((P, receipt_signed, samples.receipt().sign(samples.PROVIDER)),)
    return outer + inner


def vectors() -> list[Vector]:
    decided = samples.decided_height()
    evidence = samples.evidence()
    announcement = samples.announcement()
    quote = samples.quote()
    terms = samples.terms()
    body = b"\x93\x01\x02\x03"
    out = [
        Vector("key-provider", "key", samples.PROVIDER_SEED),
        Vector("key-requester", "key", samples.REQUESTER_SEED),
        Vector("key-node", "key", samples.NODE_SEED),
        Vector("frame", "frame", FRAME_HEADER.pack(len(body)) + body),
        Vector(
            "sign-bytes", "sign_bytes", sign_bytes(CHAIN, "vote", encode([1, 0, 1, b"", b"\x00" * 20, 0]))
        ),
        Vector(
            "capacity-announcement",
            "capacity",
            announcement.encode(),
            digest=announcement.announcement_hash(),
            signatures=(
                (P, sign_bytes(CHAIN, CAPACITY_DOMAIN, announcement.body()), announcement.signature),
            ),
        ),
        Vector(
            "consensus-prevote",
            "consensus",
            encode_consensus(decided.prevote),
            signatures=(_vote_sig(decided.prevote),),
        ),
        Vector(
            "consensus-precommit",
            "consensus",
            encode_consensus(decided.precommit),
            signatures=(_vote_sig(decided.precommit),),
        ),
        Vector(
            "consensus-proposal",
            "consensus",
            encode_consensus(decided.proposal),
            digest=decided.block.hash,
            signatures=((P, decided.proposal.sign_bytes(CHAIN), decided.proposal.signature),),
        ),
        Vector(
            "consensus-evidence",
            "consensus",
            encode_consensus(evidence),
            signatures=(_vote_sig(evidence.vote_a), _vote_sig(evidence.vote_b)),
        ),
        Vector(
            "consensus-committed-block",
            "consensus",
            encode_consensus(samples.committed_block()),
            digest=decided.block.hash,
            signatures=_certificate_sigs(decided.certificate),
        ),
        Vector("sync-request", "sync_request", samples.sync_request().encode()),
        Vector(
            "sync-response",
            "sync_response",
            samples.sync_response().encode(),
            signatures=_certificate_sigs(decided.certificate),
        ),
    ]
    for kind, raw in samples.txs_of_every_kind().items():
        out.append(
            Vector(
                f"tx-{kind.replace('_', '-')}", "tx", raw, hashlib.sha256(raw).digest(), _tx_sigs(kind, raw)
            )
        )
    out.append(Vector("tx-batch", "tx_batch", encode([samples.transfer_tx()])))
    out += [
        Vector(
            "market-quote-request",
            "market",
            encode_market(samples.quote_request()),
            digest=samples.quote_request().request_hash(),
        ),
        Vector(
            "market-quote",
            "market",
            encode_market(quote),
            signatures=((P, sign_bytes(CHAIN, QUOTE_DOMAIN, quote.body.encode()), quote.provider_sig),),
        ),
        Vector(
            "market-contract-proposal",
            "market",
            encode_market(samples.contract_proposal()),
            digest=terms.contract_hash(),
            signatures=_contract_sigs()[:1],
        ),
        Vector(
            "market-contract-accepted",
            "market",
            encode_market(samples.contract_accepted()),
            signatures=_contract_sigs()[1:],
        ),
        Vector("market-refusal", "market", encode_market(samples.refusal())),
        Vector(
            "result-delivery",
            "delivery",
            samples.delivery().encode(),
            digest=output_listing_hash(samples.OUTPUTS),
            signatures=((P, _receipt_signed(), samples.delivery().provider_sig),),
        ),
        Vector(
            "result-delivery-blobs",
            "delivery",
            samples.blobs_delivery().encode(),
            digest=blob_listing_hash(samples.blobs_delivery().blobs),
            signatures=((P, _blobs_receipt_signed(), samples.blobs_delivery().provider_sig),),
        ),
        Vector(
            "result-ack",
            "delivery_answer",
            encode_answer(samples.delivery_ack()),
            signatures=((R, _receipt_signed(), samples.delivery_ack().requester_sig),),
        ),
        Vector("result-refusal", "delivery_answer", encode_answer(samples.refusal())),
        Vector("result-header", "delivery_header", samples.delivery_header().encode()),
        Vector("result-ready", "delivery_answer", encode_answer(samples.delivery_ready())),
        Vector("job-output", "job_output", samples.job_output().encode()),
        Vector(
            "job-started",
            "job_started",
            samples.job_started().encode(),
            signatures=(
                (
                    P,
                    sign_bytes(CHAIN, "job_status", encode(["running", terms.contract_hash()])),
                    samples.job_started().provider_sig,
                ),
            ),
        ),
    ]
    for op, request in samples.blob_requests().items():
        out.append(Vector(f"blob-request-{op}", "blob_request", request.encode()))
    for label, reply in samples.blob_replies().items():
        out.append(Vector(f"blob-reply-{label.replace('_', '-')}", "blob_reply", reply.encode()))
    manifest = samples.blob_manifest()
    out.append(Vector("blob-manifest", "blob_manifest", manifest.encode(), digest=manifest.content_id()))
    for vector in out:
        for key, signed, sig in vector.signatures:
            assert KEYS[key].sign(signed) == sig, f"{vector.name}: a signature the sample keys do not give"
    return out


# --------------------------------------------------------------------------------------------
# Writing the document
# --------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"<!-- vector (?P<name>[a-z0-9-]+) -->\n```vector\n.*?```", re.DOTALL)


def write(doc: Path = DOC) -> list[str]:
    """Rewrite every vector block of ``doc``; returns the names generated but not in it."""
    by_name = {vector.name: vector for vector in vectors()}
    text = doc.read_text()
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in by_name:
            raise SystemExit(f"{doc}: no vector named {name!r} is generated")
        seen.add(name)
        return f"<!-- vector {name} -->\n```vector\n{render(by_name[name])}\n```"

    doc.write_text(_BLOCK.sub(replace, text))
    return [name for name in by_name if name not in seen]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite the vector blocks of {DOC}")
    args = parser.parse_args()
    if args.write:
        missing = write()
        for name in missing:
            print(f"not in the document yet: <!-- vector {name} -->", file=sys.stderr)
        return 1 if missing else 0
    for vector in vectors():
        print(f"<!-- vector {vector.name} -->\n```vector\n{render(vector)}\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
