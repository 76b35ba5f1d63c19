"""One simulated node: a real consensus core over a real ledger, with a disk that survives crashes.

A restart rebuilds the ledger by replaying the stored blocks and the core from the stored signer
state. A node that suffers *amnesia* (a Byzantine behaviour) restarts without its signer state,
as a validator that lost its disk or runs a second copy of its key would: its core may then sign
twice at one step, which is evidence against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import ConsensusConfig, Effect
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    Block,
    CommitCertificate,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    SyncRequest,
    SyncResponse,
    Vote,
)
from protocol.consensus.verifier import SignatureVerifier
from protocol.crypto import PrivateKey
from protocol.sim.mempool import SimMempool, tx_signature_known_valid
from protocol.sim.model import Reported
from protocol.sim.setup import Cast

#: What travels between simulated nodes (bytes: a transaction).
NetworkMessage = Proposal | Vote | DuplicateVoteEvidence | SyncRequest | SyncResponse | bytes


class SimLedgerApp(LedgerApp):
    """A LedgerApp that keeps what executing each committed block reported (minted, rewards):
    the checker's model takes those as observed effects. One event can commit several blocks
    (sync), so the last result alone would not do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reported: dict[int, Reported] = {}

    def commit(self, block: Block, certificate: CommitCertificate) -> bytes:
        state_hash = super().commit(block, certificate)
        result = self.last_result
        assert result is not None
        self.reported[block.height] = Reported(
            result.minted, result.validator_rewards, result.provider_rewards, result.burned
        )
        self.reported.pop(block.height - 64, None)
        return state_hash


@dataclass
class SimNode:
    index: int
    key_index: int
    key: PrivateKey
    byzantine: bool
    clock_rate: int
    clock_offset: int
    verifier: SignatureVerifier
    cast: Cast
    consensus: ConsensusConfig
    #: The node's disk: survives crashes.
    sign_state: SignState | None = None
    blocks: list[CommittedBlock] = field(default_factory=list)
    #: Volatile parts.
    core: ConsensusCore | None = None
    app: SimLedgerApp | None = None
    mempool: SimMempool = field(default_factory=SimMempool)
    incarnation: int = 0
    crash_on_persist: bool = False
    crash_on_lock: bool = False
    #: Restart without the signer state (Byzantine amnesia).
    forget_on_restart: bool = False
    last_progress_ms: int = 0
    #: Blocks its proposer could not build from what the ledger admitted (across restarts).
    build_failures: int = 0
    amnesia_restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.core is not None

    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def address(self) -> bytes:
        return self.key.address.raw

    def local_time(self, now_ms: int) -> int:
        return self.clock_offset + now_ms * self.clock_rate // 1000

    def boot(self, now_ms: int) -> list[Effect]:
        """(Re)create the volatile state from disk and start the core."""
        _, state, genesis_hash = self.cast.genesis()
        mempool = SimMempool()
        app = SimLedgerApp(
            state.copy(),
            genesis_hash=genesis_hash,
            verifier=self.verifier,
            tx_source=mempool.candidates,
            tx_verified=tx_signature_known_valid,
        )
        for committed in self.blocks:
            app.commit(committed.block, committed.certificate)
        if self.forget_on_restart and self.incarnation:
            self.sign_state = None
            self.amnesia_restarts += 1
        self.app, self.mempool = app, mempool
        self.core = ConsensusCore(
            app,
            key=self.key,
            config=self.consensus,
            sign_state=self.sign_state,
            verifier=self.verifier,
        )
        return self.core.start(self.local_time(now_ms))

    def crash(self) -> None:
        if self.app is not None:
            self.build_failures += self.app.build_failures
        self.core = None
        self.app = None
        self.incarnation += 1
        self.crash_on_persist = self.crash_on_lock = False
