"""What a provider holds in its blob store for its jobs, on a real store (SQLite index, files):
inputs held while a job may run, outputs until its contract closes, and after a restart every
hold of a job that is no longer live released, so nothing stays held forever. The blob service
around the store is a thin stand-in (no libp2p host: nothing here is fetched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from node.blobs.settings import BlobSettings
from node.blobs.store import HOLD_INPUT, HOLD_OUTPUT, BlobStore
from node.market.errors import InterruptedByRestart
from node.market.jobdata import JobData
from node.market.records import PROVIDER, REQUESTER, JobRecord, JobState
from protocol.blobs.merkle import MIN_CHUNK_SIZE
from protocol.market.jobspec import JobSpec

SPEC = JobSpec.from_document(
    {
        "argv": ["true"],
        "max_runtime_s": "60s",
        "max_price_per_gpu_second": "0.01 DCT",
        "resources": {"gpu_count": 1},
    }
)


class _StoreOnly:
    """What JobData asks of the blob service for holds and outputs, on a real store."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.settings = BlobSettings(chunk_size=MIN_CHUNK_SIZE)

    async def release(self, owner: str, purpose: str | None = None) -> int:
        return await trio.to_thread.run_sync(self.store.release, owner, purpose)


def _record(job_id: str, *states: JobState, role: str = PROVIDER) -> JobRecord:
    record = JobRecord(job_id=job_id, role=role, spec=SPEC, created_ms=0)
    for state in states:
        record.move(state, 0)
    return record


def _put(store: BlobStore, tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    path.write_bytes(os.urandom(MIN_CHUNK_SIZE))
    info, _ = store.put_file(path, pin=False, chunk_size=MIN_CHUNK_SIZE)
    return info.cid


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore.open(tmp_path / "blobs", max_bytes=1 << 30)


async def test_after_a_restart_only_the_holds_of_live_jobs_remain(store: BlobStore, tmp_path: Path) -> None:
    data = JobData(_StoreOnly(store), tmp_path / "downloads")  # type: ignore[arg-type]
    cids = {name: _put(store, tmp_path, name) for name in ("a", "b", "c", "d", "e")}
    store.pin(cids["a"], True)  # the operator's own pin, on a blob a job also held
    contracted = _record("p-contracted", JobState.CONTRACTED)
    claimed = _record(
        "p-claimed",
        JobState.CONTRACTED,
        JobState.ESCROWED,
        JobState.RUNNING,
        JobState.DELIVERED,
        JobState.CLAIMED,
    )
    interrupted = _record("p-interrupted", JobState.CONTRACTED, JobState.ESCROWED, JobState.RUNNING)
    interrupted.fail(
        JobState.FAILED, InterruptedByRestart.code, "the node stopped while the job was in progress", 0
    )
    settled = _record(
        "p-settled",
        JobState.CONTRACTED,
        JobState.ESCROWED,
        JobState.RUNNING,
        JobState.DELIVERED,
        JobState.SETTLED,
    )
    asked = _record("r-asked", JobState.NEGOTIATING, JobState.CONTRACTED, role=REQUESTER)
    holds = [
        ("p-contracted", HOLD_INPUT, "a"),  # may still run: kept
        ("p-claimed", HOLD_INPUT, "b"),  # ran: its inputs are no longer needed
        ("p-claimed", HOLD_OUTPUT, "c"),  # the requester may still fetch: kept
        ("p-interrupted", HOLD_INPUT, "a"),  # the restart ended it
        ("p-interrupted", HOLD_OUTPUT, "d"),
        ("p-settled", HOLD_OUTPUT, "c"),  # closed: released, while another job keeps "c"
        ("p-forgotten", HOLD_INPUT, "e"),  # a job the book does not know
        ("r-asked", HOLD_INPUT, "e"),  # not a provider job: nothing of ours to keep
    ]
    for owner, purpose, name in holds:
        store.hold(cids[name], owner, purpose)

    released = await data.release_stale([contracted, claimed, interrupted, settled, asked])

    assert released == 6
    assert store.holds() == {
        "p-claimed": {HOLD_OUTPUT: [cids["c"]]},
        "p-contracted": {HOLD_INPUT: [cids["a"]]},
    }
    assert store.get(cids["a"]).pinned  # type: ignore[union-attr]  # the operator's pin stays
    # Once the remaining jobs end, their holds go too, and garbage collection may take the
    # blobs nobody pinned.
    await data.release_inputs("p-contracted")
    await data.release_outputs("p-claimed")
    assert store.holds() == {}
    store.max_bytes = store.get(cids["a"]).stored_bytes  # type: ignore[union-attr]  # room for "a" alone
    evicted = set(store.gc().evicted)
    assert evicted == {cids[name] for name in ("b", "c", "d", "e")}


async def test_outputs_are_stored_held_for_their_job_and_released_with_it(
    store: BlobStore, tmp_path: Path
) -> None:
    data = JobData(_StoreOnly(store), tmp_path / "downloads")  # type: ignore[arg-type]
    put = data.output_store("p-job")
    out = tmp_path / "model.bin"
    out.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE))
    fd = os.open(out, os.O_RDONLY)
    try:
        cid = await trio.to_thread.run_sync(put, fd, "model.bin")
    finally:
        os.close(fd)
    info = store.get(cid)
    assert info is not None and not info.pinned  # held, not pinned: the operator's pins are theirs
    assert store.holds() == {"p-job": {HOLD_OUTPUT: [cid]}}
    await data.release_inputs("p-job")  # the run ended: its outputs stay held
    assert store.holds() == {"p-job": {HOLD_OUTPUT: [cid]}}
    await data.release_outputs("p-job")  # the contract closed
    assert store.holds() == {}
