"""Which sandbox a local testnet's providers run jobs in, decided by running it once here.

``dcent testnet up --executor auto`` (the default) runs the bubblewrap self-test on this host
(:func:`node.executor.selftest.self_test`, a real tiny job): when it passes, the providers use
bubblewrap; when it fails (a chroot, Ubuntu's AppArmor restriction on user namespaces, no bwrap),
they use the plain subprocess executor, and ``up`` says so loudly, with the reason and the fix,
before anything starts. ``testnet status`` says it again for every provider. A named executor is
used as named; if its self-test fails, ``up`` warns that the providers will sell nothing until
the host is fixed (their nodes log and report the same). ``dcent node run`` never falls back on
its own: only a testnet, on the operator's ``auto``, does, and never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.executor.selftest import self_test_here

AUTO = "auto"
SANDBOX = "bubblewrap"
UNSANDBOXED = "subprocess"


@dataclass(frozen=True, slots=True)
class ExecutorChoice:
    """The executor the providers get, and what ``up`` must tell the operator about it."""

    executor: str
    warnings: tuple[str, ...] = ()

    @property
    def unsandboxed(self) -> bool:
        return self.executor == UNSANDBOXED


def unsandboxed_banner(reason: str, fix: str) -> tuple[str, ...]:
    return (
        "WARNING: jobs on this testnet run UNSANDBOXED (the subprocess executor): a job sees the "
        "network and the whole filesystem with the node's permissions. Development only.",
        f"  why: the bubblewrap sandbox cannot run here: {reason}",
        f"  fix: {fix}",
    )


def choose_executor(requested: str, *, providers: int) -> ExecutorChoice:
    """The executor for ``requested`` (``auto`` or a name), tested here when it matters."""
    if providers == 0:
        return ExecutorChoice(SANDBOX if requested == AUTO else requested)
    if requested == UNSANDBOXED:
        return ExecutorChoice(UNSANDBOXED, unsandboxed_banner("not tried: --executor subprocess", "-"))
    tried = SANDBOX if requested == AUTO else requested
    report = self_test_here(tried)
    if report.ok:
        return ExecutorChoice(tried)
    if requested == AUTO:
        return ExecutorChoice(UNSANDBOXED, unsandboxed_banner(report.reason, report.fix))
    return ExecutorChoice(
        tried,
        (
            f"WARNING: the {tried} self-test failed on this host: {report.reason}",
            f"  fix: {report.fix}",
            "  the providers will sell nothing until it passes (their nodes log it, `testnet status` "
            "shows it); `--executor auto` would run jobs unsandboxed instead",
        ),
    )
