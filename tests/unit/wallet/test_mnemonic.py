"""Recovery phrases: BIP-39 and SLIP-0010 against their published test vectors, the errors a
mistyped phrase gets, and the wallet commands that make, restore and export a key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.wallet.errors import InvalidMnemonic
from node.wallet.mnemonic import (
    entropy_to_mnemonic,
    mnemonic_to_entropy,
    mnemonic_to_key_seed,
    mnemonic_to_seed,
    slip10_ed25519,
    wordlist,
)
from protocol.crypto import PrivateKey
from tests.unit.wallet.conftest import Cli

# BIP-39's own vectors (trezor/python-mnemonic vectors.json, passphrase "TREZOR").
BIP39_VECTORS = [
    (
        "00000000000000000000000000000000",
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
    ),
    (
        "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
        "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
    ),
    (
        "80808080808080808080808080808080",
        "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
        "d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8",
    ),
    (
        "ffffffffffffffffffffffffffffffff",
        "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
        "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069",
    ),
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        " ".join(["abandon"] * 23 + ["art"]),
        "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
    ),
]

# SLIP-0010 test vector 1 for Ed25519: (path, private key, chain code).
SLIP10_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SLIP10_VECTORS = [
    (
        (),
        "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
        "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
    ),
    (
        (0,),
        "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
        "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
    ),
    (
        (0, 1),
        "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
        "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
    ),
    (
        (0, 1, 2, 2),
        "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
        "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
    ),
]


def test_the_wordlist_is_bip39_english() -> None:
    text = "\n".join(wordlist()) + "\n"
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
    )


@pytest.mark.parametrize(("entropy", "phrase", "seed"), BIP39_VECTORS)
def test_bip39_vectors(entropy: str, phrase: str, seed: str) -> None:
    assert entropy_to_mnemonic(bytes.fromhex(entropy)) == phrase
    assert mnemonic_to_entropy(phrase) == bytes.fromhex(entropy)
    assert mnemonic_to_seed(phrase, "TREZOR").hex() == seed


@pytest.mark.parametrize(("path", "key", "chain"), SLIP10_VECTORS)
def test_slip10_ed25519_vectors(path: tuple[int, ...], key: str, chain: str) -> None:
    assert slip10_ed25519(SLIP10_SEED, path) == (bytes.fromhex(key), bytes.fromhex(chain))


@given(st.sampled_from([16, 20, 24, 28, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_every_phrase_round_trips(entropy: bytes) -> None:
    phrase = entropy_to_mnemonic(entropy)
    assert mnemonic_to_entropy(phrase) == entropy
    # Case and spacing do not change the key: people copy phrases by hand.
    assert mnemonic_to_key_seed("  " + phrase.upper().replace(" ", "   ")) == mnemonic_to_key_seed(phrase)


@pytest.mark.parametrize(
    ("phrase", "says"),
    [
        ("", "0 words"),
        ("abandon " * 11 + "abandon", "checksum"),
        ("abandon " * 11 + "abut", "word 12 is not in"),
        ("abandon " * 13, "13 words"),
        ("zoo " * 11 + "about", "checksum"),
        ("a" * 2000, "at most 1024"),
    ],
)
def test_a_mistyped_phrase_is_refused_with_what_is_wrong(phrase: str, says: str) -> None:
    with pytest.raises(InvalidMnemonic, match=says):
        mnemonic_to_key_seed(phrase)


def test_new_prints_a_phrase_that_restores_the_same_key_elsewhere(cli: Cli, keystore: Path) -> None:
    made = cli.json("wallet", "new", "--name", "alice", "--words", "12", "--fast-kdf", *cli.key_args())
    phrase = made["mnemonic"]
    assert len(phrase.split()) == 12
    assert str(PrivateKey.from_seed(mnemonic_to_key_seed(phrase)).address) == made["address"]

    other = keystore.parent / "other-machine"
    phrase_file = keystore.parent / "phrase.txt"
    phrase_file.write_text(phrase + "\n")
    restored = cli.json(
        "wallet", "restore", "--mnemonic-file", str(phrase_file), "--fast-kdf",
        "--keystore", str(other), "--password-file", str(cli.password_file),
    )  # fmt: skip
    assert restored["address"] == made["address"] and "mnemonic" not in restored

    code, out, _ = cli.run("wallet", "new", "--fast-kdf", *cli.key_args())
    said = " ".join(out.split())
    assert code == 0 and "Recovery phrase" in said and "will not be shown again" in said


def test_a_mistyped_phrase_writes_nothing(cli: Cli, keystore: Path) -> None:
    phrase_file = keystore.parent / "phrase.txt"
    phrase_file.write_text("abandon " * 11 + "abandon\n")
    code, _, err = cli.run(
        "wallet", "restore", "--mnemonic-file", str(phrase_file), "--fast-kdf", *cli.key_args()
    )
    assert (code, err.split(":")[0]) == (1, "error 5721")
    assert "checksum" in err and "abandon" not in err  # the words are secret: never echoed
    assert not keystore.exists()


def test_export_gives_the_seed_that_import_takes_back(cli: Cli, keystore: Path) -> None:
    made = cli.json("wallet", "new", "--name", "alice", "--fast-kdf", *cli.key_args())
    exported = cli.json("wallet", "export", "alice", *cli.key_args())
    assert exported["address"] == made["address"]
    assert exported["seed"] == mnemonic_to_key_seed(made["mnemonic"]).hex()

    seed_file = keystore.parent / "seed.txt"
    seed_file.write_text(exported["seed"])
    other = keystore.parent / "other"
    imported = cli.json(
        "wallet", "import", "--seed-file", str(seed_file), "--fast-kdf",
        "--keystore", str(other), "--password-file", str(cli.password_file),
    )  # fmt: skip
    assert imported["address"] == made["address"]

    wrong = keystore.parent / "wrong-password"
    wrong.write_text("not the password\n")
    code, out, err = cli.run(
        "wallet", "export", "alice", "--keystore", str(keystore), "--password-file", str(wrong)
    )
    assert code == 1 and exported["seed"] not in out + err
