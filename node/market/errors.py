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
