"""The provider self-test: run a tiny job in the configured executor, and say what to fix if it fails.

A provider must not advertise capacity it cannot deliver. :func:`self_test` runs a real job (a
shell printing a marker) through the executor the node sells, under the limits the executor says
it enforces, and returns a :class:`SelfTestReport`: ok, or the reason and the operator's fix.
The node runs it at start and on a timer (:class:`SelfTestService`) and stops advertising while
it fails. The causes it names, from facts of the host (:func:`host_facts`) and the sandbox's own
error (:func:`diagnose`, pure):

* bubblewrap not installed: ``apt-get install bubblewrap`` (``make deps``);
* the node runs in a **chroot**: Linux refuses to create user namespaces there
  (``unshare(CLONE_NEWUSER)`` fails with ``EPERM``), so no bubblewrap sandbox can exist; detected
  by comparing our root with pid 1's (``/proc/1/root``);
* ``user.max_user_namespaces = 0``, Debian's ``kernel.unprivileged_userns_clone = 0``, or
  Ubuntu 23.10+'s AppArmor restriction ``kernel.apparmor_restrict_unprivileged_userns = 1``
  (for a node not running as root): the sysctl to change, or the AppArmor profile for bwrap;
* podman missing, or its OCI runtime refusing the host's cgroups or rlimits;
* a limit the node would sell that this host cannot enforce (no cgroup controller, no mount).

Attacks and failures this is built against: a provider host that silently cannot sandbox (it
would accept jobs, fail them all, and be paid or slashed at random); an operator who cannot
tell why. It runs a job, not a feature probe, so whatever breaks between the probe and a real
job is caught too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from node.executor.base import Executor, run_to_outcome
from node.executor.container import ContainerExecutor
from node.executor.errors import JobInputError
from node.executor.limits import Capabilities, LimitKind, ResourceLimits
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.executor.select import select_executor

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

MARKER = "dcent-self-test-ok"
SELF_TEST_TIMEOUT_S = 60.0
DEFAULT_INTERVAL_S = 600.0
# What the tiny job runs under, for each limit the executor enforces.
SELF_TEST_LIMITS = ResourceLimits(
    memory_bytes=64 * 2**20, cpu_millicores=500, processes=64, disk_bytes=16 * 2**20
)
APPARMOR_PROFILE = (
    "printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile bwrap /usr/bin/bwrap flags=(unconfined) "
    "{\\n  userns,\\n}\\n' | sudo tee /etc/apparmor.d/bwrap && sudo apparmor_parser -r /etc/apparmor.d/bwrap"
)


@dataclass(frozen=True, slots=True)
class SelfTestReport:
    """``ok``, or ``reason`` (what failed) and ``fix`` (what the operator should do)."""

    ok: bool
    executor: str
    reason: str = ""
    fix: str = ""
    detail: str = ""
    capabilities: Capabilities | None = None

    def summary(self) -> str:
        """One line for the log, ``gpu list``, ``node_status`` and ``testnet status``."""
        if self.ok:
            caps = self.capabilities
            enforced = ", ".join(sorted(str(kind) for kind in caps.limits)) if caps else ""
            isolation = "sandbox ok" if caps is None or caps.sandboxed else "ok, jobs run UNSANDBOXED"
            return f"{self.executor} {isolation}; limits enforced: {enforced or 'none'}"
        return f"{self.executor} cannot run jobs here: {self.reason}. Fix: {self.fix}"

    def to_json(self) -> dict[str, object]:
        caps = self.capabilities
        return {
            "ok": self.ok,
            "executor": self.executor,
            "reason": self.reason,
            "fix": self.fix,
            "detail": self.detail,
            "limits": sorted(str(kind) for kind in caps.limits) if caps else [],
            "sandboxed": caps.sandboxed if caps else None,
        }


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the diagnosis looks at; ``None`` where it could not be read."""

    uid: int
    in_chroot: bool | None
    max_user_namespaces: int | None
    unprivileged_userns_clone: int | None
    apparmor_restrict_userns: int | None
    bwrap_installed: bool
    podman_installed: bool


def host_facts(proc_root: str = "/proc") -> HostFacts:
    """Read the facts from this host."""
    return HostFacts(
        uid=os.getuid(),
        in_chroot=is_chrooted("/", f"{proc_root}/1/root"),
        max_user_namespaces=_sysctl_int(f"{proc_root}/sys/user/max_user_namespaces"),
        unprivileged_userns_clone=_sysctl_int(f"{proc_root}/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict_userns=_sysctl_int(f"{proc_root}/sys/kernel/apparmor_restrict_unprivileged_userns"),
        bwrap_installed=shutil.which("bwrap") is not None,
        podman_installed=shutil.which("podman") is not None,
    )


def is_chrooted(own_root: str, init_root: str) -> bool | None:
    """Whether our root differs from pid 1's (we are in a chroot); None if pid 1's cannot be seen."""
    try:
        ours, theirs = os.stat(own_root), os.stat(init_root)
    except OSError:
        return None
    return (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino)


def diagnose(executor: str, message: str, facts: HostFacts) -> tuple[str, str]:
    """``(reason, fix)`` for a failed self-test, from the sandbox's message and the host's facts."""
    first = message.strip().splitlines()[0] if message.strip() else "the test job failed"
    unsandboxed_hint = (
        'for a local testnet only, market.executor = "subprocess" with market.allow_unsandboxed = true '
        "runs jobs without a sandbox"
    )
    if executor == "bubblewrap":
        if not facts.bwrap_installed:
            return "bwrap is not installed", "apt-get install bubblewrap (or run `make deps` as root)"
        if facts.in_chroot:
            return (
                "the node runs inside a chroot, where Linux refuses to create user namespaces, so bubblewrap "
                f"cannot build its sandbox ({first})",
                "run the node outside the chroot: on the host, in a VM, or in a container that allows user "
                f"namespaces; {unsandboxed_hint}",
            )
        if facts.max_user_namespaces == 0:
            return (
                f"user namespaces are disabled (user.max_user_namespaces = 0): {first}",
                "sudo sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to keep it)",
            )
        if facts.uid != 0 and facts.unprivileged_userns_clone == 0:
            return (
                f"unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): {first}",
                "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d/ to keep it)",
            )
        if facts.uid != 0 and facts.apparmor_restrict_userns == 1:
            return (
                "AppArmor restricts unprivileged user namespaces "
                f"(kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10+): {first}",
                f"give bwrap an AppArmor profile that allows them: {APPARMOR_PROFILE}; or, for the whole "
                "host, sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            )
        if "namespace" in message or "Operation not permitted" in message or "Permission denied" in message:
            return (
                f"bubblewrap may not create the namespaces it needs: {first}",
                "allow user namespaces for the node's user (sysctls user.max_user_namespaces, "
                "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns) or the "
                f"container runtime's seccomp/AppArmor policy; {unsandboxed_hint}",
            )
    if executor == "podman":
        if not facts.podman_installed:
            return "podman is not installed", "apt-get install podman runc"
        if facts.in_chroot:
            return (
                "the node runs inside a chroot, which has neither the host's cgroups nor user namespaces, "
                f"so podman cannot confine a container ({first})",
                "run the node outside the chroot: on the host, in a VM, or in a container with cgroups "
                f"delegated; {unsandboxed_hint}",
            )
        if "rlimit" in message:
            return (
                f"the OCI runtime may not set the container's rlimits: {first}",
                "lower executor.podman_nofile / executor.podman_nproc to at most the node's own limits (ulimit -Hn, -Hu)",
            )
        if "cgroup" in message:
            return (
                f"the OCI runtime refuses this host's cgroups: {first}",
                'use executor.podman_runtime = "runc" (crun refuses hybrid cgroup hosts)',
            )
    if "cannot enforce" in message:
        return (
            first,
            "run the node as root (cgroups and the job volume's mount need it), or give it a delegated cgroup v2 subtree (systemd: Delegate=yes)",
        )
    return first, "see the detail; the executor's own message names the failing step"


def self_test_job(capabilities: Capabilities, work_root: Path, *, image: str = "") -> SandboxJob:
    """The tiny job: a shell printing the marker, under every limit the executor enforces."""
    kinds = capabilities.limits
    limits = ResourceLimits(
        memory_bytes=SELF_TEST_LIMITS.memory_bytes if LimitKind.MEMORY in kinds else None,
        cpu_millicores=SELF_TEST_LIMITS.cpu_millicores if LimitKind.CPU in kinds else None,
        processes=SELF_TEST_LIMITS.processes if LimitKind.PROCESSES in kinds else None,
        disk_bytes=SELF_TEST_LIMITS.disk_bytes if LimitKind.DISK in kinds else None,
    )
    return SandboxJob(
        job_id="self-test",
        argv=("/bin/sh", "-c", f"echo {MARKER} > out/marker && echo {MARKER}"),
        work_root=work_root,
        timeout_s=SELF_TEST_TIMEOUT_S,
        grace_s=1.0,
        image=image,
        limits=limits,
    )


async def self_test(
    executor: Executor, work_root: Path, *, image: str = "", facts: HostFacts | None = None
) -> SelfTestReport:
    """Run the tiny job in ``executor`` and report. Never raises for a failing sandbox."""
    name = executor.name
    availability = await trio.to_thread.run_sync(executor.available)
    facts = facts if facts is not None else await trio.to_thread.run_sync(host_facts)
    if not availability:
        reason, fix = diagnose(name, availability.reason, facts)
        return SelfTestReport(False, name, reason, fix, detail=availability.reason)
    capabilities = await trio.to_thread.run_sync(executor.capabilities)
    if name not in ("docker", "podman"):
        image = ""
    try:
        if image and isinstance(executor, ContainerExecutor):
            # The operator's own image, trusted by its tag: pinned to the ID the tag named when
            # first found, which every self-test and job naming no image runs (node.executor.images).
            image = await executor.operator_image(image)
        job = self_test_job(capabilities, work_root, image=image)
        result = await run_to_outcome(executor, job)
    except JobInputError as exc:
        return SelfTestReport(
            False,
            name,
            exc.message,
            "set executor.container_image to a local image",
            capabilities=capabilities,
        )
    if _passed(result):
        return SelfTestReport(True, name, capabilities=capabilities)
    message = result.error_message or result.stderr.decode(errors="replace") or f"outcome {result.outcome}"
    reason, fix = diagnose(name, message, facts)
    return SelfTestReport(False, name, reason, fix, detail=message[:2000], capabilities=capabilities)


def _passed(result: ExecutionResult) -> bool:
    return (
        result.outcome is Outcome.COMPLETED
        and result.stdout.strip() == MARKER.encode()
        and result.output_files.get("marker") == (MARKER + "\n").encode()
    )


class SelfTestService:
    """Runs :func:`self_test` at start and every ``interval_s``; ``latest`` is the last report.

    The node stops advertising capacity while ``latest.ok`` is false (the lead's wiring reads
    it; ``on_change`` is called whenever ok flips, or the reason changes).
    """

    def __init__(
        self,
        executor: Executor,
        work_root: Path,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        image: str = "",
    ) -> None:
        self.executor = executor
        self.work_root = work_root
        self.interval_s = interval_s
        self.image = image
        self.latest: SelfTestReport | None = None
        self.changed = trio.Event()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.check()
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> SelfTestReport:
        report = await self_test(self.executor, self.work_root, image=self.image)
        previous = self.latest
        self.latest = report
        if previous is None or (previous.ok, previous.reason) != (report.ok, report.reason):
            if report.ok:
                log.info("executor self-test: %s", report.summary())
            else:
                log.error("executor self-test: %s", report.summary())
            self.changed.set()
            self.changed = trio.Event()
        return report


def self_test_here(name: str) -> SelfTestReport:
    """Run the self-test of executor ``name`` on this host now, in a throwaway work directory
    (blocking: for the CLI, ``dcent gpu list`` and ``testnet up``). The subprocess executor is
    allowed here: the report says it is unsandboxed."""
    executor = select_executor(name, allow_unsandboxed=True)
    with tempfile.TemporaryDirectory(prefix="dcent-selftest-") as directory:
        return trio.run(self_test, executor, Path(directory))


def _sysctl_int(path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().strip())
    return None
