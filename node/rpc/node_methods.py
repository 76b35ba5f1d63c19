"""The node's JSON-RPC methods: the node itself, its peers and GPUs, the market's capacity table,
the chain, accounts, transactions, validators, governance and economics.

Shapes follow the RPC contract (``docs/rpc.md`` is generated from this table): amounts are
decimal strings of base units, addresses ``dct1...``, hashes and keys lowercase hex, heights,
nonces and counts JSON integers.

Reads of the ledger state run on the trio thread without awaiting in between: the consensus
driver replaces the state on that same thread, so a handler sees one consistent state. Reads of
the SQLite store go through ``trio.to_thread``. A handler that cannot find what it is asked for
raises a typed error (:class:`UnknownBlock`, :class:`UnknownTx`, the ledger's
:class:`UnknownProposal`); a refused transaction raises the ledger's or the mempool's error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import trio

from node import tx_history
from node.rpc.economics_methods import MAX_HEIGHT  # i16view
from node.rpc.errors import UnknownBlock, UnknownTx
from node.rpc.methods import MethodSpec, package_version
from node.rpc.params import AddressParam, HexBytes, Int, Param
from node.rpc.staking_methods import validator_json
from node.rpc.views import ChainReader, NodeReads, PendingTxs
from node.services.consensus_driver import wall_clock_ms
from node.services.mempool import (
    BlockedByPendingTx,
    DuplicateTx,
    MempoolBusy,
    MempoolFull,
    NonceGap,
    NonceTaken,
    PendingSpendExceedsBalance,
    SenderLimit,
)
from node.store import IndexedTx
from node.tx_history import ContractInfo
from protocol.consensus.messages import Block, CommitCertificate
from protocol.crypto import Address, address_of
from protocol.ledger import staking
from protocol.ledger.errors import (
    BadNonce,
    BadSignature,
    FeeTooLow,
    InsufficientFunds,
    InsufficientStake,
    MalformedTx,
    UnknownProposal,
    UnknownTxKind,
    WrongChainId,
)
from protocol.ledger.genesis import genesis_state
from protocol.ledger.gov import tally_votes
from protocol.ledger.state import GovProposal, LedgerState
from protocol.ledger.tx import (
    MAX_TX_BYTES,
    Transfer,
    Tx,
    decode_tx,
)
from protocol.market.capacity import CapacityAnnouncement

#: The most history entries one ``account_history`` call returns.
MAX_HISTORY = 1000

_TX_FIELDS = (
    "`hash`, `kind`, `sender` (dct1), `recipient` (dct1 for a transfer, else null), `nonce`, `fee` "
    "(decimal string), `amount` (decimal string of what the transaction moved: a transfer's, stake's "
    "or delegation's amount, the maximum cost an escrow locks, the pay of a settlement or claim, what "
    "a finalize pays or a dispute burns, the deposit a refund returns, a proposal's deposit, a grant's "
    "cap; null where nothing moves), `details` (per kind: `contract_hash`, `payer`, `provider`, "
    "`outcome`, `gpu_ms`, `grantee`, `expiry_height`, `kinds`, `validator`, `source`, `destination`)"
)


# --------------------------------------------------------------------------------------------
# JSON forms
# --------------------------------------------------------------------------------------------


def _address(raw: bytes) -> str:
    return str(Address(raw))


def tx_json(tx: Tx, contract: ContractInfo | None = None) -> dict[str, object]:
    """The fields every transaction answer carries (``tx_get``, ``account_history``);
    ``contract``: the contract of an escrow transaction, as the store indexed it (its pay)."""
    msg = tx.msg
    moved = tx_history.amount(tx, contract)
    return {
        "hash": tx.hash.hex(),
        "kind": msg.KIND,
        "sender": _address(tx.sender),
        "recipient": _address(msg.to) if isinstance(msg, Transfer) else None,
        "nonce": tx.nonce,
        "fee": str(tx.fee),
        "amount": None if moved is None else str(moved),
        "details": tx_history.details(tx, contract),
    }


def _contract_for(store: ChainReader, tx: Tx) -> ContractInfo | None:
    """The indexed contract of an escrow transaction (runs in a worker thread)."""
    contract_hash = tx_history.contract_hash_of(tx)
    return store.contract(contract_hash) if contract_hash is not None else None


def live_tally(state: LedgerState, proposal: GovProposal) -> dict[str, int]:
    """The votes of a proposal still voting, as the ledger would tally them now (delegators'
    own votes, then their validators' for the rest; the tally at the end of the period uses the
    stake then, so this is a forecast)."""
    return tally_votes(state, proposal.id)


def proposal_json(state: LedgerState, proposal: GovProposal) -> dict[str, object]:
    if proposal.status == "voting":
        tally = live_tally(state, proposal)
    else:
        tally = {"yes": proposal.yes, "no": proposal.no, "abstain": proposal.abstain, "veto": proposal.veto}
    return {
        "id": proposal.id,
        "param": proposal.param,
        "value": str(proposal.value),
        "proposer": _address(proposal.proposer),
        "deposit": str(proposal.deposit),
        "status": proposal.status,
        "submit_height": proposal.submit_height,
        "end_height": proposal.end_height,
        "tally": {option: str(power) for option, power in tally.items()},
    }


def capacity_json(ann: CapacityAnnouncement) -> dict[str, object]:
    return {
        "provider": _address(address_of(ann.provider)),
        "public_key": ann.provider.hex(),
        "peer_id": ann.peer_id,
        "gpus": [gpu.to_json() for gpu in ann.gpus],
        "free_gpus": len(ann.free_gpus()),
        "simulated": ann.simulated,
        "price_per_gpu_second": str(ann.price_per_gpu_second),
        "quote": ann.quote or "DCT",
        "quoted_price": str(ann.quote_price_per_gpu_second) if ann.quoted else None,
        "collateral": str(ann.collateral),
        "stake": str(ann.stake),
        "executors": list(ann.executors),
        "limits": {
            "cpu_millicores": ann.limits.cpu_millicores,
            "memory_bytes": ann.limits.memory_bytes,
            "processes": ann.limits.processes,
            "disk_bytes": ann.limits.disk_bytes,
            "enforced": list(ann.limits.enforced),
            "sandboxed": ann.limits.sandboxed,
        },
        "expires_at_ms": ann.expires_at_ms,
    }


def _pending_tx(mempool: PendingTxs, tx_hash: bytes) -> Tx | None:
    return mempool.get(tx_hash)


def _load_committed(store: ChainReader, entries: list[IndexedTx]) -> list[Tx]:
    """The transactions the index points at, decoded from their blocks (each block read once).

    Runs in a worker thread. Raises :class:`UnknownBlock` if an indexed block is missing.
    """
    blocks: dict[int, Block] = {}
    found = []
    for entry in entries:
        block = blocks.get(entry.height)
        if block is None:
            stored = store.block(entry.height)
            if stored is None:
                raise UnknownBlock(f"block {entry.height} of transaction {entry.hash.hex()} is not stored")
            block = blocks[entry.height] = Block.decode(stored.block)
        found.append(decode_tx(block.txs[entry.index]))
    return found


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


_ADDRESS = Param("address", AddressParam(), "the account, dct1...")

NODE_METHODS = (
    MethodSpec(
        "node_info",
        "Who this node is: identity, chain, height, what it sells, where its RPC listens.",
        returns="object: `moniker`, `chain_id`, `version`, `peer_id`, `listen_addrs`, `address` "
        "(the node's account and validator key), `public_key`, `height`, `validator` (in the "
        "active set), `gpus` (schedulable units sold), `simulated_gpus`, `executor`, `rpc_url`, "
        "`provider` (as `node_status`)",
    ),
    MethodSpec(
        "node_status",
        """Is this node well: its height, its peers, and whether it sells jobs (its sandbox's
        self-test), with the reason and the fix when it does not.""",
        returns="object: `height`, `peers`, `executor`, `provider`: `{selling, summary, reason, fix, "
        "sandboxed, limits_enforced, limits_not_enforced}` (whether this node sells jobs now and, "
        "when its sandbox's self-test fails, why and the fix)",
    ),
    MethodSpec(
        "net_peers",
        "The peers connected now, with their known addresses and their standing.",
        returns="array of `{peer_id, addrs, direction, connected_s, score, refusals, bans}`, "
        "sorted by `peer_id` (`score`: misbehaviour, decaying; a peer at 100 is banned)",
    ),
    MethodSpec(
        "net_scores",
        """What peers' input has cost them: scores, bans, and refused messages by protocol and
        reason (node/p2p/guard.py).""",
        returns="object: `peers` (every peer with a score, refusal or ban: `{peer_id, score, "
        "refusals, bans, banned_for_s}`), `banned` (peer ids refused now), `refusals` "
        "(`{protocol, reason, count}` of every message refused since start), `ban_threshold`",
    ),
    MethodSpec(
        "gpu_list",
        "This node's GPUs, probed now (declared GPUs when the node simulates them).",
        returns="object: `simulated`, `devices` (each as `dcent gpu list --json` prints it)",
    ),
    MethodSpec(
        "market_capacity",
        "Every provider's current capacity announcement this node has verified.",
        returns="array of `{provider, public_key, peer_id, gpus, free_gpus, simulated, "
        "price_per_gpu_second, quote, quoted_price, collateral, stake, executors, limits, "
        "expires_at_ms}` by provider key; `quote`: `DCT` or the asset the provider quotes in, "
        "`quoted_price` its price per GPU-second in that asset's base units (null for DCT); "
        "`limits`: `{cpu_millicores, memory_bytes, processes, disk_bytes, enforced, sandboxed}`, the "
        "most one job may ask for and the limit kinds the provider enforces",
    ),
    MethodSpec(
        "chain_head",
        "The newest stored block: height, hashes and time (the genesis before any block).",
        returns="object: `chain_id`, `height`, `hash`, `state_hash`, `time_ms`, `validators` (count)",
    ),
    MethodSpec(
        "chain_getBlock",
        "One stored block: its header fields and its transactions' hashes.",
        (Param("height", Int(min=0, max=MAX_HEIGHT), "block height"),),
        errors=(UnknownBlock,),
        returns="object: `height`, `hash`, `parent_hash`, `time_ms`, `proposer`, `state_hash`, "
        "`txs` (transaction hashes), `evidence` (count), `signers` (addresses whose precommits "
        "commit it, in the certificate's order)",
    ),
    MethodSpec(
        "account_get",
        "An account's balance, nonce and stake in the committed state.",
        (_ADDRESS,),
        returns="object: `address`, `balance`, `nonce`, `bonded` (the worth of its delegations), "
        "`unbonding` (what is on its way back to it) (zeros for an unknown account)",
    ),
    MethodSpec(
        "account_history",
        """Committed transactions the account sent, received, or is a party of (an escrow its
        grant paid and what closed it, a grant to it, a delegation to its validator), newest
        first, each with what it moved.""",
        (_ADDRESS, Param("limit", Int(min=1, max=MAX_HISTORY), "most entries to return", default=100)),
        returns=f"array, newest first, of committed transactions: `height`, `index`, {_TX_FIELDS}",
    ),
    MethodSpec(
        "tx_submit",
        """Admit a signed transaction to the mempool and relay it. Refused with the ledger's code
        when it cannot apply after the sender's waiting transactions (any ledger error the dry run
        meets, e.g. 2006, 2010, 2033), or the mempool's (5601-5608; 5605 busy and 5602 full: retry
        later or pay more per byte).""",
        (Param("tx", HexBytes(max_len=MAX_TX_BYTES), "the signed transaction's bytes"),),
        errors=(
            MalformedTx,
            UnknownTxKind,
            WrongChainId,
            FeeTooLow,
            BadNonce,
            InsufficientFunds,
            InsufficientStake,
            BadSignature,
            DuplicateTx,
            NonceTaken,
            PendingSpendExceedsBalance,
            SenderLimit,
            NonceGap,
            BlockedByPendingTx,
            MempoolBusy,
            MempoolFull,
        ),
        returns="object: `hash`",
    ),
    MethodSpec(
        "tx_get",
        "A transaction waiting in the mempool or committed in a stored block.",
        (Param("hash", HexBytes(length=32), "transaction hash"),),
        errors=(UnknownTx,),
        returns='object: `status` ("pending" or "committed"), `height` and `index` (null while '
        f"pending), {_TX_FIELDS}",
    ),
    MethodSpec(
        "validator_list",
        "The active validator set, as consensus uses it.",
        returns="array of the active set, by consensus address: as `validator_get` answers, with "
        "`consensus_address` and `power`",
    ),
    MethodSpec(
        "gov_proposals",
        "Every governance proposal, by id.",
        returns="array of proposals by id: `id`, `param`, `value`, `proposer`, `deposit`, `status`, "
        "`submit_height`, `end_height`, `tally` (`yes`, `no`, `abstain`, `veto` as stake; live "
        "while voting)",
    ),
    MethodSpec(
        "gov_get",
        "One governance proposal.",
        (Param("id", Int(), "proposal id"),),
        errors=(UnknownProposal,),
        returns="one proposal, as `gov_proposals` lists it",
    ),
    MethodSpec(
        "economics_params",
        "The economic and governance parameters in force, and the supply figures.",
        returns="object: `params` (name to decimal string; ratios scaled by 10^18), `supply`, "
        "`minted`, `burned`, `bonded`, `inflation` (scaled by 10^18), `community_pool`, `provider_pool`",
    ),
)


class NodeMethods:
    """The handlers of :data:`NODE_METHODS`, over what they read of the running node;
    ``rpc_url`` tells where the RPC server listens (known once it started, after this table)."""

    def __init__(self, reads: NodeReads, rpc_url: Callable[[], str]) -> None:
        self._reads = reads
        self._rpc_url = rpc_url
        self._genesis_state_hash: bytes | None = None

    def _state(self) -> LedgerState:
        return self._reads.app.state

    # --- the node --------------------------------------------------------------------------
    async def node_info(self) -> dict[str, object]:
        reads = self._reads
        identity = reads.identity
        state = self._state()
        key = identity.key
        report = reads.capacity.last_report
        return {
            "moniker": identity.moniker,
            "chain_id": identity.chain_id,
            "version": package_version(),
            "peer_id": reads.host.peer_id,
            "listen_addrs": list(reads.host.listen_addrs),
            "address": str(key.address),
            "public_key": key.public_key.raw.hex(),
            "height": reads.driver.height,
            "validator": any(member.address == key.address.raw for member in state.validator_set()),
            "gpus": len(report.schedulable_units()) if report is not None else 0,
            "simulated_gpus": identity.simulated_gpus,
            "executor": identity.executor,
            "rpc_url": self._rpc_url(),
            "provider": reads.readiness.status().to_json(),
        }

    async def node_status(self) -> dict[str, object]:
        reads = self._reads
        return {
            "height": reads.driver.height,
            "peers": len(reads.host.peers()),
            "executor": reads.identity.executor,
            "provider": reads.readiness.status().to_json(),
        }

    async def net_peers(self) -> list[dict[str, object]]:
        host = self._reads.host
        now = trio.current_time()
        peers = []
        for peer in sorted(host.peers(), key=lambda peer: peer.peer_id):
            standing = host.guard.standing(peer.peer_id)
            peers.append(
                {
                    "peer_id": peer.peer_id,
                    "addrs": list(peer.addrs),
                    "direction": peer.direction,
                    "connected_s": round(now - peer.connected_since, 1),
                    "score": standing.score,
                    "refusals": standing.refusals,
                    "bans": standing.bans,
                }
            )
        return peers

    async def net_scores(self) -> dict[str, object]:
        guard = self._reads.host.guard
        return {
            "peers": [
                {
                    "peer_id": s.peer_id,
                    "score": s.score,
                    "refusals": s.refusals,
                    "bans": s.bans,
                    "banned_for_s": round(s.banned_for_s, 1),
                }
                for s in guard.standings()
            ],
            "banned": guard.banned(),
            "refusals": [
                {"protocol": protocol, "reason": reason, "count": count}
                for (protocol, reason), count in sorted(guard.refusals.items())
            ],
            "ban_threshold": guard.settings.ban_threshold,
        }

    async def gpu_list(self) -> dict[str, object]:
        report = await self._reads.capacity.probe()
        return {
            "simulated": self._reads.identity.simulated_gpus,
            "devices": [device.to_json() for device in report.devices],
        }

    async def market_capacity(self) -> list[dict[str, object]]:
        now = wall_clock_ms()
        return [capacity_json(ann) for ann in self._reads.capacity.entries() if ann.expires_at_ms > now]

    # --- the chain -------------------------------------------------------------------------
    async def chain_head(self) -> dict[str, object]:
        genesis = self._reads.identity.genesis
        store = self._reads.store

        def read() -> tuple[int, bytes, bytes, int] | None:
            head = store.head()
            stored = None if head is None else store.block(head.height)
            if stored is None:
                return None
            return stored.height, stored.hash, stored.state_hash, Block.decode(stored.block).time_ms

        head = await trio.to_thread.run_sync(read)
        validators = len(self._state().validator_set())
        if head is None:
            height, block_hash, state_hash, time_ms = 0, genesis.genesis_hash(), self._genesis_hash(), 0
        else:
            height, block_hash, state_hash, time_ms = head
        return {
            "chain_id": genesis.chain_id,
            "height": height,
            "hash": block_hash.hex(),
            "state_hash": state_hash.hex(),
            "time_ms": time_ms,
            "validators": validators,
        }

    def _genesis_hash(self) -> bytes:
        if self._genesis_state_hash is None:
            self._genesis_state_hash = genesis_state(self._reads.identity.genesis).state_hash()
        return self._genesis_state_hash

    async def chain_get_block(self, height: int) -> dict[str, object]:
        store = self._reads.store
        stored = await trio.to_thread.run_sync(store.block, height)
        if stored is None:
            raise UnknownBlock(
                f"no block at height {height} is stored here (head {self._reads.driver.height})"
            )
        block = await trio.to_thread.run_sync(Block.decode, stored.block)
        certificate = await trio.to_thread.run_sync(CommitCertificate.decode, stored.certificate)
        return {
            "height": stored.height,
            "hash": stored.hash.hex(),
            "parent_hash": block.parent_hash.hex(),
            "time_ms": block.time_ms,
            "proposer": _address(block.proposer),
            "state_hash": stored.state_hash.hex(),
            "txs": [hashlib.sha256(raw).hexdigest() for raw in block.txs],
            "evidence": len(block.evidence),
            "signers": [_address(signer) for signer in certificate.signers],
        }

    # --- accounts and transactions -----------------------------------------------------------
    async def account_get(self, address: Address) -> dict[str, object]:
        state = self._state()
        account = state.account(address.raw)
        unbonding = sum(
            entry.amount
            for entries in state.unbonding.values()
            for entry in entries
            if entry.delegator == address.raw
        )
        return {
            "address": str(address),
            "balance": str(account.balance),
            "nonce": account.nonce,
            "bonded": str(staking.bonded_by(state, address.raw)),
            "unbonding": str(unbonding),
        }

    async def account_history(self, address: Address, limit: int) -> list[dict[str, object]]:
        store = self._reads.store

        def read() -> list[tuple[IndexedTx, Tx, ContractInfo | None]]:
            entries = store.txs_of(address.raw, limit)
            txs = _load_committed(store, entries)
            return [(entry, tx, _contract_for(store, tx)) for entry, tx in zip(entries, txs, strict=True)]

        return [
            {"height": entry.height, "index": entry.index, **tx_json(tx, contract)}
            for entry, tx, contract in await trio.to_thread.run_sync(read)
        ]

    async def tx_submit(self, tx: bytes) -> dict[str, object]:
        admitted = await self._reads.submit_tx(tx)
        return {"hash": admitted.hash.hex()}

    async def tx_get(self, hash: bytes) -> dict[str, object]:
        # The mempool first: a committed transaction is stored before it leaves the mempool, so
        # one that is in neither place after these two looks is really unknown.
        pending = _pending_tx(self._reads.mempool, hash)
        if pending is not None:
            return {"status": "pending", "height": None, "index": None, **tx_json(pending)}
        store = self._reads.store

        def read() -> tuple[IndexedTx, Tx, ContractInfo | None] | None:
            entry = store.tx(hash)
            if entry is None:
                return None
            tx = _load_committed(store, [entry])[0]
            return entry, tx, _contract_for(store, tx)

        found = await trio.to_thread.run_sync(read)
        if found is None:
            raise UnknownTx(f"no transaction {hash.hex()} is pending or committed on this node")
        entry, tx, contract = found
        return {"status": "committed", "height": entry.height, "index": entry.index, **tx_json(tx, contract)}

    # --- validators, governance, economics ---------------------------------------------------
    async def validator_list(self) -> list[dict[str, object]]:
        state = self._state()
        members = []
        for member in state.validator_set():
            operator = state.operator_of(member.address) or member.address
            members.append(
                {
                    **validator_json(state, operator),
                    "consensus_address": _address(member.address),
                    "power": str(member.power),
                }
            )
        return members

    async def gov_proposals(self) -> list[dict[str, object]]:
        state = self._state()
        return [proposal_json(state, proposal) for _, proposal in state.proposals.sorted_items()]

    async def gov_get(self, id: int) -> dict[str, object]:
        state = self._state()
        proposal = state.proposals.get(id)
        if proposal is None:
            raise UnknownProposal(f"no proposal {id}")
        return proposal_json(state, proposal)

    async def economics_params(self) -> dict[str, object]:
        state = self._state()
        totals = state.vars
        return {
            "params": {name: str(value) for name, value in sorted(state.params.to_wire().items())},
            "supply": str(state.total_supply()),
            "minted": str(totals["minted"]),
            "burned": str(totals["burned"]),
            "bonded": str(totals["total_bonded"]),
            "inflation": str(totals["inflation"]),
            "community_pool": str(totals["community_pool"]),
            "provider_pool": str(totals["provider_pool"]),
        }
