"""The compute market end to end: real nodes on loopback (libp2p, SQLite, consensus), a real
bubblewrap sandbox on the provider, contracts both sign, escrow, delivery and settlement.

Only what needs real nodes stays here: a job through the sandbox to both signatures, GPUs never
shared between jobs, and a requester that restarts from its store and disputes a claim it was
away for (which also covers a provider claiming when its delivery finds nobody). The settlement
rules themselves (refund and slash after the deadline, settle after the grace, dispute, claim and
finalize after the window) are driven block by block in tests/unit/test_market_settlement.py and
tests/unit/test_market_follows_chain.py, with no network and no sleeps."""

from __future__ import annotations

from pathlib import Path

import trio

from node.market.records import JobState
from protocol.market.delivery import output_listing_hash
from protocol.market.errors import NoMatchingGpus
from tests.integration.market_helpers import PROVIDER, REQUESTER, spec, start_market, until_state


async def test_a_job_runs_in_the_sandbox_and_settles_with_both_signatures(tmp_path: Path) -> None:
    script = (
        'echo "$GREETING"; echo "gpus=$CUDA_VISIBLE_DEVICES"; mkdir -p out; '
        "awk -F, '{s+=$2/$1} END {print s/NR}' data/points.csv > out/slope.txt; "
        "(echo > /dev/tcp/1.1.1.1/53) 2>/dev/null && echo net=open || echo net=blocked; "
        "touch /etc/escape 2>/dev/null && echo write=open || echo write=blocked"
    )
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            nodes = await start_market(nursery, tmp_path)
            requester, provider = nodes[REQUESTER], nodes[PROVIDER]
            assert requester.market is not None and provider.market is not None and requester.app is not None
            assert requester.capacity is not None and requester.capacity.last_report is not None
            assert requester.capacity.last_report.devices == ()  # sell_gpus = false
            submitted = await requester.market.submit(spec(script))
            done = await until_state(requester, submitted.job_id, JobState.SETTLED, JobState.FAILED)
            assert done.state is JobState.SETTLED, done.error_message

            states = [state for state, _ in done.history]
            assert states == [
                "matching",
                "negotiating",
                "contracted",
                "escrowed",
                "running",
                "delivered",
                "settled",
            ]
            contract_hash = done.contract_hash
            assert contract_hash is not None and done.receipt is not None and done.contract is not None
            # Both sides hold the same countersigned receipt; the ledger closed the escrow.
            sold = await until_state(provider, "p-" + contract_hash.hex()[:24], JobState.SETTLED)
            assert sold.receipt == done.receipt and sold.requester_sig == done.requester_sig
            await requester.wait_for_height(done.settled_height)
            state = requester.app.state
            assert state.closed_contracts.get(contract_hash) == "settled"
            assert contract_hash not in state.escrows
            state.check_invariants()
            assert done.contract.terms.gpu_uuids[0].startswith("GPU-SIM-")

            # Outputs came back over the stream and hash to what both signed.
            files = await requester.market.result_files(done.job_id)
            assert files == {"slope.txt": b"2\n"}
            assert output_listing_hash(files) == done.receipt.output_hash
            assert done.receipt.exit_status == 0 and done.receipt.gpu_seconds >= 1
            stdout, _, live = await requester.market.logs(done.job_id)
            assert not live
            assert b"hello from dcent" in stdout
            assert f"gpus={done.contract.terms.gpu_uuids[0]}".encode() in stdout
            assert b"net=blocked" in stdout and b"write=blocked" in stdout
            nursery.cancel_scope.cancel()


async def test_two_jobs_never_share_a_gpu_and_a_third_finds_none_free(tmp_path: Path) -> None:
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            nodes = await start_market(nursery, tmp_path)
            requester, provider = nodes[REQUESTER], nodes[PROVIDER]
            assert requester.market is not None and provider.market is not None
            # Three one-GPU jobs at once on a provider with two GPUs: each holds its GPU for a while.
            ids = [
                (
                    await requester.market.submit(spec("sleep 3; echo done", name=f"j{i}"), max_attempts=1)
                ).job_id
                for i in range(3)
            ]
            finished = [
                await until_state(requester, job_id, JobState.SETTLED, JobState.FAILED) for job_id in ids
            ]
            settled = [r for r in finished if r.state is JobState.SETTLED]
            failed = [r for r in finished if r.state is JobState.FAILED]
            assert len(settled) == 2 and len(failed) == 1
            sold = [r.contract.terms.gpu_uuids for r in settled]  # type: ignore[union-attr]
            assert len({uuid for uuids in sold for uuid in uuids}) == 2, f"a GPU was sold twice: {sold}"
            assert str(NoMatchingGpus.code) in failed[0].error_message
            assert provider.market.allocator.allocations() == {}
            nursery.cancel_scope.cancel()


async def test_a_restarted_requester_disputes_a_claim_for_a_result_it_never_received(tmp_path: Path) -> None:
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            # A long window, so the requester is back well before the provider may finalize.
            nodes = await start_market(nursery, tmp_path, dispute_window_blocks=1_000)
            requester, provider = nodes[REQUESTER], nodes[PROVIDER]
            assert requester.market is not None and provider.market is not None
            submitted = await requester.market.submit(spec("sleep 2; echo done"))
            escrowed = await until_state(requester, submitted.job_id, JobState.ESCROWED, JobState.RUNNING)
            assert escrowed.contract is not None
            contract_hash = escrowed.contract.terms.contract_hash()
            provider_job = "p-" + contract_hash.hex()[:24]
            await until_state(provider, provider_job, JobState.RUNNING)
            net = provider.__dict__["_net"]
            net.stop(REQUESTER)  # away while the result is delivered: it never receives it

            await until_state(provider, provider_job, JobState.CLAIMED)
            back = await net.start(REQUESTER)  # the same home: the job record is in its store
            assert back.market is not None
            done = await until_state(
                back, submitted.job_id, JobState.DISPUTED, JobState.SETTLED, JobState.FAILED
            )
            assert done.state is JobState.DISPUTED, done.error_message
            assert back.app is not None and back.app.state.closed_contracts.get(contract_hash) == "disputed"
            lost = await until_state(
                provider, provider_job, JobState.DISPUTED, JobState.SETTLED, JobState.FAILED
            )
            assert lost.state is JobState.DISPUTED
            back.app.state.check_invariants()
            nursery.cancel_scope.cancel()
