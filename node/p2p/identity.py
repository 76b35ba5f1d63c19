"""The node's network identity: its Ed25519 key file and the libp2p peer id derived from it.

The node key is a 32-byte Ed25519 seed. On disk it is 64 hex characters and a newline in
``<home>/keys/node_key`` (the layout ``node/config.py`` documents), mode 0600. The peer id is the
libp2p one (``12D3KooW...``): base58btc of the identity multihash of the protobuf-encoded public
key, so the same seed gives the same peer id on every restart and in every implementation of the
host. It is computed here without libp2p so that the memory host and upper layers (mapping a
validator's public key to its peer id) never import libp2p.

Key file policy, as ssh does for private keys: a key file readable or writable by group or others
is refused, not merely warned about, because a leaked node key lets anyone impersonate the node
on the network. The error names the ``chmod`` that fixes it.
"""

from __future__ import annotations

from pathlib import Path

from node.p2p.errors import HostConfigError, NodeKeyError
from node.secret_files import key_seed_text, read_key_seed, write_secret_file
from protocol.crypto import SEED_LEN, InvalidKeyError, PrivateKey

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58_ALPHABET)}
# libp2p's crypto.proto PublicKey{Type: Ed25519 (1), Data: 32 bytes}, protobuf-encoded.
_ED25519_PUBLIC_KEY_PROTO_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])
# Keys of at most 42 bytes are embedded with the "identity" multihash (code 0x00) instead of hashed.
_IDENTITY_MULTIHASH_PREFIX = bytes([0x00, len(_ED25519_PUBLIC_KEY_PROTO_PREFIX) + 32])


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[remainder])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(digits))


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _BASE58_INDEX.get(char)
        if index is None:
            raise ValueError(f"{char!r} is not a base58 character")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_ones = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_ones + body


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (``12D3KooW...``) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise HostConfigError("an Ed25519 public key is 32 bytes")
    return _base58_encode(_IDENTITY_MULTIHASH_PREFIX + _ED25519_PUBLIC_KEY_PROTO_PREFIX + public_key)


def peer_id_from_seed(seed: bytes) -> str:
    """The peer id of the node whose key seed is ``seed``. Raises :class:`NodeKeyError`."""
    return peer_id_from_public_key(_private_key(seed).public_key.raw)


def public_key_of_peer_id(peer_id: str) -> bytes:
    """The raw Ed25519 public key embedded in an Ed25519 peer id.

    Raises :class:`HostConfigError` for text that is not an Ed25519 peer id (RSA and secp256k1
    peer ids hash their key and carry no public key; dcent nodes only use Ed25519).
    """
    try:
        raw = _base58_decode(peer_id)
    except ValueError as exc:
        raise HostConfigError(f"peer id {peer_id!r}: {exc}") from None
    prefix = _IDENTITY_MULTIHASH_PREFIX + _ED25519_PUBLIC_KEY_PROTO_PREFIX
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise HostConfigError(f"peer id {peer_id!r} is not an Ed25519 libp2p peer id")
    return raw[len(prefix) :]


def validate_peer_id(peer_id: str) -> str:
    """Return ``peer_id`` if it is an Ed25519 peer id. Raises :class:`HostConfigError`."""
    public_key_of_peer_id(peer_id)
    return peer_id


def _private_key(seed: bytes) -> PrivateKey:
    try:
        return PrivateKey.from_seed(seed)
    except InvalidKeyError:
        raise NodeKeyError(f"a node key seed is {SEED_LEN} bytes") from None


def load_node_key(path: Path) -> bytes:
    """Read the 32-byte seed from a node key file.

    Raises :class:`NodeKeyError` if the file cannot be read, is accessible by group or others,
    or does not hold 64 hex characters.
    """
    return read_key_seed(path, NodeKeyError, what="node key")


def load_or_create_node_key(path: Path) -> bytes:
    """The node key seed stored at ``path``, generating and storing a new one if there is none.

    A new key is written by :func:`node.secret_files.write_secret_file` (mode 0600, linked into
    place), so no reader ever sees a partial key or a world-readable one, and two processes racing
    to create it end up with the same key.

    Raises :class:`NodeKeyError` (see :func:`load_node_key`; also if the key cannot be written).
    """
    if path.exists():
        return load_node_key(path)
    seed = PrivateKey.generate().seed()
    try:
        write_secret_file(path, key_seed_text(seed))
    except FileExistsError:
        return load_node_key(path)  # another process created it first: use theirs
    except OSError as exc:
        raise NodeKeyError(f"{path}: cannot write node key: {exc.strerror}") from None
    return seed
