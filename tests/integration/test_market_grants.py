"""Paid from the user's wallet, over real nodes: a wallet (a key that runs no node) grants the
requester's node a bounded spending authorization, signed with the wallet's key and submitted over
JSON-RPC as ``dcent wallet grant`` does; the node's job is escrowed from the wallet's account and
settles back to it, the node's own balance untouched; a missing, expired or exhausted grant is
refused at ``job_submit`` with the ledger's code and a message that says why. Without a grant,
the wallet signs the escrow of the contract its node agreed (what ``dcent job submit --payer``
does), and its history shows the escrow and its settlement with their amounts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from node.daemon import Node
from node.market.records import JobState
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from protocol.contracts import SignedContract
from protocol.crypto import PrivateKey
from protocol.ledger.authz import find_grant
from protocol.ledger.errors import GrantExhausted, GrantExpired, NoGrant
from protocol.ledger.tx import GRANTABLE_KINDS, Grant, Msg, OpenEscrow, Transfer, sign_tx
from protocol.units import DCT
from tests.integration.market_helpers import PROVIDER, REQUESTER, spec, start_market, until_state
from tests.integration.node_helpers import CHAIN_ID, FAUCET
from tests.waiting import wait_until

FEE = 10_000
#: The test job: one GPU for at most 20 s at 0.01 DCT per GPU-second: it may lock 0.2 DCT.
MOST_A_JOB_LOCKS = 20 * DCT // 100


async def rpc(node: Node, method: str, **params: object) -> Any:
    assert node.rpc_url is not None
    async with RpcClient.for_home(node.paths.root, node.rpc_url) as client:
        return await client.call(method, **params)


async def send(node: Node, key: PrivateKey, msg: Msg) -> int:
    """Sign ``msg`` with ``key`` (as the wallet CLI does, locally), submit it over JSON-RPC and
    wait for its block; the height."""
    assert node.app is not None and node.store is not None
    nonce = node.app.state.account(key.address.raw).nonce + 1
    raw = sign_tx(key, CHAIN_ID, nonce, FEE, msg)
    answer = await rpc(node, "tx_submit", tx=raw.hex())
    store = node.store
    try:
        indexed = await wait_until(
            lambda: store.tx(bytes.fromhex(answer["hash"])), what=f"{msg.KIND} committed", timeout=120
        )
    except AssertionError as exc:
        pending = node.mempool.get(bytes.fromhex(answer["hash"])) is not None
        raise AssertionError(
            f"{exc}; the node is at height {node.app.height}, the tx pending: {pending}"
        ) from None
    assert indexed is not None
    await node.wait_for_height(indexed.height)
    return indexed.height


async def refused(node: Node, wallet: PrivateKey, error: type[Exception]) -> str:
    with pytest.raises(RpcCallError) as caught:
        await rpc(node, "job_submit", spec=spec("true").to_document(), payer=str(wallet.address))
    assert caught.value.code == error.code  # type: ignore[attr-defined]
    return caught.value.message


async def test_a_wallet_pays_for_a_job_through_its_grant_and_bad_grants_are_refused(tmp_path: Path) -> None:
    wallet, lapsing = PrivateKey.from_label("itest-wallet"), PrivateKey.from_label("itest-lapsing-wallet")
    with trio.fail_after(400):
        async with trio.open_nursery() as nursery:
            nodes = await start_market(nursery, tmp_path)
            requester, provider = nodes[REQUESTER], nodes[PROVIDER]
            assert requester.market is not None and requester.app is not None
            node_account = requester.validator_key.address.raw
            for key in (wallet, lapsing):
                await send(requester, FAUCET, Transfer(key.address.raw, 10 * DCT))

            # A grant that lapses a few blocks from now (checked once the job below is done).
            lapses_at = requester.app.height + 4
            await send(requester, lapsing, Grant(node_account, DCT, lapses_at, GRANTABLE_KINDS))

            # No grant yet: refused before any provider is asked.
            message = await refused(requester, wallet, NoGrant)
            assert "dcent wallet grant" in message

            # A grant covering one job (the most it may lock, plus the escrow's fee) and no second
            # one, whatever the provider's price.
            min_fee = requester.app.state.params.min_fee
            cap = MOST_A_JOB_LOCKS + min_fee + 1_000
            head = requester.app.height
            await send(requester, wallet, Grant(node_account, cap, head + 10_000, GRANTABLE_KINDS))
            grants = await rpc(
                requester, "account_grantsReceived", address=str(requester.validator_key.address)
            )
            assert sorted((g["granter"], g["spend_limit"]) for g in grants) == sorted(
                [(str(wallet.address), str(cap)), (str(lapsing.address), str(DCT))]
            )

            state = requester.app.state
            node_before, wallet_before = state.balance(node_account), state.balance(wallet.address.raw)
            answer = await rpc(
                requester,
                "job_submit",
                spec=spec("echo paid by the wallet", name="granted").to_document(),
                payer=str(wallet.address),
            )
            done = await until_state(requester, answer["job_id"], JobState.SETTLED, JobState.FAILED)
            assert done.state is JobState.SETTLED, done.error_message
            assert done.contract is not None and done.contract.terms.payer == wallet.address.raw
            contract_hash = done.contract.terms.contract_hash()
            await until_state(provider, "p-" + contract_hash.hex()[:24], JobState.SETTLED)
            await requester.wait_for_height(done.settled_height)
            job = await rpc(requester, "job_get", job_id=done.job_id)
            assert job["payer"] == str(wallet.address)

            state = requester.app.state
            assert state.closed_contracts.get(contract_hash) == "settled"
            assert state.balance(node_account) == node_before  # not even the escrow's fee
            cost = done.cost()
            assert cost is not None and cost > 0
            assert state.balance(wallet.address.raw) == wallet_before - cost - min_fee
            info = find_grant(state, wallet.address.raw, node_account)
            assert info is not None and info.spent == done.contract.terms.max_cost + min_fee
            state.check_invariants()

            # What is left of the grant does not cover another such job: refused, with amounts.
            message = await refused(requester, wallet, GrantExhausted)
            assert "left of" in message and "DCT" in message

            # The grant that lapsed while the job ran: refused by its expiry.
            assert requester.app.height > lapses_at
            message = await refused(requester, lapsing, GrantExpired)
            assert f"expired at height {lapses_at}" in message
            nursery.cancel_scope.cancel()


async def test_without_a_grant_the_wallet_signs_the_escrow_of_the_agreed_contract(tmp_path: Path) -> None:
    wallet = PrivateKey.from_label("itest-signing-wallet")
    with trio.fail_after(400):
        async with trio.open_nursery() as nursery:
            nodes = await start_market(nursery, tmp_path)
            requester, provider = nodes[REQUESTER], nodes[PROVIDER]
            assert requester.app is not None
            node_account = requester.validator_key.address.raw
            await send(requester, FAUCET, Transfer(wallet.address.raw, 10 * DCT))
            node_before = requester.app.state.balance(node_account)

            answer = await rpc(
                requester,
                "job_submit",
                spec=spec("echo escrowed by the wallet", name="self-escrowed").to_document(),
                payer=str(wallet.address),
                payer_signs=True,
            )
            job_id = answer["job_id"]
            # What `dcent job submit --payer` does: read the agreed contract, sign its escrow here.
            await until_state(requester, job_id, JobState.CONTRACTED, JobState.FAILED)
            job = await rpc(requester, "job_get", job_id=job_id)
            assert job["awaiting_payer"] is True, job
            contract = SignedContract.decode(bytes.fromhex(job["contract"]))
            assert contract.terms.payer == wallet.address.raw
            assert contract.terms.requester == requester.validator_key.public_key.raw
            wallet_before = requester.app.state.balance(wallet.address.raw)
            await send(requester, wallet, OpenEscrow(contract))

            done = await until_state(requester, job_id, JobState.SETTLED, JobState.FAILED)
            assert done.state is JobState.SETTLED, done.error_message
            assert [s for s, _ in done.history][:4] == ["matching", "negotiating", "contracted", "escrowed"]
            contract_hash = contract.terms.contract_hash()
            await until_state(provider, "p-" + contract_hash.hex()[:24], JobState.SETTLED)
            await requester.wait_for_height(done.settled_height)
            state = requester.app.state
            assert state.closed_contracts.get(contract_hash) == "settled"
            assert state.balance(node_account) == node_before
            cost = done.cost()
            assert cost is not None
            assert state.balance(wallet.address.raw) == wallet_before - cost - FEE
            history = await rpc(requester, "account_history", address=str(wallet.address))
            kinds = [entry["kind"] for entry in history]
            assert kinds[:2] == ["escrow_settle", "escrow_open"] and "transfer" in kinds
            assert history[0]["amount"] == str(cost) and history[1]["amount"] == str(contract.terms.max_cost)
            nursery.cancel_scope.cancel()
