"""A damaged checkpoint is logged and the node replays its chain from genesis instead.

A real SQLite home (LocalNet): one validator commits past two checkpoints (every 4 heights), is
stopped, and the newest checkpoint row of ``data/chain.db`` is damaged the way a bad disk, an
interrupted copy or a hand edit leaves it. On restart the node must say which checkpoint it could
not use, replay every stored block from genesis (re-verifying each), reach the stored head's
height with the very state hash it had committed there, and go on committing. The undamaged
case is the control: there the node resumes from the checkpoint, so the genesis replay above is
the damage's doing.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from node.daemon import Node
from node.services.economics_recorder import RecordingLedgerApp
from node.store import ChainStore
from tests.integration.node_helpers import FAST, LocalNet


def _flip_middle(height: int, state_hash: bytes, blob: bytes) -> tuple[bytes, bytes]:
    """Bit rot: 16 bytes in the middle of the checkpoint inverted."""
    middle = len(blob) // 2
    return state_hash, blob[:middle] + bytes(b ^ 0xFF for b in blob[middle : middle + 16]) + blob[
        middle + 16 :
    ]


def _wrong_hash(height: int, state_hash: bytes, blob: bytes) -> tuple[bytes, bytes]:
    """The row claims a state hash the block of its height does not have."""
    return hashlib.sha256(b"another state" + state_hash).digest(), blob


def _truncated(height: int, state_hash: bytes, blob: bytes) -> tuple[bytes, bytes]:
    """A write cut short: the row holds the checkpoint's first half."""
    return state_hash, blob[: len(blob) // 2]


def _untouched(height: int, state_hash: bytes, blob: bytes) -> tuple[bytes, bytes]:
    return state_hash, blob


Damage = Callable[[int, bytes, bytes], tuple[bytes, bytes]]
DAMAGES: dict[str, Damage] = {
    "corrupt bytes": _flip_middle,
    "wrong hash": _wrong_hash,
    "truncated row": _truncated,
}


def damage_newest_checkpoint(db: Path, damage: Damage) -> int:
    """Rewrite the newest row of ``snapshots`` through ``damage``; returns its height."""
    with sqlite3.connect(db) as conn:
        height, state_hash, blob = conn.execute(
            "SELECT height, state_hash, state FROM snapshots ORDER BY height DESC LIMIT 1"
        ).fetchone()
        new_hash, new_blob = damage(height, bytes(state_hash), bytes(blob))
        conn.execute(
            "UPDATE snapshots SET state_hash = ?, state = ? WHERE height = ?", (new_hash, new_blob, height)
        )
    conn.close()
    return int(height)


def stored_head(db: Path) -> tuple[int, bytes]:
    store = ChainStore.open(db)
    try:
        head = store.head()
        assert head is not None
        block = store.block(head.height)
        assert block is not None
        return head.height, block.state_hash
    finally:
        store.close()


async def restart_after(
    tmp_path: Path, damage: Damage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> tuple[Node, int, tuple[int, bytes], list[tuple[int, bytes]]]:
    """Run a node past two checkpoints, stop it, ``damage`` its newest checkpoint, restart it.
    Returns the restarted node, the damaged checkpoint's height, the stored head before the
    restart, and what each replay at start ended at (height, state hash)."""
    replays: list[tuple[int, bytes]] = []
    replay = Node._replay

    def recording_replay(self: Node, store: ChainStore) -> RecordingLedgerApp:
        app = replay(self, store)
        replays.append((app.height, app.state.state_hash()))
        return app

    monkeypatch.setattr(Node, "_replay", recording_replay)
    async with trio.open_nursery() as nursery:
        net = LocalNet(nursery, tmp_path, validators=1)
        node = await net.start(0)
        await node.wait_for_height(2 * FAST.snapshot_interval + 1)
        stopped = await net.stop_and_wait(0)
        db = stopped.paths.chain_db
        head = stored_head(db)
        checkpoint = damage_newest_checkpoint(db, damage)
        assert FAST.snapshot_interval < checkpoint <= head[0]
        replays.clear()
        with caplog.at_level(logging.INFO, logger="dcent.node"):
            restarted = await net.start(0)
            await restarted.wait_for_height(head[0] + 3)  # and it keeps committing
        nursery.cancel_scope.cancel()
    return restarted, checkpoint, head, replays


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_a_damaged_checkpoint_is_logged_and_the_chain_is_replayed_from_genesis(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(120):
        restarted, checkpoint, head, replays = await restart_after(
            tmp_path, DAMAGES[damage], monkeypatch, caplog
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "dcent.node"]
    warned = [m for m in messages if f"checkpoint at height {checkpoint} unusable" in m]
    assert warned and "replaying from genesis" in warned[0], messages
    assert restarted.resumed_from == 0
    # Replayed from genesis to the stored head, with the state hash committed there.
    assert replays == [head]
    assert f"ledger at height {head[0]}: resumed at 0, replayed {head[0]} blocks" in messages


async def test_an_undamaged_checkpoint_is_resumed_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The control: the same run without damage resumes from the checkpoint."""
    with trio.fail_after(120):
        restarted, checkpoint, head, replays = await restart_after(tmp_path, _untouched, monkeypatch, caplog)
    assert restarted.resumed_from == checkpoint
    assert replays == [head]
    assert not [r for r in caplog.records if "unusable" in r.getMessage()]
