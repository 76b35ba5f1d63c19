"""JSON-RPC 2.0 dispatch, with no HTTP: request bytes in, response bytes (or nothing) out.

Follows https://www.jsonrpc.org/specification in full: single calls and batches, notifications
(executed, never answered), and the reserved error codes -32700 ... -32603. A handler's typed
refusal is answered with the error's own stable code; anything else a handler raises is a bug,
answered as -32603 "Internal error" with no detail and logged with its traceback here.

:meth:`Dispatcher.dispatch` never raises for any input bytes: whatever arrives, the answer is a
valid JSON-RPC response, or None when only notifications arrived.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Final

import trio

from node.rpc.errors import (
    BATCH_ANSWER_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STANDARD_ERRORS,
    RpcError,
)
from node.rpc.methods import MethodTable
from node.rpc.params import bind_params
from protocol.crypto import Address
from protocol.encoding import Record
from protocol.errors import ProtocolError

logger = logging.getLogger("dcent.rpc")

DEFAULT_MAX_BATCH: Final = 1000
#: Past this many characters of answers, a batch's remaining calls are not run (5507 each).
MAX_BATCH_ANSWER_CHARS: Final = 16 * 1024 * 1024
# How much of a client-chosen method name goes into an error message.
_ECHO_LIMIT: Final = 100


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def parse_json(body: bytes) -> object:
    """Strict JSON: no NaN or Infinity, no number that overflows a float. Raises ValueError."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_parse_finite_float)
    except RecursionError:
        # Deeply nested arrays exhaust the parser's stack; that is malformed input, not our bug.
        raise ValueError("JSON nested too deeply") from None


def _json_default(value: object) -> object:
    """How results carry what JSON has no type for: bytes as lowercase hex, addresses as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Address):
        return str(value)
    if isinstance(value, Record):
        return value.to_wire()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: object) -> str:
    """Compact ASCII JSON. Raises TypeError or ValueError for a value with no JSON form."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)


def _valid_id(value: object) -> bool:
    return value is None or (type(value) in (str, int, float))


def _invalid_reason(entry: object) -> str | None:
    """Why ``entry`` is not a Request object, or None."""
    if not isinstance(entry, dict):
        return "a request must be an object"
    if entry.get("jsonrpc") != "2.0":
        return 'member "jsonrpc" must be exactly "2.0"'
    if type(entry.get("method")) is not str:
        return 'member "method" must be a string'
    if "params" in entry and not isinstance(entry["params"], list | dict):
        return 'member "params" must be an object or an array'
    if "id" in entry and not _valid_id(entry["id"]):
        return 'member "id" must be a string, a number or null'
    return None


def _response(request_id: object, result: object) -> str:
    return encode_json({"jsonrpc": "2.0", "result": result, "id": request_id})


def _error_response(
    request_id: object, code: int, message: str, data: dict[str, object] | None = None
) -> str:
    error: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    try:
        return encode_json({"jsonrpc": "2.0", "error": error, "id": request_id})
    except (TypeError, ValueError):
        # A handler's RpcError carried data with no JSON form: answer without it.
        logger.error("RPC error data for code %s has no JSON form; dropped", code)
        del error["data"]
        return encode_json({"jsonrpc": "2.0", "error": error, "id": request_id})


def _refused_for_size(entry: object) -> str | None:
    """The answer to a batch entry not run because the batch's answer is already too large
    (nothing for a notification, as for any notification)."""
    if not isinstance(entry, dict) or "id" not in entry:
        return None
    request_id = entry["id"] if _valid_id(entry["id"]) else None
    return _error_response(
        request_id,
        BATCH_ANSWER_TOO_LARGE,
        f"not run: the batch's answer passed {MAX_BATCH_ANSWER_CHARS} characters; send fewer calls per batch",
    )


def _standard_error(request_id: object, code: int, detail: str | None = None) -> str:
    message = STANDARD_ERRORS[code] if detail is None else f"{STANDARD_ERRORS[code]}: {detail}"
    return _error_response(request_id, code, message)


class Dispatcher:
    """Runs JSON-RPC requests against a :class:`MethodTable`.

    ``domain_errors`` names the exception roots (besides :class:`ProtocolError` and
    :class:`RpcError`, always included) whose instances are refusals to answer with their own
    ``code`` and ``message``: the node passes its own error roots here.
    """

    def __init__(
        self,
        table: MethodTable,
        *,
        domain_errors: Iterable[type[Exception]] = (),
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.table = table
        self.max_batch = max_batch
        self._domain_errors: tuple[type[Exception], ...] = (RpcError, ProtocolError, *domain_errors)

    async def dispatch(self, body: bytes) -> bytes | None:
        """Answer a request body. Returns the response body, or None when nothing is to be sent."""
        try:
            message = parse_json(body)
        except ValueError as exc:
            return _standard_error(None, PARSE_ERROR, str(exc)[:_ECHO_LIMIT]).encode()
        answer = await self.dispatch_message(message)
        return None if answer is None else answer.encode()

    async def dispatch_message(self, message: object) -> str | None:
        """Answer an already-parsed JSON value: one request, or a batch."""
        if not isinstance(message, list):
            return await self._handle_entry(message)
        if not message:
            return _standard_error(None, INVALID_REQUEST, "empty batch")
        if len(message) > self.max_batch:
            return _standard_error(
                None, INVALID_REQUEST, f"batch of {len(message)} requests exceeds {self.max_batch}"
            )
        answers = []
        size = 0
        # In order, one at a time: a batch's calls see each other's effects in the order sent.
        for entry in message:
            if size > MAX_BATCH_ANSWER_CHARS:
                # 56 KB of cheap calls made a 28.8 MB answer, held whole while the client read it.
                answer = _refused_for_size(entry)
            else:
                answer = await self._handle_entry(entry)
            if answer is not None:
                answers.append(answer)
                size += len(answer)
            # Many handlers never await: without this a 1,000-call batch held the event loop,
            # consensus included, for half a second.
            await trio.lowlevel.checkpoint()
        if not answers:
            return None
        return "[" + ",".join(answers) + "]"

    async def _handle_entry(self, entry: object) -> str | None:
        reason = _invalid_reason(entry)
        if reason is not None:
            # The id is echoed when it is itself valid; otherwise, as the spec says, null.
            request_id = entry.get("id") if isinstance(entry, dict) and _valid_id(entry.get("id")) else None
            return _standard_error(request_id, INVALID_REQUEST, reason)
        assert isinstance(entry, dict)
        is_notification = "id" not in entry
        request_id = entry.get("id")
        name: str = entry["method"]
        answer = await self._call(name, entry.get("params"), request_id)
        return None if is_notification else answer

    async def _call(self, name: str, params: object, request_id: object) -> str:
        method = self.table.get(name)
        if method is None:
            return _standard_error(request_id, METHOD_NOT_FOUND, repr(name[:_ECHO_LIMIT]))
        try:
            kwargs = bind_params(method.params, params)
            result = await method.handler(**kwargs)
        except self._domain_errors as exc:
            return self._domain_error_response(request_id, name, exc)
        # The fault barrier: whatever else a handler raises is a bug in the node, never the
        # caller's fault. It is logged with its traceback and answered without any detail.
        except Exception:
            logger.exception("RPC method %s raised an unexpected error", name)
            return _standard_error(request_id, INTERNAL_ERROR)
        try:
            return _response(request_id, result)
        except (TypeError, ValueError):
            logger.exception("RPC method %s returned a value with no JSON form", name)
            return _standard_error(request_id, INTERNAL_ERROR)

    def _domain_error_response(self, request_id: object, name: str, exc: Exception) -> str:
        if isinstance(exc, RpcError):
            logger.debug("RPC method %s refused: %s %s", name, exc.code, exc.message)
            return _error_response(request_id, exc.code, exc.message, exc.data)
        code = getattr(exc, "code", None)
        if type(code) is not int:
            logger.error("RPC method %s raised %r, which has no integer code", name, exc)
            return _standard_error(request_id, INTERNAL_ERROR)
        message = str(getattr(exc, "message", None) or exc)
        logger.debug("RPC method %s refused: %s %s", name, code, message)
        return _error_response(request_id, code, message, {"error": type(exc).__name__})
