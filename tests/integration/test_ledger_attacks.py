"""Issue 12's overflow attacks against a real node (libp2p, SQLite, JSON-RPC).

A contract priced at 0, one whose price x GPU-seconds passes 2^63, one that costs more than the
requester holds, amounts past 2^63 - 1 and governance values that would let issuance run away or
pass nothing again are each refused at submit (``check_tx``, over JSON-RPC) with their typed
code; nothing of them reaches the mempool, the sender's nonce does not move, and the chain keeps
committing blocks whose state hashes. (Before issue 12, three settlements of price-0 contracts
made ``state_hash`` raise ``OverflowError`` in every proposer.)

The block-time attack is an e2e test (tests/e2e/test_block_time_attack.py): four in-process
nodes stall under load (issue 14), four processes do not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import trio

from node.daemon import Node
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from protocol.contracts import CONTRACT_DOMAIN, ContractTerms, SignedContract
from protocol.crypto import PrivateKey
from protocol.encoding import encode, sign_bytes
from protocol.ledger.tx import TX_DOMAIN, GovPropose, OpenEscrow, Transfer, sign_tx
from protocol.units import DCT, percent
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, validator_key, wait_until

FEE = 10_000


def _client(node: Node) -> RpcClient:
    assert node.rpc_url is not None
    return RpcClient.for_home(node.paths.root, node.rpc_url, timeout_s=60)


def _terms(provider: PrivateKey, height: int, **fields: Any) -> ContractTerms:
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "requester": FAUCET.public_key.raw,
        "provider": provider.public_key.raw,
        "job_hash": hashlib.sha256(b"job").digest(),
        "gpu_uuids": ("GPU-0",),
        "price_per_gpu_second": 1_000,
        "max_gpu_seconds": 3_600,
        "collateral": 0,
        "deadline_height": height + 1_000,
        "salt": b"attack",
        **fields,
    }
    return ContractTerms(**values)


def _escrow(terms: ContractTerms, provider: PrivateKey, nonce: int) -> bytes:
    contract = SignedContract(terms, terms.sign(FAUCET), terms.sign(provider))
    return sign_tx(FAUCET, CHAIN_ID, nonce, FEE, OpenEscrow(contract))


def _signed_body(key: PrivateKey, nonce: int, kind: str, msg: dict[str, object]) -> bytes:
    """A transaction of any body, correctly signed: what ``sign_tx`` refuses to build."""
    body = encode({"chain_id": CHAIN_ID, "fee": FEE, "kind": kind, "msg": msg, "nonce": nonce})
    signature = key.sign(sign_bytes(CHAIN_ID, TX_DOMAIN, body))
    return encode({"body": body, "public_key": key.public_key.raw, "signature": signature})


def _overflowing_escrow(provider: PrivateKey, height: int, nonce: int) -> bytes:
    """A contract of 2^62 GPU-seconds at 4 base units each: its cost does not fit in 63 bits.
    Both parties sign it (an attacker controls both), so only the bound can refuse it."""
    terms = _terms(provider, height).to_wire()
    terms["max_gpu_seconds"] = 2**62
    terms["price_per_gpu_second"] = 4
    terms_bytes = encode(terms)
    requester_sig = FAUCET.sign(sign_bytes(CHAIN_ID, CONTRACT_DOMAIN, terms_bytes))
    provider_sig = provider.sign(sign_bytes(CHAIN_ID, CONTRACT_DOMAIN, terms_bytes))
    contract = {"terms": terms, "requester_sig": requester_sig, "provider_sig": provider_sig}
    return _signed_body(FAUCET, nonce, "escrow_open", {"contract": contract})


async def test_overflowing_transactions_are_refused_at_submit_and_the_chain_goes_on(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            await node.wait_for_height(2)
            assert node.app is not None
            provider = validator_key(0)
            height = node.app.height
            nonce = node.app.state.account(FAUCET.address.raw).nonce + 1
            attacks = {
                # Refused by the ledger's rule for escrows: it would lock and burn nothing.
                "free contract": (
                    _escrow(_terms(provider, height, price_per_gpu_second=0), provider, nonce),
                    2028,
                ),
                # Refused at decode: price x GPU-seconds must stay below 2^63.
                "cost past 2^63": (_overflowing_escrow(provider, height, nonce), 2001),
                # The most a contract may cost, more than anyone holds: not payable.
                "cost of 2^62": (
                    _escrow(
                        _terms(provider, height, price_per_gpu_second=1, max_gpu_seconds=2**62),
                        provider,
                        nonce,
                    ),
                    2006,
                ),
                "transfer of 2^63": (
                    _signed_body(FAUCET, nonce, "transfer", {"to": bytes(20), "amount": 2**63}),
                    2001,
                ),
                # Governance may not make issuance run away (a year's inflation every block) ...
                "blocks_per_year = 1": (
                    sign_tx(FAUCET, CHAIN_ID, nonce, FEE, GovPropose("blocks_per_year", 1, 10 * DCT)),
                    2031,
                ),
                # ... nor pass nothing ever again.
                "gov_threshold = 100%": (
                    sign_tx(
                        FAUCET, CHAIN_ID, nonce, FEE, GovPropose("gov_threshold", percent(100), 10 * DCT)
                    ),
                    2031,
                ),
            }
            codes: dict[str, int] = {}
            async with _client(node) as client:
                for name, (raw, _) in attacks.items():
                    try:
                        await client.call("tx_submit", tx=raw.hex())
                    except RpcCallError as refused:
                        codes[name] = refused.code
                    else:
                        codes[name] = 0
                assert codes == {name: code for name, (_, code) in attacks.items()}
                assert len(node.mempool) == 0
                # The same sender's honest transaction with that nonce still goes through.
                recipient = PrivateKey.from_label("attack-recipient").address.raw
                honest = sign_tx(FAUCET, CHAIN_ID, nonce, FEE, Transfer(recipient, 5 * DCT))
                await client.call("tx_submit", tx=honest.hex())
            await wait_until(
                lambda: node.app is not None and node.app.state.balance(recipient) == 5 * DCT,
                what="the honest transfer is committed",
                timeout=90,
            )
            head = node.app.height
            await node.wait_for_height(head + 3)
            assert node.app.state.account(FAUCET.address.raw).nonce == nonce
            assert len(node.app.state.state_hash()) == 32
            nursery.cancel_scope.cancel()
