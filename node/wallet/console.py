"""How the wallet commands print: one JSON document for scripts, rich tables for people.

Every command builds a JSON-ready document; ``--output json`` prints exactly that (one document on
stdout, nothing else there), the default prints it for people. Errors always go to stderr as one
line: ``error <code>: <message>``, or with ``--output json`` a JSON object (``node.cli.report``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from node.cli.report import error_text
from protocol.units import format_amount

OUTPUT_FORMATS = ("text", "json")
#: Width when stdout is not a terminal (a pipe, a file, a test): wide enough for 64-hex hashes.
PIPE_WIDTH = 200


class Output:
    """Where and how one command prints. ``stdout``/``stderr`` default to the process's."""

    def __init__(self, fmt: str = "text", *, stdout: TextIO | None = None, stderr: TextIO | None = None):
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output format {fmt!r} is not one of {OUTPUT_FORMATS}")
        self.fmt = fmt
        self._stdout = stdout
        self._stderr = stderr

    @property
    def json_mode(self) -> bool:
        return self.fmt == "json"

    @property
    def stdout(self) -> TextIO:
        # Looked up at each use, so pytest's capsys (which swaps sys.stdout) sees the output.
        return self._stdout if self._stdout is not None else sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr if self._stderr is not None else sys.stderr

    def console(self, *, stderr: bool = False) -> Console:
        stream = self.stderr if stderr else self.stdout
        interactive = stream.isatty()
        return Console(
            file=stream,
            width=None if interactive else PIPE_WIDTH,
            highlight=False,
            soft_wrap=False,
            force_terminal=None if interactive else False,
        )

    def result(self, document: object, render: Callable[[Console], None]) -> None:
        """Print ``document`` as JSON, or call ``render`` to print it for people."""
        if self.json_mode:
            self.stdout.write(json.dumps(document, indent=2) + "\n")
            self.stdout.flush()
        else:
            render(self.console())

    def error(self, code: int, message: str) -> None:
        """The failure on stderr in the one form every command uses (:mod:`node.cli.report`)."""
        self.stderr.write(error_text(code, message, self.fmt) + "\n")
        self.stderr.flush()

    def note(self, text: str) -> None:
        """A remark for people (a warning, a hint): stderr, so it never mixes into JSON."""
        self.stderr.write(text + "\n")
        self.stderr.flush()


# --------------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------------


def dct(base_units: object) -> str:
    """A node's base-unit amount (a decimal string) for people: ``"1.5 DCT"``."""
    if isinstance(base_units, str) and base_units.isdigit():
        return format_amount(int(base_units))
    if type(base_units) is int:
        return format_amount(base_units)
    return "-" if base_units is None else str(base_units)


def short_hash(value: object, keep: int = 16) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= keep + 3 else text[:keep] + "..."


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> Table:
    """A plain rich table; cells are printed with :func:`cell` and never wrapped."""
    result = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        result.add_column(column, no_wrap=True)
    for row in rows:
        result.add_row(*(cell(value) for value in row))
    return result


def key_values(pairs: Iterable[tuple[str, object]], *, title: str | None = None) -> Table:
    """A two-column table of field names and values."""
    result = Table(title=title, show_header=False, show_edge=False, pad_edge=False, box=None)
    result.add_column("field", style="bold", no_wrap=True)
    result.add_column("value", no_wrap=True)
    for name, value in pairs:
        result.add_row(name, cell(value))
    return result


#: Fields of the node's records that hold base-unit amounts: shown in DCT.
AMOUNT_FIELDS = frozenset(
    {"amount", "fee", "deposit", "balance", "bonded", "unbonding", "max_cost", "collateral"}
)


def extra_fields(document: Mapping[str, Any], shown: Iterable[str]) -> str:
    """The fields of ``document`` not in ``shown``, as ``key=value`` (for open-ended records)."""
    skip = set(shown)
    return " ".join(
        f"{key}={dct(document[key]) if key in AMOUNT_FIELDS else cell(document[key])}"
        for key in sorted(document)
        if key not in skip
    )
