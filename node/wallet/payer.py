"""``dcent job submit --payer WALLET``: a job paid from a wallet's own account.

Two ways, chosen here before the job is submitted:

1. The wallet granted the node spending (``dcent wallet grant``) and the grant covers the job's
   maximum cost and the escrow's fee: the node names the wallet as payer and opens the escrow
   from the wallet's account itself. No password is asked.
2. Otherwise the wallet signs the escrow itself: the node negotiates the contract (naming the
   wallet as payer), then waits; this command reads the agreed contract from ``job_get``, checks
   it is the job it asked for and names this wallet as payer, unlocks the wallet's key (the
   password) and submits the escrow transaction signed with it. The node never holds the key.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import trio

from node.wallet.cliargs import unlock_wallet
from node.wallet.connect import NodeRpc
from node.wallet.errors import BadNodeAnswer, UnknownWallet
from node.wallet.jobwatch import get_job, job_state
from node.wallet.txbuilder import TxOutcome, prepare, require_balance, send
from node.wallet.values import answer_amount, answer_list, answer_object, answer_str
from node.wallet.wallets import Wallet, find_wallet, keystore_dir
from protocol.contracts import SignedContract
from protocol.crypto import Address
from protocol.encoding import DecodeError
from protocol.ledger.tx import OpenEscrow
from protocol.market.jobspec import JobSpec

#: How often the command asks whether the contract is agreed.
CONTRACT_POLL_S = 0.5
#: States after which a job no longer waits for its payer's escrow.
_PAST_CONTRACT = frozenset({"escrowed", "running", "delivered", "claimed", "settled"})
_ENDED = frozenset({"failed", "refunded", "disputed", "cancelled"})


async def grant_covers(rpc: NodeRpc, payer: str, spec: JobSpec) -> bool:
    """Whether ``payer``'s grant to the node (``node_info.address``) is live, covers escrows and
    has left what the job may lock plus the escrow's fee (the node refuses the job otherwise)."""
    info = answer_object(await rpc.call("node_info"), "node_info")
    node_address = answer_str(info, "address", "node_info")
    economics = answer_object(await rpc.call("economics_params"), "economics_params")
    min_fee = answer_amount(
        answer_object(economics.get("params"), "economics_params.params"), "min_fee", "params"
    )
    needed = spec.max_price_per_gpu_second * spec.max_gpu_seconds + min_fee
    for entry in answer_list(await rpc.call("account_grants", address=payer), "account_grants"):
        grant = answer_object(entry, "account_grants")
        if grant.get("grantee") != node_address or grant.get("expired") is not False:
            continue
        kinds = grant.get("kinds")
        if isinstance(kinds, list) and "escrow_open" in kinds:
            return answer_amount(grant, "remaining", "account_grants") >= needed
    return False


def signing_payer(args: argparse.Namespace, payer: str) -> Wallet:
    """The payer's wallet in this keystore, to sign the escrow with. Raises UnknownWallet."""
    try:
        return find_wallet(keystore_dir(args.keystore, args.home), payer)
    except UnknownWallet:
        raise UnknownWallet(
            f"--payer {payer}: it gave the node no grant that covers this job, and it is not a wallet "
            "of this keystore that could sign the escrow itself (`dcent wallet grant` it first)"
        ) from None


async def _agreed_contract(rpc: NodeRpc, job_id: str, timeout_s: float) -> SignedContract | None:
    """The contract the node agreed for ``job_id`` once it waits for its payer; None when the job
    ended before (its error is in ``job_get``)."""
    with trio.fail_after(timeout_s):
        while True:
            job = await get_job(rpc, job_id)
            state = job_state(job)
            if state in _ENDED:
                return None
            if state in _PAST_CONTRACT:
                raise BadNodeAnswer(f"job {job_id} went on without its payer's escrow ({state})")
            if job.get("awaiting_payer") is True:
                try:
                    return SignedContract.decode(bytes.fromhex(answer_str(job, "contract", "job_get")))
                except (ValueError, DecodeError) as exc:
                    raise BadNodeAnswer(f"job_get: the contract does not decode: {exc}") from None
            await trio.sleep(CONTRACT_POLL_S)


def _check_contract(contract: SignedContract, spec: JobSpec, payer: str) -> None:
    """Sign nothing but the job asked for, paid by this wallet, within the spec's price."""
    terms = contract.terms
    if terms.payer != Address.parse(payer).raw:
        raise BadNodeAnswer("the node's contract names another payer")
    if terms.job_hash != spec.job_hash() or terms.price_per_gpu_second > spec.max_price_per_gpu_second:
        raise BadNodeAnswer("the node's contract is not for this job, or pays more than its maximum price")
    if not contract.is_fully_signed():
        raise BadNodeAnswer("the node's contract lacks a valid signature")


async def escrow_as_payer(
    args: argparse.Namespace,
    rpc: NodeRpc,
    wallet: Wallet,
    job_id: str,
    spec: JobSpec,
    *,
    timeout_s: float,
) -> Mapping[str, Any] | TxOutcome:
    """Wait for the contract of ``job_id``, then sign and submit its escrow with ``wallet``'s key.
    Returns the escrow's outcome, or the job as ``job_get`` answers it when it ended first."""
    contract = await _agreed_contract(rpc, job_id, timeout_s)
    if contract is None:
        return await get_job(rpc, job_id)
    _check_contract(contract, spec, wallet.address)
    prepared = await prepare(rpc, wallet.address, fee=None, nonce=None)
    require_balance(prepared, contract.terms.max_cost, "the job's escrow")
    key = await unlock_wallet(args, wallet)
    return await send(rpc, key, prepared, OpenEscrow(contract), wait=True, timeout_s=timeout_s)
