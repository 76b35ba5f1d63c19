"""Secret files: written private and whole, never over another's; key seeds read back strictly."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.secret_files import key_seed_text, read_key_seed, write_secret_file


class RefusedKey(Exception):
    """Stands for a caller's typed error."""


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that takes the owner's write bit: the file must still end up 0600."""
    previous = os.umask(0o277)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_secret_is_private_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node_key"
    write_secret_file(path, b"secret\n")
    assert path.read_bytes() == b"secret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["node_key"]


def test_a_umask_that_takes_the_owners_bits_still_gives_0600(tmp_path: Path, strict_umask: None) -> None:
    write_secret_file(tmp_path / "key", b"secret")
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600


def test_an_existing_secret_is_never_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_secret_file(path, b"first")
    with pytest.raises(FileExistsError):
        write_secret_file(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]

    write_secret_file(path, b"third", replace=True)
    assert path.read_bytes() == b"third"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_symlink_at_the_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not yours")
    (tmp_path / "key").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_secret_file(tmp_path / "key", b"secret")
    assert target.read_bytes() == b"not yours"


def test_a_file_where_the_directory_should_be_is_not_taken_for_an_existing_secret(tmp_path: Path) -> None:
    blocker = tmp_path / "keys"
    blocker.write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        write_secret_file(blocker / "key", b"secret")


def test_a_key_seed_round_trips(tmp_path: Path) -> None:
    seed = bytes(range(32))
    write_secret_file(tmp_path / "key", key_seed_text(seed))
    assert (tmp_path / "key").read_text() == seed.hex() + "\n"
    assert read_key_seed(tmp_path / "key", RefusedKey) == seed


def test_a_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_secret_file(path, key_seed_text(bytes(32)))
    path.chmod(0o640)
    with pytest.raises(
        RefusedKey, match=re.escape(f"node key is accessible by other users; run: chmod 600 {path}")
    ):
        read_key_seed(path, RefusedKey, what="node key")


@pytest.mark.parametrize("content", [b"", b"zz" * 32, b"ab" * 31, b"ab" * 33, b"\x00\xff"])
def test_a_malformed_key_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    write_secret_file(path, content)
    with pytest.raises(RefusedKey, match=r"not a hex-encoded 32-byte key seed|not a text file"):
        read_key_seed(path, RefusedKey)
    assert path.read_bytes() == content


def test_a_missing_key_is_the_callers_error(tmp_path: Path) -> None:
    with pytest.raises(RefusedKey, match="cannot read key"):
        read_key_seed(tmp_path / "absent", RefusedKey)
