"""URL inputs as a provider fetches them: a real TLS server on loopback with a test CA; the
content verified against the spec's SHA-256 and size, refused (typed) on any mismatch, on plain
http, on a redirect, and on a private address unless the operator allows it."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.executor.errors import InputHashMismatch, InputUnavailable
from node.market.jobdata import download

CONTENT = b"weights " * 5000


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(CONTENT)))
        self.end_headers()
        self.wfile.write(CONTENT)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{httpd.server_address[1]}", cert
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


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
