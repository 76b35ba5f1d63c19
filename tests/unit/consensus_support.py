"""Shared builders for the consensus tests (no tests here).

A :class:`Chain` is a real genesis (real ledger, real keys) with four validators by default;
``chain.app()`` gives one replica's :class:`LedgerApp`. The core under test is a real
:class:`ConsensusCore`; the other validators are played by the test, which signs their votes
and proposals with their keys.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Sequence

from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Persist,
    SetTimeout,
    TimeoutKind,
)
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    PRECOMMIT,
    Block,
    CommitCertificate,
    CommitSignature,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    Vote,
    proposal_sign_bytes,
    sign_vote,
)
from protocol.consensus.verifier import SignatureVerifier
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.units import DCT

CHAIN_ID = "dcent-consensus-test"
CONFIG = ConsensusConfig(
    timeout_propose_ms=1000,
    timeout_prevote_ms=500,
    timeout_precommit_ms=500,
    timeout_delta_ms=250,
    gossip_interval_ms=2000,
    sync_retry_ms=1000,
)
CLIENT_BALANCE = 1_000_000 * DCT


@functools.cache
def vkey(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"consensus-test/validator/{index}")


@functools.cache
def client_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"consensus-test/client/{index}")


class Chain:
    """A genesis with validators of the given powers (in DCT) and two funded clients."""

    def __init__(self, powers: Sequence[int] = (1, 1, 1, 1), params: Params | None = None) -> None:
        self.genesis: Genesis = dev_genesis(
            CHAIN_ID,
            [(vkey(i).public_key.raw, power * DCT) for i, power in enumerate(powers)],
            [(client_key(i).address.raw, CLIENT_BALANCE) for i in range(2)],
            params or Params(),
        )
        self.state = genesis_state(self.genesis)
        self.genesis_hash = self.genesis.genesis_hash()
        self.size = len(powers)
        self.verifier = SignatureVerifier()

    def app(self, **kwargs: object) -> LedgerApp:
        return LedgerApp(
            self.state.copy(),
            genesis_hash=self.genesis_hash,
            verifier=self.verifier,
            **kwargs,  # type: ignore[arg-type]
        )

    def index_of(self, address: bytes) -> int:
        for i in range(self.size):
            if vkey(i).address.raw == address:
                return i
        raise KeyError(address.hex())

    def proposer(self, app: LedgerApp, height: int, round_: int) -> int:
        return self.index_of(app.validator_set(height).proposer(height, round_))

    def non_proposer(self, app: LedgerApp, height: int, rounds: Iterable[int] = (0,)) -> int:
        """A validator that proposes in none of ``rounds``."""
        busy = {self.proposer(app, height, r) for r in rounds}
        return next(i for i in range(self.size) if i not in busy)

    def core(
        self,
        me: int,
        *,
        app: LedgerApp | None = None,
        sign_state: SignState | None = None,
        config: ConsensusConfig = CONFIG,
    ) -> ConsensusCore:
        return ConsensusCore(
            app or self.app(),
            key=vkey(me),
            config=config,
            sign_state=sign_state,
            verifier=self.verifier,
        )


def vote_time(height: int) -> int:
    """The clock reading the test's validators sign into their votes at ``height``: one second
    per height, so BFT times (the median of a certificate's precommit times) increase."""
    return 1_000 * height


def vote(
    index: int, height: int, round_: int, vote_type: int, block_hash: bytes, *, time_ms: int | None = None
) -> Vote:
    return sign_vote(
        vkey(index),
        CHAIN_ID,
        height,
        round_,
        vote_type,
        block_hash,
        vote_time(height) if time_ms is None else time_ms,
    )


def build_block(chain: Chain, builder: LedgerApp, proposer: int) -> Block:
    """A valid next block for ``builder``'s chain, as validator ``proposer`` would build it."""
    return builder.build_block(height=builder.height + 1, proposer=vkey(proposer).address.raw, evidence=())


def propose(chain: Chain, app: LedgerApp, round_: int, block: Block, *, pol_round: int = -1) -> Proposal:
    """``block`` proposed at ``round_`` by that round's proposer (signed with its key)."""
    height = block.height
    signer = vkey(chain.proposer(app, height, round_))
    payload = proposal_sign_bytes(CHAIN_ID, height, round_, pol_round, block.hash)
    return Proposal(height, round_, pol_round, block, signer.sign(payload))


def certificate(height: int, round_: int, block_hash: bytes, signers: Iterable[int]) -> CommitCertificate:
    entries = []
    for index in signers:
        signed = vote(index, height, round_, PRECOMMIT, block_hash)
        entries.append(CommitSignature(signed.validator, signed.signature, signed.time_ms))
    return CommitCertificate(height, round_, block_hash, tuple(sorted(entries, key=lambda e: e.validator)))


def broadcasts(effects: Sequence[Effect]) -> list[Proposal | Vote | DuplicateVoteEvidence]:
    return [e.message for e in effects if isinstance(e, Broadcast)]


def own_votes(effects: Sequence[Effect], address: bytes) -> list[Vote]:
    return [m for m in broadcasts(effects) if isinstance(m, Vote) and m.validator == address]


def proposals_sent(effects: Sequence[Effect]) -> list[Proposal]:
    return [m for m in broadcasts(effects) if isinstance(m, Proposal)]


def timeouts(effects: Sequence[Effect], kind: TimeoutKind) -> list[SetTimeout]:
    return [e for e in effects if isinstance(e, SetTimeout) and e.timeout.kind is kind]


def persists(effects: Sequence[Effect]) -> list[Persist]:
    return [e for e in effects if isinstance(e, Persist)]


class Cluster:
    """Every validator of ``chain`` as a real core, on a perfect network: each broadcast is
    delivered to every other core in order; the commit timer fires at once, the others never
    (none is needed when nothing is lost). ``log`` keeps every effect list each core returned."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.apps = [chain.app() for _ in range(chain.size)]
        self.cores = [chain.core(i, app=self.apps[i]) for i in range(chain.size)]
        self.log: list[tuple[int, list[Effect]]] = []
        self.blocks: list[list[CommittedBlock]] = [[] for _ in range(chain.size)]

    def run(self, heights: int) -> None:
        queue: deque[tuple[int, Proposal | Vote]] = deque()
        for index, core in enumerate(self.cores):
            self._handle(index, core.start(0), queue)
        while queue and min(app.height for app in self.apps) < heights:
            index, message = queue.popleft()
            if self.apps[index].height < heights:
                self._handle(index, self.cores[index].receive(message, 10), queue)

    def _handle(self, index: int, effects: list[Effect], queue: deque[tuple[int, Proposal | Vote]]) -> None:
        self.log.append((index, effects))
        for effect in effects:
            if isinstance(effect, Broadcast) and isinstance(effect.message, Proposal | Vote):
                queue.extend((other, effect.message) for other in range(self.chain.size) if other != index)
            elif isinstance(effect, Commit):
                self.blocks[index].append(CommittedBlock(effect.block, effect.certificate))
        for timer in timeouts(effects, TimeoutKind.COMMIT):
            self._handle(index, self.cores[index].on_timeout(timer.timeout, 10), queue)
