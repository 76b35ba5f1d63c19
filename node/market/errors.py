"""Errors of the node's job service (codes 5950-5999), as RPC callers see them."""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class JobServiceError(NodeError):
    code: ClassVar[int] = 5950


class UnknownJob(JobServiceError):
    """No job with this id on this node."""

    code: ClassVar[int] = 5951


class JobNotFinished(JobServiceError):
    """The job has no result yet."""

    code: ClassVar[int] = 5952


class JobNotCancellable(JobServiceError):
    """The job is past the point where cancelling it is possible (its escrow is open): the
    contract runs to settlement or to a refund at its deadline."""

    code: ClassVar[int] = 5953


class MarketDisabled(JobServiceError):
    """This node runs no job service."""

    code: ClassVar[int] = 5954


class TxRefused(JobServiceError):
    """A transaction the job service submitted was refused or could not apply; the message and
    ``ledger_code`` name the ledger's reason."""

    code: ClassVar[int] = 5955


class EscrowNeverOpened(JobServiceError):
    """The requester did not get the escrow included in time: the provider released the GPUs."""

    code: ClassVar[int] = 5956


class InterruptedByRestart(JobServiceError):
    """The node stopped while the job was in progress and could not pick it up again."""

    code: ClassVar[int] = 5957


class JobCancelled(JobServiceError):
    """Cancelled by its requester before a contract was made."""

    code: ClassVar[int] = 5958


class ProviderFailed(JobServiceError):
    """The provider's sandbox or node failed (or the job never started there): the requester was
    refunded in full and the provider's collateral slashed."""

    code: ClassVar[int] = 5959


class NothingDelivered(JobServiceError):
    """The provider delivered no result before the contract's deadline: the requester was refunded
    and the provider's collateral slashed."""

    code: ClassVar[int] = 5960


class ClaimDisputed(JobServiceError):
    """The requester disputed the provider's claim for a result it never received or refused: the
    claimed pay and part of the collateral were burned."""

    code: ClassVar[int] = 5961


class JobDidNotComplete(JobServiceError):
    """The job ran and its contract settled, but it did not complete with exit status 0: it
    failed, timed out or reached a resource limit (its ``outcome`` says which), and was paid for
    the time it used."""

    code: ClassVar[int] = 5962


class OutputsAreBlobs(JobServiceError):
    """The job's outputs came back as blobs: ``dcent job output ID --out DIR`` (RPC
    ``job_outputs``) fetches and writes them; ``job result`` carries inline outputs only."""

    code: ClassVar[int] = 5963


class IllegalJobTransition(JobServiceError):
    """Our own bug: the job service tried to move a job backwards or out of a terminal state
    (node/market/records.py TRANSITIONS). The move is refused and the record keeps its state."""

    code: ClassVar[int] = 5964
