"""A ledger application resumed from a checkpoint continues exactly like one that replayed."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.consensus.checkpoint import Checkpoint, CheckpointError
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import Commit, Effect, SetTimeout, TimeoutKind
from protocol.consensus.ledger_app import LedgerApp
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.tx import Transfer, sign_tx

KEY = PrivateKey.from_label("checkpoint-validator")
GENESIS = dev_genesis("dcent-ckpt", [(KEY.public_key.raw, 10**12)], [(KEY.address.raw, 10**15)])
GENESIS_HASH = b"\x07" * 32


def _run_chain(heights: int) -> tuple[LedgerApp, list[Commit], dict[int, Checkpoint]]:
    """A lone validator making ``heights`` blocks, one transfer each; checkpoints at every height."""
    pending: list[bytes] = []
    app = LedgerApp(genesis_state(GENESIS), genesis_hash=GENESIS_HASH, tx_source=lambda: list(pending))
    core = ConsensusCore(app, key=KEY)
    commits: list[Commit] = []
    checkpoints: dict[int, Checkpoint] = {}
    now = 1_000

    def collect(effects: list[Effect]) -> SetTimeout:
        commits.extend(e for e in effects if isinstance(e, Commit))
        checkpoints[app.height] = app.checkpoint()
        nonce = app.state.account(KEY.address.raw).nonce + 1  # the next block proposed takes it
        pending[:] = [sign_tx(KEY, "dcent-ckpt", nonce, 10_000, Transfer(bytes(20), app.height + 1))]
        return next(e for e in effects if isinstance(e, SetTimeout) and e.timeout.kind is TimeoutKind.COMMIT)

    timer = collect(core.start(now))
    while app.height < heights:
        now += 1
        timer = collect(core.on_timeout(timer.timeout, now))
    return app, commits, checkpoints


def test_resumed_app_matches_the_replayed_one() -> None:
    full, commits, checkpoints = _run_chain(6)
    resumed = LedgerApp.resume(Checkpoint.decode(checkpoints[3].encode()), genesis_hash=GENESIS_HASH)
    assert resumed.height == 3
    for commit in commits[3:]:
        assert resumed.commit(commit.block, commit.certificate) == commit.state_hash
    assert resumed.state.state_hash() == full.state.state_hash()
    assert resumed.state.balance(bytes(20)) == full.state.balance(bytes(20)) > 0


def test_a_tampered_checkpoint_is_refused() -> None:
    _, _, checkpoints = _run_chain(3)
    good = checkpoints[3]
    with pytest.raises(CheckpointError, match="state hash"):
        LedgerApp.resume(dataclasses.replace(good, state_hash=bytes(32)), genesis_hash=GENESIS_HASH)
    with pytest.raises(CheckpointError, match="validator sets"):
        LedgerApp.resume(dataclasses.replace(good, validator_sets=()), genesis_hash=GENESIS_HASH)
    with pytest.raises(CheckpointError, match="snapshot"):
        LedgerApp.resume(dataclasses.replace(good, snapshot=b"\x00"), genesis_hash=GENESIS_HASH)
