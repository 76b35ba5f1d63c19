"""The faucet is idempotent (issue 12: "not committed within 60 s" for a transfer that then
committed, so a retry paid twice), against a real single-validator node over JSON-RPC.

Each scenario counts what the recipient received and how many nonces the faucet used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from node.daemon import Node
from node.rpc.client import RpcClient
from node.testnet.errors import FaucetError
from node.testnet.faucet import (
    FaucetJournal,
    FaucetRecord,
    default_request_id,
    faucet_send,
    send_from_key,
)
from protocol.crypto import Address, PrivateKey
from protocol.ledger.tx import Transfer, sign_tx
from protocol.units import DCT
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, wait_until

AMOUNT = 3 * DCT
FEE = 10_000


def _client(node: Node) -> RpcClient:
    assert node.rpc_url is not None
    return RpcClient.for_home(node.paths.root, node.rpc_url)


def _balance(node: Node, address: Address) -> int:
    assert node.app is not None
    return node.app.state.balance(address.raw)


def _faucet_nonce(node: Node) -> int:
    assert node.app is not None
    return node.app.state.account(FAUCET.address.raw).nonce


async def test_a_retry_after_a_timeout_waits_for_the_first_transfer_instead_of_paying_again(
    tmp_path: Path,
) -> None:
    recipient = PrivateKey.from_label("faucet-retry").address
    journal = FaucetJournal(tmp_path / "faucet")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            node = await LocalNet(nursery, tmp_path, validators=1).start(0)
            await node.wait_for_height(1)
            async with _client(node) as client:
                with pytest.raises(FaucetError) as timed_out:
                    await faucet_send(client, FAUCET, journal, recipient, AMOUNT, timeout_s=0)
                assert "without paying twice" in timed_out.value.message
                # It commits after all...
                await wait_until(
                    lambda: _balance(node, recipient) == AMOUNT, what="the first transfer commits"
                )
                # ...and the retry finds it rather than signing another.
                again = await faucet_send(client, FAUCET, journal, recipient, AMOUNT)
                assert again.resumed and again.nonce == 1 and again.height >= 1
                assert again.request_id == default_request_id(recipient, AMOUNT)
                # Once it was seen committed, the same command is a new payment.
                third = await faucet_send(client, FAUCET, journal, recipient, AMOUNT)
                assert not third.resumed and third.nonce == 2
            assert _balance(node, recipient) == 2 * AMOUNT and _faucet_nonce(node) == 2
            nursery.cancel_scope.cancel()


async def test_a_named_request_pays_once_and_refuses_another_transfer_under_its_name(tmp_path: Path) -> None:
    recipient = PrivateKey.from_label("faucet-named").address
    journal = FaucetJournal(tmp_path / "faucet")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            node = await LocalNet(nursery, tmp_path, validators=1).start(0)
            await node.wait_for_height(1)
            async with _client(node) as client:
                first = await faucet_send(client, FAUCET, journal, recipient, AMOUNT, request_id="grant-7")
                second = await faucet_send(client, FAUCET, journal, recipient, AMOUNT, request_id="grant-7")
                assert not first.resumed and second.resumed and second.hash == first.hash
                with pytest.raises(FaucetError, match="grant-7"):
                    await faucet_send(client, FAUCET, journal, recipient, 2 * AMOUNT, request_id="grant-7")
            assert _balance(node, recipient) == AMOUNT and _faucet_nonce(node) == 1
            nursery.cancel_scope.cancel()


async def test_a_transfer_journaled_but_never_submitted_is_submitted_again_with_the_same_bytes(
    tmp_path: Path,
) -> None:
    """The window between journaling and submitting (a crash, a lost answer): the retry sends the
    very bytes journaled, which can commit once only."""
    recipient = PrivateKey.from_label("faucet-lost").address
    journal = FaucetJournal(tmp_path / "faucet")
    raw = sign_tx(FAUCET, CHAIN_ID, 1, FEE, Transfer(recipient.raw, AMOUNT))
    rid = default_request_id(recipient, AMOUNT)
    tx_hash = hashlib.sha256(raw).hexdigest()
    async with journal.locked() as records:
        records[rid] = FaucetRecord(rid, str(recipient), AMOUNT, 1, FEE, tx_hash, raw.hex())
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            node = await LocalNet(nursery, tmp_path, validators=1).start(0)
            await node.wait_for_height(1)
            async with _client(node) as client:
                receipt = await faucet_send(client, FAUCET, journal, recipient, AMOUNT)
            assert receipt.resumed and receipt.hash == tx_hash
            assert _balance(node, recipient) == AMOUNT and _faucet_nonce(node) == 1
            nursery.cancel_scope.cancel()


async def test_a_journaled_transfer_whose_nonce_went_to_another_is_signed_anew(tmp_path: Path) -> None:
    recipient = PrivateKey.from_label("faucet-overtaken").address
    other = PrivateKey.from_label("faucet-other").address
    journal = FaucetJournal(tmp_path / "faucet")
    raw = sign_tx(FAUCET, CHAIN_ID, 1, FEE, Transfer(recipient.raw, AMOUNT))
    rid = default_request_id(recipient, AMOUNT)
    async with journal.locked() as records:
        records[rid] = FaucetRecord(
            rid, str(recipient), AMOUNT, 1, FEE, hashlib.sha256(raw).hexdigest(), raw.hex()
        )
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            node = await LocalNet(nursery, tmp_path, validators=1).start(0)
            await node.wait_for_height(1)
            async with _client(node) as client:
                await send_from_key(client, FAUCET, other, DCT)  # takes nonce 1
                receipt = await faucet_send(client, FAUCET, journal, recipient, AMOUNT)
            assert not receipt.resumed and receipt.nonce == 2
            assert _balance(node, recipient) == AMOUNT and _balance(node, other) == DCT
            nursery.cancel_scope.cancel()
