"""Errors of the RPC layer, and the JSON-RPC 2.0 error codes it answers with.

Two kinds of code travel in a response's ``error.code``:

- the spec's reserved codes (-32700 ... -32603) for what is wrong with the JSON-RPC envelope;
- a domain error's own stable code (the ledger's 2000-2999, the GPU layer's 5100-5199, ...)
  when a handler refuses a well-formed call.

The RPC layer's own errors use 5500-5599:

    5500  RpcError (root; also the generic error a handler raises with its own code)
    5501  InvalidBindAddress        5502  MethodRegistrationError
    5503  CookieError               5504  RpcTransportError
    5505  RpcUnauthorized           5506  RpcBindError
    5507  a batch call not run: the batch's answer was already too large (an error object only)

The node's read methods answer a lookup of something this node does not have with a node error
(a :class:`~node.errors.NodeError`, codes fixed by the RPC contract):

    5201  UnknownBlock              5202  UnknownTx
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from node.errors import NodeError

# The spec's reserved codes (https://www.jsonrpc.org/specification#error_object).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: A batch entry not run because the batch's answer passed its size bound.
BATCH_ANSWER_TOO_LARGE = 5507

STANDARD_ERRORS: dict[int, str] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}


class RpcError(Exception):
    """An error with a code, a message and optional data, as a JSON-RPC error object carries.

    Handlers raise it directly, ``RpcError(code, message, data)``, for a refusal that has no
    typed error elsewhere; the dispatcher answers with exactly that code, message and data.
    """

    code: int = 5500

    def __init__(self, code: int, message: str, data: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = dict(data) if data is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, {self.message!r})"


class _FixedCodeError(RpcError):
    """An RPC-layer error whose code is fixed by its class."""

    def __init__(self, message: str, data: Mapping[str, object] | None = None) -> None:
        super().__init__(type(self).code, message, data)


class InvalidParams(_FixedCodeError):
    """The params do not fit the method's schema; the message names the param.

    Raised by the param validators, and by handlers for checks a schema cannot express
    (``"from and to must differ"``). Answered as the spec's -32602.
    """

    code = INVALID_PARAMS


class InvalidBindAddress(_FixedCodeError):
    """An RPC address that does not parse, or a non-loopback one without ``allow_remote``."""

    code = 5501


class MethodRegistrationError(_FixedCodeError):
    """A method table entry that is malformed: a bad name, a duplicate, a schema/handler mismatch."""

    code = 5502


class CookieError(_FixedCodeError):
    """The cookie file cannot be written or read (is the node running? is the home right?)."""

    code = 5503


class RpcTransportError(_FixedCodeError):
    """The client got no JSON-RPC answer: connection refused, timeout, or a non-JSON-RPC reply."""

    code = 5504


class RpcUnauthorized(RpcTransportError):
    """The server answered HTTP 401: the cookie is missing, stale or wrong."""

    code = 5505


class RpcBindError(_FixedCodeError):
    """The server could not listen on its address (in use, not local, no permission)."""

    code = 5506


class RpcCallError(RpcError):
    """The server answered a call with a JSON-RPC error object; ``code`` is the server's code."""


class UnknownBlock(NodeError):
    """No block at that height is stored on this node (not yet committed, or not synced yet)."""

    code: ClassVar[int] = 5201


class UnknownTx(NodeError):
    """No transaction with that hash is pending in this node's mempool or committed in its store."""

    code: ClassVar[int] = 5202
