"""`testnet up --executor auto`: bubblewrap when its self-test passes here, else the subprocess
executor, said loudly with the reason and the fix; a named executor is never swapped."""

from __future__ import annotations

import pytest

from node.executor.selftest import SelfTestReport
from node.testnet import sandbox
from node.testnet.sandbox import choose_executor

CHROOT = SelfTestReport(
    False,
    "bubblewrap",
    "the node runs inside a chroot, where Linux refuses to create user namespaces",
    "run the node outside the chroot",
)


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for the real self-test (a sandboxed job): it fails for bubblewrap only."""
    names: list[str] = []

    def fake(name: str) -> SelfTestReport:
        names.append(name)
        return CHROOT if name == "bubblewrap" else SelfTestReport(True, name)

    monkeypatch.setattr(sandbox, "self_test_here", fake)
    return names


def test_auto_falls_back_to_the_unsandboxed_executor_loudly_with_the_reason(tried: list[str]) -> None:
    choice = choose_executor("auto", providers=2)
    assert (choice.executor, choice.unsandboxed, tried) == ("subprocess", True, ["bubblewrap"])
    banner = "\n".join(choice.warnings)
    assert "UNSANDBOXED" in banner and CHROOT.reason in banner and CHROOT.fix in banner


def test_auto_keeps_a_working_sandbox(tried: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "self_test_here", lambda name: SelfTestReport(True, name))
    assert choose_executor("auto", providers=1) == sandbox.ExecutorChoice("bubblewrap")


def test_a_named_sandbox_that_fails_is_kept_and_warned_about(tried: list[str]) -> None:
    choice = choose_executor("bubblewrap", providers=1)
    assert choice.executor == "bubblewrap" and not choice.unsandboxed
    assert "the providers will sell nothing until it passes" in "\n".join(choice.warnings)


def test_no_providers_no_test(tried: list[str]) -> None:
    assert choose_executor("auto", providers=0).executor == "bubblewrap" and tried == []
    assert choose_executor("subprocess", providers=2).unsandboxed and tried == []
