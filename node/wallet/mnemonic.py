"""Recovery phrases: BIP-39 mnemonics and the SLIP-0010 Ed25519 key they derive.

A wallet made by ``dcent wallet new`` starts from 256 bits of entropy written as 24 English words
(BIP-39, with its checksum in the last word). ``wallet restore`` turns the words back into the
same key on any machine, with no keystore file and no password: the words are the backup.

The words become a 64-byte seed by BIP-39 (PBKDF2-HMAC-SHA512, 2048 rounds, salt ``"mnemonic" +
passphrase``), and the seed becomes an Ed25519 signing key by SLIP-0010 along the hardened path
``m/44'/1'/0'/0'/0'``. Coin type 1 is SLIP-44's "testnet, all coins": dcent has no coin type of
its own yet, and using a real chain's would let a wallet that shares a phrase with that chain
derive related keys. Both steps are the published algorithms, checked against their published
test vectors, so another wallet implementing them derives the same address.

The mnemonic is never stored: the keystore keeps only the derived key, encrypted. A typo is
caught by the checksum (one in sixteen wrong phrases of 24 words passes it, so a wrong word that
happens to check still yields an address the user will not recognise: ``restore`` prints it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from functools import cache
from importlib import resources

from node.wallet.errors import InvalidMnemonic

#: Word counts BIP-39 defines, with their entropy in bits (ENT = words * 11 * 32 / 33).
ENTROPY_BITS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}
DEFAULT_WORDS = 24
PBKDF2_ROUNDS = 2048
#: SLIP-0010's HMAC key for the Ed25519 master node.
ED25519_CURVE_KEY = b"ed25519 seed"
HARDENED = 0x8000_0000
#: m/44'/1'/0'/0'/0': purpose 44, coin type 1 (see the module docstring), account 0, external, 0.
DCENT_PATH = (44, 1, 0, 0, 0)
#: Longer input than any phrase of 24 words could be is refused before it is normalised.
MAX_PHRASE_CHARS = 1024


@cache
def wordlist() -> tuple[str, ...]:
    """The 2048 English words of BIP-39, in order (the index is the 11-bit value)."""
    text = resources.files("node.wallet").joinpath("bip39_english.txt").read_text("utf-8")
    words = tuple(text.split())
    if len(words) != 2048:
        raise RuntimeError(f"bip39_english.txt: {len(words)} words, expected 2048 (a broken install)")
    return words


@cache
def _index() -> dict[str, int]:
    return {word: number for number, word in enumerate(wordlist())}


def entropy_to_mnemonic(entropy: bytes) -> str:
    """The phrase for ``entropy`` (16, 20, 24, 28 or 32 bytes)."""
    bits = len(entropy) * 8
    if bits not in ENTROPY_BITS.values():
        raise InvalidMnemonic(f"entropy of {len(entropy)} bytes; BIP-39 takes 16, 20, 24, 28 or 32")
    checksum_bits = bits // 32
    checksum = hashlib.sha256(entropy).digest()[0] >> (8 - checksum_bits)
    value = (int.from_bytes(entropy, "big") << checksum_bits) | checksum
    count = (bits + checksum_bits) // 11
    words = wordlist()
    return " ".join(words[(value >> (11 * (count - 1 - i))) & 0x7FF] for i in range(count))


def generate_mnemonic(words: int = DEFAULT_WORDS) -> str:
    """A new phrase of ``words`` words from the operating system's randomness."""
    if words not in ENTROPY_BITS:
        raise InvalidMnemonic(f"{words} words; a phrase has 12, 15, 18, 21 or 24")
    return entropy_to_mnemonic(secrets.token_bytes(ENTROPY_BITS[words] // 8))


def normalize(phrase: str) -> str:
    """The phrase as BIP-39 hashes it: NFKD, lower case, single spaces."""
    if len(phrase) > MAX_PHRASE_CHARS:
        raise InvalidMnemonic(f"a phrase of {len(phrase)} characters; at most {MAX_PHRASE_CHARS}")
    return " ".join(unicodedata.normalize("NFKD", phrase).lower().split())


def mnemonic_to_entropy(phrase: str) -> bytes:
    """The entropy of a valid phrase. Raises :class:`InvalidMnemonic` naming what is wrong: the
    word count, the first word not in the list (by position), or a checksum mismatch."""
    words = normalize(phrase).split(" ") if phrase.strip() else []
    if len(words) not in ENTROPY_BITS:
        raise InvalidMnemonic(f"{len(words)} words; a recovery phrase has 12, 15, 18, 21 or 24")
    index = _index()
    value = 0
    for position, word in enumerate(words, start=1):
        number = index.get(word)
        if number is None:
            raise InvalidMnemonic(f"word {position} is not in the BIP-39 English list")
        value = (value << 11) | number
    bits = ENTROPY_BITS[len(words)]
    checksum_bits = bits // 32
    entropy = (value >> checksum_bits).to_bytes(bits // 8, "big")
    expected = hashlib.sha256(entropy).digest()[0] >> (8 - checksum_bits)
    if value & ((1 << checksum_bits) - 1) != expected:
        raise InvalidMnemonic("the checksum does not match: a word is wrong or out of order")
    return entropy


def mnemonic_to_seed(phrase: str, passphrase: str = "") -> bytes:
    """BIP-39's 64-byte seed. The phrase is checked first (a typo must not derive a stranger's key)."""
    mnemonic_to_entropy(phrase)
    salt = "mnemonic" + unicodedata.normalize("NFKD", passphrase)
    return hashlib.pbkdf2_hmac("sha512", normalize(phrase).encode(), salt.encode(), PBKDF2_ROUNDS)


def slip10_ed25519(seed: bytes, path: tuple[int, ...]) -> tuple[bytes, bytes]:
    """SLIP-0010 for Ed25519: the (private key, chain code) at ``path`` (every index hardened,
    as Ed25519 allows no other; given without the hardened bit)."""
    digest = hmac.new(ED25519_CURVE_KEY, seed, hashlib.sha512).digest()
    key, chain = digest[:32], digest[32:]
    for number in path:
        if not 0 <= number < HARDENED:
            raise InvalidMnemonic(f"path index {number}: 0 to 2^31-1 (hardened implicitly)")
        data = b"\x00" + key + (number | HARDENED).to_bytes(4, "big")
        digest = hmac.new(chain, data, hashlib.sha512).digest()
        key, chain = digest[:32], digest[32:]
    return key, chain


def mnemonic_to_key_seed(phrase: str, passphrase: str = "") -> bytes:
    """The 32-byte Ed25519 key seed a dcent wallet keeps for ``phrase``."""
    key, _ = slip10_ed25519(mnemonic_to_seed(phrase, passphrase), DCENT_PATH)
    return key
