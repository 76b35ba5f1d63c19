"""Encrypted keystore files: scrypt + AES-256-GCM over the Ed25519 seed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node.wallet import keystore
from node.wallet.keystore import (
    FAST_SCRYPT_N,
    STANDARD_SCRYPT_N,
    CorruptKeystore,
    InvalidSeed,
    KeystoreExists,
    KeystoreNotFound,
    WalletError,
    WrongPassword,
    create,
    keystore_filename,
    list_keystores,
    load,
    read_info,
)
from protocol.crypto import PrivateKey

ALICE = PrivateKey.from_label("alice")
BOB = PrivateKey.from_label("bob")


def snapshot(path: Path) -> tuple[bytes, int, int]:
    status = path.stat()
    return path.read_bytes(), status.st_mtime_ns, status.st_mode


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / keystore_filename(ALICE.address)
    info = create(path, ALICE.seed(), "correct horse", fast_kdf=True)
    assert info.address == ALICE.address
    key = load(path, "correct horse")
    assert key.seed() == ALICE.seed()
    assert key.address == ALICE.address


def test_file_is_private_and_holds_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "pw", fast_kdf=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert ALICE.seed().hex().encode() not in raw and ALICE.seed() not in raw
    document = json.loads(raw)
    assert document["address"] == str(ALICE.address)
    assert document["version"] == 1
    assert document["crypto"]["cipher"] == "aes-256-gcm" and document["crypto"]["kdf"] == "scrypt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json"]


def test_wrong_password_fails_clearly_and_leaves_the_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "right", fast_kdf=True)
    before = snapshot(path)
    with pytest.raises(WrongPassword) as caught:
        load(path, "wrong")
    assert caught.value.code == 5701
    assert "wrong password" in caught.value.message and str(ALICE.address) in caught.value.message
    assert snapshot(path) == before
    assert load(path, "right").address == ALICE.address


def test_fast_kdf_is_recorded_and_used_on_load(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    info = create(path, ALICE.seed(), "pw", fast_kdf=True)
    assert info.fast_kdf
    params = json.loads(path.read_text())["crypto"]["kdfparams"]
    assert (params["n"], params["r"], params["p"], params["dklen"]) == (FAST_SCRYPT_N, 8, 1, 32)
    assert len(bytes.fromhex(params["salt"])) == 32
    assert read_info(path).kdf.n == FAST_SCRYPT_N


@pytest.mark.slow
def test_default_kdf_is_geths_standard_scrypt(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    info = create(path, ALICE.seed(), "pw")
    assert not info.fast_kdf
    params = json.loads(path.read_text())["crypto"]["kdfparams"]
    assert (params["n"], params["r"], params["p"]) == (STANDARD_SCRYPT_N, 8, 1) == (2**18, 8, 1)
    assert load(path, "pw").seed() == ALICE.seed()


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "pw", fast_kdf=True)
    before = snapshot(path)
    with pytest.raises(KeystoreExists) as caught:
        create(path, BOB.seed(), "other", fast_kdf=True)
    assert caught.value.code == 5702
    assert snapshot(path) == before
    assert load(path, "pw").address == ALICE.address
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json"]


def test_never_overwrites_a_file_that_appears_during_the_kdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "alice.json"
    real_derive = keystore.ScryptParams.derive

    def derive_then_race(self: keystore.ScryptParams, password: str) -> bytes:
        path.write_text("written by someone else meanwhile")
        return real_derive(self, password)

    monkeypatch.setattr(keystore.ScryptParams, "derive", derive_then_race)
    with pytest.raises(KeystoreExists):
        create(path, ALICE.seed(), "pw", fast_kdf=True)
    assert path.read_text() == "written by someone else meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json"]


def test_tampered_metadata_fails_to_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "pw", fast_kdf=True)
    document = json.loads(path.read_text())
    document["address"] = str(BOB.address)
    path.write_text(json.dumps(document))
    with pytest.raises(WrongPassword):
        load(path, "pw")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d["crypto"].update(kdf="pbkdf2"),
        lambda d: d["crypto"].update(cipher="aes-128-ctr"),
        lambda d: d["crypto"]["kdfparams"].update(n=2**30),
        lambda d: d["crypto"]["kdfparams"].update(n=1000),
        lambda d: d["crypto"]["kdfparams"].update(p=1000),
        lambda d: d["crypto"]["kdfparams"].update(salt="zz"),
        lambda d: d["crypto"].update(ciphertext="00"),
        lambda d: d.update(address="dct1notanaddress"),
        lambda d: d.pop("id"),
        lambda d: d["crypto"].pop("cipherparams"),
    ],
)
def test_malformed_files_are_corrupt_keystores(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "pw", fast_kdf=True)
    document = json.loads(path.read_text())
    assert callable(mutate)
    mutate(document)
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptKeystore) as caught:
        load(path, "pw")
    assert caught.value.code == 5704


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "junk.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(CorruptKeystore):
        load(path, "pw")
    with pytest.raises(KeystoreNotFound):
        load(tmp_path / "missing.json", "pw")


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_invalid_seed_is_refused_before_anything_is_written(tmp_path: Path, seed: object) -> None:
    with pytest.raises(InvalidSeed):
        create(tmp_path / "k.json", seed, "pw", fast_kdf=True)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_password_is_unicode_normalised(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    create(path, ALICE.seed(), "caf\u00e9", fast_kdf=True)
    assert load(path, "cafe\u0301").address == ALICE.address


def test_list_keystores_in_name_order_skipping_junk(tmp_path: Path) -> None:
    assert list_keystores(tmp_path / "absent") == []
    create(tmp_path / "b.json", BOB.seed(), "pw", fast_kdf=True)
    create(tmp_path / "a.json", ALICE.seed(), "pw", fast_kdf=True)
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a keystore")
    found = list_keystores(tmp_path)
    assert [(info.path.name, info.address) for info in found] == [
        ("a.json", ALICE.address),
        ("b.json", BOB.address),
    ]


def test_every_wallet_error_has_a_code_in_its_range() -> None:
    classes = [
        obj for obj in vars(keystore).values() if isinstance(obj, type) and issubclass(obj, WalletError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)) >= 7
    assert all(5700 <= code <= 5799 for code in codes)
