"""Checkpoints: what a node stores to resume its ledger application without replaying from
genesis.

A checkpoint at height ``h`` holds the ledger snapshot after block ``h``, block ``h``'s hash,
time and commit certificate, and every validator set the application still keeps (those of the
heights whose certificates and evidence it may yet verify, up to ``h + VALIDATOR_SET_DELAY``).
Resuming checks the snapshot's invariants and state hash against the stored block's, so a
corrupted checkpoint is refused, never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.consensus.errors import LocalConsensusError
from protocol.consensus.messages import CommitCertificate
from protocol.consensus.validators import Validator
from protocol.encoding import Record


class CheckpointError(LocalConsensusError):
    """A stored checkpoint that does not restore a consistent application."""

    code = 3905


@dataclass(frozen=True, slots=True)
class StoredValidatorSet(Record):
    height: int
    validators: tuple[Validator, ...]


@dataclass(frozen=True, slots=True)
class Checkpoint(Record):
    height: int
    state_hash: bytes
    snapshot: bytes
    last_hash: bytes
    last_time: int
    last_certificate: CommitCertificate
    validator_sets: tuple[StoredValidatorSet, ...]
