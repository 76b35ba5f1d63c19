"""The one way a command reports that it failed, on stderr, always with a stable code:
``error CODE: message``, or with ``--output json`` (``--json`` for the commands that have that)
one JSON line ``{"error": {"code": CODE, "message": "..."}}``, so that stdout carries only the
command's result. The wallet's :class:`~node.wallet.console.Output` writes the same forms, and
``dcent``'s argument parser reports a bad command line the same way.

Failures the command line itself finds have codes here (in the node's 5000s, beside the config's
5001-5002); every other failure carries the code of its typed error.

**One error form** (``node/cli/report.py``, issue 11): every command, argument parsing and any
typed error no command caught end in ``error CODE: message`` on stderr, or one JSON line there under
``--output json``, never a traceback; stdout holds only the result. The command line's own failures
are 5090-5092 (README). ``tests/unit/test_cli_errors.py``.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Sequence

#: A command-line value the command cannot use (a bad option, a negative count).
USAGE = 5090
#: A file or directory the command cannot read or write.
FILE_ACCESS = 5091
#: The home or testnet directory is not in the state the command needs (already initialized).
WRONG_STATE = 5092

OUTPUT_FORMATS = ("text", "json")
_format = "text"


def set_error_format(fmt: str) -> None:
    """How :func:`report_error` prints from now on: ``text`` or ``json`` (``dcent`` sets it from
    each command line's ``--output``/``--json`` before it runs the command)."""
    global _format
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"error format {fmt!r} is not one of {OUTPUT_FORMATS}")
    _format = fmt


def error_format() -> str:
    return _format


def wants_json(argv: Sequence[str]) -> bool:
    """Whether a command line asks for JSON output (read before, or without, parsing it)."""
    words = list(argv)
    if "--json" in words or "--output=json" in words:
        return True
    return any(word == "--output" and following == "json" for word, following in itertools.pairwise(words))


def error_document(code: int, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


def error_text(code: int, message: str, fmt: str = "text") -> str:
    """The failure as printed: ``error CODE: message``, or its JSON line."""
    if fmt == "json":
        return json.dumps(error_document(code, message), sort_keys=True)
    return f"error {code}: {message}"


def report_error(message: str, code: int, *, exit_code: int = 1) -> int:
    """Print the failure on stderr and return ``exit_code`` (1: it failed; 2: the command line
    was wrong)."""
    print(error_text(code, message, _format), file=sys.stderr)
    return exit_code
