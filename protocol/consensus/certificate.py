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
from protocol.consensus.messages import GENESIS_BLOCK_TIME_MS, CommitCertificate, genesis_certificate
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


def bft_time(certificate: CommitCertificate, validators: ValidatorSet) -> int:
    """The time of the block that carries ``certificate`` as its ``last_commit``: the
    stake-weighted median of its precommit times (BFT time; genesis time for block 1).

    The median is the first time, in (time, address) order, at which the signers' cumulative
    power exceeds half of theirs. A certificate holds more than 2/3 of the power and Byzantine
    validators less than 1/3, so they hold less than half of the signers' power: the median can
    be neither above every honest signer's time nor below every one. Whatever precommits a
    proposer picks, and whatever times Byzantine validators sign, the block time is an honest
    validator's clock reading. Signers outside ``validators`` weigh nothing (the certificate is
    verified before its time is used).
    """
    if certificate.height == 0:
        return GENESIS_BLOCK_TIME_MS
    entries = sorted(
        (
            (entry.time_ms, entry.validator, validators.power_of(entry.validator))
            for entry in certificate.signatures
        ),
    )
    total = sum(power for _, _, power in entries)
    cumulative = 0
    for time_ms, _, power in entries:
        cumulative += power
        if 2 * cumulative > total:
            return time_ms
    return GENESIS_BLOCK_TIME_MS  # no signer with power: never the case for a verified certificate
