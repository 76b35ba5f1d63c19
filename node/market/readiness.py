"""Whether this node may sell jobs now, and the limits it sells one job: the executor's self-test
tied to the capacity announcement and to every quote.

A provider must not advertise what it cannot deliver. The executor's self-test
(:class:`~node.executor.selftest.SelfTestService`) runs a real tiny job at start and on a timer;
:class:`ProviderReadiness` turns its latest report into:

* :meth:`ProviderReadiness.offered_limits`: the :class:`~protocol.market.capacity.OfferedLimits`
  the node announces and quotes under, or None, and then the node announces no capacity and
  refuses every request (:class:`~protocol.market.errors.ProviderNotReady`). None while the test
  has not run or failed, and for a sandboxed executor that cannot enforce every limit kind here
  (a job's spec always sets all four: selling it anyway would be pretending).
* :meth:`ProviderReadiness.status`: what ``node_status``, ``testnet status`` and the log say: ok,
  or why not and the fix (the AppArmor sysctl, a missing package, a chroot).

The unsandboxed development executor (``subprocess``, allowed only by
``market.allow_unsandboxed``) sells with the limits the host enforces and names the others, loudly.
The ceilings sold to one job are the host's: its cores, its memory, ``kernel.pid_max`` processes
and the free disk under the jobs directory (ceilings, not reservations: GPUs are what a job holds
alone).

Selling only through a sandbox that works
-----------------------------------------

**Selling only through a sandbox that works** (``node/market/readiness.py``). With
``market.sell_gpus``, a provider runs its executor's self-test (a real tiny job) at start and every
``market.self_test_interval_s`` (600 s), and ``ProviderReadiness`` turns the latest report into what
it sells:

- **Offers carry limits**: ``OfferedLimits``, a signed field of the capacity announcement: the most
  CPU (millicores), memory, processes and disk one job may ask for (the host's cores, ``MemTotal``,
  ``kernel.pid_max``, free disk under ``data/jobs``: ceilings, not reservations), the limit kinds the
  kernel enforces, and whether jobs are sandboxed. Matching and the quote use them (4045 above).
- **Not selling** while the self-test fails or has not run, or when a sandboxed executor cannot
  enforce every limit kind: the node withdraws its capacity (one announcement with no GPUs, so
  peers stop offering it at once, not after the TTL) and refuses every quote (4046). It says why
  and the fix (the AppArmor sysctl, ``apt-get install bubblewrap``, a chroot, the container image)
  in its log (ERROR), in ``node_status`` / ``node_info`` (`provider: {selling, reason, fix,
  sandboxed, limits_enforced, ...}``), in ``testnet status``, and ``dcent gpu list` runs the same
  self-test (``sandbox:`` line).
- **Never unsandboxed silently**: ``select_executor`` refuses ``subprocess`` without
  ``market.allow_unsandboxed``; ``dcent node run`` never falls back. ``dcent testnet up --executor auto``
  (the default) runs the bubblewrap self-test and, when it fails, gives the providers the
  subprocess executor with a banner naming the reason and the fix, which ``testnet status`` and
  ``make demo`` repeat (``jobs run UNSANDBOXED (development only); limits NOT enforced: ...``).
- ``[executor]`` in ``config.toml`` reaches ``ExecutorSettings`` (container image, extra read-only binds,
  disk backend, podman runtime and limits).

| mechanism | attack or failure it answers |
|---|---|
| self-test gates the announcement and every quote | a provider selling a sandbox that does not start here (and being slashed for every job) |
| ``OfferedLimits`` signed in the offer, checked by matching and quote | a job placed where its limits cannot be enforced or exceed the host |
| capacity withdrawn by an empty announcement | requesters negotiating with a broken provider until the TTL runs out |
| no silent fallback to ``subprocess`` | an operator believing jobs are confined when they are not |
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from node.executor.limits import LimitKind
from node.executor.selftest import SelfTestReport, SelfTestService
from protocol.contracts import LIMIT_NAMES
from protocol.market.capacity import OfferedLimits
from protocol.market.jobspec import MAX_CPU_MILLICORES, MAX_PROCESSES

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.market.readiness")

#: Without /proc readings, what one job may ask for (a conservative guess, said in the log).
FALLBACK_MEMORY_BYTES = 2 * 2**30
FALLBACK_PROCESSES = 32_768


@dataclass(frozen=True, slots=True)
class HostCeilings:
    """The most one job may ask of this host, per limit kind."""

    cpu_millicores: int
    memory_bytes: int
    processes: int
    disk_bytes: int


def host_ceilings(jobs_dir: Path, proc_root: str = "/proc") -> HostCeilings:
    """This host's cores, memory, pid limit and the free disk where jobs run (reads /proc and
    statvfs: cheap, called at every announcement)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = FALLBACK_MEMORY_BYTES
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"{proc_root}/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    processes = FALLBACK_PROCESSES
    with contextlib.suppress(OSError, ValueError):
        processes = int(Path(f"{proc_root}/sys/kernel/pid_max").read_text().strip())
    disk = 0
    with contextlib.suppress(OSError):
        stat = os.statvfs(jobs_dir)
        disk = stat.f_bavail * stat.f_frsize
    return HostCeilings(
        cpu_millicores=min(cores * 1000, MAX_CPU_MILLICORES),
        memory_bytes=memory,
        processes=min(processes, MAX_PROCESSES),
        disk_bytes=disk,
    )


@dataclass(frozen=True, slots=True)
class Readiness:
    """One judgement: may the node sell, and if not, why and what fixes it."""

    selling: bool
    summary: str
    reason: str = ""
    fix: str = ""
    sandboxed: bool | None = None
    enforced: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "selling": self.selling,
            "summary": self.summary,
            "reason": self.reason,
            "fix": self.fix,
            "sandboxed": self.sandboxed,
            "limits_enforced": list(self.enforced),
            "limits_not_enforced": [kind for kind in LIMIT_NAMES if kind not in self.enforced],
        }


def judge(report: SelfTestReport | None, *, selling_gpus: bool = True) -> Readiness:
    """What a self-test report means for selling (pure)."""
    if not selling_gpus:
        return Readiness(False, "sells no GPUs (market.sell_gpus is false)")
    if report is None:
        return Readiness(False, "the executor's self-test has not finished yet")
    if not report.ok or report.capabilities is None:
        return Readiness(False, report.summary(), report.reason, report.fix)
    caps = report.capabilities
    enforced = tuple(sorted(str(kind) for kind in caps.limits))
    missing = tuple(kind for kind in LIMIT_NAMES if kind not in enforced)
    if caps.sandboxed and missing:
        reasons = caps.explain(tuple(LimitKind(kind) for kind in missing))
        return Readiness(
            False,
            f"{report.executor} cannot enforce every job limit here, so it sells nothing: {reasons}",
            f"cannot enforce the {', '.join(missing)} limit(s)",
            "run the node as root (cgroups and the job volume's mount need it), or give it a delegated "
            "cgroup v2 subtree (systemd: Delegate=yes), and install e2fsprogs",
            sandboxed=True,
            enforced=enforced,
        )
    if not caps.sandboxed:
        unenforced = f"; limits NOT enforced: {', '.join(missing)}" if missing else ""
        return Readiness(
            True,
            f"{report.executor}: jobs run UNSANDBOXED (development only){unenforced}",
            sandboxed=False,
            enforced=enforced,
        )
    return Readiness(True, report.summary(), sandboxed=True, enforced=enforced)


class ProviderReadiness:
    """The live view of :func:`judge` over a running :class:`SelfTestService` (None: the node
    sells no GPUs and runs no self-test)."""

    def __init__(self, selftest: SelfTestService | None, jobs_dir: Path) -> None:
        self.selftest = selftest
        self.jobs_dir = jobs_dir

    async def run(
        self,
        on_change: Callable[[], Awaitable[None]],
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Say in the log whether the node sells, and call ``on_change`` (re-announce) whenever
        the self-test's verdict changes. Start it after the self-test's first run."""
        await trio.Path(self.jobs_dir).mkdir(parents=True, exist_ok=True)
        self._log()
        task_status.started()
        if self.selftest is None:
            return
        while True:
            await self.selftest.changed.wait()
            self._log()
            await on_change()

    def _log(self) -> None:
        readiness = self.status()
        if self.selftest is None:
            log.info("provider: %s", readiness.summary)
        elif not readiness.selling:
            fix = (
                f". Fix: {readiness.fix}" if readiness.fix and readiness.fix not in readiness.summary else ""
            )
            log.error("provider: NOT selling: %s%s", readiness.summary, fix)
        elif not readiness.sandboxed:
            log.warning("provider: selling, but %s", readiness.summary)
        else:
            log.info("provider: selling; %s", readiness.summary)

    @property
    def executor_name(self) -> str:
        return self.selftest.executor.name if self.selftest is not None else ""

    def status(self) -> Readiness:
        if self.selftest is None:
            return judge(None, selling_gpus=False)
        return judge(self.selftest.latest)

    def offered_limits(self) -> OfferedLimits | None:
        """What the node sells one job now, or None when it may not sell."""
        readiness = self.status()
        if not readiness.selling or readiness.sandboxed is None:
            return None
        ceilings = host_ceilings(self.jobs_dir)
        return OfferedLimits(
            cpu_millicores=ceilings.cpu_millicores,
            memory_bytes=ceilings.memory_bytes,
            processes=ceilings.processes,
            disk_bytes=ceilings.disk_bytes,
            enforced=readiness.enforced,
            sandboxed=readiness.sandboxed,
        )
