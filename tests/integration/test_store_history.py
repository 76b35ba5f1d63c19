"""Account history for every kind, on a real SQLite store: a wallet that pays for its node's jobs
through a grant sees the grant, the escrow its node opened on its account, the provider's claim
and its finalization, and a refund, each with what it moved; the provider and the node see theirs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from node import tx_history
from node.store import ChainStore
from protocol.contracts import ContractTerms, SignedContract, UsageReceipt
from protocol.crypto import PrivateKey
from protocol.ledger.tx import (
    Delegate,
    EscrowClaim,
    EscrowFinalize,
    GovVote,
    Grant,
    GrantRevoke,
    Msg,
    OpenEscrow,
    Refund,
    decode_tx,
    sign_tx,
)
from tests.integration.test_store import CHAIN, _block

NODE = PrivateKey.from_label("history-node")
WALLET = PrivateKey.from_label("history-wallet")
PROVIDER = PrivateKey.from_label("history-provider")
VALIDATOR = PrivateKey.from_label("history-validator")


def _tx(key: PrivateKey, nonce: int, msg: Msg) -> bytes:
    return sign_tx(key, CHAIN, nonce, 10_000, msg)


def _contract(salt: bytes) -> SignedContract:
    terms = ContractTerms(
        chain_id=CHAIN,
        requester=NODE.public_key.raw,
        provider=PROVIDER.public_key.raw,
        job_hash=bytes(32),
        gpu_uuids=("GPU-SIM-history",),
        price_per_gpu_second=7,
        max_gpu_seconds=100,
        collateral=300,
        deadline_height=50,
        salt=salt,
        payer=WALLET.address.raw,
    )
    return SignedContract(terms, terms.sign(NODE), terms.sign(PROVIDER))


def test_a_wallet_sees_every_transaction_its_grant_paid_for(tmp_path: Path) -> None:
    claimed, refunded = _contract(b"claimed"), _contract(b"refunded")
    claimed_hash = claimed.terms.contract_hash()
    receipt = UsageReceipt(CHAIN, claimed_hash, "completed", 55_000, 0, bytes(32))  # 55 s x 7 = 385
    blocks = [
        [_tx(WALLET, 1, Grant(NODE.address.raw, 5_000, 99, ("escrow_open",)))],
        [_tx(NODE, 1, OpenEscrow(claimed)), _tx(NODE, 2, OpenEscrow(refunded))],
        [_tx(PROVIDER, 1, EscrowClaim(receipt, receipt.sign(PROVIDER)))],
        [
            _tx(PROVIDER, 2, EscrowFinalize(claimed_hash)),
            _tx(WALLET, 2, Refund(refunded.terms.contract_hash())),
        ],
        [_tx(WALLET, 3, GrantRevoke(NODE.address.raw)), _tx(WALLET, 4, Delegate(VALIDATOR.address.raw, 9))],
        [_tx(NODE, 3, GovVote(1, "yes"))],
    ]
    store = ChainStore.open(tmp_path / "chain.db")
    for height, txs in enumerate(blocks, start=1):
        store.append_block(_block(height, txs))

    def history(key: PrivateKey) -> list[tuple[str, int | None]]:
        rows = []
        for entry in store.txs_of(key.address.raw, 100):
            tx = decode_tx(
                next(raw for txs in blocks for raw in txs if hashlib.sha256(raw).digest() == entry.hash)
            )
            contract_hash = tx_history.contract_hash_of(tx)
            contract = store.contract(contract_hash) if contract_hash else None
            rows.append((entry.kind, tx_history.amount(tx, contract)))
        return rows

    # Newest first; the wallet signed only the grant, the refund, the revocation and the delegation.
    assert history(WALLET) == [
        ("delegate", 9),
        ("grant_revoke", None),
        ("escrow_refund", 700),  # the maximum cost back to the payer
        ("escrow_finalize", 385),  # the claim's pay, finalized
        ("escrow_claim", 385),
        ("escrow_open", 700),
        ("escrow_open", 700),
        ("grant", 5_000),
    ]
    assert [kind for kind, _ in history(PROVIDER)] == [
        "escrow_refund",
        "escrow_finalize",
        "escrow_claim",
        "escrow_open",
        "escrow_open",
    ]
    assert [kind for kind, _ in history(NODE)] == [
        "gov_vote",
        "grant_revoke",
        "escrow_refund",
        "escrow_finalize",
        "escrow_claim",
        "escrow_open",
        "escrow_open",
        "grant",
    ]
    assert [kind for kind, _ in history(VALIDATOR)] == ["delegate"]
    info = store.contract(claimed_hash)
    assert info is not None and (info.payer, info.claimed_pay) == (WALLET.address.raw, 385)
    store.close()

    # Reopened, the index is intact.
    reopened = ChainStore.open(tmp_path / "chain.db")
    assert len(reopened.txs_of(WALLET.address.raw, 100)) == 8
    reopened.close()


def test_a_quoted_escrow_is_indexed_at_the_price_its_block_fixed_not_at_the_cap(tmp_path: Path) -> None:
    """The block's ``escrow_opened`` events carry the DCT price each escrow fixed (for a contract
    quoted in an asset, the terms' price is only the requester's cap): history shows what moved."""
    contract = _contract(b"quoted")
    contract_hash = contract.terms.contract_hash()
    receipt = UsageReceipt(CHAIN, contract_hash, "completed", 55_000, 0, bytes(32))
    blocks = [
        [_tx(NODE, 1, OpenEscrow(contract))],
        [_tx(PROVIDER, 1, EscrowClaim(receipt, receipt.sign(PROVIDER)))],
    ]
    store = ChainStore.open(tmp_path / "chain.db")
    store.append_block(_block(1, blocks[0]), escrow_prices={contract_hash: 3})  # cap 7, fixed 3
    store.append_block(_block(2, blocks[1]))
    indexed = store.contract(contract_hash)
    assert indexed is not None
    assert (indexed.price_per_gpu_second, indexed.max_cost) == (3, 300)
    assert indexed.claimed_pay == 165  # 55 s x 3, not x 7
    opened = decode_tx(blocks[0][0])
    assert tx_history.amount(opened, indexed) == 300
    assert tx_history.amount(opened, None) == 700  # without the index: the terms' cap
    store.close()
