"""A deterministic world for consensus: virtual time, a faulty network, crashing nodes, adversaries.

One process, one seeded :class:`~protocol.sim.rng.SplitMix64`, one event queue ordered by
(virtual time, sequence number): the same seed replays the same run, event for event. Each node
is a real :class:`~protocol.consensus.core.ConsensusCore` over a real ledger (see ``node``).
Byzantine validators run a real core too, wrapped in an :class:`~protocol.sim.adversary.Adversary`
whose behaviours are drawn from the seed; stakes are unequal, the validator set changes during
the run, and clients send every kind of transaction (see ``setup``, ``clients``). The checker
(``checker``, ``model``) judges everything with code of its own.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass

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
from protocol.consensus.messages import (
    STEP_PROPOSE,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
)
from protocol.consensus.sync import serve_sync_request
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.encoding import Record
from protocol.sim.adversary import Adversary, draw_behaviours
from protocol.sim.checker import Checker
from protocol.sim.clients import Workload
from protocol.sim.events import (
    CrashNode,
    Deliver,
    Heal,
    PartitionEnds,
    PartitionStarts,
    RestartNode,
    SimEvent,
    SubmitTx,
    TimerFires,
)
from protocol.sim.faults import Crash, FaultSchedule, Partition, draw_schedule, no_faults
from protocol.sim.node import NetworkMessage, SimNode
from protocol.sim.rng import SplitMix64
from protocol.sim.setup import CHAIN_ID, Cast, draw_stakes, validator_key

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

_WIRE_TYPES: dict[str, type[Record]] = {
    cls.__name__: cls for cls in (Proposal, Vote, DuplicateVoteEvidence, SyncRequest, SyncResponse)
}


@dataclass(frozen=True, slots=True)
class SimConfig:
    validators: int = 4
    #: Validator keys held by Byzantine nodes (the last ones).
    byzantine: int = 0
    #: Every honest node must reach this height.
    heights: int = 20
    faults: bool = True
    #: Byzantine keys draw adversary behaviours from the seed; False: each is a pair of twins
    #: (honest code twice, nothing else), the simulator's first adversary.
    adversary: bool = True
    #: Encode every message on send and decode it on delivery (exercises the codec).
    wire: bool = False
    clients: int = 4
    tx_interval_ms: int = 50
    #: After the heal, each honest node must commit within this long of the heal or of its
    #: previous commit.
    liveness_bound_ms: int = 30_000
    #: Stakes drawn per validator (Byzantine ones smaller); False: all equal.
    unequal_stakes: bool = True
    #: Market and transfer values at the edges (free contracts, GPU-seconds of 2**63 - 1, ...).
    extremes: bool = True
    #: A validator joins the set and leaves it again during the run.
    set_changes: bool = True
    #: Stop at the first safety violation; False: go on until agreement is broken or the run
    #: ends (the negative control counts agreement violations, which often come later).
    stop_at_violation: bool = True
    consensus: ConsensusConfig = SIM_CONSENSUS
    #: Latency model of a healed link (see :mod:`protocol.sim.latency`): None keeps the default
    #: 1-20 ms uniform one-way delay; a value D makes every message take D ms plus a seeded
    #: uniform 0..``link_jitter_ms`` ms, one way (a round trip is then 2 x D on average + jitter).
    link_delay_ms: int | None = None
    link_jitter_ms: int = 0

    def fault_window_ms(self) -> tuple[int, int]:
        """When the network heals: scaled to the run, so faults hit most of its heights (a
        height takes ~30 ms of virtual time on a healthy network)."""
        return (max(300, 15 * self.heights), max(600, 50 * self.heights))

    def __post_init__(self) -> None:
        if self.validators < 1 or not 0 <= self.byzantine <= self.validators:
            raise InvalidConfig("need at least one validator and 0 <= byzantine <= validators")
        if self.heights < 1:
            raise InvalidConfig("heights must be positive")
        if (self.link_delay_ms is not None and self.link_delay_ms < 0) or self.link_jitter_ms < 0:
            raise InvalidConfig("link delay and jitter must be >= 0 ms")


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
    #: Stake units per validator key, and each Byzantine key's behaviours.
    stakes: tuple[int, ...] = ()
    adversaries: tuple[tuple[int, tuple[str, ...]], ...] = ()
    #: Per transaction committed on node 0: virtual ms from its submission to that commit.
    tx_finality_ms: tuple[int, ...] = ()
    #: Virtual ms at which node 0 committed each height, in order.
    commit_times_ms: tuple[int, ...] = ()

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
        cast_rng, adversary_rng = rng.fork(), rng.fork()
        self.verifier = verifier or SignatureVerifier()
        n, b = config.validators, config.byzantine
        self.cast = Cast(n, draw_stakes(cast_rng, n, b, unequal=config.unequal_stakes), config.clients)
        behaviours: dict[int, frozenset[str]] = {}
        for key_index in range(n - b, n):
            if config.adversary:
                behaviours[key_index] = draw_behaviours(adversary_rng)
            else:
                behaviours[key_index] = frozenset({"twin"})
        key_of_node = list(range(n))
        twins: list[tuple[int, int]] = []
        for key_index, chosen in behaviours.items():
            if "twin" in chosen:
                twins.append((key_index, len(key_of_node)))
                key_of_node.append(key_index)
        if config.set_changes:
            key_of_node.append(self.cast.joiner)
        self.key_of_node = tuple(key_of_node)
        if schedule is not None:
            if len(schedule.clock_rate_per_mille) != len(key_of_node):
                raise InvalidConfig("the schedule's clocks do not match the number of nodes")
            self.schedule = schedule
        elif config.faults:
            self.schedule = draw_schedule(
                self._schedule_rng,
                key_of_node=self.key_of_node,
                validators=n,
                twin_nodes=tuple(twins),
                heal_range_ms=config.fault_window_ms(),
                honest_nodes=tuple(i for i, k in enumerate(key_of_node) if k not in behaviours),
            )
        else:
            self.schedule = no_faults(len(key_of_node))
        self.nodes = [
            SimNode(
                index=i,
                key_index=k,
                key=validator_key(k),
                byzantine=k in behaviours,
                clock_rate=self.schedule.clock_rate_per_mille[i],
                clock_offset=self.schedule.clock_offset_ms[i],
                verifier=self.verifier,
                cast=self.cast,
                consensus=config.consensus,
            )
            for i, k in enumerate(self.key_of_node)
        ]
        self.adversaries: dict[int, Adversary] = {}
        colluders = tuple(validator_key(k) for k in sorted(behaviours))
        for node in self.nodes:
            if node.byzantine:
                chosen = behaviours[node.key_index]
                self.adversaries[node.index] = Adversary(
                    node.key,
                    chosen,
                    adversary_rng.fork(),
                    colluders=colluders,
                    primary=node.index == self.key_of_node.index(node.key_index),
                )
                node.forget_on_restart = "amnesia" in chosen
        self.behaviours = behaviours
        self.honest = [node for node in self.nodes if not node.byzantine]
        genesis, _, _ = self.cast.genesis()
        self.checker = Checker(CHAIN_ID, genesis, frozenset(validator_key(k).address.raw for k in behaviours))
        honest_keys = tuple(k for k in range(n) if k not in behaviours)
        self.workload = Workload(self.cast, self._tx_rng, honest_keys=honest_keys, extremes=config.extremes)
        self.liveness_failures: list[str] = []
        self.stats = dict.fromkeys(
            ("crashes", "dropped", "synced_blocks", "late_round_commits", "max_round", "evidence_committed"),
            0,
        )
        self._queue: list[tuple[int, int, SimEvent]] = []
        self._seq = 0
        self.now = 0
        self.events = 0
        self._partitions: dict[int, tuple[tuple[int, ...], ...]] = {}
        self._trace = hashlib.sha256()
        self._nodes_of_key: dict[bytes, list[SimNode]] = {}
        for node in self.nodes:
            self._nodes_of_key.setdefault(node.address, []).append(node)
        self._last_observed: object = None
        self._submitted_ms: dict[bytes, int] = {}
        self._tx_finality_ms: list[int] = []
        self._commit_times_ms: list[int] = []

    # ----------------------------------------------------------------------------------------
    # Event queue
    # ----------------------------------------------------------------------------------------

    def _push(self, at_ms: int, event: SimEvent) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, event))

    def run(self) -> RunResult:
        schedule = self.schedule
        for index, partition in enumerate(schedule.partitions):
            if partition.start_ms == 0:
                self._partitions[index] = self._groups(partition)  # in force before the first send
            else:
                self._push(partition.start_ms, PartitionStarts(index))
            self._push(partition.end_ms, PartitionEnds(index))
        for node in self.nodes:
            self._apply(node, node.boot(0))
        for crash in schedule.crashes:
            self._push(crash.at_ms, CrashNode(crash))
            self._push(crash.restart_ms, RestartNode(crash.node))
        for node in self.nodes:
            if node.forget_on_restart and schedule.heal_ms > 2:
                # Amnesia needs a restart: one more crash, before the heal.
                at = 1 + self._schedule_rng.below(schedule.heal_ms - 1)
                self._push(at, CrashNode(Crash(node.index, at, schedule.heal_ms, after_persist=False)))
                self._push(schedule.heal_ms, RestartNode(node.index))
        self._push(schedule.heal_ms, Heal())
        self._push(self.config.tx_interval_ms, SubmitTx())
        target = self.config.heights
        bound = self.config.liveness_bound_ms
        heal = schedule.heal_ms
        queue = self._queue
        while queue and not self._should_stop():
            at, _, event = heapq.heappop(queue)
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
            self._dispatch(event)
        for node in self.honest:
            if node.app is not None:
                self.checker.on_final_state(self.now, node.index, node.app.state)
                node.build_failures += node.app.build_failures
                node.app.build_failures = 0
            self.checker.on_build_failures(self.now, node.index, node.build_failures)
        for adversary in self.adversaries.values():
            for name, count in sorted(adversary.stats.items()):
                self.stats[f"byzantine_{name}"] = self.stats.get(f"byzantine_{name}", 0) + count
        self.stats["byzantine_amnesia_restarts"] = sum(n.amnesia_restarts for n in self.nodes)
        for tx_kind, count in sorted(self.checker.model.applied.items()):
            self.stats[f"tx_{tx_kind}"] = count
        joiner = validator_key(self.cast.joiner).address.raw
        self.stats["joiner_heights"] = self.checker.heights_voted_by(joiner)
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
            stakes=self.cast.stakes,
            adversaries=tuple((k, tuple(sorted(b))) for k, b in sorted(self.behaviours.items())),
            tx_finality_ms=tuple(self._tx_finality_ms),
            commit_times_ms=tuple(self._commit_times_ms),
        )

    def _should_stop(self) -> bool:
        if not self.checker.violations:
            return False
        return self.config.stop_at_violation or self.checker.agreement_broken

    def _dispatch(self, event: SimEvent) -> None:
        match event:
            case Deliver(dst, src, payload):
                self._deliver(dst, src, payload)
            case TimerFires(node, incarnation, timeout):
                if node.core is not None and incarnation == node.incarnation:
                    self._apply(node, node.core.on_timeout(timeout, node.local_time(self.now)))
            case CrashNode(crash):
                node = self.nodes[crash.node]
                if node.alive:
                    if crash.after_lock:
                        node.crash_on_lock = True
                    elif crash.after_persist:
                        node.crash_on_persist = True
                    else:
                        node.crash()
                        self.stats["crashes"] += 1
            case RestartNode(index):
                node = self.nodes[index]
                node.crash_on_persist = node.crash_on_lock = False
                if not node.alive:
                    self._apply(node, node.boot(self.now))
            case PartitionStarts(index):
                self._partitions[index] = self._groups(self.schedule.partitions[index])
            case PartitionEnds(index):
                self._partitions.pop(index, None)
            case SubmitTx():
                self._submit_tx()
                if self.now < self.schedule.heal_ms + self.config.liveness_bound_ms:
                    self._push(self.now + self.config.tx_interval_ms, SubmitTx())
            case Heal():
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
            _, state, _ = self.cast.genesis()
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

    def peers_of(self, node: SimNode) -> list[SimNode]:
        return [n for n in self.nodes if n is not node]

    def nodes_of(self, address: bytes) -> list[SimNode]:
        return list(self._nodes_of_key.get(address, ()))

    def waiting_for_proposal(self, address: bytes, height: int, round_: int) -> bool:
        """Whether the honest nodes of ``address`` have not yet prevoted in (height, round) (they
        are there without a proposal, or not there yet): the adversary sees the whole world."""
        nodes = [n for n in self._nodes_of_key.get(address, ()) if not n.byzantine]
        return bool(nodes) and all(
            n.core is not None
            and (n.core.height, n.core.round, n.core.step) <= (height, round_, STEP_PROPOSE)
            for n in nodes
        )

    def arm_lock_crash(self, address: bytes) -> None:
        """An adaptive crash: the honest node of ``address`` crashes right after it next persists
        a lock, and restarts soon after (only while the faults last)."""
        if self.now < self.schedule.heal_ms:
            for node in self._nodes_of_key.get(address, ()):
                if not node.byzantine and node.alive:
                    node.crash_on_lock = True

    def send(self, src: SimNode, dst: SimNode, message: NetworkMessage) -> None:
        """Put ``message`` on the wire (the checker sees every vote anyone sends)."""
        if message is not self._last_observed:
            self._last_observed = message
            self.checker.observe(message)
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
            self._push(self.now + 1 + rng.below(schedule.max_delay_ms), Deliver(dst, src, payload))
            if rng.chance(schedule.duplicate_per_mille):
                self._push(self.now + 1 + rng.below(schedule.max_delay_ms), Deliver(dst, src, payload))
        elif self.config.link_delay_ms is None:
            self._push(self.now + 1 + rng.below(20), Deliver(dst, src, payload))
        else:
            delay = self.config.link_delay_ms + rng.below(self.config.link_jitter_ms + 1)
            self._push(self.now + max(1, delay), Deliver(dst, src, payload))

    def _broadcast(self, src: SimNode, message: NetworkMessage) -> None:
        for dst in self.nodes:
            if dst is not src:
                self.send(src, dst, message)

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
        adversary = self.adversaries.get(node.index)
        if adversary is not None:
            adversary.on_receive(self, node, src, message)
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
        adversary = self.adversaries.get(node.index)
        if adversary is not None:
            response = adversary.serve_sync(node, request, response)
        if response.blocks:
            self.send(node, requester, response)

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
                    checker.on_signed(self.now, proposal, node.address)
                locked = node.crash_on_lock and effect.state.locked_round >= 0
                if node.crash_on_persist or locked:
                    node.crash()  # the rest of this event's effects never happen
                    self.stats["crashes"] += 1
                    if locked:
                        # Back within the height, while its lock still matters.
                        self._push(self.now + 1 + self._net_rng.below(200), RestartNode(node.index))
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
                self._on_broadcast(node, effect.evidence)

    def _set_timer(self, node: SimNode, timeout: Timeout, duration_ms: int) -> None:
        # The node's clock runs at clock_rate/1000 of real time: convert its local duration.
        delay = -(-duration_ms * 1000 // node.clock_rate)
        self._push(self.now + delay, TimerFires(node, node.incarnation, timeout))

    def _on_broadcast(self, node: SimNode, message: Proposal | Vote | DuplicateVoteEvidence) -> None:
        if isinstance(message, Vote):
            self.checker.on_signed(self.now, message, message.validator)
        adversary = self.adversaries.get(node.index)
        if adversary is None:
            self._broadcast(node, message)
        else:
            if isinstance(message, DuplicateVoteEvidence):
                adversary.on_receive(self, node, node, message)
            adversary.broadcast(self, node, message)

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
            reported=node.app.reported.get(block.height),
            state=node.app.state,
            state_hash=effect.state_hash,
            clock_bound_ms=max(n.local_time(self.now) for n in self.honest),
            upcoming=node.app.validator_set(block.height + 2).validators,
        )
        adversary = self.adversaries.get(node.index)
        if adversary is not None:
            adversary.on_commit(block)
        if node.index == 0:
            # Node 0 is the observer, as the finality bench follows node 0 of a real testnet.
            self._commit_times_ms.append(self.now)
            for raw in block.txs:
                submitted = self._submitted_ms.pop(raw, None)
                if submitted is not None:
                    self._tx_finality_ms.append(self.now - submitted)

    def _request_sync(self, node: SimNode, effect: RequestSync) -> None:
        candidates = [n for n in self._nodes_of_key.get(effect.peer, ()) if n is not node]
        if not candidates:
            candidates = [n for n in self.nodes if n is not node]
        peer = candidates[self._net_rng.below(len(candidates))]
        self.send(node, peer, SyncRequest(effect.from_height, SYNC_BATCH))

    # ----------------------------------------------------------------------------------------
    # Clients
    # ----------------------------------------------------------------------------------------

    def _submit_tx(self) -> None:
        """One actor sends its next transactions (judged on the most advanced honest replica's
        state) to one live node, which gossips them."""
        alive = [n for n in self.nodes if n.app is not None]
        reference = max(
            (n for n in self.honest if n.app is not None), key=lambda n: (n.height, -n.index), default=None
        )
        if not alive or reference is None:
            return
        assert reference.app is not None
        state = reference.app.state
        raws = self.workload.next_transactions(state)
        entry = alive[self._tx_rng.below(len(alive))]
        assert entry.app is not None
        for raw in raws:
            if entry.mempool.add(raw, entry.app.state):
                self._submitted_ms.setdefault(raw, self.now)
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
