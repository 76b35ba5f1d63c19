"""The provider self-test: a real tiny job, and a precise reason and fix when it cannot run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.limits import LimitKind
from node.executor.selftest import (
    HostFacts,
    SelfTestService,
    diagnose,
    host_facts,
    is_chrooted,
    self_test,
)
from node.executor.settings import ExecutorSettings
from node.executor.unsandboxed import SubprocessExecutor
from tests.integration.executor_helpers import bubblewrap_executor_or_skip, job_python

_PYTHON, PYTHON_BINDS = job_python()
HOST = HostFacts(
    uid=1000,
    in_chroot=False,
    max_user_namespaces=15000,
    unprivileged_userns_clone=None,
    apparmor_restrict_userns=None,
    bwrap_installed=True,
    podman_installed=True,
)
NAMESPACE_DENIED = "bwrap: Creating new namespace failed: Operation not permitted"


def _fake_bwrap(tmp_path: Path, message: str) -> str:
    """A bwrap that fails as a host without user namespaces makes it fail."""
    path = tmp_path / "bwrap"
    path.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_the_self_test_passes_in_a_working_sandbox(tmp_path: Path) -> None:
    executor = bubblewrap_executor_or_skip()
    with trio.fail_after(60):
        report = await self_test(executor, tmp_path / "jobs")
    assert report.ok, report.summary()
    assert report.summary().startswith("bubblewrap sandbox ok; limits enforced: ")
    assert report.capabilities is not None and report.capabilities.sandboxed
    assert report.to_json()["ok"] is True
    assert list((tmp_path / "jobs").iterdir()) == []


async def test_a_sandbox_that_cannot_start_fails_the_self_test_with_its_fix(tmp_path: Path) -> None:
    executor = BubblewrapExecutor(bwrap_path=_fake_bwrap(tmp_path, NAMESPACE_DENIED))
    facts = HostFacts(**{**_facts_dict(HOST), "uid": 0, "in_chroot": True})
    with trio.fail_after(60):
        report = await self_test(executor, tmp_path / "jobs", facts=facts)
    assert not report.ok
    assert "chroot" in report.reason and "user namespaces" in report.reason
    assert "outside the chroot" in report.fix
    assert NAMESPACE_DENIED in report.detail
    assert report.summary().startswith("bubblewrap cannot run jobs here: the node runs inside a chroot")


async def test_the_self_test_service_reports_each_change(tmp_path: Path) -> None:
    failing = BubblewrapExecutor(bwrap_path=_fake_bwrap(tmp_path, NAMESPACE_DENIED))
    service = SelfTestService(failing, tmp_path / "jobs")
    changed = service.changed
    with trio.fail_after(60):
        first = await service.check()
    assert not first.ok and service.latest is first and changed.is_set()
    # Same failure again: no change to report.
    unchanged = service.changed
    with trio.fail_after(60):
        await service.check()
    assert not unchanged.is_set()
    service.executor = SubprocessExecutor(allow_unsandboxed=True, settings=ExecutorSettings())
    with trio.fail_after(60):
        recovered = await service.check()
    assert recovered.ok and unchanged.is_set()


def test_diagnosis_names_each_cause_and_its_fix() -> None:
    cases = [
        (
            {"bwrap_installed": False},
            "bwrap is not installed",
            "apt-get install bubblewrap",
        ),
        ({"in_chroot": True}, "inside a chroot", "outside the chroot"),
        ({"max_user_namespaces": 0}, "user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces"),
        (
            {"unprivileged_userns_clone": 0},
            "kernel.unprivileged_userns_clone = 0",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        ),
        (
            {"apparmor_restrict_userns": 1},
            "AppArmor restricts unprivileged user namespaces",
            "kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ]
    for changes, reason_part, fix_part in cases:
        facts = HostFacts(**{**_facts_dict(HOST), **changes})
        reason, fix = diagnose("bubblewrap", NAMESPACE_DENIED, facts)
        assert reason_part in reason and fix_part in fix, (changes, reason, fix)
    # The AppArmor fix also offers the narrower profile for bwrap alone.
    apparmor = HostFacts(**{**_facts_dict(HOST), "apparmor_restrict_userns": 1})
    _reason, fix = diagnose("bubblewrap", NAMESPACE_DENIED, apparmor)
    assert "/etc/apparmor.d/bwrap" in fix and "userns," in fix
    # Root is not subject to the unprivileged restrictions: the generic namespace reason then.
    root = HostFacts(**{**_facts_dict(HOST), "uid": 0, "apparmor_restrict_userns": 1})
    reason, _fix = diagnose("bubblewrap", NAMESPACE_DENIED, root)
    assert "AppArmor" not in reason and "namespaces" in reason
    reason, fix = diagnose("podman", "Error: error setting rlimit type 6: operation not permitted", HOST)
    assert "rlimits" in reason and "podman_nproc" in fix
    reason, fix = diagnose(
        "podman", "whatever", HostFacts(**{**_facts_dict(HOST), "podman_installed": False})
    )
    assert reason == "podman is not installed" and "apt-get install podman" in fix
    chroot = HostFacts(**{**_facts_dict(HOST), "in_chroot": True})
    reason, fix = diagnose("podman", "Error: cgroup is not mounted", chroot)
    assert "inside a chroot" in reason and "outside the chroot" in fix


def _facts_dict(facts: HostFacts) -> dict[str, object]:
    return {name: getattr(facts, name) for name in HostFacts.__dataclass_fields__}


def test_a_chroot_is_told_from_pid_1s_root(tmp_path: Path) -> None:
    inside, outside = tmp_path / "root", tmp_path / "host"
    inside.mkdir()
    outside.mkdir()
    assert is_chrooted(str(inside), str(outside)) is True
    assert is_chrooted(str(inside), str(inside)) is False
    assert is_chrooted(str(inside), str(tmp_path / "missing")) is None
    assert host_facts().uid == os.getuid()


@pytest.mark.parametrize("kind", [LimitKind.MEMORY, LimitKind.DISK])
async def test_the_self_test_job_uses_only_enforceable_limits(tmp_path: Path, kind: LimitKind) -> None:
    # A host that cannot enforce a limit still passes the self-test for what it can do; the node
    # then advertises only that (the capabilities in the report).
    settings = (
        ExecutorSettings(disk_backend="none") if kind is LimitKind.DISK else ExecutorSettings(cgroups=False)
    )
    executor = SubprocessExecutor(allow_unsandboxed=True, settings=settings)
    with trio.fail_after(60):
        report = await self_test(executor, tmp_path / "jobs")
    assert report.ok, report.summary()
    assert report.capabilities is not None and kind not in report.capabilities.limits
    assert "jobs run UNSANDBOXED" in report.summary() and str(kind) not in report.summary()
