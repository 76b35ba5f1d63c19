"""The RPC server: JSON-RPC 2.0 over HTTP ``POST /``, served by hypercorn on trio.

:class:`RpcServer` is a trio service. Inside the node's nursery it binds its address, then
writes the cookie file (so an existing cookie means a listening server) and, when given a
``url_path``, the URL it really listens on (port 0 resolved), then serves until it is cancelled
or :meth:`RpcServer.shutdown` is called; on the way out it removes both files.

Every request is checked in this order, and the first failure answers without running anything:
the cookie (401), the path (404), the HTTP method (405), the content type (415: requiring
``application/json`` makes a browser send a CORS preflight first, which this server never
grants, so a web page cannot post to the node's RPC), the body size (413).
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hypercorn.config
import hypercorn.trio
import trio
from hypercorn.typing import Framework

from node.errors import leaf_exceptions
from node.rpc import http_limits
from node.rpc.address import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RPC_HOST,
    DEFAULT_RPC_PORT,
    check_bind_host,
    is_loopback,
)
from node.rpc.cookie import Cookie, cookie_path_for, remove_cookie_file, write_cookie_file
from node.rpc.errors import CookieError, RpcBindError
from node.rpc.protocol import Dispatcher

if TYPE_CHECKING:
    # libp2p pulls in trio-typing, whose trio-stubs shadow trio's own annotations for mypy.
    from trio_typing import TaskStatus

logger = logging.getLogger("dcent.rpc")

AsgiScope = Mapping[str, Any]
AsgiReceive = Callable[[], Awaitable[Mapping[str, Any]]]
AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


async def serve_lifespan(receive: AsgiReceive, send: AsgiSend) -> None:
    """The ASGI lifespan protocol, for an app with nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _BodyRefusal(enum.Enum):
    TOO_LARGE = "too large"
    CLIENT_GONE = "client gone"
    TOO_SLOW = "too slow"


_TOO_LARGE = _BodyRefusal.TOO_LARGE
_CLIENT_GONE = _BodyRefusal.CLIENT_GONE
_TOO_SLOW = _BodyRefusal.TOO_SLOW
#: The longest a request's body may take to arrive once its headers have.
BODY_TIMEOUT_S = 30.0

_JSON = b"application/json"
#: What JSON-RPC over HTTP clients send (the draft convention also names the latter two). None is
#: a type a cross-site form may send without a preflight, so the browser rule still holds.
_JSON_TYPES = frozenset({_JSON, b"application/json-rpc", b"application/jsonrequest"})
_PLAIN_TEXT = b"text/plain; charset=utf-8"


def _header(scope: AsgiScope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _is_json_content_type(value: bytes | None) -> bool:
    if value is None:
        return False
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type in _JSON_TYPES


class RpcHttpApp:
    """The ASGI application hypercorn runs: HTTP checks, then the dispatcher."""

    def __init__(self, dispatcher: Dispatcher, cookie: Cookie, *, max_body_bytes: int) -> None:
        self.dispatcher = dispatcher
        self.cookie = cookie
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        if not self.cookie.authorizes(_header(scope, b"authorization")):
            client = scope.get("client")
            # Not INFO: anyone who can connect could fill the log, ~100 bytes per 27-byte request.
            logger.debug("RPC request from %s refused: missing or wrong cookie", client)
            await _respond(
                send, 401, b"unauthorized\n", [(b"www-authenticate", b'Basic realm="dcent"')], _PLAIN_TEXT
            )
            return
        if scope.get("path") != "/":
            await _respond(send, 404, b"not found: POST JSON-RPC to /\n", [], _PLAIN_TEXT)
            return
        if scope.get("method") != "POST":
            await _respond(send, 405, b"method not allowed: use POST\n", [(b"allow", b"POST")], _PLAIN_TEXT)
            return
        if not _is_json_content_type(_header(scope, b"content-type")):
            await _respond(send, 415, b"unsupported media type: use application/json\n", [], _PLAIN_TEXT)
            return
        body: bytes | _BodyRefusal = _TOO_SLOW
        with trio.move_on_after(BODY_TIMEOUT_S):
            body = await self._read_body(scope, receive)
        if body is _CLIENT_GONE:
            return
        if body is _TOO_SLOW:  # a body announced and never sent held its connection for good
            await _respond(
                send, 408, b"request body not received in time\n", [(b"connection", b"close")], _PLAIN_TEXT
            )
            return
        if body is _TOO_LARGE:
            await _respond(send, 413, b"request body too large\n", [], _PLAIN_TEXT)
            return
        assert isinstance(body, bytes)
        answer = await self.dispatcher.dispatch(body)
        if answer is None:
            await _respond(send, 204, b"", [], None)
        else:
            await _respond(send, 200, answer, [], _JSON)

    async def _read_body(self, scope: AsgiScope, receive: AsgiReceive) -> bytes | _BodyRefusal:
        """The whole body; or _TOO_LARGE as soon as it exceeds the limit (the rest is not read);
        or _CLIENT_GONE when the client disconnected first (nothing is run for it)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            return _TOO_LARGE
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _CLIENT_GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _respond(
    send: AsgiSend,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes | None,
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    if content_type is not None:
        all_headers.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _port_of(bind_url: str) -> int:
    """The port of hypercorn's ``http://HOST:PORT`` bind description."""
    return int(bind_url.rsplit(":", 1)[1])


def hypercorn_config(host: str, port: int, logger: str, graceful_timeout_s: float) -> hypercorn.config.Config:
    """Hypercorn serving plain HTTP/1.1 on ``host:port``: no TLS here, so no ALPN for h2, one
    protocol to reason about; errors to the ``logger`` log, no access log, no server header."""
    config = hypercorn.config.Config()
    bind_host = f"[{host}]" if ":" in host else host
    config.bind = [f"{bind_host}:{port}"]
    config.errorlog = logging.getLogger(logger)
    config.accesslog = None
    config.include_server_header = False
    config.graceful_timeout = graceful_timeout_s
    config.alpn_protocols = ["http/1.1"]
    return config


class RpcServer:
    """The node's JSON-RPC server. Start it with ``await nursery.start(server.run)``.

    ``port=0`` picks a free port; :attr:`port` and :attr:`url` tell which once started, and so
    does the file ``url_path`` (``<home>/data/rpc.url``) when given, for clients in other processes.
    Raises :class:`~node.rpc.errors.InvalidBindAddress` at construction for a non-loopback host
    without ``allow_remote``; with it, logs a warning.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        home: Path,
        host: str = DEFAULT_RPC_HOST,
        port: int = DEFAULT_RPC_PORT,
        allow_remote: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        graceful_timeout_s: float = 5.0,
        url_path: Path | None = None,
    ) -> None:
        check_bind_host(host, allow_remote=allow_remote)
        if not is_loopback(host):
            logger.warning(
                "RPC will listen on non-loopback %s: anyone who can reach it sees the cookie in clear HTTP",
                host,
            )
        self.dispatcher = dispatcher
        self.host = host
        self.requested_port = port
        self.cookie_path = cookie_path_for(home)
        self.url_path = url_path
        self.max_body_bytes = max_body_bytes
        self.graceful_timeout_s = graceful_timeout_s
        self._bound_port: int | None = None
        self._shutdown = trio.Event()

    @property
    def port(self) -> int:
        """The port listened on. Raises RuntimeError before the server has started."""
        if self._bound_port is None:
            raise RuntimeError("the RPC server is not listening")
        return self._bound_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the graceful timeout), return from run."""
        self._shutdown.set()

    def _hypercorn_config(self) -> hypercorn.config.Config:
        return hypercorn_config(self.host, self.requested_port, "dcent.rpc.http", self.graceful_timeout_s)

    async def run(self, *, task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled or shut down. ``task_status.started`` gets :attr:`url`.

        Raises :class:`~node.rpc.errors.RpcBindError` when the address cannot be bound, and
        :class:`~node.rpc.errors.CookieError` when the cookie or URL file cannot be written.
        """
        http_limits.apply()
        cookie = Cookie.generate()
        app = RpcHttpApp(self.dispatcher, cookie, max_body_bytes=self.max_body_bytes)
        serve = partial(
            hypercorn.trio.serve,
            cast(Framework, app),
            self._hypercorn_config(),
            shutdown_trigger=self._shutdown.wait,
            mode="asgi",
        )
        listening = started = False
        cookie_written = False
        url_written: str | None = None
        try:
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(serve)
                listening = True
                self._bound_port = _port_of(binds[0])
                write_cookie_file(self.cookie_path, cookie)
                cookie_written = True
                if self.url_path is not None:
                    url_written = self.url
                    write_url_file(self.url_path, url_written)
                logger.info("RPC listening on %s (cookie %s)", self.url, self.cookie_path)
                task_status.started(self.url)
                started = True
        except BaseExceptionGroup as group:
            # A failure to start arrives wrapped by hypercorn's nurseries and ours; unwrap the two
            # the caller can act on, so that ``nursery.start(server.run)`` raises them bare.
            failure = None if started else sole_exception(group)
            if isinstance(failure, OSError) and not listening:
                raise RpcBindError(
                    f"cannot listen on {self.host}:{self.requested_port}: {failure.strerror or failure}"
                ) from failure
            if isinstance(failure, CookieError):
                raise failure from None
            raise
        finally:
            # Synchronous on purpose: this runs while cancelled, and must not be skipped.
            if cookie_written:
                remove_cookie_file(self.cookie_path, cookie)
            if url_written is not None and self.url_path is not None:
                remove_url_file(self.url_path, url_written)
            self._bound_port = None


def write_url_file(path: Path, url: str) -> None:
    """Write the RPC URL to ``path`` atomically (readable by all: it is no secret).

    Raises :class:`~node.rpc.errors.CookieError`, the error of the RPC's start-up files.
    """
    temporary = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary.write_text(url + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CookieError(f"cannot write the RPC URL file {path}: {exc.strerror}") from exc


def remove_url_file(path: Path, url: str) -> None:
    """Remove ``path`` if it still names ``url``: never the URL another running node wrote."""
    try:
        if path.read_text(encoding="utf-8").strip() == url:
            path.unlink()
    except (OSError, UnicodeDecodeError):
        # Already gone, or replaced by something unreadable: either way not ours to remove.
        return


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in ``group`` (at any depth), or None when there are several."""
    leaves = leaf_exceptions(group)
    return leaves[0] if len(leaves) == 1 else None
