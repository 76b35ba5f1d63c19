"""Ed25519 keys and checksummed account addresses.

An address is the first 20 bytes of ``sha256("dcent/addr" || public key)``. Its text form is
bech32m (BIP-350) with the human-readable part ``dct``: ``dct1...``. The checksum catches any
mistyped character and any transposition of neighbours, so a typo is rejected, never paid.

Signatures are made with ``cryptography`` (OpenSSL) and checked with libsodium (PyNaCl's
``VerifyKey``, a pure computation like the rest of this module). Every node checks every
transaction's and vote's signature, and libsodium's check costs half of OpenSSL's here (68-75 us
against 139-148 us on the 2-core machine; issue 14). It is also the stricter of the two: it
refuses public keys and ``R`` points of small order and non-canonical encodings, which OpenSSL
takes. A small-order key "signs" every message with ``R`` = identity and ``S`` = 0 under OpenSSL;
here it signs nothing. One rule for every node, so no two nodes disagree on a signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError as SodiumBadSignature
from nacl.signing import VerifyKey

from protocol.errors import ProtocolError

ADDRESS_HRP = "dct"
ADDRESS_LEN = 20
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32


class CryptoError(ProtocolError):
    code = 1100


class InvalidAddressError(CryptoError):
    """Text that is not a well-formed ``dct1...`` address, or has a wrong checksum."""

    code = 1101


class InvalidKeyError(CryptoError):
    code = 1102


class BadSignatureError(CryptoError):
    code = 1103


# --------------------------------------------------------------------------------------------
# bech32m, after the BIP-350 reference implementation
# --------------------------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX = {c: i for i, c in enumerate(_CHARSET)}
_BECH32M_CONST = 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & max_value):
        return None
    return out


def bech32m_encode(hrp: str, payload: bytes) -> str:
    data = _convert_bits(payload, 8, 5, pad=True)
    assert data is not None
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def bech32m_decode(hrp: str, text: str) -> bytes:
    """Decode ``text`` and check its prefix and checksum. Raises :class:`InvalidAddressError`."""
    # BIP-350 allows printable ASCII only; without this, an all-upper-case address with a Kelvin
    # sign (U+212A, which lower-cases to "k") would pass the case check and decode.
    if not all(33 <= ord(c) <= 126 for c in text):
        raise InvalidAddressError("address contains characters outside printable ASCII")
    if text.lower() != text and text.upper() != text:
        raise InvalidAddressError("address mixes upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text) or len(text) > 90:
        raise InvalidAddressError("address has no valid separator or is too long")
    if text[:sep] != hrp:
        raise InvalidAddressError(f"address must start with {hrp}1")
    try:
        data = [_CHARSET_INDEX[c] for c in text[sep + 1 :]]
    except KeyError:
        raise InvalidAddressError("address contains a character outside the bech32 set") from None
    if _polymod([*_hrp_expand(hrp), *data]) != _BECH32M_CONST:
        raise InvalidAddressError("address checksum does not match: mistyped?")
    decoded = _convert_bits(data[:-6], 5, 8, pad=False)
    if decoded is None:
        raise InvalidAddressError("address has invalid padding")
    return bytes(decoded)


# --------------------------------------------------------------------------------------------
# Keys and addresses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A 20-byte account address; ``str()`` gives the checksummed ``dct1...`` form."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != ADDRESS_LEN:
            raise InvalidAddressError(f"an address is {ADDRESS_LEN} bytes")

    @classmethod
    def from_public_key(cls, public_key: bytes) -> Address:
        return cls(hashlib.sha256(b"dcent/addr" + public_key).digest()[:ADDRESS_LEN])

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse the ``dct1...`` form. Raises :class:`InvalidAddressError` for any typo."""
        raw = bech32m_decode(ADDRESS_HRP, text.strip())
        if len(raw) != ADDRESS_LEN:
            raise InvalidAddressError(f"an address is {ADDRESS_LEN} bytes, this one is {len(raw)}")
        return cls(raw)

    def __str__(self) -> str:
        return bech32m_encode(ADDRESS_HRP, self.raw)

    def __repr__(self) -> str:
        return f"Address({self})"


def address_of(public_key: bytes) -> bytes:
    """The raw 20-byte address of a raw 32-byte public key (the ledger's hot path)."""
    return hashlib.sha256(b"dcent/addr" + public_key).digest()[:ADDRESS_LEN]


class PublicKey:
    """A raw Ed25519 public key with its cached verifier."""

    __slots__ = ("_verifier", "raw")

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != PUBLIC_KEY_LEN:
            raise InvalidKeyError(f"a public key is {PUBLIC_KEY_LEN} bytes")
        try:
            Ed25519PublicKey.from_public_bytes(raw)  # refuses bytes that are not a point
        except ValueError:
            raise InvalidKeyError("not an Ed25519 public key") from None
        self._verifier = VerifyKey(raw)
        self.raw = raw

    @property
    def address(self) -> Address:
        return Address(address_of(self.raw))

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``message``."""
        return len(signature) == SIGNATURE_LEN and _checks(self._verifier, signature, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()})"


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Verify a signature by a raw public key; any malformed input is simply not valid."""
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    return _checks(VerifyKey(bytes(public_key)), signature, message)


def _checks(verifier: VerifyKey, signature: bytes, message: bytes) -> bool:
    try:
        verifier.verify(bytes(message), bytes(signature))
    except SodiumBadSignature:
        return False
    return True


class PrivateKey:
    """An Ed25519 signing key. Its 32-byte seed is the only secret to store."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        if type(seed) is not bytes or len(seed) != SEED_LEN:
            raise InvalidKeyError(f"a private key seed is {SEED_LEN} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_label(cls, label: str) -> PrivateKey:
        """A deterministic key for tests, simulators and dev genesis files. Never for real funds."""
        return cls.from_seed(hashlib.sha256(b"dcent/test-key/" + label.encode()).digest())

    def seed(self) -> bytes:
        return self._key.private_bytes_raw()

    @property
    def address(self) -> Address:
        return self.public_key.address

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
