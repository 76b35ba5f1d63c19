"""One error form for every command: ``error CODE: message`` on stderr, or with ``--output json``
(``--json``) one JSON object there, stdout left empty; a bad command line the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import report
from node.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse: a bad command line
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def the_error_line(err: str) -> str:
    """The last stderr line (argparse prints its usage first)."""
    return err.strip().splitlines()[-1]


def failing_commands(tmp_path: Path) -> list[tuple[list[str], list[str], int, str]]:
    """(command line, how it asks for JSON, the code it fails with, words of the message)."""
    home = str(tmp_path / "home")
    return [
        # A file the command cannot read: a code of the command line's own.
        (
            ["init", "--home", home, "--genesis", str(tmp_path / "absent.toml")],
            [],
            report.FILE_ACCESS,
            "absent.toml",
        ),
        # A typed error of a wallet command (no such wallet in an empty keystore).
        (
            ["wallet", "address", "nobody", "--keystore", str(tmp_path / "keys"), "--home", home],
            ["--output", "json"],
            5712,
            "nobody",
        ),
        # A typed error of a command whose JSON flag is --json.
        (["testnet", "status", "--dir", str(tmp_path)], ["--json"], 5902, "holds no testnet"),
        # A value the command refuses after parsing.
        (["sim", "--seeds", "-1"], [], report.USAGE, "must not be negative"),
        # A command line argparse refuses.
        (["wallet", "balance", "--no-such-option"], ["--output", "json"], report.USAGE, "--no-such-option"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_a_failing_command_prints_its_code_as_text(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _, code, words = failing_commands(tmp_path)[case]
    exit_status, out, err = run(capsys, *argv)
    assert exit_status in (1, 2)
    line = the_error_line(err)
    assert line.startswith(f"error {code}: ") and words in line
    assert "Traceback" not in err and out == ""


#: The cases whose commands have a JSON output (init and sim have none).
WITH_JSON = (1, 2, 4)


@pytest.mark.parametrize("case", WITH_JSON)
def test_a_failing_command_prints_a_json_error_when_asked(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, json_flag, code, words = failing_commands(tmp_path)[case]
    exit_status, out, err = run(capsys, *argv, *json_flag)
    assert exit_status in (1, 2)
    document = json.loads(the_error_line(err))
    assert document["error"]["code"] == code and words in document["error"]["message"]
    assert out == ""


def test_the_error_format_is_reset_after_each_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "testnet", "status", "--dir", str(tmp_path), "--json")
    assert report.error_format() == "text"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["x", "--output", "json"], True),
        (["x", "--output=json"], True),
        (["x", "--json"], True),
        (["x", "--output", "text"], False),
        (["json", "--output"], False),
    ],
)
def test_json_is_recognised_before_parsing(argv: list[str], expected: bool) -> None:
    assert report.wants_json(argv) is expected
