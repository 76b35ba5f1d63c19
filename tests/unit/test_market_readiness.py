"""Whether a provider may sell, from its executor's self-test: what it announces, what it quotes
under, and what it says when it sells nothing (node/market/readiness.py, the capacity service's
withdrawal)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from gpu.simulated import simulated_report
from node.executor.limits import Capabilities, LimitKind
from node.executor.selftest import SelfTestReport
from node.market.readiness import host_ceilings, judge
from node.p2p.memory import MemoryNetwork
from node.services.capacity import CapacityService, capacity_topic
from protocol.crypto import PrivateKey
from protocol.hardware import ProbeReport
from protocol.market.capacity import OfferedLimits, decode_announcement
from tests.unit.market_builders import OFFERED_LIMITS

ALL_KINDS = frozenset(LimitKind)


def passed(*, sandboxed: bool = True, kinds: frozenset[LimitKind] = ALL_KINDS) -> SelfTestReport:
    missing = {kind: f"no {kind} controller here" for kind in ALL_KINDS - kinds}
    executor = "bubblewrap" if sandboxed else "subprocess"
    return SelfTestReport(True, executor, capabilities=Capabilities(executor, sandboxed, kinds, missing))


def test_a_sandbox_that_passed_and_enforces_every_limit_sells() -> None:
    readiness = judge(passed())
    assert readiness.selling and readiness.sandboxed is True
    assert readiness.enforced == ("cpu", "disk", "memory", "processes")
    assert readiness.to_json()["limits_not_enforced"] == []


def test_a_failed_self_test_sells_nothing_and_names_the_fix() -> None:
    report = SelfTestReport(
        False,
        "bubblewrap",
        "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
        "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    )
    readiness = judge(report)
    assert not readiness.selling
    assert readiness.fix == "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    assert "AppArmor" in readiness.summary and "cannot run jobs here" in readiness.summary


def test_a_sandbox_that_cannot_enforce_a_limit_sells_nothing_rather_than_pretend() -> None:
    readiness = judge(passed(kinds=ALL_KINDS - {LimitKind.MEMORY}))
    assert not readiness.selling
    assert readiness.reason == "cannot enforce the memory limit(s)"
    assert "memory: no memory controller here" in readiness.summary


def test_the_unsandboxed_development_executor_sells_and_says_so() -> None:
    readiness = judge(passed(sandboxed=False, kinds=frozenset({LimitKind.DISK})))
    assert readiness.selling and readiness.sandboxed is False
    assert "UNSANDBOXED" in readiness.summary and "NOT enforced: cpu, memory, processes" in readiness.summary


def test_before_the_first_self_test_and_without_gpus_nothing_is_sold() -> None:
    assert not judge(None).selling
    assert judge(passed(), selling_gpus=False).summary == "sells no GPUs (market.sell_gpus is false)"


def test_host_ceilings_read_the_hosts_memory_pid_limit_and_free_disk(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:       16384 kB\nMemFree:        1 kB\n")
    (proc / "sys" / "kernel" / "pid_max").write_text("4096\n")
    ceilings = host_ceilings(tmp_path, proc_root=str(proc))
    assert (ceilings.memory_bytes, ceilings.processes) == (16 * 2**20, 4096)
    assert ceilings.cpu_millicores >= 1000 and ceilings.disk_bytes > 0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_provider_that_stops_selling_withdraws_its_offer_once_then_falls_silent(
    clock: trio.testing.MockClock,
) -> None:
    host = MemoryNetwork().create_host(PrivateKey.from_label("readiness-host").seed())
    limits: list[OfferedLimits | None] = [OFFERED_LIMITS]
    report = simulated_report("2xH100-80GB", "readiness")

    async def probe() -> ProbeReport:
        return report

    service = CapacityService(
        chain_id="dcent-readiness",
        key=PrivateKey.from_label("readiness-provider"),
        host=host,
        probe=probe,
        price_per_gpu_second=1,
        collateral=1,
        stake=lambda: 0,
        executors=("bubblewrap",),
        clock_ms=lambda: 1_700_000_000_000 + int(trio.current_time() * 1000),
        limits=lambda: limits[-1],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        inbound = await host.subscribe(capacity_topic("dcent-readiness"))
        await service.announce_now()
        limits.append(None)  # the self-test started failing
        await service.announce_now()
        await service.announce_now()  # silent now
        limits.append(OFFERED_LIMITS)  # fixed
        await service.announce_now()
        received = []
        with trio.move_on_after(5):
            async for message in inbound:
                received.append(decode_announcement(message.data))
                if len(received) == 3:
                    break
        nursery.cancel_scope.cancel()
    assert [len(ann.gpus) for ann in received] == [2, 0, 2]
    assert received[0].limits == OFFERED_LIMITS and received[1].limits.enforced == ()
    assert [ann.sequence for ann in received] == sorted({ann.sequence for ann in received})
