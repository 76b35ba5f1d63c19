"""Build, sign and submit a transaction, then wait for it: keys never leave this process.

The node supplies what the signature commits to (its chain id, the sender's committed nonce) and
the fee floor; the wallet signs locally with :func:`protocol.ledger.tx.sign_tx` and submits only
the signed bytes (``tx_submit``), then polls ``tx_get`` until the transaction is committed.

A node admits a transaction that cannot apply (too little balance, say) into its mempool and it
waits there for good, since blocks only include transactions that apply. So the wallet checks what
it can see first (balance, bonded stake) and refuses with the ledger's own error instead of
submitting something that can only time out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from node.rpc.errors import RpcCallError
from node.wallet.connect import NodeRpc
from node.wallet.errors import BadNodeAnswer, TxNotCommitted
from node.wallet.values import answer_amount, answer_int, answer_object, answer_str
from protocol.crypto import PrivateKey
from protocol.ledger.errors import InsufficientFunds, InsufficientStake
from protocol.ledger.tx import Msg, sign_tx

#: The contract's code for ``tx_get`` of a hash the node does not know (yet, or any more).
UNKNOWN_TX_CODE = 5202
TX_POLL_INTERVAL_S = 0.25
DEFAULT_TX_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: str
    #: The governance parameters as the node reports them (amounts and ratios as integers).
    params: Mapping[str, int]

    @property
    def min_fee(self) -> int:
        return self.params.get("min_fee", 0)


@dataclass(frozen=True, slots=True)
class AccountView:
    address: str
    balance: int
    nonce: int
    bonded: int
    unbonding: int

    @classmethod
    def from_answer(cls, answer: object) -> AccountView:
        doc = answer_object(answer, "account_get")
        return cls(
            address=answer_str(doc, "address", "account_get"),
            balance=answer_amount(doc, "balance", "account_get"),
            nonce=answer_int(doc, "nonce", "account_get"),
            bonded=answer_amount(doc, "bonded", "account_get"),
            unbonding=answer_amount(doc, "unbonding", "account_get"),
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything a transaction needs from the node, fetched before the key is unlocked."""

    chain: ChainInfo
    sender: AccountView
    fee: int
    nonce: int


@dataclass(frozen=True, slots=True)
class TxOutcome:
    hash: str
    kind: str
    sender: str
    nonce: int
    fee: int
    status: str
    height: int | None

    def describe(self) -> dict[str, object]:
        """The JSON form the transaction commands print (fee as a base-unit string)."""
        return {
            "hash": self.hash,
            "kind": self.kind,
            "sender": self.sender,
            "nonce": self.nonce,
            "fee": str(self.fee),
            "status": self.status,
            "height": self.height,
        }


async def chain_info(rpc: NodeRpc) -> ChainInfo:
    """The node's chain id and governance parameters (``node_info``, ``economics_params``)."""
    info = answer_object(await rpc.call("node_info"), "node_info")
    economics = answer_object(await rpc.call("economics_params"), "economics_params")
    raw_params = answer_object(economics.get("params"), "economics_params.params")
    # Only integer parameters are read (all of today's are); an unexpected one must not stop a
    # transfer, and the node itself refuses a fee under its floor.
    params = {
        name: answer_amount(raw_params, name, "economics_params.params")
        for name, value in raw_params.items()
        if (isinstance(value, str) and value.isascii() and value.isdigit()) or type(value) is int
    }
    return ChainInfo(chain_id=answer_str(info, "chain_id", "node_info"), params=params)


async def account(rpc: NodeRpc, address: str) -> AccountView:
    return AccountView.from_answer(await rpc.call("account_get", address=address))


async def prepare(rpc: NodeRpc, sender: str, *, fee: int | None, nonce: int | None) -> Prepared:
    """Fetch the chain id, the fee floor and the sender's account; pick the fee and nonce.

    The fee defaults to the chain's ``min_fee``; the nonce to the committed nonce plus one.
    """
    chain = await chain_info(rpc)
    state = await account(rpc, sender)
    return Prepared(
        chain=chain,
        sender=state,
        fee=chain.min_fee if fee is None else fee,
        nonce=state.nonce + 1 if nonce is None else nonce,
    )


def require_balance(prepared: Prepared, spend: int, what: str) -> None:
    """Refuse (InsufficientFunds) when the sender cannot pay ``spend`` plus the fee."""
    needed = spend + prepared.fee
    if prepared.sender.balance < needed:
        raise InsufficientFunds(
            f"{what} needs {needed} base units with the fee; {prepared.sender.address} has "
            f"{prepared.sender.balance}"
        )


def require_bonded(prepared: Prepared, amount: int) -> None:
    """Refuse (InsufficientStake) an unstake of more than the sender has bonded."""
    if prepared.sender.bonded < amount:
        raise InsufficientStake(
            f"unstake {amount} but {prepared.sender.address} has {prepared.sender.bonded} bonded"
        )


async def submit(rpc: NodeRpc, key: PrivateKey, prepared: Prepared, msg: Msg) -> str:
    """Sign ``msg`` locally and submit the bytes; the transaction hash the node reports."""
    raw = sign_tx(key, prepared.chain.chain_id, prepared.nonce, prepared.fee, msg)
    answer = answer_object(await rpc.call("tx_submit", tx=raw.hex()), "tx_submit")
    return answer_str(answer, "hash", "tx_submit")


async def wait_committed(
    rpc: NodeRpc, tx_hash: str, *, timeout_s: float, poll_s: float = TX_POLL_INTERVAL_S
) -> Mapping[str, Any]:
    """Poll ``tx_get`` until the transaction is committed; its last answer.

    A hash the node does not know yet is waited for too. Raises TxNotCommitted at the deadline
    (the transaction may still commit later), RpcCallError for any other refusal.
    """
    last_status = "unknown to the node"
    with trio.move_on_after(timeout_s):
        while True:
            try:
                answer = answer_object(await rpc.call("tx_get", hash=tx_hash), "tx_get")
            except RpcCallError as exc:
                if exc.code != UNKNOWN_TX_CODE:
                    raise
            else:
                last_status = answer_str(answer, "status", "tx_get")
                if last_status == "committed":
                    return answer
            await trio.sleep(poll_s)
    raise TxNotCommitted(
        f"transaction {tx_hash} was not committed within {timeout_s:g} s (it is {last_status}); "
        f"it may still commit: check with `dcent wallet tx {tx_hash}`"
    )


async def send(
    rpc: NodeRpc,
    key: PrivateKey,
    prepared: Prepared,
    msg: Msg,
    *,
    wait: bool,
    timeout_s: float = DEFAULT_TX_TIMEOUT_S,
) -> TxOutcome:
    """Sign, submit and (with ``wait``) wait for commitment. Raises RpcCallError, TxNotCommitted."""
    if str(key.address) != prepared.sender.address:
        raise BadNodeAnswer(
            f"the node described account {prepared.sender.address}, not the signer {key.address}"
        )
    tx_hash = await submit(rpc, key, prepared, msg)
    status, height = "pending", None
    if wait:
        answer = await wait_committed(rpc, tx_hash, timeout_s=timeout_s)
        status = "committed"
        committed_height = answer.get("height")
        height = committed_height if type(committed_height) is int else None
    return TxOutcome(
        hash=tx_hash,
        kind=msg.KIND,
        sender=prepared.sender.address,
        nonce=prepared.nonce,
        fee=prepared.fee,
        status=status,
        height=height,
    )
