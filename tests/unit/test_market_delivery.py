"""Result delivery: what the requester countersigns, and what it refuses with which code."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from node.market.delivery_link import send_delivery
from node.p2p.errors import RequestTimeoutError
from node.p2p.interface import Stream
from node.p2p.memory import MemoryNetwork
from protocol.contracts import UsageReceipt
from protocol.crypto import PrivateKey
from protocol.encoding import DecodeError
from protocol.market.delivery import (
    RESULT_PROTOCOL_ID,
    DeliveryAck,
    OutputFile,
    ResultDelivery,
    check_delivery,
    decode_answer,
    decode_delivery,
    encode_answer,
    output_listing_hash,
)
from protocol.market.errors import (
    ForgedReceipt,
    MalformedMessage,
    OutputHashMismatch,
    ReceiptForOtherContract,
    ReceiptOverLimit,
)
from protocol.market.messages import Refusal
from tests.unit.ledger_helpers import key, make_terms

FILES = {"model.json": b'{"w": 2.0}', "sub/log.txt": b"epoch 1\n"}
TERMS = make_terms(max_gpu_seconds=100)


def delivery(
    *,
    files: dict[str, bytes] = FILES,
    gpu_ms: int = 40_000,
    signer: str = "bob",
    contract_hash: bytes | None = None,
    output_hash: bytes | None = None,
) -> ResultDelivery:
    receipt = UsageReceipt(
        chain_id=TERMS.chain_id,
        contract_hash=TERMS.contract_hash() if contract_hash is None else contract_hash,
        outcome="completed",
        gpu_ms=gpu_ms,
        exit_status=0,
        output_hash=output_listing_hash(FILES) if output_hash is None else output_hash,
    )
    return ResultDelivery(
        receipt=receipt,
        provider_sig=receipt.sign(key(signer)),
        files=tuple(OutputFile(path, files[path]) for path in sorted(files)),
        stdout=b"ok\n",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        outputs_truncated=False,
        timed_out=False,
    )


def test_an_honest_delivery_passes_and_round_trips() -> None:
    honest = delivery()
    check_delivery(TERMS, honest, output_limit_bytes=1024)
    assert decode_delivery(honest.encode()) == honest
    assert honest.file_map() == FILES


@pytest.mark.parametrize(
    ("bad", "error", "code"),
    [
        (delivery(contract_hash=bytes(32)), ReceiptForOtherContract, 4061),
        (delivery(signer="mallory"), ForgedReceipt, 4062),
        (delivery(files={**FILES, "model.json": b'{"w": 3.0}'}), OutputHashMismatch, 4063),
        (delivery(gpu_ms=100_001), ReceiptOverLimit, 4064),
    ],
)
def test_a_bad_delivery_is_refused_with_its_code(bad: ResultDelivery, error: type, code: int) -> None:
    with pytest.raises(error) as caught:
        check_delivery(TERMS, bad, output_limit_bytes=1024)
    assert caught.value.code == code


def test_outputs_over_the_jobs_limit_are_refused() -> None:
    with pytest.raises(ReceiptOverLimit):
        check_delivery(TERMS, delivery(), output_limit_bytes=sum(map(len, FILES.values())) - 1)


def test_a_receipt_for_another_chain_is_refused() -> None:
    other = delivery()
    receipt = dataclasses.replace(other.receipt, chain_id="dcent-other-1")
    moved = dataclasses.replace(other, receipt=receipt, provider_sig=receipt.sign(key("bob")))
    with pytest.raises(ReceiptForOtherContract):
        check_delivery(TERMS, moved, output_limit_bytes=1024)


@pytest.mark.parametrize("path", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_output_paths_that_leave_the_directory_are_malformed(path: str) -> None:
    with pytest.raises(MalformedMessage):
        OutputFile(path, b"x")


def test_files_out_of_order_are_malformed() -> None:
    honest = delivery()
    with pytest.raises(MalformedMessage):
        dataclasses.replace(honest, files=tuple(reversed(honest.files)))


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x93\x01\x02\x03", delivery().encode()[:-1]])
def test_garbage_decodes_to_one_error_family(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_delivery(garbage)
    with pytest.raises(DecodeError):
        decode_answer(garbage)


def test_answers_round_trip() -> None:
    ack = DeliveryAck(TERMS.contract_hash(), bytes(64))
    refusal = Refusal(4063, "files do not hash to the receipt")
    assert decode_answer(encode_answer(ack)) == ack
    assert decode_answer(encode_answer(refusal)) == refusal


async def _silent_requester(stream: Stream) -> None:
    """Takes the stream and never answers: a requester that hung, or a connection gone dead."""
    await trio.sleep_forever()


async def test_a_requester_that_never_answers_the_header_costs_the_handshake_timeout_not_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    provider = network.create_host(PrivateKey.from_label("delivery-provider").seed())
    requester = network.create_host(PrivateKey.from_label("delivery-requester").seed())
    payload = delivery().encode()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        await nursery.start(requester.run)
        requester.set_stream_handler(RESULT_PROTOCOL_ID, _silent_requester)
        await provider.connect(requester.listen_addrs[0])
        started = trio.current_time()
        with pytest.raises(RequestTimeoutError, match="no go-ahead"):
            await send_delivery(
                provider, requester.peer_id, TERMS.contract_hash(), payload, timeout=600, handshake_timeout=15
            )
        assert 15 <= trio.current_time() - started < 16
        nursery.cancel_scope.cancel()
