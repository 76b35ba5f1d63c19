"""A deterministic world for consensus: virtual time, a faulty network, crashing nodes.

One process, one seeded :class:`~protocol.sim.rng.SplitMix64`, one event queue ordered by
(virtual time, sequence number): the same seed replays the same run, event for event. Each node
is a real :class:`~protocol.consensus.core.ConsensusCore` over a real
:class:`~protocol.consensus.ledger_app.LedgerApp` (the token ledger), with a "disk" (a dict of
what its effects persisted) that survives crashes; a restart rebuilds the ledger by replaying
the stored blocks and the core from the stored signer state.

Byzantine validators are *twins*: two honest-code instances sharing one key, unaware of each
other, so they sign conflicting votes whenever they see different things. A twin that proposes
also equivocates on purpose: it sends half of its peers a second, different block.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
from dataclasses import dataclass, field

from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Persist,
    ReportEvidence,
    RequestSync,
    SendBlocks,
    SetTimeout,
    Timeout,
)
from protocol.consensus.errors import InvalidConfig, InvalidMessage
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    SyncRequest,
    SyncResponse,
    Vote,
    proposal_sign_bytes,
)
from protocol.consensus.sync import serve_sync_request
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.crypto import PrivateKey
from protocol.encoding import Record
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Transfer, sign_tx
from protocol.sim.checker import Checker
from protocol.sim.faults import Crash, FaultSchedule, Partition, draw_schedule, no_faults
from protocol.sim.mempool import SimMempool, tx_signature_known_valid
from protocol.sim.rng import SplitMix64
from protocol.units import DCT

CHAIN_ID = "dcent-sim"
VALIDATOR_STAKE = 1_000 * DCT
CLIENT_BALANCE = 1_000_000 * DCT
SYNC_BATCH = 32

#: Timeouts scaled to the simulated network (1-20 ms links once healed).
SIM_CONSENSUS = ConsensusConfig(
    timeout_propose_ms=150,
    timeout_prevote_ms=80,
    timeout_precommit_ms=80,
    timeout_delta_ms=40,
    gossip_interval_ms=250,
    sync_retry_ms=250,
)

# Event kinds, in the order ties at one instant are broken by sequence number anyway.
_DELIVER, _TIMER, _CRASH, _RESTART, _PARTITION_START, _PARTITION_END, _SUBMIT_TX, _HEAL = range(8)

_WIRE_TYPES: dict[str, type[Record]] = {
    cls.__name__: cls for cls in (Proposal, Vote, DuplicateVoteEvidence, SyncRequest, SyncResponse)
}

NetworkMessage = Proposal | Vote | DuplicateVoteEvidence | SyncRequest | SyncResponse | bytes


@dataclass(frozen=True, slots=True)
class SimConfig:
    validators: int = 4
    #: Validators run as twins (two instances sharing one key).
    byzantine: int = 0
    #: Every honest node must reach this height.
    heights: int = 20
    faults: bool = True
    #: Twins that propose send conflicting blocks to the two halves of their peers.
    equivocate: bool = True
    #: Encode every message on send and decode it on delivery (exercises the codec).
    wire: bool = False
    clients: int = 3
    tx_interval_ms: int = 150
    #: After the heal, each honest node must commit within this long of the heal or of its
    #: previous commit.
    liveness_bound_ms: int = 30_000
    consensus: ConsensusConfig = SIM_CONSENSUS

    def fault_window_ms(self) -> tuple[int, int]:
        """When the network heals: scaled to the run, so faults hit most of its heights (a
        height takes ~30 ms of virtual time on a healthy network)."""
        return (max(300, 15 * self.heights), max(600, 50 * self.heights))

    def __post_init__(self) -> None:
        if self.validators < 1 or not 0 <= self.byzantine <= self.validators:
            raise InvalidConfig("need at least one validator and 0 <= byzantine <= validators")
        if self.heights < 1:
            raise InvalidConfig("heights must be positive")


@functools.cache
def validator_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"dcent-sim/validator/{index}")


@functools.cache
def client_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"dcent-sim/client/{index}")


@functools.cache
def sim_genesis(validators: int, clients: int) -> tuple[Genesis, LedgerState, bytes]:
    genesis = dev_genesis(
        CHAIN_ID,
        [(validator_key(i).public_key.raw, VALIDATOR_STAKE) for i in range(validators)],
        [(client_key(i).address.raw, CLIENT_BALANCE) for i in range(clients)],
        Params(),
    )
    return genesis, genesis_state(genesis), genesis.genesis_hash()


@functools.cache
def _client_tx(client: int, clients: int, nonce: int) -> bytes:
    """The transfer a client sends with ``nonce`` (the same bytes every time: resubmission of a
    lost transaction is a duplicate, not a second payment)."""
    recipient = client_key((client + 1 + nonce % max(clients - 1, 1)) % clients).address.raw
    return sign_tx(
        client_key(client), CHAIN_ID, nonce, Params().min_fee, Transfer(recipient, 1 + nonce % 997)
    )


@dataclass
class SimNode:
    index: int
    key_index: int
    key: PrivateKey
    byzantine: bool
    clock_rate: int
    clock_offset: int
    verifier: SignatureVerifier
    config: SimConfig
    #: The node's disk: survives crashes.
    sign_state: SignState | None = None
    blocks: list[CommittedBlock] = field(default_factory=list)
    #: Volatile parts.
    core: ConsensusCore | None = None
    app: LedgerApp | None = None
    mempool: SimMempool = field(default_factory=SimMempool)
    incarnation: int = 0
    crash_on_persist: bool = False
    last_progress_ms: int = 0

    @property
    def alive(self) -> bool:
        return self.core is not None

    @property
    def height(self) -> int:
        return len(self.blocks)

    def local_time(self, now_ms: int) -> int:
        return self.clock_offset + now_ms * self.clock_rate // 1000

    def boot(self, now_ms: int) -> list[Effect]:
        """(Re)create the volatile state from disk and start the core."""
        _, state, genesis_hash = sim_genesis(self.config.validators, self.config.clients)
        mempool = SimMempool()
        app = LedgerApp(
            state.copy(),
            genesis_hash=genesis_hash,
            verifier=self.verifier,
            tx_source=mempool.candidates,
            tx_verified=tx_signature_known_valid,
        )
        for committed in self.blocks:
            app.commit(committed.block, committed.certificate)
        self.app, self.mempool = app, mempool
        self.core = ConsensusCore(
            app,
            key=self.key,
            config=self.config.consensus,
            sign_state=self.sign_state,
            verifier=self.verifier,
        )
        return self.core.start(self.local_time(now_ms))

    def crash(self) -> None:
        self.core = None
        self.app = None
        self.incarnation += 1
        self.crash_on_persist = False


@dataclass
class RunResult:
    seed: int
    config: SimConfig
    schedule: FaultSchedule
    safety_violations: list[str]
    liveness_failures: list[str]
    heights: tuple[int, ...]
    events: int
    virtual_ms: int
    trace_hash: str
    #: What the faults did: crashes, dropped messages, blocks synced, commits after round 0...
    stats: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.safety_violations and not self.liveness_failures


class Simulation:
    """One seeded run. ``run()`` returns a :class:`RunResult`."""

    def __init__(
        self,
        seed: int,
        config: SimConfig,
        *,
        verifier: SignatureVerifier | None = None,
        schedule: FaultSchedule | None = None,
    ) -> None:
        self.seed = seed
        self.config = config
        rng = SplitMix64(seed)
        self._schedule_rng = rng.fork()
        self._net_rng = rng.fork()
        self._tx_rng = rng.fork()
        self.verifier = verifier or SignatureVerifier()
        key_of_node = list(range(config.validators))
        twins: list[tuple[int, int]] = []
        for key_index in range(config.validators - config.byzantine, config.validators):
            twins.append((key_index, len(key_of_node)))
            key_of_node.append(key_index)
        self.key_of_node = tuple(key_of_node)
        byzantine_keys = {k for k, _ in twins}
        if schedule is not None:
            if len(schedule.clock_rate_per_mille) != len(key_of_node):
                raise InvalidConfig("the schedule's clocks do not match the number of nodes")
            self.schedule = schedule
        elif config.faults:
            self.schedule = draw_schedule(
                self._schedule_rng,
                key_of_node=self.key_of_node,
                validators=config.validators,
                twin_nodes=tuple(twins),
                heal_range_ms=config.fault_window_ms(),
            )
        else:
            self.schedule = no_faults(len(key_of_node))
        self.nodes = [
            SimNode(
                index=i,
                key_index=k,
                key=validator_key(k),
                byzantine=k in byzantine_keys,
                clock_rate=self.schedule.clock_rate_per_mille[i],
                clock_offset=self.schedule.clock_offset_ms[i],
                verifier=self.verifier,
                config=config,
            )
            for i, k in enumerate(self.key_of_node)
        ]
        self.honest = [node for node in self.nodes if not node.byzantine]
        self.checker = Checker(
            CHAIN_ID, self.verifier, frozenset(validator_key(k).address.raw for k in byzantine_keys)
        )
        self.liveness_failures: list[str] = []
        self.stats = dict.fromkeys(
            ("crashes", "dropped", "synced_blocks", "late_round_commits", "max_round", "evidence_committed"),
            0,
        )
        self._queue: list[tuple[int, int, int, object, object]] = []
        self._seq = 0
        self.now = 0
        self.events = 0
        self._partitions: dict[int, tuple[tuple[int, ...], ...]] = {}
        self._trace = hashlib.sha256()
        self._nodes_of_key: dict[bytes, list[SimNode]] = {}
        for node in self.nodes:
            self._nodes_of_key.setdefault(node.key.address.raw, []).append(node)

    # ----------------------------------------------------------------------------------------
    # Event queue
    # ----------------------------------------------------------------------------------------

    def _push(self, at_ms: int, kind: int, a: object, b: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, kind, a, b))

    def run(self) -> RunResult:
        schedule = self.schedule
        for index, partition in enumerate(schedule.partitions):
            if partition.start_ms == 0:
                self._partitions[index] = self._groups(partition)  # in force before the first send
            else:
                self._push(partition.start_ms, _PARTITION_START, index)
            self._push(partition.end_ms, _PARTITION_END, index)
        for node in self.nodes:
            self._apply(node, node.boot(0))
        for crash in schedule.crashes:
            self._push(crash.at_ms, _CRASH, crash)
            self._push(crash.restart_ms, _RESTART, crash.node)
        self._push(schedule.heal_ms, _HEAL, None)
        self._push(self.config.tx_interval_ms, _SUBMIT_TX, None)
        target = self.config.heights
        bound = self.config.liveness_bound_ms
        heal = schedule.heal_ms
        queue = self._queue
        while queue and not self.checker.violations:
            at, _, kind, a, b = heapq.heappop(queue)
            if at > heal:
                # Done when every honest node has the target height and has committed since
                # the heal (so each run shows progress after the faults stop).
                waiting = [n for n in self.honest if n.height < target or n.last_progress_ms <= heal]
                if not waiting:
                    break
                late = [n for n in waiting if at > max(heal, n.last_progress_ms) + bound]
                if late:
                    self.now = max(heal, min(n.last_progress_ms for n in late)) + bound
                    for node in late:
                        self.liveness_failures.append(
                            f"t={self.now}ms node {node.index} stuck at height {node.height} "
                            f"(target {target}): no commit within {bound} ms of the heal or its last commit"
                        )
                    break
            self.now = at
            self.events += 1
            self._dispatch(kind, a, b)
        for node in self.honest:
            if node.app is not None:
                self.checker.on_final_state(self.now, node.index, node.app.state)
        self._trace.update(f"end {self.now} {self.events}".encode())
        return RunResult(
            seed=self.seed,
            config=self.config,
            schedule=schedule,
            safety_violations=list(self.checker.violations),
            liveness_failures=self.liveness_failures,
            heights=tuple(node.height for node in self.nodes),
            events=self.events,
            virtual_ms=self.now,
            trace_hash=self._trace.hexdigest(),
            stats=dict(self.stats),
        )

    def _dispatch(self, kind: int, a: object, b: object) -> None:
        if kind == _DELIVER:
            assert isinstance(a, SimNode) and isinstance(b, tuple)
            self._deliver(a, b[0], b[1])
        elif kind == _TIMER:
            assert isinstance(a, SimNode) and isinstance(b, tuple)
            incarnation, timeout = b
            if a.core is not None and incarnation == a.incarnation:
                self._apply(a, a.core.on_timeout(timeout, a.local_time(self.now)))
        elif kind == _CRASH:
            assert isinstance(a, Crash)
            node = self.nodes[a.node]
            if node.alive:
                if a.after_persist:
                    node.crash_on_persist = True
                else:
                    node.crash()
                    self.stats["crashes"] += 1
        elif kind == _RESTART:
            assert isinstance(a, int)
            node = self.nodes[a]
            node.crash_on_persist = False
            if not node.alive:
                self._apply(node, node.boot(self.now))
        elif kind == _PARTITION_START:
            assert isinstance(a, int)
            self._partitions[a] = self._groups(self.schedule.partitions[a])
        elif kind == _PARTITION_END:
            assert isinstance(a, int)
            self._partitions.pop(a, None)
        elif kind == _SUBMIT_TX:
            self._submit_tx()
            if self.now < self.schedule.heal_ms + self.config.liveness_bound_ms:
                self._push(self.now + self.config.tx_interval_ms, _SUBMIT_TX, None)
        elif kind == _HEAL:
            self._partitions.clear()

    # ----------------------------------------------------------------------------------------
    # Network
    # ----------------------------------------------------------------------------------------

    def _groups(self, partition: Partition) -> tuple[tuple[int, ...], ...]:
        if partition.groups:
            return partition.groups
        # Isolate the node that proposes next at the most advanced honest replica.
        leader = max(self.honest, key=lambda n: (n.height, -n.index))
        core = leader.core or next((n.core for n in self.honest if n.core is not None), None)
        if core is not None:
            proposer = core.validators.proposer(core.height, core.round)
        else:  # before anyone started: the first proposer of the chain
            _, state, _ = sim_genesis(self.config.validators, self.config.clients)
            proposer = ValidatorSet.from_ledger(state.validator_set()).proposer(1, 0)
        victim = self._nodes_of_key[proposer][0].index
        return ((victim,), tuple(n.index for n in self.nodes if n.index != victim))

    def _connected(self, src: int, dst: int) -> bool:
        for groups in self._partitions.values():
            for group in groups:
                if src in group:
                    if dst not in group:
                        return False
                    break
        return True

    def _send(self, src: SimNode, dst: SimNode, message: NetworkMessage) -> None:
        if self._partitions and not self._connected(src.index, dst.index):
            self.stats["dropped"] += 1
            return
        rng = self._net_rng
        payload: object = message
        if self.config.wire and not isinstance(message, bytes):
            payload = (type(message).__name__, message.encode())
        if self.now < self.schedule.heal_ms:
            schedule = self.schedule
            if rng.chance(schedule.drop_per_mille):
                self.stats["dropped"] += 1
                return
            self._push(self.now + 1 + rng.below(schedule.max_delay_ms), _DELIVER, dst, (src, payload))
            if rng.chance(schedule.duplicate_per_mille):
                self._push(self.now + 1 + rng.below(schedule.max_delay_ms), _DELIVER, dst, (src, payload))
        else:
            self._push(self.now + 1 + rng.below(20), _DELIVER, dst, (src, payload))

    def _broadcast(self, src: SimNode, message: NetworkMessage) -> None:
        for dst in self.nodes:
            if dst is not src:
                self._send(src, dst, message)

    def _deliver(self, node: SimNode, src: SimNode, payload: object) -> None:
        core = node.core
        if core is None:
            return
        if isinstance(payload, tuple):
            name, data = payload
            message: object = _WIRE_TYPES[name].decode(data)
        else:
            message = payload
        if isinstance(message, bytes):
            assert node.app is not None
            if node.mempool.add(message, node.app.state):
                self._broadcast(node, message)
            return
        if isinstance(message, SyncRequest):
            self._serve_sync(node, src, message)
            return
        if isinstance(message, SyncResponse):
            for committed in message.blocks:
                if node.core is None:
                    return
                try:
                    effects = node.core.receive(committed, node.local_time(self.now))
                except InvalidMessage:
                    return
                self.stats["synced_blocks"] += sum(type(e) is Commit for e in effects)
                self._apply(node, effects)
            return
        assert isinstance(message, Proposal | Vote | DuplicateVoteEvidence)
        try:
            effects = core.receive(message, node.local_time(self.now))
        except InvalidMessage:
            return
        self._apply(node, effects)

    def _serve_sync(self, node: SimNode, requester: SimNode, request: SyncRequest) -> None:
        blocks = node.blocks

        def load(height: int) -> CommittedBlock | None:
            return blocks[height - 1] if 1 <= height <= len(blocks) else None

        response = serve_sync_request(request, last_height=len(blocks), load=load, max_blocks=SYNC_BATCH)
        if response.blocks:
            self._send(node, requester, response)

    # ----------------------------------------------------------------------------------------
    # Effects
    # ----------------------------------------------------------------------------------------

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        checker = self.checker
        for effect in effects:
            kind = type(effect)
            if kind is Broadcast:
                assert isinstance(effect, Broadcast)
                self._on_broadcast(node, effect.message)
            elif kind is SetTimeout:
                assert isinstance(effect, SetTimeout)
                self._set_timer(node, effect.timeout, effect.duration_ms)
            elif kind is Persist:
                assert isinstance(effect, Persist)
                node.sign_state = effect.state
                for vote in effect.state.last_votes:
                    checker.on_signed(self.now, vote, vote.validator)
                for proposal in effect.state.last_proposal:
                    checker.on_signed(self.now, proposal, node.key.address.raw)
                if node.crash_on_persist:
                    node.crash()  # the rest of this event's effects never happen
                    self.stats["crashes"] += 1
                    return
            elif kind is Commit:
                assert isinstance(effect, Commit)
                self._on_commit(node, effect)
            elif kind is RequestSync:
                assert isinstance(effect, RequestSync)
                self._request_sync(node, effect)
            elif kind is SendBlocks:
                assert isinstance(effect, SendBlocks)
                for peer in self._nodes_of_key.get(effect.peer, ()):
                    if peer is not node:
                        self._serve_sync(node, peer, SyncRequest(effect.from_height, SYNC_BATCH))
            elif kind is ReportEvidence:
                assert isinstance(effect, ReportEvidence)
                self._broadcast(node, effect.evidence)

    def _set_timer(self, node: SimNode, timeout: Timeout, duration_ms: int) -> None:
        # The node's clock runs at clock_rate/1000 of real time: convert its local duration.
        delay = -(-duration_ms * 1000 // node.clock_rate)
        self._push(self.now + delay, _TIMER, node, (node.incarnation, timeout))

    def _on_broadcast(self, node: SimNode, message: Proposal | Vote | DuplicateVoteEvidence) -> None:
        if isinstance(message, Vote):
            self.checker.on_signed(self.now, message, message.validator)
        elif (
            isinstance(message, Proposal)
            and node.byzantine
            and self.config.equivocate
            and message.pol_round == -1
        ):
            self._equivocate(node, message)
            return
        self._broadcast(node, message)

    def _equivocate(self, node: SimNode, proposal: Proposal) -> None:
        """Send half the peers the proposal and the other half a conflicting one."""
        block = dataclasses.replace(proposal.block, time_ms=proposal.block.time_ms + 1)
        payload = proposal_sign_bytes(CHAIN_ID, proposal.height, proposal.round, -1, block.hash)
        twin = Proposal(proposal.height, proposal.round, -1, block, node.key.sign(payload))
        peers = [n for n in self.nodes if n is not node]
        for position, peer in enumerate(peers):
            self._send(node, peer, proposal if position % 2 == 0 else twin)

    def _on_commit(self, node: SimNode, effect: Commit) -> None:
        assert node.app is not None and node.core is not None
        block = effect.block
        stats = self.stats
        stats["max_round"] = max(stats["max_round"], effect.certificate.round)
        stats["late_round_commits"] += effect.certificate.round > 0
        stats["evidence_committed"] += len(block.evidence)
        node.blocks.append(CommittedBlock(block, effect.certificate))
        node.last_progress_ms = self.now
        node.mempool.prune(node.app.state)
        self._trace.update(b"%d %d %d " % (self.now, node.index, block.height) + block.hash)
        self.checker.on_commit(
            now_ms=self.now,
            node=node.index,
            honest=not node.byzantine,
            block=block,
            certificate=effect.certificate,
            validators=node.app.validator_set(block.height),
            state=node.app.state,
            state_hash=effect.state_hash,
        )

    def _request_sync(self, node: SimNode, effect: RequestSync) -> None:
        candidates = [n for n in self._nodes_of_key.get(effect.peer, ()) if n is not node]
        if not candidates:
            candidates = [n for n in self.nodes if n is not node]
        peer = candidates[self._net_rng.below(len(candidates))]
        self._send(node, peer, SyncRequest(effect.from_height, SYNC_BATCH))

    # ----------------------------------------------------------------------------------------
    # Clients
    # ----------------------------------------------------------------------------------------

    def _submit_tx(self) -> None:
        """A client sends its next transfer (by the most advanced honest replica's nonce) to
        one live node, which gossips it."""
        clients = self.config.clients
        if clients < 2:
            return
        alive = [n for n in self.nodes if n.app is not None]
        if not alive:
            return
        client = self._tx_rng.below(clients)
        reference = max(alive, key=lambda n: (n.height, -n.index))
        assert reference.app is not None
        nonce = reference.app.state.account(client_key(client).address.raw).nonce + 1
        raw = _client_tx(client, clients, nonce)
        entry = alive[self._tx_rng.below(len(alive))]
        assert entry.app is not None
        if entry.mempool.add(raw, entry.app.state):
            self._broadcast(entry, raw)


def run_seed(
    seed: int,
    config: SimConfig,
    *,
    verifier: SignatureVerifier | None = None,
    schedule: FaultSchedule | None = None,
) -> RunResult:
    """Run one seeded simulation to the end (``schedule`` replaces the drawn fault schedule)."""
    return Simulation(seed, config, verifier=verifier, schedule=schedule).run()
