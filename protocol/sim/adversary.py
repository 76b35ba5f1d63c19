"""Byzantine validators: a real core that keeps up with the chain, and an adversary around it.

The adversary sees what its own core decides to send and what reaches it, and replaces or adds to
the outgoing messages. Each Byzantine key draws some of these behaviours from the run's seed:

* ``equivocate``: a conflicting vote to half of its peers for each vote it casts; as proposer,
  a second block to half of them;
* ``forge``: votes in honest validators' names whose signatures are not theirs;
* ``other_heights``: validly signed votes for past and future heights, and a stranger's flood of
  next-height votes (the attack of issue 12 on the future buffer);
* ``extreme_time``: as proposer, blocks timed 0, 2**63 - 1 or just after the parent;
* ``invalid_blocks``: as proposer, blocks with a wrong state hash, replayed, overdrawn, unsigned
  or cross-chain transactions, a forged last commit, or evidence that is forged, stale (one block
  past the window, against itself: it signs conflicting votes it keeps to itself) or repeated;
  at any height, its private evidence gossiped one block too late for honest pools to admit it;
* ``withhold``: its votes reach some peers only, or none;
* ``amnesia``: it restarts without its signing state (see ``node``);
* ``forge_sync``: blocks it serves or pushes carry certificates of forged signatures, and a block
  other than the decided one when it can build one;
* ``fresh_proposals``: as proposer of a later round, a new block instead of the valid value, so
  honest validators locked in an earlier round meet a block they must refuse;
* ``lock_games``: as proposer, leaves one honest validator alone locked, has it crash and
  restart, and later re-proposes an older locked block (see ``lock_games``);
* ``fork``: as proposer, one block to half of the honest validators and another to the other
  half, with every Byzantine key's votes for each (see ``lock_games.Fork``);
* ``twin``: a second node runs the same key (honest code on both; they sign whatever they see).

Honest code must stay safe whatever is combined, and live when the faults stop, as long as the
Byzantine keys hold less than 1/3 of the stake.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from protocol.consensus.errors import LocalConsensusError
from protocol.consensus.ledger_app import LedgerApp, block_context
from protocol.consensus.messages import (
    MAX_TIME_MS,
    NIL,
    PREVOTE,
    Block,
    CommitCertificate,
    CommitSignature,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
    proposal_sign_bytes,
    sign_vote,
)
from protocol.crypto import PrivateKey
from protocol.ledger.block import apply_block
from protocol.ledger.errors import LedgerError
from protocol.ledger.tx import Transfer, sign_tx
from protocol.sim.lock_games import Fork, LockGames, LockNetwork
from protocol.sim.node import SimNode
from protocol.sim.rng import SplitMix64
from protocol.sim.setup import CHAIN_ID, SIM_PARAMS, STRANGER

BEHAVIOURS = (
    "equivocate",
    "forge",
    "other_heights",
    "extreme_time",
    "invalid_blocks",
    "withhold",
    "amnesia",
    "forge_sync",
    "fresh_proposals",
    "lock_games",
    "fork",
    "twin",
)
#: How many next-height votes the stranger sends each time (the old shared buffer held 1024).
STRANGER_FLOOD = 48


class Network(LockNetwork, Protocol):
    def peers_of(self, node: SimNode) -> list[SimNode]: ...


def draw_behaviours(rng: SplitMix64) -> frozenset[str]:
    """A random non-empty subset of the behaviours."""
    chosen = frozenset(b for b in BEHAVIOURS if rng.below(2) == 0)
    return chosen or frozenset({rng.choice(BEHAVIOURS)})


def _garbage(rng: SplitMix64, size: int) -> bytes:
    return b"".join(rng.next_u64().to_bytes(8, "big") for _ in range((size + 7) // 8))[:size]


def craft_block(
    app: LedgerApp,
    *,
    proposer: bytes,
    txs: Sequence[bytes] = (),
    evidence: Sequence[DuplicateVoteEvidence] = (),
    time_ms: int | None = None,
    last_commit: CommitCertificate | None = None,
) -> tuple[Block, bool]:
    """A next block for ``app``'s chain with the given contents, executed to fill in its state
    hash when the ledger lets it; returns the block and whether it executed (when not, its state
    hash is the parent's, so honest replicas must refuse it)."""
    height = app.height + 1
    block = Block(
        app.chain_id,
        height,
        app.next_block_time() if time_ms is None else time_ms,
        app.last_block_hash,
        proposer,
        tuple(txs),
        tuple(evidence),
        app.last_certificate if last_commit is None else last_commit,
        app.state.state_hash() if height > 1 else bytes(32),
    )
    replica = app.state.copy()
    parent_validators = app.validator_set(height - 1) if height > 1 else None
    try:
        result = apply_block(replica, block_context(block, parent_validators), block.txs)
    except (LedgerError, OverflowError):
        return block, False
    return dataclasses.replace(block, state_hash=result.state_hash), True


class Adversary:
    """The Byzantine behaviours of one key (see the module docstring)."""

    def __init__(
        self,
        key: PrivateKey,
        behaviours: frozenset[str],
        rng: SplitMix64,
        *,
        colluders: tuple[PrivateKey, ...],
        primary: bool = True,
    ) -> None:
        self.key = key
        self.address = key.address.raw
        self.behaviours = behaviours
        self.rng = rng
        #: False for a twin's second instance.
        self.primary = primary
        self.games = LockGames(key, colluders, rng.fork()) if "lock_games" in behaviours else None
        # Every member of a coalition holding more than 1/3 forks (see _forking); below that,
        # only a key with the behaviour tries.
        self.fork = Fork(colluders)
        self.evidence_seen: list[DuplicateVoteEvidence] = []
        self.committed_txs: list[bytes] = []
        #: Conflicting votes it signed and kept to itself, by height: evidence against itself.
        self.private_evidence: dict[int, DuplicateVoteEvidence] = {}
        self._pushed: set[tuple[bytes, int]] = set()
        #: Heights of the private evidence it has gossiped late (see _late_evidence).
        self._late_sent: set[int] = set()
        #: What it did, for the simulator's report (every behaviour must be seen to act).
        self.stats: Counter[str] = Counter()

    def has(self, behaviour: str) -> bool:
        return behaviour in self.behaviours

    # --- what its core sends ---------------------------------------------------------------------
    def broadcast(
        self, net: Network, node: SimNode, message: Proposal | Vote | DuplicateVoteEvidence
    ) -> None:
        peers = net.peers_of(node)
        if isinstance(message, Vote):
            self._vote(net, node, peers, message)
        elif isinstance(message, Proposal):
            self._proposal(net, node, peers, message)
        else:
            for peer in peers:
                net.send(node, peer, message)

    def _vote(self, net: Network, node: SimNode, peers: list[SimNode], vote: Vote) -> None:
        rng = self.rng
        if self.games is not None and self.games.route_vote(net, node, vote):
            return
        if self.fork.withholds(vote):
            return
        if self._forking(node):
            for peer in peers:  # nothing else may distract the honest validators from the fork
                net.send(node, peer, vote)
            return
        if self.has("withhold") and rng.chance(250):
            self.stats["withheld_votes"] += 1
            return  # to nobody
        targets = [p for p in peers if not (self.has("withhold") and rng.chance(400))]
        self.stats["withheld_votes"] += len(targets) < len(peers)
        conflicting = None
        if self.has("equivocate") and rng.chance(600):
            value = NIL if not vote.is_nil else _garbage(rng, 32)
            conflicting = sign_vote(
                self.key, CHAIN_ID, vote.height, vote.round, vote.type, value, vote.time_ms + 1
            )
            self.stats["equivocating_votes"] += 1
        for position, peer in enumerate(targets):
            net.send(node, peer, conflicting if conflicting is not None and position % 2 else vote)
        if self.has("forge") and rng.chance(500) and node.core is not None:
            self.stats["forged_votes"] += 1
            for validator in node.core.validators.validators:
                if validator.address != self.address:
                    forged = dataclasses.replace(
                        vote, validator=validator.address, signature=_garbage(rng, 64)
                    )
                    for peer in peers:
                        net.send(node, peer, forged)
        if self.has("other_heights") and rng.chance(400):
            self._other_heights(net, node, peers, vote)
        if self.has("invalid_blocks") and vote.height not in self.private_evidence:
            first = sign_vote(self.key, CHAIN_ID, vote.height, 0, PREVOTE, _garbage(rng, 32))
            second = sign_vote(self.key, CHAIN_ID, vote.height, 0, PREVOTE, _garbage(rng, 32))
            self.private_evidence[vote.height] = DuplicateVoteEvidence.from_votes(first, second)
        if self.has("invalid_blocks"):
            self._late_evidence(net, node, peers, vote.height)

    def _late_evidence(self, net: Network, node: SimNode, peers: list[SimNode], height: int) -> None:
        """Gossip, once, its private evidence from ``evidence_max_age`` blocks before ``height``.

        Honest nodes at ``height`` admit evidence that could go into block ``height + 1``, where
        this is one block past the window: they must refuse it. One that admits it carries it in
        its pool into block ``height + 1``, whose honest proposer includes it (the validator set
        of that height is still kept, so only the window's own rule stands in the way): the
        checker sees a block slash outside the window. The proposer's own stale evidence alone
        reached that rule too rarely: a Byzantine key proposes seldom past the first window."""
        stale_height = height - SIM_PARAMS.evidence_max_age
        evidence = self.private_evidence.get(stale_height)
        if evidence is None or stale_height in self._late_sent:
            return
        self._late_sent.add(stale_height)
        self.stats["late_evidence"] += 1
        for peer in peers:
            net.send(node, peer, evidence)

    def _other_heights(self, net: Network, node: SimNode, peers: list[SimNode], vote: Vote) -> None:
        rng = self.rng
        self.stats["other_height_votes"] += 1
        messages: list[Vote] = []
        for height in (vote.height - 1, vote.height + 1, vote.height + 1 + rng.below(8)):
            if height >= 1:
                messages.append(
                    sign_vote(self.key, CHAIN_ID, height, rng.below(4), rng.choice((1, 2)), NIL, 0)
                )
        for round_ in range(STRANGER_FLOOD):
            messages.append(sign_vote(STRANGER, CHAIN_ID, vote.height + 1, round_, PREVOTE, NIL, 0))
        for message in messages:
            for peer in peers:
                net.send(node, peer, message)

    def _proposal(self, net: Network, node: SimNode, peers: list[SimNode], proposal: Proposal) -> None:
        app = node.app
        kinds = ("extreme_time", "invalid_blocks", "fresh_proposals", "equivocate", "lock_games", "fork")
        attacks = [kind for kind in kinds if self.has(kind)]
        if app is None or not attacks or app.height + 1 != proposal.height or self.rng.chance(250):
            for peer in peers:
                net.send(node, peer, proposal)
            return
        played = (proposal.height, proposal.round)
        if played in self.fork.played:
            self.fork.resend(net, node, *played)  # its core's retransmission: the fork's again
            return
        if self.games is not None and played in self.games.lone:
            return  # a retransmission of a round played as a lock game: it must not leak
        attack = self.rng.choice(attacks)
        if self.games is not None and self.rng.chance(600):
            attack = "lock_games"  # the rarest situation to reach: played most of the time
        if self._forking(node):
            if not self.primary:
                return  # a twin's second instance keeps quiet: its first one forks
            if proposal.pol_round >= 0:
                for peer in peers:  # honest validators are locked on it: no fork this round
                    net.send(node, peer, proposal)
                return
            attack = "fork"  # a coalition above 1/3 of the stake forks whenever it can
        if attack == "lock_games" and self.games is not None and self._lock_game(net, node, peers, proposal):
            self.stats["lock_games"] += 1
            return
        if attack == "fork":
            nonce = app.state.account(self.address).nonce + 1
            own = sign_tx(self.key, CHAIN_ID, nonce, SIM_PARAMS.min_fee, Transfer(self.address, 1))
            forked = craft_block(app, proposer=self.address, txs=(own,))[0]
            if self.fork.play(net, node, proposal, forked, self._sign):
                self.stats["forks"] += 1
                return
        if attack == "fresh_proposals":
            stale_pol = self._stale_pol(node, proposal)
            if stale_pol is not None:
                block, pol_round, prevotes = stale_pol
                other = self._sign(proposal.height, proposal.round, pol_round, block)
                for peer in peers:
                    net.send(node, peer, other)
                    for vote in prevotes:
                        net.send(node, peer, vote)
                self.stats["stale_pol_proposals"] += 1
                return
            if proposal.pol_round < 0:
                attack = "equivocate"
        block = self._attack_block(attack, app, proposal)
        self.stats[f"proposals_{attack}"] += 1
        pol_round = proposal.pol_round if attack == "equivocate" else -1
        other = self._sign(proposal.height, proposal.round, pol_round, block)
        for position, peer in enumerate(peers):
            honest_half = attack == "equivocate" and position % 2 == 0
            net.send(node, peer, proposal if honest_half else other)

    def _forking(self, node: SimNode) -> bool:
        """A coalition above 1/3 of the stake does nothing but fork."""
        return node.core is not None and self.fork.can_win(node.core.validators)

    def _lock_game(self, net: Network, node: SimNode, peers: list[SimNode], proposal: Proposal) -> bool:
        assert self.games is not None and node.app is not None and node.core is not None
        played = [p for p in self.games.played_at(proposal.height) if p[0] < proposal.round]
        if len(played) >= 2:
            # Step 4: the first lone lock's block, with its older proof of lock.
            round_, block, _ = played[0]
            prevotes = [v for v in node.core.votes(round_, PREVOTE) if v.block_hash == block.hash]
            prevotes += self.games.prevotes.get((proposal.height, round_), [])
            if not node.core.validators.has_quorum(
                sum(node.core.validators.power_of(v.validator) for v in prevotes)
            ):
                return False
            signed = self._sign(proposal.height, proposal.round, round_, block)
            for peer in peers:
                net.send(node, peer, signed)
                for vote in prevotes:
                    net.send(node, peer, vote)
            return True
        block = craft_block(node.app, proposer=self.address)[0]
        return self.games.propose(net, node, proposal, block, self._sign)

    def _stale_pol(self, node: SimNode, proposal: Proposal) -> tuple[Block, int, list[Vote]] | None:
        """The oldest block of this height with a polka (2f+1 prevotes in some earlier round),
        other than the one its core proposes: re-proposed with that old proof of lock, it must
        not release validators locked later on something else."""
        core = node.core
        if core is None:
            return None
        for round_ in range(proposal.round):
            for candidate in core.proposals(round_):
                block = candidate.block
                if block.hash == proposal.block.hash:
                    continue
                prevotes = [v for v in core.votes(round_, PREVOTE) if v.block_hash == block.hash]
                power = sum(core.validators.power_of(v.validator) for v in prevotes)
                if core.validators.has_quorum(power):
                    return block, round_, prevotes
        return None

    def _attack_block(self, attack: str, app: LedgerApp, proposal: Proposal) -> Block:
        rng = self.rng
        if attack == "extreme_time":
            time_ms = rng.choice((0, MAX_TIME_MS, app.last_block_time + 1, proposal.block.time_ms + 1))
            return dataclasses.replace(proposal.block, time_ms=time_ms)
        if attack in ("fresh_proposals", "equivocate"):
            return craft_block(app, proposer=self.address)[0]
        return self._invalid_block(app, proposal.block)

    def _invalid_block(self, app: LedgerApp, honest: Block) -> Block:
        rng = self.rng
        choice = rng.below(6)
        if self._stale_evidence(app) is not None and rng.below(2) == 0:
            choice = 3
        if choice == 0:
            return dataclasses.replace(honest, state_hash=_garbage(rng, 32))
        if choice == 1:
            # Transactions the rules refuse: a replay, an overdraft, a foreign chain, a bad signature.
            nonce = app.state.account(self.address).nonce + 1
            txs = list(honest.txs)
            if self.committed_txs:
                txs.insert(0, rng.choice(self.committed_txs))
            overdraft = Transfer(self.address, app.state.balance(self.address) + 1)
            txs.append(sign_tx(self.key, CHAIN_ID, nonce, SIM_PARAMS.min_fee, overdraft))
            if rng.chance(500):
                txs.append(
                    sign_tx(self.key, "another-chain", nonce, SIM_PARAMS.min_fee, Transfer(self.address, 1))
                )
            return craft_block(app, proposer=self.address, txs=txs, evidence=honest.evidence)[0]
        if choice == 2:
            cert = app.last_certificate
            if cert.signatures:
                forged = tuple(
                    CommitSignature(e.validator, _garbage(rng, 64), e.time_ms) for e in cert.signatures
                )
                last_commit = dataclasses.replace(cert, signatures=forged)
                return craft_block(app, proposer=self.address, last_commit=last_commit)[0]
        evidence = self._evidence_attack(app, choice)
        return craft_block(app, proposer=self.address, txs=honest.txs, evidence=evidence)[0]

    def _evidence_attack(self, app: LedgerApp, choice: int) -> list[DuplicateVoteEvidence]:
        height = app.height + 1
        stale = self._stale_evidence(app)
        if choice == 3 and stale is not None:
            return [stale]
        if choice == 4 and self.evidence_seen:
            return [self.rng.choice(self.evidence_seen)]  # perhaps punished already
        if height < 2:
            return []
        victims = [v.address for v in app.validator_set(height - 1).validators if v.address != self.address]
        if not victims:
            return []
        victim = self.rng.choice(victims)
        a = Vote(height - 1, 0, PREVOTE, _garbage(self.rng, 32), victim, _garbage(self.rng, 64))
        b = dataclasses.replace(a, block_hash=_garbage(self.rng, 32))
        return [DuplicateVoteEvidence.from_votes(a, b)]  # forged against an honest validator

    def _stale_evidence(self, app: LedgerApp) -> DuplicateVoteEvidence | None:
        """Its own private equivocation from one block past the evidence window."""
        return self.private_evidence.get(app.height + 1 - SIM_PARAMS.evidence_max_age - 1)

    def _sign(self, height: int, round_: int, pol_round: int, block: Block) -> Proposal:
        payload = proposal_sign_bytes(CHAIN_ID, height, round_, pol_round, block.hash)
        return Proposal(height, round_, pol_round, block, self.key.sign(payload))

    # --- what reaches it -------------------------------------------------------------------------
    def on_receive(self, net: Network, node: SimNode, src: SimNode, message: object) -> None:
        """Learn evidence; push forged blocks to validators it hears voting at its height."""
        if isinstance(message, DuplicateVoteEvidence):
            self._remember_evidence(message)
        if not (self.has("forge_sync") and isinstance(message, Vote) and node.app is not None):
            return
        app = node.app
        if message.height != app.height + 1 or (src.address, message.height) in self._pushed:
            return
        self._pushed.add((src.address, message.height))
        self.stats["forged_sync_blocks"] += 1
        block = craft_block(app, proposer=self.address)[0]
        net.send(node, src, SyncResponse((CommittedBlock(block, self._forged_certificate(app, block)),)))

    def serve_sync(self, node: SimNode, request: SyncRequest, honest: SyncResponse) -> SyncResponse:
        """What it answers a block request with: the stored blocks under forged certificates."""
        if not self.has("forge_sync") or node.app is None:
            return honest
        self.stats["forged_sync_blocks"] += len(honest.blocks)
        forged = [
            CommittedBlock(c.block, self._forged_certificate(node.app, c.block, height=c.block.height))
            for c in honest.blocks
        ]
        return SyncResponse(tuple(forged))

    def _forged_certificate(
        self, app: LedgerApp, block: Block, *, height: int | None = None
    ) -> CommitCertificate:
        height = block.height if height is None else height
        try:
            validators = app.validator_set(height).validators
        except LocalConsensusError:
            validators = ()
        entries = [
            CommitSignature(v.address, _garbage(self.rng, 64), block.time_ms + 1)
            for v in validators
            if v.address != self.address
        ]
        mine = sign_vote(self.key, CHAIN_ID, height, 0, 2, block.hash, block.time_ms + 1)
        entries.append(CommitSignature(self.address, mine.signature, mine.time_ms))
        return CommitCertificate(height, 0, block.hash, tuple(sorted(entries, key=lambda e: e.validator)))

    def on_commit(self, block: Block) -> None:
        self.committed_txs.extend(block.txs)
        del self.committed_txs[:-32]
        for evidence in block.evidence:
            self._remember_evidence(evidence)

    def _remember_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        if evidence not in self.evidence_seen:
            self.evidence_seen.append(evidence)
            del self.evidence_seen[:-16]
