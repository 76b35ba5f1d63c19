"""Keys, checksummed addresses (every typo rejected), and signature domain separation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from protocol.crypto import (
    Address,
    InvalidAddressError,
    InvalidKeyError,
    PrivateKey,
    PublicKey,
    address_of,
    bech32m_decode,
    bech32m_encode,
    verify,
)
from protocol.encoding import sign_bytes
from protocol.ledger.block import apply_block
from protocol.ledger.errors import BadSignature, WrongChainId
from protocol.ledger.genesis import dev_genesis
from protocol.ledger.tx import decode_tx

from .ledger_helpers import (
    CHAIN_ID,
    OTHER_CHAIN_ID,
    TEST_PARAMS,
    Chain,
    addr,
    assert_rejected,
    key,
    sign_raw_body,
    tx_body,
)

ADDRESSES = [Address(bytes(20)), Address(b"\xff" * 20), key("alice").address, key("bob").address]
# Printable ASCII and a few Unicode look-alikes; the Kelvin sign lower-cases to "k".
SUBSTITUTES = [chr(c) for c in range(33, 127)] + ["\u212a", "\u0131", "\u017f", "\uff10", "\u0430", " "]


def _rejected(text: str) -> InvalidAddressError:
    with pytest.raises(InvalidAddressError) as caught:
        Address.parse(text)
    assert caught.value.code == 1101
    return caught.value


# --- addresses -----------------------------------------------------------------------------------


@given(st.binary(min_size=20, max_size=20))
def test_address_round_trip(raw: bytes) -> None:
    address = Address(raw)
    text = str(address)
    assert text.startswith("dct1") and len(text) == 42
    assert Address.parse(text) == address
    assert Address.parse(text.upper()) == address  # bech32m allows all-upper-case
    assert Address.parse(f"  {text}\n") == address


def test_address_of_a_public_key() -> None:
    alice = key("alice")
    assert alice.address == Address.from_public_key(alice.public_key.raw) == alice.public_key.address
    assert alice.address.raw == address_of(alice.public_key.raw)
    assert alice.address != key("bob").address


@pytest.mark.parametrize("address", ADDRESSES, ids=str)
@pytest.mark.parametrize("case", ["lower", "upper"])
def test_every_single_character_substitution_is_rejected(address: Address, case: str) -> None:
    text = str(address) if case == "lower" else str(address).upper()
    tried = 0
    for position in range(len(text)):
        for substitute in SUBSTITUTES:
            typo = text[:position] + substitute + text[position + 1 :]
            if typo.strip() == text:
                continue  # whitespace at either end is not a typo
            _rejected(typo)
            tried += 1
    assert tried > 40 * len(SUBSTITUTES)


@pytest.mark.parametrize("address", ADDRESSES, ids=str)
def test_every_adjacent_transposition_is_rejected(address: Address) -> None:
    text = str(address)
    swapped = 0
    for i in range(len(text) - 1):
        if text[i] == text[i + 1]:
            continue
        _rejected(text[:i] + text[i + 1] + text[i] + text[i + 2 :])
        swapped += 1
    assert swapped >= 2


@pytest.mark.parametrize("address", ADDRESSES, ids=str)
def test_dropped_or_doubled_characters_are_rejected(address: Address) -> None:
    text = str(address)
    for i in range(len(text)):
        _rejected(text[:i] + text[i + 1 :])
        _rejected(text[:i] + text[i] + text[i:])


def test_a_unicode_look_alike_is_rejected_even_in_an_upper_case_address() -> None:
    # U+212A KELVIN SIGN is upper case and lower-cases to "k": a naive case check lets it through.
    address = next(a for a in (key(f"kelvin-{i}").address for i in range(100)) if "k" in str(a))
    text = str(address).upper()
    _rejected(text.replace("K", "\u212a", 1))


def test_wrong_prefix_is_rejected() -> None:
    raw = key("alice").address.raw
    for hrp in ("dcx", "dc", "dctt", "cosmos", "bc"):
        message = _rejected(bech32m_encode(hrp, raw)).message
        assert "dct1" in message


def test_mixed_case_is_rejected() -> None:
    text = str(key("alice").address)
    letter = next(i for i, c in enumerate(text) if i > 4 and c.isalpha())
    message = _rejected(text[:letter] + text[letter].upper() + text[letter + 1 :]).message
    assert "case" in message


def test_a_valid_bech32m_string_of_another_length_is_not_an_address() -> None:
    for size in (0, 19, 21, 32):
        _rejected(bech32m_encode("dct", bytes(size)))


@pytest.mark.parametrize("text", ["", "dct1", "dct1qqqqqq", "1dct", "dct" + "1" * 40, "dct1" + "q" * 90])
def test_malformed_strings_are_rejected(text: str) -> None:
    _rejected(text)


def test_bech32m_reference_vectors() -> None:
    # BIP-350 valid bech32m strings.
    assert bech32m_decode("a", "A1LQFN3A") == b""
    assert bech32m_decode("a", "a1lqfn3a") == b""
    text = "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx"
    payload = bech32m_decode("abcdef", text)
    assert bech32m_encode("abcdef", payload) == text
    # BIP-173 strings are bech32, not bech32m: their checksum must not pass.
    for hrp, bech32 in (("a", "A12UEL5L"), ("abcdef", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")):
        with pytest.raises(InvalidAddressError):
            bech32m_decode(hrp, bech32)


def test_address_must_be_twenty_bytes() -> None:
    for raw in (b"", bytes(19), bytes(21)):
        with pytest.raises(InvalidAddressError):
            Address(raw)


# --- keys ----------------------------------------------------------------------------------------


def test_keys_from_labels_are_deterministic_and_distinct() -> None:
    assert PrivateKey.from_label("x").public_key == PrivateKey.from_label("x").public_key
    assert PrivateKey.from_label("x").public_key != PrivateKey.from_label("y").public_key


def test_seed_round_trip() -> None:
    original = PrivateKey.generate()
    restored = PrivateKey.from_seed(original.seed())
    assert restored.public_key == original.public_key
    assert restored.sign(b"m") == original.sign(b"m")  # Ed25519 is deterministic


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "a" * 32])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(InvalidKeyError) as caught:
        PrivateKey.from_seed(seed)  # type: ignore[arg-type]
    assert caught.value.code == 1102


def test_bad_public_keys_are_refused() -> None:
    for raw in (b"", bytes(31), bytes(33)):
        with pytest.raises(InvalidKeyError):
            PublicKey(raw)


def test_verify_accepts_only_the_signed_message_and_the_right_key() -> None:
    alice = key("alice")
    signature = alice.sign(b"message")
    assert alice.public_key.verify(signature, b"message")
    assert verify(alice.public_key.raw, signature, b"message")
    assert not alice.public_key.verify(signature, b"messagE")
    assert not key("bob").public_key.verify(signature, b"message")
    assert not verify(alice.public_key.raw, signature[:-1], b"message")
    assert not verify(alice.public_key.raw[:-1], signature, b"message")
    assert not alice.public_key.verify(signature + b"\x00", b"message")


#: The identity point, a public key of small order (order 1): y = 1, x = 0.
IDENTITY_POINT = (1).to_bytes(32, "little")


def test_a_small_order_key_signs_nothing() -> None:
    """R = identity, S = 0 satisfies [S]B = R + [k]A for the identity key A and every message:
    OpenSSL's check (``cryptography``) takes it as a signature of anything; ours refuses it."""
    forged = IDENTITY_POINT + bytes(32)
    for message in (b"pay bob 1000 DCT", b"anything at all"):
        Ed25519PublicKey.from_public_bytes(IDENTITY_POINT).verify(forged, message)  # OpenSSL: valid
        assert not verify(IDENTITY_POINT, forged, message)
        assert not PublicKey(IDENTITY_POINT).verify(forged, message)


@given(message=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_a_signature_with_any_bit_flipped_fails(message: bytes, flip: int) -> None:
    alice = key("alice")
    signature = bytearray(alice.sign(message))
    assert verify(alice.public_key.raw, bytes(signature), message)
    signature[flip // 8] ^= 1 << (flip % 8)
    assert not verify(alice.public_key.raw, bytes(signature), message)


# --- domain separation -----------------------------------------------------------------------------


def test_a_signature_is_bound_to_one_chain_and_one_kind() -> None:
    alice = key("alice")
    payload = b"the same payload"
    signature = alice.sign(sign_bytes("chain-a", "tx", payload))
    assert alice.public_key.verify(signature, sign_bytes("chain-a", "tx", payload))
    assert not alice.public_key.verify(signature, sign_bytes("chain-b", "tx", payload))
    assert not alice.public_key.verify(signature, sign_bytes("chain-a", "vote", payload))
    vote_signature = alice.sign(sign_bytes("chain-a", "vote", payload))
    assert not alice.public_key.verify(vote_signature, sign_bytes("chain-a", "tx", payload))


@pytest.mark.parametrize(
    ("sign_chain", "kind"),
    [(OTHER_CHAIN_ID, "tx"), (CHAIN_ID, "vote"), (CHAIN_ID, "contract"), (CHAIN_ID, "receipt")],
)
def test_a_signature_from_another_domain_never_passes_as_a_transaction(sign_chain: str, kind: str) -> None:
    # The body names this chain, but the signature was made for another chain or message kind.
    chain = Chain()
    raw = sign_raw_body(
        "alice", tx_body("transfer", {"amount": 1, "to": addr("bob")}), sign_chain_id=sign_chain, kind=kind
    )
    assert not decode_tx(raw).verify_signature()
    assert_rejected(chain.state, lambda: apply_block(chain.state, chain.context(), [raw]), BadSignature, 2003)
    honest = sign_raw_body("alice", tx_body("transfer", {"amount": 1, "to": addr("bob")}))
    assert decode_tx(honest).verify_signature()


def test_a_transaction_of_chain_a_is_rejected_on_chain_b() -> None:
    a_tx = sign_raw_body("alice", tx_body("transfer", {"amount": 1, "to": addr("bob")}))
    genesis_b = dev_genesis(
        OTHER_CHAIN_ID, [(key("val-0").public_key.raw, 1_000)], [(addr("alice"), 10**6)], TEST_PARAMS
    )
    chain_b = Chain(genesis_b)
    assert_rejected(
        chain_b.state, lambda: apply_block(chain_b.state, chain_b.context(), [a_tx]), WrongChainId, 2002
    )
