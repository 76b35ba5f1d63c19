"""Bounds on what one HTTP client holds of the node (review33), against the real server on a real
socket: HTTP/2 refused, answers that are never read, bodies that never come, and a cap on
connections. Each test fails on hypercorn's own behaviour (the connection or task held for good).

Real clock, as in test_rpc_server: the bounds are shortened for the test, and every wait has a
deadline and waits on the server's state, never on a sleep.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from node.rpc import http_limits
from node.rpc import server as rpc_server
from node.rpc.cookie import read_cookie_file
from tests.integration.test_rpc_server import DEADLINE_S, make_server, record_body
from tests.waiting import wait_until

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture
async def served(
    tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[tuple[rpc_server.RpcServer, list[int]]]:
    calls: list[int] = []
    server = make_server(tmp_path, calls)
    with trio.fail_after(DEADLINE_S):
        await nursery.start(server.run)
    yield server, calls


async def connect(server: rpc_server.RpcServer, *, receive_buffer: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", server.port))
    return trio.SocketStream(sock)


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await stream.receive_some(65536):
            received += chunk
    except trio.BrokenResourceError:  # closed with our bytes unread: a reset, as good as a close
        pass
    return received


async def posting(server: rpc_server.RpcServer, body: bytes, *, sent: int) -> trio.SocketStream:
    """A connection carrying an authenticated POST of ``body``, of which ``sent`` bytes are sent."""
    token = read_cookie_file(server.cookie_path).bearer_header()
    head = (
        f"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: {token}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    stream = await connect(server)
    await stream.send_all(head + body[:sent])
    return stream


async def test_http2_by_prior_knowledge_is_closed_and_an_upgrade_answered_in_http1(
    served: tuple[rpc_server.RpcServer, list[int]],
) -> None:
    server, calls = served
    with trio.fail_after(DEADLINE_S):
        stream = await connect(server)
        await stream.send_all(H2_PREFACE)
        assert await read_all(stream) == b""  # no SETTINGS frame: not spoken at all
        stream = await connect(server)
        await stream.send_all(
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade, http2-settings, close\r\n"
            b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        answer = await read_all(stream)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]  # no 101: the upgrade is ignored
    assert calls == []


async def test_a_client_that_never_reads_its_answers_loses_the_connection(
    served: tuple[rpc_server.RpcServer, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined requests, no cookie, nothing read: the 401s fill the socket buffers, and the
    write that cannot go on is given up after SEND_TIMEOUT_S (here 1 s), freeing the connection."""
    server, _ = served
    monkeypatch.setattr(http_limits, "SEND_TIMEOUT_S", 1.0)
    with trio.fail_after(DEADLINE_S):
        stream = await connect(server, receive_buffer=4096)
        request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"

        async def pipeline() -> None:
            try:
                await stream.send_all(request * 20_000)
            except trio.BrokenResourceError:
                return  # the server gave up on us mid-way: what is being tested

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipeline)
            await wait_until(lambda: http_limits.open_connections() == 1, what="the connection is served")
            await wait_until(lambda: http_limits.open_connections() == 0, what="the stuck connection closed")
            nursery.cancel_scope.cancel()


async def test_a_body_that_never_comes_gets_408_and_runs_nothing(
    served: tuple[rpc_server.RpcServer, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, calls = served
    monkeypatch.setattr(rpc_server, "BODY_TIMEOUT_S", 0.5)
    body = record_body(7)
    with trio.fail_after(DEADLINE_S):
        answer = await read_all(await posting(server, body, sent=5))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert calls == []


async def test_connections_beyond_the_cap_are_closed_on_arrival(
    served: tuple[rpc_server.RpcServer, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, calls = served
    monkeypatch.setattr(http_limits, "MAX_CONNECTIONS", 3)
    body = record_body(3)
    with trio.fail_after(DEADLINE_S):
        # Each waits for a body it will not get within the test.
        held = [await posting(server, body, sent=0) for _ in range(3)]
        await wait_until(lambda: http_limits.open_connections() == 3, what="three connections held")
        extra = await posting(server, body, sent=len(body))
        assert await read_all(extra) == b""  # closed on arrival, nothing run
        assert calls == []
        await held[0].send_all(body)  # a held one finishes its request and is answered
        assert (await held[0].receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        assert calls == [3]
        for stream in held:
            await stream.aclose()
