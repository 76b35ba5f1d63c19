"""A small JSON-RPC client for the CLI, the testnet harness and tests.

Authenticates with the node's cookie: read from the cookie file before every call (so a node
restarted with a new cookie is picked up) or given as the hex token. Async on trio via httpx;
:meth:`RpcClient.call_blocking` wraps one call in ``trio.run`` for synchronous callers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trio

from node.rpc.cookie import cookie_path_for, read_cookie_file
from node.rpc.errors import RpcCallError, RpcTransportError, RpcUnauthorized
from node.rpc.protocol import encode_json, parse_json


class RpcClient:
    """Calls one node's RPC at ``url`` (``http://127.0.0.1:8645/``).

    Give exactly one of ``token`` (the cookie's hex secret) or ``cookie_path``. Use it as
    ``async with RpcClient(...) as client`` to keep one connection open across calls; without
    the ``async with``, each call opens its own connection.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        cookie_path: Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if (token is None) == (cookie_path is None):
            raise ValueError("give exactly one of token= or cookie_path=")
        self.url = url
        self.token = token
        self.cookie_path = cookie_path
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None
        self._ids = itertools.count(1)

    @classmethod
    def for_home(cls, home: Path, url: str, *, timeout_s: float = 30.0) -> RpcClient:
        """A client authenticating with the cookie of the node whose home is ``home``."""
        return cls(url, cookie_path=cookie_path_for(home), timeout_s=timeout_s)

    async def __aenter__(self) -> RpcClient:
        self._http = httpx.AsyncClient(timeout=self.timeout_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _authorization(self) -> str:
        if self.token is not None:
            return f"Bearer {self.token}"
        assert self.cookie_path is not None
        return read_cookie_file(self.cookie_path).basic_header()

    async def _post(self, payload: object) -> object:
        """POST one JSON-RPC message; the parsed answer, or None for 204 (notifications only)."""
        headers = {"authorization": self._authorization(), "content-type": "application/json"}
        body = encode_json(payload).encode()
        try:
            if self._http is not None:
                response = await self._http.post(self.url, content=body, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                    response = await http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RpcTransportError(f"cannot reach the node's RPC at {self.url}: {exc}") from exc
        if response.status_code == 401:
            raise RpcUnauthorized(f"the node at {self.url} refused the cookie (HTTP 401)")
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise RpcTransportError(
                f"the node at {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return parse_json(response.content)
        except ValueError as exc:
            raise RpcTransportError(f"the node at {self.url} answered with invalid JSON") from exc

    async def call(self, method: str, *args: object, **params: object) -> Any:
        """Call ``method`` with positional ``args`` or named ``params`` (not both); its result.

        Raises :class:`RpcCallError` (the server's code, message and data) when the call is
        refused, :class:`RpcUnauthorized` for a wrong cookie, :class:`RpcTransportError` when no
        JSON-RPC answer arrives, :class:`~node.rpc.errors.CookieError` when the cookie file is
        missing.
        """
        if args and params:
            raise ValueError("JSON-RPC params are either positional or named, not both")
        request_id = next(self._ids)
        request: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if args or params:
            request["params"] = list(args) if args else params
        answer = await self._post(request)
        return _result_of(answer, request_id)

    async def notify(self, method: str, *args: object, **params: object) -> None:
        """Send a notification: the server runs it and answers nothing."""
        if args and params:
            raise ValueError("JSON-RPC params are either positional or named, not both")
        request: dict[str, object] = {"jsonrpc": "2.0", "method": method}
        if args or params:
            request["params"] = list(args) if args else params
        await self._post(request)

    async def batch(
        self, calls: Sequence[tuple[str, Sequence[object] | Mapping[str, object]]]
    ) -> list[Any | RpcCallError]:
        """Send ``(method, params)`` calls as one batch; results (or errors) in the same order."""
        ids = [next(self._ids) for _ in calls]
        payload = [
            {
                "jsonrpc": "2.0",
                "method": method,
                "params": list(params) if isinstance(params, Sequence) else dict(params),
                "id": request_id,
            }
            for (method, params), request_id in zip(calls, ids, strict=True)
        ]
        answer = await self._post(payload)
        if not isinstance(answer, list):
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                raise _call_error(answer["error"])
            raise RpcTransportError("the node answered a batch with something that is not an array")
        by_id = {entry.get("id"): entry for entry in answer if isinstance(entry, dict)}
        results: list[Any | RpcCallError] = []
        for request_id in ids:
            entry = by_id.get(request_id)
            if entry is None:
                raise RpcTransportError(f"the node's batch answer lacks request {request_id}")
            error = entry.get("error")
            results.append(_call_error(error) if isinstance(error, dict) else entry.get("result"))
        return results

    def call_blocking(self, method: str, *args: object, **params: object) -> Any:
        """:meth:`call` for synchronous code (the CLI); never from inside a trio run."""
        return trio.run(partial(self.call, method, *args, **params))


def _call_error(error: Mapping[str, object]) -> RpcCallError:
    code = error.get("code")
    message = error.get("message")
    data = error.get("data")
    return RpcCallError(
        code if type(code) is int else 0,
        message if isinstance(message, str) else "",
        data if isinstance(data, dict) else None,
    )


def _result_of(answer: object, request_id: int) -> Any:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        raise RpcTransportError("the node's answer is not a JSON-RPC 2.0 response")
    error = answer.get("error")
    if isinstance(error, dict):
        raise _call_error(error)
    if answer.get("id") != request_id or "result" not in answer:
        raise RpcTransportError("the node's answer does not match the request")
    return answer["result"]
