"""Job data by reference through the market, on two real nodes (libp2p, SQLite, consensus, the
bubblewrap sandbox): a 200 MiB input by content id and a 500 MiB output as a blob, verified by the
requester against the root the receipt signs; a lying provider's output refused."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.blobs.store import HOLD_INPUT, HOLD_OUTPUT, BlobStore
from node.daemon import Node
from node.executor.errors import InputHashMismatch
from node.market.errors import InterruptedByRestart
from node.market.records import JobState
from node.market.requester import OUTPUT_LISTING_FILE
from protocol.market.delivery import OutputBlob, blob_listing_hash
from protocol.market.jobspec import JobSpec
from tests.integration.executor_helpers import bubblewrap_executor_or_skip
from tests.integration.market_helpers import until_state
from tests.integration.node_helpers import LocalNet, wait_until
from tests.integration.tls_server import CONTENT, serve_tls

MiB = 2**20
PROVIDER, REQUESTER = 0, 1
MARKET: dict[int, dict[str, object]] = {
    PROVIDER: {"simulated_gpus": "1xH100-80GB"},
    REQUESTER: {"sell_gpus": False},
}
INPUT_BYTES = 200 * MiB
OUTPUT_BYTES = 500 * MiB
LINE = b"dcent-output\n"


async def _two_nodes(
    nursery: trio.Nursery, root: Path, market: dict[int, dict[str, object]] | None = None
) -> tuple[Node, Node]:
    bubblewrap_executor_or_skip()
    net = LocalNet(nursery, root, validators=2, market=market or MARKET)
    provider = await net.start(PROVIDER)
    requester = await net.start(REQUESTER)
    key = provider.validator_key.public_key.raw
    await wait_until(
        lambda: key in {a.provider for a in requester.capacity.entries()},  # type: ignore[union-attr]
        what="the provider's capacity reached the requester",
    )
    return provider, requester


def _random_file(path: Path, size: int) -> bytes:
    """``size`` random bytes at ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    return digest.digest()


def _spec(script: str, *, cid: bytes, size: int, output_limit: str, disk: str) -> JobSpec:
    return JobSpec.from_document(
        {
            "name": "data-by-reference",
            "argv": ["sh", "-c", script],
            "max_runtime_s": "120s",
            "max_price_per_gpu_second": "0.01 DCT",
            "resources": {"gpu_count": 1},
            "data": {"data/in.bin": {"cid": cid.hex(), "size": size}},
            "output_mode": "blobs",
            "output_limit_bytes": output_limit,
            "limits": {"disk": disk, "memory": "512 MiB"},
        }
    )


def _expected_output_digest() -> bytes:
    digest = hashlib.sha256()
    whole, rest = divmod(OUTPUT_BYTES, len(LINE))
    block = LINE * (MiB // len(LINE))
    written = 0
    while written + len(block) <= whole * len(LINE):
        digest.update(block)
        written += len(block)
    digest.update(LINE * ((whole * len(LINE) - written) // len(LINE)))
    digest.update(LINE[:rest])
    return digest.digest()


async def test_a_200_mib_input_by_content_id_and_a_500_mib_output_blob_verify_end_to_end(
    tmp_path: Path,
) -> None:
    source = tmp_path / "input.bin"
    input_digest = await trio.to_thread.run_sync(_random_file, source, INPUT_BYTES)
    script = (
        "sha256sum data/in.bin | cut -d' ' -f1 > out/in.sha256; "
        "(touch data/in.bin 2>/dev/null && echo input=writable || echo input=read-only) > out/mount.txt; "
        f"yes dcent-output | head -c {OUTPUT_BYTES} > out/big.bin"
    )
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            provider, requester = await _two_nodes(nursery, tmp_path / "net")
            assert requester.market is not None and provider.market is not None
            info, _ = await requester.blobs.put(source, pin=True)
            spec = _spec(script, cid=info.cid, size=INPUT_BYTES, output_limit="520 MiB", disk="600 MiB")
            submitted = await requester.market.submit(spec)
            done = await until_state(
                requester, submitted.job_id, JobState.SETTLED, JobState.FAILED, JobState.DISPUTED, timeout=240
            )
            assert done.state is JobState.SETTLED, (done.error_code, done.error_message)
            assert done.receipt is not None and done.receipt.outcome == "completed"

            # The provider fetched the input by its content id (from the requester) and kept it.
            assert provider.blobs.store.get(info.cid) is not None
            # The requester holds every output as a verified blob whose listing the receipt signs.
            job_dir = requester.market.ctx.job_dir(done.job_id)
            listing = [
                OutputBlob(path, size, bytes.fromhex(cid))
                for path, size, cid in __import__("json").loads((job_dir / OUTPUT_LISTING_FILE).read_text())
            ]
            assert [item.path for item in listing] == ["big.bin", "in.sha256", "mount.txt"]
            assert blob_listing_hash(listing) == done.receipt.output_hash
            blobs = {item.path: item for item in listing}
            assert blobs["big.bin"].size == OUTPUT_BYTES
            for item in listing:
                held = requester.blobs.store.get(item.content_id)
                assert held is not None and held.complete and held.pinned
            exported = tmp_path / "export"
            exported.mkdir()
            for name in ("in.sha256", "mount.txt", "big.bin"):
                await requester.blobs.export(blobs[name].content_id, exported / name)
            assert (exported / "in.sha256").read_text().strip() == input_digest.hex()
            assert (exported / "mount.txt").read_text().strip() == "input=read-only"
            assert (
                await trio.to_thread.run_sync(_file_digest, exported / "big.bin") == _expected_output_digest()
            )
            # The settled contract closed on both sides: the provider released what it held for
            # the job (its input when the run ended, its outputs now), pinning nothing itself.
            sold = await until_state(provider, "p-" + done.contract_hash.hex()[:24], JobState.SETTLED)  # type: ignore[union-attr]
            assert sold.receipt == done.receipt
            await wait_until(
                lambda: provider.blobs.store.holds() == {},  # type: ignore[union-attr]
                what="the provider released the delivered outputs",
            )
            assert not provider.blobs.store.get(blobs["big.bin"].content_id).pinned  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.digest()


async def test_a_provider_serving_outputs_other_than_the_signed_ones_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    await trio.to_thread.run_sync(_random_file, source, 2 * MiB)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            provider, requester = await _two_nodes(nursery, tmp_path / "net")
            assert requester.market is not None and provider.market is not None
            # The lie: once an output is stored (and its content id about to be signed), the
            # provider's copy is changed, so what it serves is not what the receipt names.
            honest_store = provider.market.data.output_store

            def lying_store(job_id: str) -> object:
                put = honest_store(job_id)

                def put_then_corrupt(fd: int, path: str) -> bytes:
                    cid = put(fd, path)
                    data = provider.blobs.store.data_path(cid)
                    with data.open("r+b") as handle:
                        first = handle.read(1)
                        handle.seek(0)
                        handle.write(bytes([first[0] ^ 0xFF]))
                    return cid

                return put_then_corrupt

            provider.market.data.output_store = lying_store  # type: ignore[method-assign,assignment]
            info, _ = await requester.blobs.put(source, pin=True)
            spec = _spec(
                "(echo not-the-input; cat data/in.bin) > out/result.bin",
                cid=info.cid,
                size=2 * MiB,
                output_limit="8 MiB",
                disk="64 MiB",
            )
            submitted = await requester.market.submit(spec)
            sold_id = await wait_until(
                lambda: next(
                    (r.job_id for r in provider.market.list() if r.role == "provider" and r.receipt),  # type: ignore[union-attr]
                    None,
                ),
                what="the provider signed a receipt",
            )
            # The requester fetched, found chunks that do not verify, and countersigned nothing.
            await wait_until(
                lambda: (
                    provider.market.get(sold_id).state is not JobState.RUNNING  # type: ignore[union-attr]
                    and not provider.market.get(sold_id).requester_sig
                ),  # type: ignore[union-attr]
                what="the provider's delivery was answered",
            )
            record = requester.market.get(submitted.job_id)
            assert record.requester_sig == b"" and record.receipt is None
            assert record.state is not JobState.DELIVERED
            assert not (requester.market.ctx.job_dir(submitted.job_id) / OUTPUT_LISTING_FILE).exists()
            # What `job output` sees: the provider's listing, not verified, nothing to write.
            listing, verified = await requester.market.output_listing(submitted.job_id)
            assert not verified and [path for path, _, _ in listing] == ["result.bin"]
            assert provider.market.get(sold_id).requester_sig == b""
            # The chunk that did not verify was caught by the requester's fetcher, which banned
            # the provider as a blob source; the bad output never became a blob there.
            assert requester.blobs.scores.banned(provider.host.peer_id)
            cid = provider.market.get(sold_id).receipt  # the receipt names the listing, not one cid
            assert cid is not None and requester.market.get(submitted.job_id).receipt is None
            nursery.cancel_scope.cancel()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serve_tls(tmp_path) as running:
        yield running


async def test_a_url_input_is_fetched_by_the_provider_verified_and_mounted(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    base, ca = server
    market = {
        PROVIDER: {**MARKET[PROVIDER], "url_ca_file": str(ca), "allow_private_urls": True},
        REQUESTER: MARKET[REQUESTER],
    }
    digest = hashlib.sha256(CONTENT).hexdigest()
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            _provider, requester = await _two_nodes(nursery, tmp_path / "net", market)
            assert requester.market is not None
            spec = JobSpec.from_document(
                {
                    "argv": ["sh", "-c", "sha256sum data/w.bin | cut -d' ' -f1; wc -c < data/w.bin"],
                    "max_runtime_s": "60s",
                    "max_price_per_gpu_second": "0.01 DCT",
                    "resources": {"gpu_count": 1},
                    "data": {"data/w.bin": {"url": f"{base}/w.bin", "sha256": digest, "size": len(CONTENT)}},
                }
            )
            done = await until_state(
                requester, (await requester.market.submit(spec)).job_id, JobState.SETTLED, JobState.FAILED
            )
            assert done.state is JobState.SETTLED, (done.error_code, done.error_message)
            stdout, _, _ = await requester.market.logs(done.job_id)
            assert stdout.split() == [digest.encode(), str(len(CONTENT)).encode()]
            # A spec whose hash does not match what the URL serves: the job does not run, nothing
            # is metered, and the requester reads why.
            wrong = dataclasses.replace(
                spec, data=(dataclasses.replace(spec.data[0], sha256=hashlib.sha256(b"x").digest()),)
            )
            failed = await until_state(
                requester, (await requester.market.submit(wrong)).job_id, JobState.SETTLED, JobState.FAILED
            )
            assert failed.receipt is not None and failed.receipt.outcome == "job_failed"
            assert failed.receipt.gpu_ms == 0 and failed.receipt.exit_status == -1
            _, stderr, _ = await requester.market.logs(failed.job_id)
            assert f"{InputHashMismatch.code}".encode() in stderr
            nursery.cancel_scope.cancel()


async def test_inputs_held_for_a_job_the_provider_stopped_in_are_released_when_it_starts_again(
    tmp_path: Path,
) -> None:
    """A provider stopped (or killed) mid-job must not keep that job's inputs out of garbage
    collection forever: at start, holds of jobs that are no longer live are released."""
    bubblewrap_executor_or_skip()
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path / "net", validators=2, market=MARKET)
            provider = await net.start(PROVIDER)
            requester = await net.start(REQUESTER)
            key = provider.validator_key.public_key.raw
            await wait_until(
                lambda: key in {a.provider for a in requester.capacity.entries()},  # type: ignore[union-attr]
                what="the provider's capacity reached the requester",
            )
            assert requester.market is not None and requester.blobs is not None
            source = tmp_path / "in.bin"
            source.write_bytes(os.urandom(MiB))
            info, _ = await requester.blobs.put(source)
            spec = _spec("sleep 600", cid=info.cid, size=MiB, output_limit="1 MiB", disk="64 MiB")
            submitted = await requester.market.submit(spec)
            # ESCROWED may last less than one poll: the provider's "running" notice follows it.
            escrowed = await until_state(
                requester, submitted.job_id, JobState.ESCROWED, JobState.RUNNING, JobState.FAILED
            )
            assert escrowed.state is not JobState.FAILED and escrowed.contract is not None
            job = "p-" + escrowed.contract.terms.contract_hash().hex()[:24]
            await until_state(provider, job, JobState.RUNNING)
            store = provider.blobs.store  # type: ignore[union-attr]
            await wait_until(lambda: store.holds() == {job: {HOLD_INPUT: [info.cid]}}, what="the input held")

            await net.stop_and_wait(PROVIDER)
            # What a provider killed mid-job (kill -9, power loss) leaves behind: the job's hold,
            # and one of a job its book never recorded. The operator also pinned the input.
            offline = BlobStore.open(provider.paths.data / "blobs", max_bytes=1 << 30)
            offline.hold(info.cid, job, HOLD_INPUT)
            offline.hold(info.cid, "p-never-recorded", HOLD_OUTPUT)
            offline.pin(info.cid, True)
            offline.close()

            back = await net.start(PROVIDER)
            assert back.market is not None and back.blobs is not None
            assert back.blobs.store.holds() == {}  # released before the market took any job
            ended = back.market.get(job)
            assert ended.state is JobState.FAILED and ended.error_code == InterruptedByRestart.code
            kept = back.blobs.store.get(info.cid)
            assert kept is not None and kept.pinned  # the operator's pin is not a job's to drop
            nursery.cancel_scope.cancel()
