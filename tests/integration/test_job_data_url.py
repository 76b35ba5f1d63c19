"""URL inputs as a provider fetches them: a real TLS server on loopback with a test CA; the
content verified against the spec's SHA-256 and size, refused (typed) on any mismatch, on plain
http, on a redirect, and on a private address unless the operator allows it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.executor.errors import InputHashMismatch, InputUnavailable
from node.market.jobdata import download
from tests.integration.tls_server import CONTENT, serve_tls


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serve_tls(tmp_path) as running:
        yield running


def test_a_url_input_is_downloaded_and_verified(server: tuple[str, Path], tmp_path: Path) -> None:
    base, ca = server
    target = tmp_path / "got"
    download(
        f"{base}/w.bin",
        target,
        size=len(CONTENT),
        sha256=hashlib.sha256(CONTENT).digest(),
        ca_file=str(ca),
        allow_private=True,
    )
    assert target.read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("size", "digest", "error"),
    [
        (len(CONTENT), hashlib.sha256(b"other").digest(), InputHashMismatch),
        (len(CONTENT) - 1, hashlib.sha256(CONTENT).digest(), InputHashMismatch),
        (len(CONTENT) + 1, hashlib.sha256(CONTENT).digest(), InputHashMismatch),
    ],
)
def test_content_other_than_declared_is_refused(
    server: tuple[str, Path], tmp_path: Path, size: int, digest: bytes, error: type[Exception]
) -> None:
    base, ca = server
    with pytest.raises(error):
        download(
            f"{base}/w.bin", tmp_path / "got", size=size, sha256=digest, ca_file=str(ca), allow_private=True
        )


def test_private_addresses_redirects_and_untrusted_certificates_are_refused(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, ca = server
    digest = hashlib.sha256(CONTENT).digest()
    with pytest.raises(InputUnavailable, match="not a public address"):
        download(
            f"{base}/w.bin",
            tmp_path / "a",
            size=len(CONTENT),
            sha256=digest,
            ca_file=str(ca),
            allow_private=False,
        )
    with pytest.raises(InputUnavailable):
        download(
            f"{base}/moved",
            tmp_path / "b",
            size=len(CONTENT),
            sha256=digest,
            ca_file=str(ca),
            allow_private=True,
        )
    with pytest.raises(InputUnavailable):  # the system's CAs do not know the test CA
        download(
            f"{base}/w.bin",
            tmp_path / "c",
            size=len(CONTENT),
            sha256=digest,
            ca_file=None,
            allow_private=True,
        )
    with pytest.raises(InputUnavailable, match="https"):
        download(
            base.replace("https", "http") + "/w.bin",
            tmp_path / "d",
            size=len(CONTENT),
            sha256=digest,
            ca_file=None,
            allow_private=True,
        )
