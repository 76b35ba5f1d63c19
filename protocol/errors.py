"""The root of every error the protocol core raises.

Each concrete error carries a stable numeric ``code`` that the node's RPC returns as
``error.code``. Codes are grouped by module so a code alone says where it came from:

    1000-1099  encoding        1100-1199  crypto
    1300-1399  blobs           1500-1599  economics simulator
    2000-2999  ledger          3000-3999  consensus
    4000-4999  market          (node/ uses 5000-6099)

Every protocol error is "the input's fault": the core never fails on its own state. Whether the
input came from a peer, a wallet or our own mempool is the caller's business.
"""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Something handed to the protocol core is invalid. Nothing was changed."""

    code: ClassVar[int] = 1000

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, {self.message!r})"
