"""Following a job through its states: the polling loop and the live display of its stages.

A requester's job goes ``matching -> negotiating -> contracted -> escrowed -> running ->
delivered -> settled`` (``claimed`` between the last two when the provider settles by its own
claim), or ends as ``failed``, ``refunded``, ``disputed`` or ``cancelled`` (the RPC contract's
job object). The node is polled with ``job_get``; the display shows each stage reached
with the time the node recorded for it (its ``history``), so it needs no clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import trio
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from node.market.errors import (
    ClaimDisputed,
    JobDidNotComplete,
    JobNotFinished,
    JobServiceError,
    NothingDelivered,
    ProviderFailed,
)
from node.rpc.errors import RpcCallError
from node.wallet.connect import NodeRpc
from node.wallet.console import dct
from node.wallet.errors import JobWaitTimeout
from node.wallet.values import answer_object, answer_str

#: The requester's stages in order, with the names the display gives them.
STAGES: tuple[tuple[str, str], ...] = (
    ("matching", "matching"),
    ("negotiating", "negotiating"),
    ("contracted", "contract"),
    ("escrowed", "escrow"),
    ("running", "running"),
    ("delivered", "delivered"),
    ("settled", "settled"),
)
STAGE_ORDER = {state: index for index, (state, _) in enumerate(STAGES)}
# A provider's claim waits out its dispute window between delivery and settlement.
STAGE_ORDER["claimed"] = STAGE_ORDER["delivered"]
SUCCEEDED = "settled"
FAILED_STATES = frozenset({"failed", "refunded", "disputed", "cancelled"})
FINAL_STATES = FAILED_STATES | {SUCCEEDED}
#: From here on a job's logs are complete (the provider side adds ``claimed``).
LOGS_COMPLETE_STATES = FINAL_STATES | {"delivered", "claimed"}
JOB_POLL_INTERVAL_S = 0.5
#: Time allowed on top of the spec's max runtime for matching, escrow and settlement.
JOB_WAIT_MARGIN_S = 600.0
#: The contract's code for job_logs / job_result of a job that has not got that far.
JOB_NOT_FINISHED_CODE = JobNotFinished.code


def job_state(job: Mapping[str, Any]) -> str:
    return answer_str(job, "state", "job_get")


#: The code a job that ended this way gets when the node gave none: never "error 0".
_FALLBACK_CODES = {
    "refunded": NothingDelivered.code,
    "disputed": ClaimDisputed.code,
}


def job_error(job: Mapping[str, Any]) -> tuple[int, str]:
    """The job's error as (code, message); one derived from its state when the node gave none."""
    error = job.get("error")
    state = job.get("state")
    fallback = _FALLBACK_CODES.get(state if isinstance(state, str) else "", JobServiceError.code)
    if isinstance(error, Mapping):
        code = error.get("code")
        message = error.get("message")
        return (
            code if type(code) is int and code != 0 else fallback,
            message if isinstance(message, str) and message else f"job ended {state}",
        )
    return fallback, f"job ended {state}"


def exit_status_of(job: Mapping[str, Any]) -> int | None:
    """The job's exit status, None when it has none (the node sends ``[]`` or ``[status]``)."""
    value = job.get("exit_status")
    if isinstance(value, list) and len(value) == 1 and type(value[0]) is int:
        return int(value[0])
    return value if type(value) is int else None


def completed(job: Mapping[str, Any]) -> bool:
    """The one success: settled, with the outcome ``completed`` and exit status 0."""
    return job.get("state") == SUCCEEDED and job.get("outcome") == "completed" and exit_status_of(job) == 0


#: How each outcome reads for people; ``{limit}`` names the limit.
OUTCOME_WORDS = {
    "completed": "the job completed",
    "job_failed": "the job failed",
    "timed_out": "the job was still running at its max runtime and was stopped",
    "limit_exceeded": "the job was stopped at its {limit} limit",
    "provider_error": "the provider's sandbox failed; the job did not run to its end",
}


def describe_end(job: Mapping[str, Any]) -> tuple[str, tuple[int, str] | None]:
    """One line saying how a finished job ended (outcome, exit status, money), and the error to
    report when it did not complete with exit status 0 (None when it did)."""
    state, outcome = job.get("state"), job.get("outcome")
    status = exit_status_of(job)
    words = OUTCOME_WORDS.get(outcome, "") if isinstance(outcome, str) else ""
    words = words.format(limit=job.get("limit") or "resource")
    exit_text = f"exit status {status}" if status is not None else "no exit status"
    if state == SUCCEEDED and isinstance(outcome, str):
        cost = job.get("cost")
        paid = dct(cost) if isinstance(cost, str) else "?"
        line = f"outcome: {outcome}, {exit_text}: {words}; paid {paid} for {_gpu_seconds(job)} GPU-seconds"
        if completed(job):
            return line, None
        return line, (JobDidNotComplete.code, f"{words} ({outcome}, {exit_text})")
    code, message = job_error(job)
    if isinstance(outcome, str):
        if outcome == "provider_error":
            code = ProviderFailed.code if code == JobServiceError.code else code
        return f"outcome: {outcome}, {exit_text}: {words}; job {state}", (code, message)
    return f"job {state}: {message}", (code, message)


def _gpu_seconds(job: Mapping[str, Any]) -> str:
    gpu_ms = job.get("gpu_ms")
    if type(gpu_ms) is int:
        return f"{gpu_ms / 1000:.3f}"
    seconds = job.get("gpu_seconds")
    return str(seconds) if type(seconds) is int else "?"


async def get_job(rpc: NodeRpc, job_id: str) -> Mapping[str, Any]:
    return answer_object(await rpc.call("job_get", job_id=job_id), "job_get")


async def watch_job(
    rpc: NodeRpc,
    job_id: str,
    *,
    timeout_s: float,
    poll_s: float = JOB_POLL_INTERVAL_S,
    on_update: Callable[[Mapping[str, Any]], None] | None = None,
) -> Mapping[str, Any]:
    """Poll ``job_get`` until the job reaches a final state; the final job object.

    ``on_update`` sees every answer. Raises JobWaitTimeout (the job goes on), RpcCallError.
    """
    job: Mapping[str, Any] | None = None
    with trio.move_on_after(timeout_s):
        while True:
            job = await get_job(rpc, job_id)
            if on_update is not None:
                on_update(job)
            if job_state(job) in FINAL_STATES:
                return job
            await trio.sleep(poll_s)
    state = "unknown" if job is None else job.get("state")
    raise JobWaitTimeout(
        f"job {job_id} is still {state} after {timeout_s:g} s; it goes on: `dcent job status {job_id}`"
    )


async def job_logs(rpc: NodeRpc, job_id: str) -> Mapping[str, Any]:
    """``job_logs``; empty logs for a job that has not started yet."""
    try:
        return answer_object(await rpc.call("job_logs", job_id=job_id), "job_logs")
    except RpcCallError as exc:
        if exc.code != JOB_NOT_FINISHED_CODE:
            raise
        return {"stdout": "", "stderr": "", "stdout_truncated": False, "stderr_truncated": False}


class LogFollower:
    """Turns successive whole-log snapshots into the new text since the last one."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {"stdout": "", "stderr": ""}

    def new_text(self, logs: Mapping[str, Any], stream: str) -> str:
        text = logs.get(stream)
        if not isinstance(text, str):
            return ""
        seen = self._seen[stream]
        self._seen[stream] = text
        if text.startswith(seen):
            return text[len(seen) :]
        # The node's capped copy moved on: show what it holds now rather than lose it.
        return text


# --------------------------------------------------------------------------------------------
# The live display
# --------------------------------------------------------------------------------------------


def _reached_at(job: Mapping[str, Any]) -> dict[str, int]:
    """When the node recorded each state (ms), from the job's history."""
    reached: dict[str, int] = {}
    history = job.get("history")
    if isinstance(history, list):
        for entry in history:
            if isinstance(entry, Mapping) and isinstance(entry.get("state"), str):
                at_ms = entry.get("at_ms")
                reached.setdefault(entry["state"], at_ms if type(at_ms) is int else 0)
    return reached


class JobProgress:
    """A rich renderable of a job's stages; :meth:`update` it with each ``job_get`` answer."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.job: Mapping[str, Any] = {}

    def update(self, job: Mapping[str, Any]) -> None:
        self.job = job

    def _current_index(self) -> int:
        state = self.job.get("state")
        if isinstance(state, str) and state in STAGE_ORDER:
            return STAGE_ORDER[state]
        # A failed job stopped after the last stage its history reached.
        reached = [STAGE_ORDER[name] for name in _reached_at(self.job) if name in STAGE_ORDER]
        return max(reached, default=0)

    def __rich__(self) -> RenderableType:
        state = self.job.get("state", "submitted")
        reached = _reached_at(self.job)
        start_ms = min(reached.values(), default=0)
        current = self._current_index()
        failed = state in FAILED_STATES
        stages = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
        stages.add_column("mark", no_wrap=True)
        stages.add_column("stage", no_wrap=True)
        stages.add_column("at", no_wrap=True, justify="right")
        for index, (name, label) in enumerate(STAGES):
            at = f"+{(reached[name] - start_ms) / 1000:.1f}s" if name in reached else ""
            if index < current or (index == current and state == SUCCEEDED):
                stages.add_row(Text("✔", style="green"), label, at)
            elif index == current and failed:
                stages.add_row(Text("✘", style="red"), Text(f"{label} ({state})", style="red"), at)
            elif index == current:
                shown = label if state == name else f"{label} ({state})"
                stages.add_row(Text("▶", style="yellow"), Text(shown, style="bold"), at)
            else:
                stages.add_row(Text("·", style="dim"), Text(label, style="dim"), "")
        header = Text(f"job {self.job_id}: {state}", style="bold")
        parts: list[RenderableType] = [header, stages]
        provider = self.job.get("provider")
        if isinstance(provider, str):
            parts.insert(1, Text(f"provider {provider}"))
        # A failure's code and message follow on stderr, as every command's errors do.
        return Group(*parts)
