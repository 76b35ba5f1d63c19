"""Lock games: a Byzantine proposer that leaves a single honest validator locked.

Algorithm 1 is safe because a validator that precommitted a block (is *locked* on it) prevotes
another block only on 2f+1 prevotes for it from its lock's round or later. Random faults rarely
make that rule matter: most rounds that lock anyone decide. This adversary arranges it:

1. As proposer of round ``r`` it sends a new block only to a set ``S`` of honest validators
   holding at most 2/3 of the power, such that ``S`` plus itself holds more; its own prevote goes
   to one *target* in ``S`` only. The target alone sees 2f+1 prevotes: it locks and precommits;
   everyone else times out and precommits nil, and the round fails.
2. It asks the world to crash the target right after it persists that lock and to restart it
   soon after (an adaptive crash, as a real attacker could time a denial of service).
3. Next rounds, proposers who never saw those prevotes propose new blocks; the target must
   prevote nil. The adversary keeps its prevotes from any block but its own meanwhile.
4. After two such locks on different targets, as proposer again, it re-proposes the first one's
   block with that older proof of lock: the later-locked target must still refuse it.

A core that forgets its lock on restart, ignores it, or lets any proof of lock release it then
prevotes what it must not, and the checker's lock rule reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from protocol.consensus.messages import PRECOMMIT, PREVOTE, Block, Proposal, Vote, sign_vote
from protocol.consensus.validators import ValidatorSet
from protocol.crypto import PrivateKey
from protocol.sim.node import NetworkMessage, SimNode
from protocol.sim.rng import SplitMix64
from protocol.sim.setup import CHAIN_ID

#: Random orders tried when looking for a set of validators that needs our prevote.
_TRIES = 8


class LockNetwork(Protocol):
    def nodes_of(self, address: bytes) -> list[SimNode]: ...

    def send(self, src: SimNode, dst: SimNode, message: NetworkMessage) -> None: ...

    def arm_lock_crash(self, address: bytes) -> None: ...

    def waiting_for_proposal(self, address: bytes, height: int, round_: int) -> bool: ...


class LockGames:
    def __init__(self, key: PrivateKey, colluders: tuple[PrivateKey, ...], rng: SplitMix64) -> None:
        self.key = key
        self.address = key.address.raw
        #: Every Byzantine key (its own included): they all prevote for the target.
        self.colluders = colluders
        self.byzantine = frozenset(k.address.raw for k in colluders)
        self.rng = rng
        #: (height, round) -> (block, target): where a lone lock was played.
        self.lone: dict[tuple[int, int], tuple[Block, bytes]] = {}
        #: (height, round) -> the Byzantine prevotes it signed for that game's block.
        self.prevotes: dict[tuple[int, int], list[Vote]] = {}

    def played_at(self, height: int) -> list[tuple[int, Block, bytes]]:
        return sorted(
            ((r, block, target) for (h, r), (block, target) in self.lone.items() if h == height),
            key=lambda played: played[0],
        )

    def propose(
        self,
        net: LockNetwork,
        node: SimNode,
        proposal: Proposal,
        block: Block,
        sign: Callable[[int, int, int, Block], Proposal],
    ) -> bool:
        """Play step 1 (and 2) with ``block``; False when no set of validators needs us."""
        core = node.core
        if core is None:
            return False
        validators = core.validators
        total = validators.total_power
        own = sum(validators.power_of(address) for address in self.byzantine)
        used = {target for _, _, target in self.played_at(proposal.height)}
        honest = [v for v in validators.validators if v.address not in self.byzantine]
        candidates = [v for v in honest if v.address not in used]
        if not candidates or own == 0:
            return False
        target = self.rng.choice(candidates)
        for _ in range(_TRIES):
            chosen, power = [target.address], target.power
            for validator in self.rng.shuffled([v for v in honest if v is not target]):
                if 3 * (power + validator.power) <= 2 * total:
                    chosen.append(validator.address)
                    power += validator.power
            if 3 * power <= 2 * total < 3 * (power + own):
                break
        else:
            return False
        if not all(net.waiting_for_proposal(address, proposal.height, proposal.round) for address in chosen):
            return False  # too late: the game needs them still waiting for this round's proposal
        signed = sign(proposal.height, proposal.round, -1, block)
        for address in chosen:
            for peer in net.nodes_of(address):
                net.send(node, peer, signed)
        # Our prevotes for it (every Byzantine key's), signed here (our core prevotes the block
        # it built itself, which we keep to ourselves), for the target only.
        time_ms = max(proposal.block.time_ms, block.time_ms) + 1
        signed_prevotes = self.prevotes.setdefault((proposal.height, proposal.round), [])
        for key in self.colluders:
            prevote = sign_vote(key, CHAIN_ID, proposal.height, proposal.round, PREVOTE, block.hash, time_ms)
            signed_prevotes.append(prevote)
            for peer in net.nodes_of(target.address):
                net.send(node, peer, prevote)
        self.lone[(proposal.height, proposal.round)] = (block, target.address)
        net.arm_lock_crash(target.address)
        return True

    def route_vote(self, net: LockNetwork, node: SimNode, vote: Vote) -> bool:
        """Send our own vote the game's way; True when handled (sent or withheld)."""
        played = self.lone.get((vote.height, vote.round))
        if played is not None and vote.block_hash == played[0].hash:
            for peer in net.nodes_of(played[1]):
                net.send(node, peer, vote)
            return True
        # No help for anyone else's block while the game is on.
        return bool(self.played_at(vote.height)) and vote.type == PREVOTE and not vote.is_nil


class Fork:
    """The coalition's fork: as proposer, one block to half of the honest validators and another
    to the other half, each half also getting every Byzantine key's prevote and precommit for its
    block. With more than 1/3 of the stake Byzantine, each half plus the coalition is a quorum and
    both decide (the negative control); below 1/3 neither half can, and the round just fails."""

    def __init__(self, colluders: tuple[PrivateKey, ...]) -> None:
        self.colluders = colluders
        self.byzantine = frozenset(k.address.raw for k in colluders)
        #: (height, round) -> what went to whom: the core's own votes there are withheld, and
        #: its retransmissions resend exactly this (the network may have lost some).
        self.played: dict[tuple[int, int], list[tuple[bytes, list[NetworkMessage]]]] = {}

    def play(
        self,
        net: LockNetwork,
        node: SimNode,
        proposal: Proposal,
        other: Block,
        sign: Callable[[int, int, int, Block], Proposal],
    ) -> bool:
        core = node.core
        if core is None or other.hash == proposal.block.hash:
            return False
        honest = sorted(
            (v for v in core.validators.validators if v.address not in self.byzantine),
            key=lambda v: (-v.power, v.address),
        )
        halves: tuple[list[bytes], list[bytes]] = ([], [])
        powers = [0, 0]
        for validator in honest:  # balance the halves' stake
            side = 0 if powers[0] <= powers[1] else 1
            halves[side].append(validator.address)
            powers[side] += validator.power
        height, round_ = proposal.height, proposal.round
        time_ms = max(proposal.block.time_ms, other.time_ms) + 1
        plan: list[tuple[bytes, list[NetworkMessage]]] = []
        for half, block in zip(halves, (proposal.block, other), strict=True):
            messages: list[NetworkMessage] = [sign(height, round_, -1, block)]
            for key in self.colluders:
                for vote_type in (PREVOTE, PRECOMMIT):
                    messages.append(sign_vote(key, CHAIN_ID, height, round_, vote_type, block.hash, time_ms))
            plan += [(address, messages) for address in half]
        self.played[(height, round_)] = plan
        self.resend(net, node, height, round_)
        return True

    def resend(self, net: LockNetwork, node: SimNode, height: int, round_: int) -> None:
        for address, messages in self.played.get((height, round_), ()):
            for peer in net.nodes_of(address):
                for message in messages:
                    net.send(node, peer, message)

    def can_win(self, validators: ValidatorSet) -> bool:
        """Whether the coalition holds more than 1/3 of the power (then both halves decide)."""
        return 3 * sum(validators.power_of(address) for address in self.byzantine) > validators.total_power

    def withholds(self, vote: Vote) -> bool:
        return (vote.height, vote.round) in self.played
