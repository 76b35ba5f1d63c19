"""Encrypted keystore files for Ed25519 account keys, after geth's keystore v3.

The secret is the key's 32-byte seed. A password is stretched by scrypt (geth's "standard"
parameters n=2**18, r=8, p=1: about 256 MiB and a second of CPU per attempt) into an AES-256-GCM
key; the file's metadata (version, id, address, KDF and cipher parameters) is the associated
data, so editing any of it makes decryption fail instead of yielding a different key. The KDF
parameters are read back from the file, so a file written with the test-only fast KDF still
opens, and a warning says how weak it is.

File format (JSON, version 1)::

    {"version": 1, "id": "<uuid4>", "address": "dct1...",
     "crypto": {"cipher": "aes-256-gcm", "cipherparams": {"nonce": "<12 bytes hex>"},
                "ciphertext": "<32-byte seed + 16-byte tag, hex>",
                "kdf": "scrypt", "kdfparams": {"n": 262144, "r": 8, "p": 1, "dklen": 32,
                                               "salt": "<32 bytes hex>"}}}

Passwords are normalised to Unicode NFKD before use, so the same typed password opens the file
whatever input method produced it. Creating or loading costs the KDF's time: from trio, call
these through ``trio.to_thread.run_sync``.

Errors (5700-5799): :class:`WalletError` and its subclasses below.
"""

from __future__ import annotations

import json
import logging
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.errors import NodeError
from node.secret_files import write_secret_file
from protocol.crypto import SEED_LEN, Address, InvalidAddressError, InvalidKeyError, PrivateKey
from protocol.encoding import encode

logger = logging.getLogger("dcent.wallet")

KEYSTORE_VERSION = 1
CIPHER = "aes-256-gcm"
KDF = "scrypt"
#: geth's "standard" scrypt parameters.
STANDARD_SCRYPT_N = 1 << 18
#: For tests only (``fast_kdf=True``): about 64 times cheaper to brute-force.
FAST_SCRYPT_N = 1 << 12
SCRYPT_R = 8
SCRYPT_P = 1
KEY_LEN = 32
SALT_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
# Bounds on the parameters a file may ask for: a tampered file must not make load() allocate
# gigabytes or spin for hours.
_MAX_SCRYPT_MEMORY = 1 << 30
_MAX_SCRYPT_P = 16
_AAD_DOMAIN = "dcent/keystore/v1"


class WalletError(NodeError):
    """Root of the wallet's errors. Nothing on disk was changed when one is raised."""

    code: ClassVar[int] = 5700


class WrongPassword(WalletError):
    """The password does not decrypt this keystore (or the file was tampered with)."""

    code = 5701


class KeystoreExists(WalletError):
    """A file already exists at the path: keystores are never overwritten."""

    code = 5702


class KeystoreNotFound(WalletError):
    code = 5703


class CorruptKeystore(WalletError):
    """The file is not a keystore this version reads: malformed, unsupported or out of bounds."""

    code = 5704


class KeystoreIOError(WalletError):
    """The file or its directory cannot be read or written (permissions, disk full, ...)."""

    code = 5705


class InvalidSeed(WalletError):
    """What was given to encrypt is not a 32-byte Ed25519 seed."""

    code = 5706


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int
    r: int
    p: int
    salt: bytes
    dklen: int = KEY_LEN

    def check(self) -> None:
        """Raises :class:`CorruptKeystore` when the parameters are unsupported or too costly."""
        if self.n < FAST_SCRYPT_N or self.n & (self.n - 1):
            raise CorruptKeystore(f"scrypt n={self.n} is not a power of two >= {FAST_SCRYPT_N}")
        if self.r < 1 or not 1 <= self.p <= _MAX_SCRYPT_P or 128 * self.n * self.r > _MAX_SCRYPT_MEMORY:
            raise CorruptKeystore(f"scrypt parameters n={self.n} r={self.r} p={self.p} are out of bounds")
        if self.dklen != KEY_LEN or len(self.salt) < 16:
            raise CorruptKeystore("scrypt dklen must be 32 and the salt at least 16 bytes")

    def derive(self, password: str) -> bytes:
        normalised = unicodedata.normalize("NFKD", password).encode()
        return Scrypt(salt=self.salt, length=self.dklen, n=self.n, r=self.r, p=self.p).derive(normalised)


@dataclass(frozen=True, slots=True)
class KeystoreInfo:
    """What a keystore file says about itself without its password."""

    path: Path
    address: Address
    id: str
    version: int
    kdf: ScryptParams
    nonce: bytes
    ciphertext: bytes

    @property
    def fast_kdf(self) -> bool:
        return self.kdf.n < STANDARD_SCRYPT_N

    def associated_data(self) -> bytes:
        """The metadata AES-GCM authenticates along with the seed."""
        return encode(
            [
                _AAD_DOMAIN,
                self.version,
                self.id,
                str(self.address),
                KDF,
                self.kdf.n,
                self.kdf.r,
                self.kdf.p,
                self.kdf.dklen,
                self.kdf.salt,
                CIPHER,
                self.nonce,
            ]
        )

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "id": self.id,
            "address": str(self.address),
            "crypto": {
                "cipher": CIPHER,
                "cipherparams": {"nonce": self.nonce.hex()},
                "ciphertext": self.ciphertext.hex(),
                "kdf": KDF,
                "kdfparams": {
                    "n": self.kdf.n,
                    "r": self.kdf.r,
                    "p": self.kdf.p,
                    "dklen": self.kdf.dklen,
                    "salt": self.kdf.salt.hex(),
                },
            },
        }


def keystore_filename(address: Address) -> str:
    """The conventional file name for an account's keystore: ``<dct1...>.json``."""
    return f"{address}.json"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _field(mapping: object, key: str, kind: type, where: str) -> object:
    if not isinstance(mapping, dict) or key not in mapping:
        raise CorruptKeystore(f"{where}: missing {key!r}")
    value = mapping[key]
    if type(value) is not kind:
        raise CorruptKeystore(f"{where}.{key}: expected {kind.__name__}")
    return value


def _hex_field(mapping: object, key: str, where: str) -> bytes:
    text = _field(mapping, key, str, where)
    assert isinstance(text, str)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CorruptKeystore(f"{where}.{key}: not hex") from None


def _int_field(mapping: object, key: str, where: str) -> int:
    value = _field(mapping, key, int, where)
    assert isinstance(value, int)
    return value


def _parse(path: Path, text: str) -> KeystoreInfo:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise CorruptKeystore(f"{path} is not JSON") from None
    version = _int_field(document, "version", "keystore")
    if version != KEYSTORE_VERSION:
        raise CorruptKeystore(f"{path}: keystore version {version} is not supported")
    crypto = _field(document, "crypto", dict, "keystore")
    if _field(crypto, "cipher", str, "crypto") != CIPHER or _field(crypto, "kdf", str, "crypto") != KDF:
        raise CorruptKeystore(f"{path}: only {KDF} with {CIPHER} is supported")
    kdfparams = _field(crypto, "kdfparams", dict, "crypto")
    kdf = ScryptParams(
        n=_int_field(kdfparams, "n", "kdfparams"),
        r=_int_field(kdfparams, "r", "kdfparams"),
        p=_int_field(kdfparams, "p", "kdfparams"),
        dklen=_int_field(kdfparams, "dklen", "kdfparams"),
        salt=_hex_field(kdfparams, "salt", "kdfparams"),
    )
    kdf.check()
    address_text = _field(document, "address", str, "keystore")
    assert isinstance(address_text, str)
    try:
        address = Address.parse(address_text)
    except InvalidAddressError as exc:
        raise CorruptKeystore(f"{path}: {exc.message}") from None
    key_id = _field(document, "id", str, "keystore")
    assert isinstance(key_id, str)
    nonce = _hex_field(_field(crypto, "cipherparams", dict, "crypto"), "nonce", "cipherparams")
    ciphertext = _hex_field(crypto, "ciphertext", "crypto")
    if len(nonce) != NONCE_LEN or len(ciphertext) != SEED_LEN + TAG_LEN:
        raise CorruptKeystore(f"{path}: nonce or ciphertext has the wrong length")
    return KeystoreInfo(path, address, key_id, version, kdf, nonce, ciphertext)


def read_info(path: Path) -> KeystoreInfo:
    """Read a keystore's public metadata. Raises KeystoreNotFound, CorruptKeystore, KeystoreIOError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeystoreNotFound(f"no keystore at {path}") from None
    except UnicodeDecodeError:
        raise CorruptKeystore(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise KeystoreIOError(f"cannot read {path}: {exc.strerror}") from exc
    return _parse(path, text)


# --------------------------------------------------------------------------------------------
# Create, load, list
# --------------------------------------------------------------------------------------------


def _write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` atomically, mode 0600; never replace a file
    (:func:`node.secret_files.write_secret_file`: a concurrent writer is never overwritten either).
    """
    if path.exists():
        raise KeystoreExists(f"{path} already exists; keystores are never overwritten")
    try:
        write_secret_file(path, data)
    except FileExistsError:
        raise KeystoreExists(f"{path} already exists; keystores are never overwritten") from None
    except OSError as exc:
        raise KeystoreIOError(f"cannot write {path}: {exc.strerror}") from exc


def create(path: Path, seed: bytes, password: str, *, fast_kdf: bool = False) -> KeystoreInfo:
    """Encrypt ``seed`` under ``password`` into a new keystore file at ``path``.

    ``fast_kdf=True`` uses scrypt n=2**12 instead of 2**18: for tests only. Raises InvalidSeed,
    KeystoreExists (a file is already there: nothing is overwritten), KeystoreIOError.
    """
    path = Path(path)
    try:
        key = PrivateKey.from_seed(seed)
    except InvalidKeyError as exc:
        raise InvalidSeed(exc.message) from None
    if fast_kdf:
        logger.warning("keystore %s uses the fast test-only KDF: never use it for real funds", path)
    if path.exists():
        # Checked before the KDF runs too, so a refusal costs nothing.
        raise KeystoreExists(f"{path} already exists; keystores are never overwritten")
    kdf = ScryptParams(
        n=FAST_SCRYPT_N if fast_kdf else STANDARD_SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        salt=secrets.token_bytes(SALT_LEN),
    )
    unsealed = KeystoreInfo(
        path=path,
        address=key.address,
        id=str(uuid.uuid4()),
        version=KEYSTORE_VERSION,
        kdf=kdf,
        nonce=secrets.token_bytes(NONCE_LEN),
        ciphertext=b"",
    )
    ciphertext = AESGCM(kdf.derive(password)).encrypt(unsealed.nonce, seed, unsealed.associated_data())
    info = KeystoreInfo(
        path, unsealed.address, unsealed.id, unsealed.version, kdf, unsealed.nonce, ciphertext
    )
    _write_new_file(path, (json.dumps(info.to_json(), indent=2) + "\n").encode())
    return info


def load(path: Path, password: str) -> PrivateKey:
    """Decrypt the key in the keystore at ``path``. Only reads the file.

    Raises WrongPassword (or a tampered file), KeystoreNotFound, CorruptKeystore, KeystoreIOError.
    """
    info = read_info(path)
    if info.fast_kdf:
        logger.warning("keystore %s uses the fast test-only KDF (n=%d)", info.path, info.kdf.n)
    try:
        seed = AESGCM(info.kdf.derive(password)).decrypt(info.nonce, info.ciphertext, info.associated_data())
    except InvalidTag:
        raise WrongPassword(f"wrong password for keystore {info.path} ({info.address})") from None
    key = PrivateKey.from_seed(seed)
    if key.address != info.address:
        # Authenticated, so only a keystore written by a buggy tool can get here.
        raise CorruptKeystore(f"{info.path}: the decrypted key is not the key of {info.address}")
    return key


def list_keystores(directory: Path) -> list[KeystoreInfo]:
    """The keystores in ``directory`` (``*.json``), in file-name order.

    Files that are not readable keystores are skipped with a warning; a missing directory holds
    none. Raises KeystoreIOError when the directory cannot be listed.
    """
    directory = Path(directory)
    try:
        candidates = sorted(entry for entry in directory.iterdir() if entry.suffix == ".json")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeystoreIOError(f"cannot list {directory}: {exc.strerror}") from exc
    found = []
    for candidate in candidates:
        try:
            found.append(read_info(candidate))
        except WalletError as exc:
            logger.warning("skipping %s: %s", candidate, exc.message)
    return found
