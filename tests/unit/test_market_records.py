"""The job lifecycle is a table (node/market/records.py TRANSITIONS): a job moves only forward
along the happy path or into a terminal state, and never leaves a terminal one."""

from __future__ import annotations

import itertools

import pytest

from node.market.errors import IllegalJobTransition
from node.market.records import PROGRESS, REQUESTER, TERMINAL, JobRecord, JobState
from protocol.market.jobspec import JobSpec


def record_in(state: JobState) -> JobRecord:
    spec = JobSpec.from_document(
        {"argv": ["true"], "max_runtime_s": 60, "max_price_per_gpu_second": 10, "resources": {"gpu_count": 1}}
    )
    return JobRecord(job_id="job-1", role=REQUESTER, spec=spec, created_ms=0, state=state)


@pytest.mark.parametrize(("before", "after"), list(itertools.combinations(PROGRESS, 2)))
def test_a_job_moves_forward_and_may_skip_ahead(before: JobState, after: JobState) -> None:
    record = record_in(before)
    record.move(after, 7)
    assert record.state is after and record.history[-1] == (after.value, 7)


@pytest.mark.parametrize(
    ("earlier", "later"), [pair for pair in itertools.combinations(PROGRESS, 2) if pair[1] not in TERMINAL]
)
def test_a_job_never_moves_back(earlier: JobState, later: JobState) -> None:
    record = record_in(later)
    with pytest.raises(IllegalJobTransition):
        record.move(earlier, 1)
    assert record.state is later and record.history == []


@pytest.mark.parametrize("terminal", sorted(TERMINAL, key=lambda s: s.value))
@pytest.mark.parametrize("target", list(JobState))
def test_nothing_leaves_a_terminal_state(terminal: JobState, target: JobState) -> None:
    record = record_in(terminal)
    with pytest.raises(IllegalJobTransition) as refused:
        record.move(target, 1)
    assert record.state is terminal and record.history == []
    assert refused.value.code == 5964


@pytest.mark.parametrize("live", [s for s in PROGRESS if s not in TERMINAL])
@pytest.mark.parametrize("end", sorted(TERMINAL, key=lambda s: s.value))
def test_a_live_job_can_end_in_any_terminal_state(live: JobState, end: JobState) -> None:
    record = record_in(live)
    record.fail(end, 5956, "the escrow never opened", 3)
    assert (record.state, record.error_code) == (end, 5956)
