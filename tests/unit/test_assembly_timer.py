"""The proposer's assembly time bound on the node's monotonic clock (issue 14)."""

from __future__ import annotations

import pytest

from node.config import ConsensusSettings
from node.services import consensus_driver
from node.services.consensus_driver import assembly_timer


def test_each_assembly_gets_its_own_budget_of_a_third_of_timeout_propose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(consensus_driver.time, "monotonic", lambda: now[0])
    budget_ms = ConsensusSettings(timeout_propose_ms=900).assembly_budget_ms
    assert budget_ms == 300
    start = assembly_timer(budget_ms)
    first = start()
    now[0] += 0.25
    assert not first()
    now[0] += 0.25
    assert first()
    second = start()  # the next block's assembly starts afresh
    assert not second()


def test_the_budget_halves_with_each_failed_round_of_the_height(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(consensus_driver.time, "monotonic", lambda: now[0])
    round_ = [0]
    start = assembly_timer(400, lambda: round_[0])
    budgets = []
    for r in (0, 1, 2, 40):
        round_[0] = r
        expired = start()
        elapsed = 0
        while not expired():
            now[0] += 0.001
            elapsed += 1
        budgets.append(elapsed)
    assert all(abs(got - want) <= 1 for got, want in zip(budgets, (400, 200, 100), strict=False))  # in ms
    assert budgets[3] <= 1  # never negative, never a shift past the budget's bits
