"""Commit certificate verification: the proof that a block was decided.

A certificate is valid for (height, block) when its signers are distinct members of that
height's validator set holding more than 2/3 of its power, and every precommit signature
verifies. The cheap checks run first, so a forged certificate costs no signature checks unless
it already claims a quorum.
"""

from __future__ import annotations

from protocol.consensus.errors import (
    CertificateHeightMismatch,
    CertificateSignatureError,
    DuplicateSigner,
    InsufficientPower,
    UnknownSigner,
)
from protocol.consensus.messages import CommitCertificate, genesis_certificate
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier


def verify_certificate(
    certificate: CommitCertificate,
    *,
    chain_id: str,
    height: int,
    block_hash: bytes,
    validators: ValidatorSet,
    verifier: SignatureVerifier,
) -> None:
    """Check that ``certificate`` proves the commit of ``block_hash`` at ``height``.

    Raises :class:`CertificateHeightMismatch`, :class:`DuplicateSigner`,
    :class:`UnknownSigner`, :class:`InsufficientPower` or :class:`CertificateSignatureError`.
    """
    if certificate.height != height or certificate.block_hash != block_hash:
        raise CertificateHeightMismatch(
            f"certificate is for height {certificate.height} block {certificate.block_hash[:4].hex()}, "
            f"expected height {height} block {block_hash[:4].hex()}"
        )
    seen: set[bytes] = set()
    power = 0
    for entry in certificate.signatures:
        if entry.validator in seen:
            raise DuplicateSigner(f"certificate counts {entry.validator.hex()} twice")
        seen.add(entry.validator)
        if entry.validator not in validators:
            raise UnknownSigner(f"certificate signer {entry.validator.hex()} is not a validator at {height}")
        power += validators.power_of(entry.validator)
    if not validators.has_quorum(power):
        raise InsufficientPower(f"certificate signers hold {power} of {validators.total_power}: not > 2/3")
    for vote in certificate.precommits():
        if not verifier.verify(chain_id, validators.public_key(vote.validator), vote):
            raise CertificateSignatureError(f"precommit of {vote.validator.hex()} does not verify")


def verify_parent_certificate(
    certificate: CommitCertificate,
    *,
    chain_id: str,
    height: int,
    parent_hash: bytes,
    genesis_hash: bytes,
    parent_validators: ValidatorSet | None,
    verifier: SignatureVerifier,
) -> None:
    """Check the ``last_commit`` of a block at ``height`` (the genesis pseudo-certificate at 1).

    Raises what :func:`verify_certificate` raises.
    """
    if height == 1:
        if certificate != genesis_certificate(genesis_hash) or parent_hash != genesis_hash:
            raise CertificateHeightMismatch("the first block must carry the genesis certificate")
        return
    assert parent_validators is not None, "a block above 1 needs its parent's validator set"
    verify_certificate(
        certificate,
        chain_id=chain_id,
        height=height - 1,
        block_hash=parent_hash,
        validators=parent_validators,
        verifier=verifier,
    )
