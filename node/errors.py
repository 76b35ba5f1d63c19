"""The root of every error the node layer raises (codes 5000-6099).

Each package under ``node/`` has its own subclass with its code range (config 5000s, gpu 5100s,
p2p 5200s (and the RPC's UnknownBlock 5201, UnknownTx 5202), executor 5300s, store 5400s, rpc
5500s, mempool 5600s, wallet 5700s, metrics 5800s, testnet 5900-5949, job service 5950-5999, blob store and transfer 6000-6099), and
splits its errors by whose fault they are. The RPC returns ``code`` as ``error.code``.
"""

from __future__ import annotations

from typing import ClassVar


class NodeError(Exception):
    code: ClassVar[int] = 5000

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, {self.message!r})"


def leaf_exceptions(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and its nested groups, the groups themselves left out."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves
