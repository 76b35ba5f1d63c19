"""Cookie authentication and the RPC bind address."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from node.rpc.address import DEFAULT_RPC_PORT, check_bind_host, is_loopback, parse_rpc_addr
from node.rpc.cookie import (
    Cookie,
    cookie_path_for,
    read_cookie_file,
    remove_cookie_file,
    write_cookie_file,
)
from node.rpc.errors import CookieError, InvalidBindAddress

# --- the cookie -----------------------------------------------------------------------------


def test_generated_cookies_are_random_256_bit_hex() -> None:
    first, second = Cookie.generate(), Cookie.generate()
    assert first != second
    assert len(first.secret_hex) == 64
    bytes.fromhex(first.secret_hex)
    assert first.file_text == f"__cookie__:{first.secret_hex}"


def test_basic_and_bearer_headers_are_authorized() -> None:
    cookie = Cookie.generate()
    assert cookie.authorizes(cookie.basic_header().encode())
    assert cookie.authorizes(cookie.bearer_header().encode())
    # Schemes are case-insensitive (RFC 7235).
    assert cookie.authorizes(b"bearer " + cookie.secret_hex.encode())
    assert cookie.authorizes(b"BASIC " + base64.b64encode(cookie.file_text.encode()))


def test_everything_else_is_refused() -> None:
    cookie = Cookie.generate()
    other = Cookie.generate()
    secret = cookie.secret_hex.encode()
    refused = [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        other.bearer_header().encode(),
        other.basic_header().encode(),
        b"Bearer " + secret[:-1],
        b"Bearer " + secret + b"0",
        b"Basic " + base64.b64encode(b"admin:" + secret),
        b"Basic " + base64.b64encode(secret),
        b"Basic " + base64.b64encode(cookie.file_text.encode())[:-2],
        b"Basic !!!notbase64",
        b"Token " + secret,
        secret,
    ]
    for header in refused:
        assert not cookie.authorizes(header), header


def test_cookie_file_roundtrip_with_mode_0600(tmp_path: Path) -> None:
    path = cookie_path_for(tmp_path)
    assert path == tmp_path / "data" / ".cookie"
    cookie = Cookie.generate()
    write_cookie_file(path, cookie)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == cookie.file_text
    assert read_cookie_file(path) == cookie
    assert sorted(p.name for p in path.parent.iterdir()) == [".cookie"]


def test_a_stale_cookie_is_replaced(tmp_path: Path) -> None:
    path = cookie_path_for(tmp_path)
    write_cookie_file(path, Cookie.generate())
    fresh = Cookie.generate()
    write_cookie_file(path, fresh)
    assert read_cookie_file(path) == fresh


def test_remove_only_removes_our_own_cookie(tmp_path: Path) -> None:
    path = cookie_path_for(tmp_path)
    ours, theirs = Cookie.generate(), Cookie.generate()
    write_cookie_file(path, theirs)
    remove_cookie_file(path, ours)
    assert read_cookie_file(path) == theirs
    remove_cookie_file(path, theirs)
    assert not path.exists()
    remove_cookie_file(path, theirs)  # already gone: nothing to do


def test_reading_a_missing_or_malformed_cookie_is_a_cookie_error(tmp_path: Path) -> None:
    path = cookie_path_for(tmp_path)
    with pytest.raises(CookieError, match="is the node running"):
        read_cookie_file(path)
    path.parent.mkdir(parents=True)
    for content in ["", "__cookie__:", "user:" + "a" * 64, "__cookie__:" + "g" * 64, "__cookie__:abcd"]:
        path.write_text(content)
        with pytest.raises(CookieError) as caught:
            read_cookie_file(path)
        assert caught.value.code == 5503


def test_unwritable_cookie_directory_is_a_cookie_error(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home directory should be")
    with pytest.raises(CookieError, match="cannot write"):
        write_cookie_file(cookie_path_for(blocker), Cookie.generate())


# --- the bind address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8645", ("127.0.0.1", 8645)),
        ("localhost:0", ("localhost", 0)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:8645", ("::1", 8645)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_rpc_addr(text: str, expected: tuple[str, int]) -> None:
    assert parse_rpc_addr(text) == expected


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:-1", "::1:8645", "[nope]:1", "x:port"]
)
def test_parse_rpc_addr_refuses_malformed(text: str) -> None:
    with pytest.raises(InvalidBindAddress) as caught:
        parse_rpc_addr(text)
    assert caught.value.code == 5501


def test_loopback_detection() -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("127.8.9.10")
        and is_loopback("::1")
        and is_loopback("localhost")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")


def test_non_loopback_bind_needs_allow_remote() -> None:
    check_bind_host("127.0.0.1", allow_remote=False)
    with pytest.raises(InvalidBindAddress, match="allow-remote"):
        check_bind_host("0.0.0.0", allow_remote=False)
    with pytest.raises(InvalidBindAddress):
        check_bind_host("node.example.com", allow_remote=False)
    check_bind_host("0.0.0.0", allow_remote=True)
    with pytest.raises(InvalidBindAddress):
        check_bind_host("", allow_remote=True)


def test_default_port_is_fixed() -> None:
    # Documented in the method reference and relied on by `dcent` clients without --rpc-addr.
    assert DEFAULT_RPC_PORT == 8645
