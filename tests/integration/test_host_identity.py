"""The node key file, the peer id derived from it, and HostConfig's validation. No network."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from node.host import HostConfig
from node.p2p.errors import HostConfigError, NodeKeyError
from node.p2p.identity import (
    load_node_key,
    load_or_create_node_key,
    peer_id_from_seed,
    public_key_of_peer_id,
)
from protocol.crypto import PrivateKey
from tests.integration.conftest import seed_of


def test_node_key_is_created_private_and_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "keys" / "node_key"

    seed = load_or_create_node_key(path)

    assert len(seed) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == seed.hex() + "\n"
    assert load_or_create_node_key(path) == seed  # a restart keeps the identity
    assert [p.name for p in path.parent.iterdir()] == ["node_key"]  # no temporary file left


def test_node_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node_key"
    load_or_create_node_key(path)
    os.chmod(path, 0o644)

    with pytest.raises(NodeKeyError) as refused:
        load_or_create_node_key(path)

    assert refused.value.code == 5211
    assert f"chmod 600 {path}" in refused.value.message


@pytest.mark.parametrize("content", ["", "zz" * 32, "ab" * 31, "ab" * 33, "\x00\xff"])
def test_malformed_node_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node_key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w", encoding="latin-1") as handle:
        handle.write(content)
    with pytest.raises(NodeKeyError):
        load_node_key(path)
    assert path.read_text(encoding="latin-1") == content  # refused, not overwritten


def test_missing_key_directory_that_cannot_be_created_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(NodeKeyError):
        load_or_create_node_key(blocker / "node_key")


@pytest.mark.parametrize("label", ["a", "b", "validator-7"])
def test_peer_id_is_libp2ps_for_the_same_key(label: str) -> None:
    seed = seed_of(label)
    libp2p_id = ID.from_pubkey(create_new_key_pair(seed).public_key)

    assert peer_id_from_seed(seed) == str(libp2p_id)
    assert public_key_of_peer_id(str(libp2p_id)) == PrivateKey.from_seed(seed).public_key.raw


@pytest.mark.parametrize("text", ["", "not base58 0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"])
def test_text_that_is_not_an_ed25519_peer_id_is_refused(text: str) -> None:
    with pytest.raises(HostConfigError):
        public_key_of_peer_id(text)


@pytest.mark.parametrize(
    "overrides",
    [
        {"node_key_seed": b"short"},
        {"listen_addr": "/ip4/127.0.0.1/udp/1"},
        {"listen_addr": "/ip4/127.0.0.1/tcp/99999"},
        {"listen_addr": "not a multiaddr"},
        {"bootstrap": ("/ip4/127.0.0.1/tcp/4001",)},  # no /p2p/<peer id>
        {"bootstrap": (f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id_from_seed(seed_of('me'))}",)},  # ourselves
        {"max_peers": 0},
        {"ping_timeout_s": 0.0},
    ],
)
def test_invalid_host_config_is_refused(overrides: dict[str, object]) -> None:
    settings: dict[str, object] = {"node_key_seed": seed_of("me"), **overrides}
    with pytest.raises(HostConfigError):
        HostConfig(**settings)  # type: ignore[arg-type]
