"""The one availability probe the sandboxing executors share (bubblewrap, docker, podman)."""

from __future__ import annotations

import sys

from node.executor.base import Availability, probe_tool


def _probe(
    tool_path: str | None, *argv: str, last_line: bool = False, timeout_s: float = 30.0
) -> tuple[Availability, bytes]:
    return probe_tool(
        "tool",
        tool_path,
        lambda path: [path, *argv],
        missing="tool is not installed",
        refused="tool refuses",
        timeout_s=timeout_s,
        env={"PATH": "/usr/bin:/bin"},
        last_line=last_line,
    )


def test_a_tool_that_answers_is_available_with_its_output() -> None:
    availability, stdout = _probe(sys.executable, "-c", "print('{}')")
    assert availability.available and availability.reason == ""
    assert stdout == b"{}\n"


def test_a_missing_tool_says_so_without_running_anything() -> None:
    availability, stdout = _probe(None)
    assert not availability and availability.reason == "tool is not installed"
    assert stdout == b""


def test_a_tool_that_cannot_be_run_names_its_path() -> None:
    availability, _ = _probe("/nonexistent/tool")
    assert not availability
    assert availability.reason.startswith("tool at /nonexistent/tool could not be run:")


def test_a_tool_that_hangs_is_given_up_on() -> None:
    availability, _ = _probe("/bin/sleep", "30", timeout_s=0.2)
    assert not availability and "could not be run" in availability.reason


def test_a_refusal_carries_the_tools_words() -> None:
    script = "import sys; sys.stderr.write('context\\nthe reason\\n'); sys.exit(3)"
    whole, _ = _probe(sys.executable, "-c", script)
    last, _ = _probe(sys.executable, "-c", script, last_line=True)
    silent, _ = _probe(sys.executable, "-c", "raise SystemExit(4)")
    assert whole.reason == "tool refuses: context\nthe reason"
    assert last.reason == "tool refuses: the reason"
    assert silent.reason == "tool refuses: exit status 4"
