"""Consensus errors (codes 3000-3999), split by whose fault they are.

* :class:`InvalidMessage` and its subclasses (3001-3899): a peer, or a block from a peer, handed
  us something invalid. The core rejects it and nothing changes; the node may score the peer.
* :class:`LocalConsensusError` (3900-3999): our own node is misconfigured or asked to do
  something unsafe (for example to sign below its last signed step). Never a peer's fault.
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class ConsensusError(ProtocolError):
    """Root of every consensus error."""

    code = 3000


# --- the input's fault: messages --------------------------------------------------------------
class InvalidMessage(ConsensusError):
    """A message whose fields are malformed or out of range."""

    code = 3001


class NotInValidatorSet(InvalidMessage):
    """A vote, proposal or signature from an address outside the validator set of its height."""

    code = 3002


class InvalidSignature(InvalidMessage):
    """A vote whose signature does not verify under its validator's key, or a proposal not
    signed by the proposer of its (height, round)."""

    code = 3003


# --- the input's fault: blocks and certificates -----------------------------------------------
class InvalidBlock(InvalidMessage):
    """A block that is not a valid successor of our last committed block."""

    code = 3010


class BlockExecutionFailed(InvalidBlock):
    """Executing the block's transactions failed, or gave a different state hash."""

    code = 3011


class InvalidCertificate(InvalidMessage):
    """A commit certificate that does not prove a commit."""

    code = 3020


class CertificateHeightMismatch(InvalidCertificate):
    """A certificate for another height or block than the one it is presented for."""

    code = 3021


class DuplicateSigner(InvalidCertificate):
    """A certificate that counts one validator twice."""

    code = 3022


class InsufficientPower(InvalidCertificate):
    """A certificate whose signers hold no more than 2/3 of the height's voting power."""

    code = 3023


class CertificateSignatureError(InvalidCertificate):
    """A certificate entry whose precommit signature does not verify."""

    code = 3024


class UnknownSigner(InvalidCertificate):
    """A certificate entry from an address outside the height's validator set."""

    code = 3025


# --- the input's fault: evidence --------------------------------------------------------------
class InvalidEvidence(InvalidMessage):
    """Evidence of misbehaviour that proves nothing."""

    code = 3030


class NotEquivocation(InvalidEvidence):
    """Two votes that do not conflict: different (height, round, type, validator), or one block."""

    code = 3031


class ForgedEvidence(InvalidEvidence):
    """Evidence whose votes were not signed by the accused validator's key."""

    code = 3032


class StaleEvidence(InvalidEvidence):
    """Evidence older than the evidence window, or from a height not yet decided."""

    code = 3033


class DuplicateEvidence(InvalidEvidence):
    """Evidence against a validator already punished, or listed twice in one block."""

    code = 3034


# --- the input's fault: block sync ------------------------------------------------------------
class SyncError(InvalidMessage):
    """A block-sync response that does not extend our chain."""

    code = 3040


# --- our own fault ----------------------------------------------------------------------------
class LocalConsensusError(ConsensusError):
    """Our node's configuration or state is wrong; no peer caused this."""

    code = 3900


class UnknownHeight(LocalConsensusError):
    """The validator set of a height outside the window this node keeps was asked for."""

    code = 3902


class InvalidConfig(LocalConsensusError):
    """A consensus or simulator configuration value out of range."""

    code = 3903
