"""The testnet faucet: a transfer signed with ``DIR/faucet.key``, submitted to one node, waited on
until committed."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from node.testnet.errors import FaucetError
from node.testnet.layout import NetworkLayout
from node.testnet.readiness import client_for
from protocol.crypto import Address, PrivateKey
from protocol.ledger.tx import Transfer, sign_tx

#: ``tx_get`` of a hash the node does not know (yet): the contract's UnknownTx.
UNKNOWN_TX = 5202
POLL_S = 0.2
COMMIT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class FaucetReceipt:
    hash: str
    height: int
    nonce: int
    fee: int


async def wait_committed(client: RpcClient, tx_hash: str, *, timeout_s: float = COMMIT_TIMEOUT_S) -> int:
    """Poll ``tx_get`` until the transaction is committed; its height.

    Raises :class:`FaucetError` at the deadline, RpcError when the node fails otherwise.
    """
    with trio.move_on_after(timeout_s):
        while True:
            try:
                answer = await client.call("tx_get", hash=tx_hash)
            except RpcCallError as exc:
                if exc.code != UNKNOWN_TX:
                    raise
            else:
                if answer["status"] == "committed":
                    return int(answer["height"])
            await trio.sleep(POLL_S)
    raise FaucetError(f"transaction {tx_hash} was not committed within {timeout_s:.0f} s")


async def send_from_key(
    client: RpcClient, key: PrivateKey, to: Address, amount: int, *, timeout_s: float = COMMIT_TIMEOUT_S
) -> FaucetReceipt:
    """Transfer ``amount`` base units from ``key``'s account to ``to`` through ``client``'s node
    (fee: the chain's min_fee; nonce: the committed one plus one), and wait for the commit.

    Raises :class:`FaucetError` for a refused or uncommitted transfer or an account that cannot
    pay, and RpcError when the node cannot be asked.
    """
    info = await client.call("node_info")
    economics = await client.call("economics_params")
    fee = int(economics["params"]["min_fee"])
    account = await client.call("account_get", address=str(key.address))
    balance, nonce = int(account["balance"]), int(account["nonce"]) + 1
    if balance < amount + fee:
        raise FaucetError(
            f"{key.address} holds {balance} base units; the transfer needs {amount + fee} with the fee"
        )
    raw = sign_tx(key, str(info["chain_id"]), nonce, fee, Transfer(to.raw, amount))
    try:
        submitted = await client.call("tx_submit", tx=raw.hex())
    except RpcCallError as exc:
        raise FaucetError(f"the node refused the transfer: error {exc.code}: {exc.message}") from None
    tx_hash = str(submitted["hash"])
    height = await wait_committed(client, tx_hash, timeout_s=timeout_s)
    return FaucetReceipt(tx_hash, height, nonce, fee)


async def faucet_transfer(
    layout: NetworkLayout,
    to: Address,
    amount: int,
    *,
    node_index: int = 0,
    timeout_s: float = COMMIT_TIMEOUT_S,
) -> FaucetReceipt:
    """Send ``amount`` from the testnet's faucet to ``to`` through node ``node_index``.

    Raises :class:`FaucetError`, :class:`~node.config.KeyFileError` (faucet.key unreadable),
    RpcError (the node cannot be reached).
    """
    key = layout.faucet_key()
    client = client_for(layout.node(node_index))
    try:
        async with client:
            return await send_from_key(client, key, to, amount, timeout_s=timeout_s)
    except (KeyError, TypeError, ValueError) as exc:
        raise FaucetError(f"node-{node_index} answered in an unexpected shape: {exc!r}") from None
