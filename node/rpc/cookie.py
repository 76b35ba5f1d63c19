"""Cookie authentication, as bitcoind does it.

At start the server draws a random 32-byte secret and writes ``__cookie__:<64 hex>`` to
``<home>/data/.cookie`` with mode 0600: whoever can read that file (the node's own user) can
call the RPC, nobody else. The file is removed at exit. A request presents the secret as
``Authorization: Basic base64("__cookie__:<hex>")`` or ``Authorization: Bearer <hex>``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from node.rpc.errors import CookieError
from node.secret_files import write_secret_file

COOKIE_USER = "__cookie__"
COOKIE_FILE_NAME = ".cookie"
_SECRET_BYTES = 32


def cookie_path_for(home: Path) -> Path:
    """Where a node whose home is ``home`` writes its cookie: ``<home>/data/.cookie``."""
    return Path(home) / "data" / COOKIE_FILE_NAME


@dataclass(frozen=True, slots=True)
class Cookie:
    secret_hex: str

    @classmethod
    def generate(cls) -> Cookie:
        return cls(secrets.token_hex(_SECRET_BYTES))

    @classmethod
    def parse(cls, text: str) -> Cookie:
        """Parse the cookie file's content. Raises :class:`CookieError`."""
        user, sep, secret = text.strip().partition(":")
        if user != COOKIE_USER or not sep or len(secret) != 2 * _SECRET_BYTES:
            raise CookieError("the cookie file does not hold __cookie__:<64 hex digits>")
        try:
            bytes.fromhex(secret)
        except ValueError:
            raise CookieError("the cookie file does not hold __cookie__:<64 hex digits>") from None
        return cls(secret.lower())

    @property
    def file_text(self) -> str:
        return f"{COOKIE_USER}:{self.secret_hex}"

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(self.file_text.encode()).decode()

    def bearer_header(self) -> str:
        return f"Bearer {self.secret_hex}"

    def authorizes(self, header: bytes | None) -> bool:
        """True when an ``Authorization`` header value presents this cookie (Basic or Bearer).

        The secret is compared in constant time; a malformed header is simply not authorized.
        """
        if header is None:
            return False
        scheme, _, credentials = header.strip().partition(b" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme == b"bearer":
            return hmac.compare_digest(credentials, self.secret_hex.encode())
        if scheme == b"basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self.file_text.encode())
        return False


def write_cookie_file(path: Path, cookie: Cookie) -> None:
    """Write ``cookie`` to ``path`` atomically with mode 0600, replacing a stale one (through the
    node's one writer of secret files). Raises :class:`CookieError`."""
    try:
        write_secret_file(path, cookie.file_text.encode(), replace=True)
    except OSError as exc:
        raise CookieError(f"cannot write the RPC cookie file {path}: {exc.strerror}") from exc


def read_cookie_file(path: Path) -> Cookie:
    """Read the cookie a running node wrote. Raises :class:`CookieError` (not running? wrong home?)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise CookieError(f"no RPC cookie at {path}: is the node running with this home?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CookieError(f"cannot read the RPC cookie file {path}: {exc}") from exc
    return Cookie.parse(text)


def remove_cookie_file(path: Path, cookie: Cookie) -> None:
    """Remove ``path`` if it still holds ``cookie``: never another running node's cookie."""
    try:
        if Path(path).read_text(encoding="ascii").strip() == cookie.file_text:
            Path(path).unlink()
    except (OSError, UnicodeDecodeError):
        # Already gone, or replaced by something unreadable: either way not ours to remove.
        return
