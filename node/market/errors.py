"""Errors of the node's job service (codes 5300-5349), as RPC callers see them."""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class JobServiceError(NodeError):
    code: ClassVar[int] = 5300


class UnknownJob(JobServiceError):
    """No job with this id on this node."""

    code: ClassVar[int] = 5301


class JobNotFinished(JobServiceError):
    """The job has no result yet."""

    code: ClassVar[int] = 5302


class JobNotCancellable(JobServiceError):
    """The job is past the point where cancelling it is possible (its escrow is open): the
    contract runs to settlement or to a refund at its deadline."""

    code: ClassVar[int] = 5303


class MarketDisabled(JobServiceError):
    """This node runs no job service."""

    code: ClassVar[int] = 5304


class TxRefused(JobServiceError):
    """A transaction the job service submitted was refused or could not apply; the message and
    ``ledger_code`` name the ledger's reason."""

    code: ClassVar[int] = 5305
