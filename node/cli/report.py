"""The one way a command reports that it failed, on stderr: ``error CODE: message`` for a typed
error (its stable code), ``error: message`` otherwise. The wallet's :class:`Output` writes the
same form, so a script can parse any dcent command's failure the same way."""

from __future__ import annotations

import sys


def error_line(message: str, code: int | None = None) -> str:
    return f"error {code}: {message}" if code is not None else f"error: {message}"


def report_error(message: str, code: int | None = None, *, exit_code: int = 1) -> int:
    """Print the failure and return ``exit_code`` (1: it failed; 2: the command line was wrong)."""
    print(error_line(message, code), file=sys.stderr)
    return exit_code
