"""Named wallets in a keystore directory, and the passwords and seeds that open or make them.

A wallet is one keystore file (:mod:`node.wallet.keystore`, whose format this module leaves
alone) in the keystore directory (``--keystore``, default ``<home>/keystore`` where home is
``--home``, ``$DCENT_HOME`` or ``~/.dcent``). Its name is the file name without ``.json``: a
wallet made without ``--name`` is called by its address (``dct1....json``, geth's convention), a
named one ``<name>.json``. Commands take a wallet by name or by address.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node.wallet.connect import home_dir
from node.wallet.errors import InvalidArgument, InvalidWalletName, PasswordUnavailable, UnknownWallet
from node.wallet.keystore import (
    InvalidSeed,
    KeystoreExists,
    KeystoreInfo,
    create,
    keystore_filename,
    list_keystores,
    load,
)
from node.wallet.mnemonic import mnemonic_to_entropy
from node.wallet.values import looks_like_address, parse_address
from protocol.crypto import SEED_LEN, PrivateKey

KEYSTORE_DIR_NAME = "keystore"
KEYSTORE_SUFFIX = ".json"
#: A name becomes a file name: no separators, no leading dot, nothing a shell would mangle.
WALLET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A password file is read whole; anything this long is not a password file.
MAX_PASSWORD_FILE_BYTES = 4096
MAX_SEED_FILE_BYTES = 4096

Prompt = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Wallet:
    name: str
    info: KeystoreInfo

    @property
    def address(self) -> str:
        return str(self.info.address)

    def describe(self) -> dict[str, object]:
        """The JSON form ``wallet list`` / ``new`` / ``address`` print."""
        return {
            "name": self.name,
            "address": self.address,
            "path": str(self.info.path),
            "fast_kdf": self.info.fast_kdf,
        }


def keystore_dir(explicit: str | None, home: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--keystore`` if given, else ``<home>/keystore``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    return home_dir(home, os.environ if environ is None else environ) / KEYSTORE_DIR_NAME


def check_name(name: str) -> str:
    """Return ``name`` if it can name a wallet. Raises InvalidWalletName.

    Names that look like addresses are refused: an address always means the wallet holding it.
    """
    if not WALLET_NAME.fullmatch(name) or name.endswith(KEYSTORE_SUFFIX):
        raise InvalidWalletName(
            f"wallet name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if looks_like_address(name):
        raise InvalidWalletName(f"wallet name {name!r} looks like an address; pick another")
    return name


def list_wallets(directory: Path) -> list[Wallet]:
    """Every readable keystore in ``directory``, in file-name order. Raises KeystoreIOError."""
    return [Wallet(info.path.name[: -len(KEYSTORE_SUFFIX)], info) for info in list_keystores(directory)]


def find_wallet(directory: Path, ref: str | None) -> Wallet:
    """The wallet named or addressed by ``ref``; with ``ref`` None, the directory's only wallet.

    Raises UnknownWallet (none matches, or several and no ``ref``), InvalidArgument (a mistyped
    address), KeystoreIOError.
    """
    wallets = list_wallets(directory)
    if ref is None:
        if len(wallets) == 1:
            return wallets[0]
        if not wallets:
            raise UnknownWallet(f"no wallet in {directory}: make one with `dcent wallet new`")
        names = ", ".join(wallet.name for wallet in wallets)
        raise UnknownWallet(f"{len(wallets)} wallets in {directory} ({names}): say which one")
    if looks_like_address(ref):
        address = str(parse_address(ref, "wallet"))
        matches = [wallet for wallet in wallets if wallet.address == address]
    else:
        matches = [wallet for wallet in wallets if wallet.name == ref]
    if not matches:
        raise UnknownWallet(f"no wallet {ref!r} in {directory}")
    return matches[0]


def create_wallet(
    directory: Path, name: str | None, seed: bytes, password: str, *, fast_kdf: bool = False
) -> Wallet:
    """Encrypt ``seed`` into a new keystore in ``directory``, named ``name`` or by its address.

    Raises InvalidWalletName, KeystoreExists (the name is taken, or this key already has a
    wallet here: one key, one file), InvalidSeed, KeystoreIOError.
    """
    if type(seed) is not bytes or len(seed) != SEED_LEN:
        raise InvalidSeed(f"a seed is {SEED_LEN} bytes")
    address = PrivateKey.from_seed(seed).address
    file_name = f"{check_name(name)}{KEYSTORE_SUFFIX}" if name else keystore_filename(address)
    for existing in list_wallets(directory):
        if existing.info.address == address:
            raise KeystoreExists(f"{address} already has a wallet here: {existing.info.path}")
    info = create(directory / file_name, seed, password, fast_kdf=fast_kdf)
    return Wallet(file_name[: -len(KEYSTORE_SUFFIX)], info)


def unlock(wallet: Wallet, password: str) -> PrivateKey:
    """Decrypt the wallet's key. Raises WrongPassword, CorruptKeystore, KeystoreIOError.

    Only reads the file: a failed unlock leaves it byte for byte as it was.
    """
    return load(wallet.info.path, password)


# --------------------------------------------------------------------------------------------
# Passwords and seeds
# --------------------------------------------------------------------------------------------


def _read_small_file(path: str, limit: int, what: str) -> str:
    try:
        with Path(path).expanduser().open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PasswordUnavailable(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise PasswordUnavailable(f"the {what} {path} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordUnavailable(f"the {what} {path} is not UTF-8 text") from None


def read_password_file(path: str) -> str:
    """The password in ``path``: its first line, without the line ending. Raises PasswordUnavailable."""
    text = _read_small_file(path, MAX_PASSWORD_FILE_BYTES, "password file")
    password = text.splitlines()[0] if text else ""
    if not password:
        raise PasswordUnavailable(f"the password file {path} is empty")
    return password


def get_password(
    password_file: str | None,
    *,
    prompt_text: str,
    confirm: bool,
    prompt: Prompt | None = None,
) -> str:
    """The password from ``password_file``, else from the terminal (asked twice when ``confirm``).

    Raises PasswordUnavailable: an unreadable or empty file, an empty password, two prompts
    that differ, or no terminal to ask on.
    """
    if password_file is not None:
        return read_password_file(password_file)
    ask = prompt or getpass.getpass
    try:
        password = ask(prompt_text)
        if confirm and ask("Repeat the password: ") != password:
            raise PasswordUnavailable("the two passwords differ; nothing was written")
    except EOFError:
        raise PasswordUnavailable("no password: give --password-file FILE or run on a terminal") from None
    if not password:
        raise PasswordUnavailable("the password is empty")
    return password


def parse_seed_hex(text: str, where: str) -> bytes:
    """A 32-byte seed written as 64 hex digits (``0x`` and surrounding blanks allowed)."""
    cleaned = text.strip()
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        seed = bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidArgument(f"{where}: a seed is {2 * SEED_LEN} hex digits") from None
    if len(seed) != SEED_LEN:
        raise InvalidArgument(f"{where}: a seed is {2 * SEED_LEN} hex digits, this is {2 * len(seed)}")
    return seed


def get_seed(seed_file: str | None, *, prompt: Prompt | None = None) -> bytes:
    """The seed to import: from ``seed_file`` (hex; a node's ``keys/validator_key`` reads as is),
    else typed at a hidden prompt. Raises InvalidArgument, PasswordUnavailable."""
    if seed_file is not None:
        try:
            text = _read_small_file(seed_file, MAX_SEED_FILE_BYTES, "seed file")
        except PasswordUnavailable as exc:
            raise InvalidArgument(exc.message) from None
        return parse_seed_hex(text, seed_file)
    try:
        return parse_seed_hex((prompt or getpass.getpass)("Seed (64 hex digits): "), "the seed")
    except EOFError:
        raise InvalidArgument("no seed: give --seed-file FILE or run on a terminal") from None


def get_mnemonic(mnemonic_file: str | None, *, prompt: Prompt | None = None) -> str:
    """The recovery phrase to restore: from ``mnemonic_file``, else typed at a hidden prompt (the
    words are as secret as the key). Checked here, so a typo is refused before any password is
    asked for. Raises InvalidMnemonic, InvalidArgument."""
    if mnemonic_file is not None:
        try:
            phrase = _read_small_file(mnemonic_file, MAX_SEED_FILE_BYTES, "recovery phrase file")
        except PasswordUnavailable as exc:
            raise InvalidArgument(exc.message) from None
    else:
        try:
            phrase = (prompt or getpass.getpass)("Recovery phrase (the words, separated by spaces): ")
        except EOFError:
            raise InvalidArgument("no phrase: give --mnemonic-file FILE or run on a terminal") from None
    mnemonic_to_entropy(phrase)
    return phrase
