"""Commit certificates: what proves a commit, and every way a certificate can fail to."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from protocol.consensus.certificate import verify_certificate, verify_parent_certificate
from protocol.consensus.errors import (
    CertificateHeightMismatch,
    CertificateSignatureError,
    DuplicateSigner,
    InsufficientPower,
    InvalidCertificate,
    UnknownSigner,
)
from protocol.consensus.messages import (
    PRECOMMIT,
    CommitCertificate,
    CommitSignature,
    genesis_certificate,
    sign_vote,
)
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier

from .consensus_support import Chain, certificate, vkey

BLOCK = hashlib.sha256(b"a block").digest()
OTHER = hashlib.sha256(b"another block").digest()


@pytest.fixture
def validators() -> ValidatorSet:
    chain = Chain(powers=(1, 1, 1, 1))
    return chain.app().validator_set(1)


def _verify(
    cert: CommitCertificate, validators: ValidatorSet, *, height: int = 5, block: bytes = BLOCK
) -> None:
    verify_certificate(
        cert,
        chain_id="dcent-consensus-test",
        height=height,
        block_hash=block,
        validators=validators,
        verifier=SignatureVerifier(),
    )


def _expect(error: type[InvalidCertificate], code: int, action: object) -> None:
    with pytest.raises(InvalidCertificate) as caught:
        action()  # type: ignore[operator]
    assert type(caught.value) is error
    assert caught.value.code == code


def test_three_of_four_distinct_signers_prove_the_commit(validators: ValidatorSet) -> None:
    _verify(certificate(5, 2, BLOCK, [0, 1, 2]), validators)
    _verify(certificate(5, 0, BLOCK, [0, 1, 2, 3]), validators)


def test_duplicate_signer_is_rejected(validators: ValidatorSet) -> None:
    good = certificate(5, 0, BLOCK, [0, 1])
    doubled = dataclasses.replace(good, signatures=(*good.signatures, good.signatures[0]))
    _expect(DuplicateSigner, 3022, lambda: _verify(doubled, validators))


def test_two_thirds_exactly_is_not_enough_power() -> None:
    # powers 1,1,1,1: 2 of 4 is not > 2/3; powers 2,1,1,2: 4 of 6 is exactly 2/3, still not.
    even = Chain(powers=(1, 1, 1, 1)).app().validator_set(1)
    _expect(InsufficientPower, 3023, lambda: _verify(certificate(5, 0, BLOCK, [0, 1]), even))
    weighted = Chain(powers=(2, 1, 1, 2)).app().validator_set(1)
    _expect(InsufficientPower, 3023, lambda: _verify(certificate(5, 0, BLOCK, [0, 1, 2]), weighted))
    _verify(certificate(5, 0, BLOCK, [0, 1, 3]), weighted)  # 5 of 6


def test_a_bad_signature_is_rejected(validators: ValidatorSet) -> None:
    good = certificate(5, 0, BLOCK, [0, 1, 2])
    first = good.signatures[0]
    broken = CommitSignature(first.validator, bytes([first.signature[0] ^ 1]) + first.signature[1:])
    forged = dataclasses.replace(good, signatures=(broken, *good.signatures[1:]))
    _expect(CertificateSignatureError, 3024, lambda: _verify(forged, validators))


def test_signatures_over_another_block_or_round_do_not_count(validators: ValidatorSet) -> None:
    other_block = certificate(5, 0, OTHER, [0, 1, 2])
    relabelled = dataclasses.replace(other_block, block_hash=BLOCK)
    _expect(CertificateSignatureError, 3024, lambda: _verify(relabelled, validators))
    other_round = dataclasses.replace(certificate(5, 1, BLOCK, [0, 1, 2]), round=0)
    _expect(CertificateSignatureError, 3024, lambda: _verify(other_round, validators))


def test_wrong_height_or_block_is_rejected(validators: ValidatorSet) -> None:
    cert = certificate(5, 0, BLOCK, [0, 1, 2])
    _expect(CertificateHeightMismatch, 3021, lambda: _verify(cert, validators, height=6))
    _expect(CertificateHeightMismatch, 3021, lambda: _verify(cert, validators, block=OTHER))


def test_a_signer_outside_the_set_is_rejected(validators: ValidatorSet) -> None:
    outsider = vkey(9)
    good = certificate(5, 0, BLOCK, [0, 1, 2])
    stranger = sign_vote(outsider, "dcent-consensus-test", 5, 0, PRECOMMIT, BLOCK)
    cert = dataclasses.replace(
        good, signatures=(*good.signatures, CommitSignature(stranger.validator, stranger.signature))
    )
    _expect(UnknownSigner, 3025, lambda: _verify(cert, validators))


def test_signatures_from_another_chain_do_not_count(validators: ValidatorSet) -> None:
    cert = certificate(5, 0, BLOCK, [0, 1, 2])
    with pytest.raises(CertificateSignatureError):
        verify_certificate(
            cert,
            chain_id="another-chain",
            height=5,
            block_hash=BLOCK,
            validators=validators,
            verifier=SignatureVerifier(),
        )


def test_height_one_needs_exactly_the_genesis_certificate(validators: ValidatorSet) -> None:
    genesis = hashlib.sha256(b"genesis").digest()

    def check(cert: CommitCertificate, parent: bytes) -> None:
        verify_parent_certificate(
            cert,
            chain_id="dcent-consensus-test",
            height=1,
            parent_hash=parent,
            genesis_hash=genesis,
            parent_validators=None,
            verifier=SignatureVerifier(),
        )

    check(genesis_certificate(genesis), genesis)
    _expect(CertificateHeightMismatch, 3021, lambda: check(genesis_certificate(OTHER), OTHER))
    padded = dataclasses.replace(
        genesis_certificate(genesis), signatures=certificate(5, 0, BLOCK, [0]).signatures
    )
    _expect(CertificateHeightMismatch, 3021, lambda: check(padded, genesis))


def test_certificate_survives_the_wire() -> None:
    cert = certificate(5, 3, BLOCK, [2, 0, 1])
    assert CommitCertificate.decode(cert.encode()) == cert
    assert cert.signers == tuple(sorted(cert.signers))
