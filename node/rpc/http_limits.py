"""Bounds hypercorn does not keep, for the node's HTTP endpoints (JSON-RPC and metrics).

hypercorn serves each connection until the client is done with it. A review (review33) found
three ways a client holds the node's memory and file descriptors for as long as it likes, the
first two without the RPC cookie (the 401 is an answer too):

- **HTTP/2.** ALPN only offers HTTP/1.1 under TLS; over plain TCP hypercorn still switches to
  HTTP/2 on the prior-knowledge preface (``PRI * HTTP/2.0``) or an ``Upgrade: h2c``. A client
  advertising a zero flow-control window kept every 401 unsent, with no timer running: 500
  connections x 100 streams took the node from 117 to 655 MB, held, and SIGTERM took 27 s. The
  endpoints speak HTTP/1.1 only: the preface closes the connection, and an upgrade request is
  answered in HTTP/1.1 as if it had not asked.
- **Answers never read.** hypercorn writes each answer under a shield, with no timeout, and stops
  its keep-alive timer while a request is open: a client pipelining requests and never reading
  held each connection for good. A write now fails after ``SEND_TIMEOUT_S`` and the connection is
  closed.
- **Connections without end.** hypercorn has no connection cap; a process now serves at most
  ``MAX_CONNECTIONS`` at once (the RPC and metrics endpoints together: descriptors are the
  process's), and closes any beyond it as soon as they are accepted.

:func:`apply` installs the three, once per process; the servers call it before serving.
"""

from __future__ import annotations

import logging

import h11
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H2ProtocolAssumedError, H11Protocol
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger("dcent.http")

#: Connections one process serves at once, all its endpoints together.
MAX_CONNECTIONS = 256
#: The longest one write to a client may take before its connection is closed.
SEND_TIMEOUT_S = 30.0

#: hypercorn's own methods, kept before :func:`apply` replaces them.
_ORIGINAL_PROTOCOL_SEND = TCPServer.protocol_send
_ORIGINAL_RUN = TCPServer.run
_state = {"applied": False, "open": 0}


def open_connections() -> int:
    """Connections the patched servers hold now (for tests and metrics)."""
    return _state["open"]


async def _http1_only(self: ProtocolWrapper, event: Event) -> None:
    """hypercorn's switch to HTTP/2, less the switch: the connection is closed instead."""
    try:
        await self.protocol.handle(event)
    except H2ProtocolAssumedError:
        log.debug("HTTP/2 refused from %s: these endpoints speak HTTP/1.1", self.client)
        await self.send(Closed())


async def _no_upgrade(self: H11Protocol, event: h11.Request) -> None:
    """hypercorn's check, less the h2c upgrade, which is ignored (a server may, RFC 9110 7.8):
    the request is answered in HTTP/1.1. The prior-knowledge preface still ends the connection."""
    if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
        raise H2ProtocolAssumedError(b"")


async def _bounded_send(self: TCPServer, event: Event) -> None:
    if not isinstance(event, RawData):
        await _ORIGINAL_PROTOCOL_SEND(self, event)
        return
    async with self.send_lock:
        try:
            # Shielded as hypercorn has it (a cancelled request still sends its answer's end),
            # but bounded.
            with trio.CancelScope(shield=True), trio.fail_after(SEND_TIMEOUT_S):
                await self.stream.send_all(event.data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.protocol.handle(Closed())
        except trio.TooSlowError:
            log.debug("HTTP client read nothing for %s s; connection closed", SEND_TIMEOUT_S)
            await trio.aclose_forcefully(self.stream)
            await self.protocol.handle(Closed())


async def _capped_run(self: TCPServer) -> None:
    if _state["open"] >= MAX_CONNECTIONS:
        log.debug("HTTP connection refused: %d open, the most this process serves", MAX_CONNECTIONS)
        await trio.aclose_forcefully(self.stream)
        return
    _state["open"] += 1
    try:
        await _ORIGINAL_RUN(self)
    finally:
        _state["open"] -= 1


def apply() -> None:
    """Install the bounds (idempotent)."""
    if _state["applied"]:
        return
    H11Protocol._check_protocol = _no_upgrade  # type: ignore[method-assign]
    ProtocolWrapper.handle = _http1_only  # type: ignore[method-assign]
    TCPServer.protocol_send = _bounded_send  # type: ignore[method-assign]
    TCPServer.run = _capped_run  # type: ignore[method-assign]
    _state["applied"] = True
