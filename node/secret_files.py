"""Secret files: key seeds, keystores, the config of a home. One way to write them, one to read a key.

Every secret the node keeps on disk goes through :func:`write_secret_file`, and every hex key seed
it loads through :func:`read_key_seed`. Attacks and failures they are built against:

* another local user reading a secret: the file has mode 0600 from its first byte (``O_EXCL``
  with mode 0600, then ``fchmod`` against a umask that took the owner's bits), its directory
  0700; a key file readable by group or others is refused, with the ``chmod`` that fixes it;
* a reader, or a node restarted after a crash, seeing half a secret: the content is written to a
  temporary name in the same directory, fsynced, then linked or renamed into place, and the
  directory fsynced;
* two processes creating the same secret at once (two nodes started on one home): without
  ``replace`` the final step is a hard link, which fails if the name exists, so the second writer
  gets :class:`FileExistsError` and never overwrites the first one's key;
* a symlink planted at the temporary name: it is opened ``O_NOFOLLOW | O_EXCL``.

The callers turn ``OSError`` into their own typed errors (key file, keystore, cookie).

**Secret files** (``node/secret_files.py``): every key and keystore file is written by
``write_secret_file`` and every key seed read by ``read_key_seed``, against another local user reading
it (0600 from the first byte, ``O_EXCL``; a key readable by others is refused with the ``chmod`` that
fixes it), half a secret after a crash (temporary name, fsync, link, directory fsync), two
processes creating one key (the link fails, the second gets the first's key) and a planted
symlink (``O_NOFOLLOW``). ``tests/unit/test_secret_files.py``.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from protocol.crypto import SEED_LEN


def write_secret_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, creating the directory (mode 0700).

    ``replace``: an existing file is replaced (a cookie rewritten at each start); otherwise it is
    never touched and :class:`FileExistsError` is raised. Raises :class:`OSError`.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        # A file where the directory should be: not "the secret exists", which callers act on.
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
        _fsync_directory(path.parent)
    finally:
        # After a replace the temporary name is gone; after a link it is a second name: drop it.
        temporary.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyErrorFactory(Protocol):
    """The caller's typed error: built from one message."""

    def __call__(self, message: str, /) -> Exception: ...


def read_key_seed(path: Path, error: KeyErrorFactory, *, what: str = "key") -> bytes:
    """The :data:`~protocol.crypto.SEED_LEN`-byte seed in the hex key file at ``path``.

    Raises ``error(message)`` (the caller's typed error) if the file cannot be read, is
    accessible by group or others (the message names the ``chmod`` that fixes it), or does not
    hold exactly one hex-encoded seed. ``what`` names the key in the messages.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise error(f"{path}: cannot read {what}: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(f"{path}: {what} is accessible by other users; run: chmod 600 {path}")
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError:
        seed = b""
    if len(seed) != SEED_LEN:
        raise error(f"{path}: not a hex-encoded {SEED_LEN}-byte key seed")
    return seed


def key_seed_text(seed: bytes) -> bytes:
    """What a key file holds: the seed in hex, one line."""
    return seed.hex().encode("ascii") + b"\n"
