"""The RPC server for real: hypercorn on 127.0.0.1, an ephemeral port, HTTP from httpx.

No mock clock here (hypercorn's timeouts run on the real one); every test runs under a generous
deadline instead, and waits on events, never on sleeps.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from node.rpc.client import RpcClient
from node.rpc.cookie import Cookie, cookie_path_for, read_cookie_file
from node.rpc.errors import (
    CookieError,
    InvalidBindAddress,
    RpcBindError,
    RpcCallError,
    RpcTransportError,
    RpcUnauthorized,
)
from node.rpc.methods import MethodTable, register_builtin_methods
from node.rpc.params import Int, Param
from node.rpc.protocol import Dispatcher
from node.rpc.server import RpcServer
from protocol.ledger.errors import InsufficientFunds

DEADLINE_S = 60
JSON = {"content-type": "application/json"}


@dataclass
class Node:
    server: RpcServer
    url: str
    home: Path
    calls: list[int] = field(default_factory=list)

    @property
    def cookie(self) -> Cookie:
        return read_cookie_file(self.server.cookie_path)

    def bearer(self) -> dict[str, str]:
        return {**JSON, "authorization": self.cookie.bearer_header()}

    def basic(self) -> dict[str, str]:
        return {**JSON, "authorization": self.cookie.basic_header()}


def make_server(home: Path, calls: list[int], **kwargs: object) -> RpcServer:
    table = MethodTable()
    register_builtin_methods(table, version="test")

    @table.method("test_record", [Param("value", Int())])
    async def record(value: int) -> int:
        """Records that it ran: the side effect refused requests must not have."""
        calls.append(value)
        if value < 0:
            raise InsufficientFunds(f"cannot record {value}")
        return value * 2

    return RpcServer(Dispatcher(table), home=home, port=0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Node]:
    calls: list[int] = []
    server = make_server(tmp_path, calls)
    with trio.fail_after(DEADLINE_S):
        url = await nursery.start(server.run)
    yield Node(server, url, tmp_path, calls)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        yield client


def record_body(value: int = 1, request_id: int = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "test_record", "params": [value], "id": request_id}
    ).encode()


# --- authentication -------------------------------------------------------------------------


async def test_request_without_cookie_is_401_and_runs_nothing(node: Node, http: httpx.AsyncClient) -> None:
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=record_body(), headers=JSON)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="dcent"'
    assert node.calls == []


def wrong_authorizations(cookie: Cookie) -> list[str]:
    other = Cookie.generate()
    return [
        other.bearer_header(),
        other.basic_header(),
        "Basic " + base64.b64encode(f"admin:{cookie.secret_hex}".encode()).decode(),
        f"Bearer {cookie.file_text}",
        f"Bearer {cookie.secret_hex[:-1]}",
        f"Token {cookie.secret_hex}",
        cookie.secret_hex,
        "Basic",
    ]


async def test_wrong_cookie_is_401_and_runs_nothing(node: Node, http: httpx.AsyncClient) -> None:
    with trio.fail_after(DEADLINE_S):
        for authorization in wrong_authorizations(node.cookie):
            response = await http.post(
                node.url, content=record_body(), headers={**JSON, "authorization": authorization}
            )
            assert response.status_code == 401, authorization
    assert node.calls == []


async def test_basic_and_bearer_both_authenticate(node: Node, http: httpx.AsyncClient) -> None:
    with trio.fail_after(DEADLINE_S):
        by_basic = await http.post(node.url, content=record_body(3, 1), headers=node.basic())
        by_bearer = await http.post(node.url, content=record_body(4, 2), headers=node.bearer())
    assert by_basic.status_code == by_bearer.status_code == 200
    assert by_basic.headers["content-type"] == "application/json"
    assert by_basic.json() == {"jsonrpc": "2.0", "result": 6, "id": 1}
    assert by_bearer.json() == {"jsonrpc": "2.0", "result": 8, "id": 2}
    assert node.calls == [3, 4]


async def test_unauthenticated_requests_learn_nothing_about_paths(
    node: Node, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE_S):
        assert (await http.get(node.url + "nope")).status_code == 401
        assert (await http.get(node.url)).status_code == 401


# --- the JSON-RPC spec over HTTP ------------------------------------------------------------


async def test_batch_over_http(node: Node, http: httpx.AsyncClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "test_record", "params": [1], "id": "a"},
        {"jsonrpc": "2.0", "method": "test_record", "params": {"value": 2}},
        {"jsonrpc": "2.0", "method": "test_record", "params": [-1], "id": "b"},
        {"jsonrpc": "2.0", "method": "nope_nope", "id": "c"},
        {"jsonrpc": "2.0", "method": "node_health", "id": "d"},
    ]
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=json.dumps(batch).encode(), headers=node.bearer())
    assert response.status_code == 200
    answers = response.json()
    assert answers[0] == {"jsonrpc": "2.0", "result": 2, "id": "a"}
    assert answers[1]["error"]["code"] == 2006 and answers[1]["id"] == "b"
    assert answers[2]["error"]["code"] == -32601 and answers[2]["id"] == "c"
    assert answers[3]["result"]["status"] == "ok"
    assert len(answers) == 4
    assert node.calls == [1, 2, -1]


async def test_notifications_only_get_204_and_still_run(node: Node, http: httpx.AsyncClient) -> None:
    batch = [{"jsonrpc": "2.0", "method": "test_record", "params": [value]} for value in (5, 6)]
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=json.dumps(batch).encode(), headers=node.bearer())
    assert response.status_code == 204
    assert response.content == b""
    assert node.calls == [5, 6]


async def test_parse_error_over_http(node: Node, http: httpx.AsyncClient) -> None:
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=b'{"jsonrpc": "2.0", "method"', headers=node.bearer())
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32700
    assert response.json()["id"] is None


# --- HTTP-level refusals --------------------------------------------------------------------


async def test_oversize_body_is_413_and_runs_nothing(node: Node, http: httpx.AsyncClient) -> None:
    padding = " " * node.server.max_body_bytes
    body = record_body()[:-1] + padding.encode() + b"}"
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=body, headers=node.bearer())
    assert response.status_code == 413
    assert node.calls == []


async def test_oversize_chunked_body_is_413_and_runs_nothing(node: Node, http: httpx.AsyncClient) -> None:
    chunk = b" " * 65536
    chunks = node.server.max_body_bytes // len(chunk) + 2

    async def body() -> AsyncIterator[bytes]:
        yield record_body()[:-1]
        for _ in range(chunks):
            yield chunk
        yield b"}"

    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=body(), headers=node.bearer())
    assert response.status_code == 413
    assert node.calls == []


async def test_body_just_under_the_limit_is_served(node: Node, http: httpx.AsyncClient) -> None:
    body = record_body(7)
    body = body[:-1] + b" " * (node.server.max_body_bytes - len(body)) + b"}"
    assert len(body) == node.server.max_body_bytes
    with trio.fail_after(DEADLINE_S):
        response = await http.post(node.url, content=body, headers=node.bearer())
    assert response.status_code == 200
    assert node.calls == [7]


async def test_wrong_path_method_or_content_type_runs_nothing(node: Node, http: httpx.AsyncClient) -> None:
    authorization = {"authorization": node.cookie.bearer_header()}
    with trio.fail_after(DEADLINE_S):
        wrong_path = await http.post(node.url + "rpc", content=record_body(), headers=node.bearer())
        wrong_method = await http.get(node.url, headers=authorization)
        form = await http.post(
            node.url,
            content=record_body(),
            headers={**authorization, "content-type": "application/x-www-form-urlencoded"},
        )
        no_type = await http.post(node.url, content=record_body(), headers=authorization)
        with_charset = await http.post(
            node.url,
            content=record_body(9),
            headers={**authorization, "content-type": "application/json; charset=utf-8"},
        )
        json_rpc_type = await http.post(
            node.url,
            content=record_body(10),
            headers={**authorization, "content-type": "application/json-rpc"},
        )
    assert wrong_path.status_code == 404
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert form.status_code == 415 and no_type.status_code == 415
    assert with_charset.status_code == 200 and json_rpc_type.status_code == 200
    assert node.calls == [9, 10]


async def test_fuzzed_bodies_do_not_crash_the_server(node: Node, http: httpx.AsyncClient) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    logging.getLogger(__name__).info("fuzz seed %d", seed)
    rng = random.Random(seed)
    valid = record_body(1)
    bodies = [
        b"",
        b"null",
        b"[]",
        b"[[]]",
        b"[" * 50_000 + b"]" * 50_000,
        b'{"jsonrpc": "2.0", "method": "test_record", "params": [NaN], "id": 1}',
        b'{"id": ' + b"9" * 5000 + b"}",
        b"\xef\xbb\xbf" + valid,
        b"\xff" * 100,
        valid.replace(b"test_record", b"test_record\x00"),
    ]
    for _ in range(150):
        kind = rng.randrange(3)
        if kind == 0:
            bodies.append(rng.randbytes(rng.randrange(1, 300)))
        elif kind == 1:
            position = rng.randrange(len(valid))
            bodies.append(valid[:position] + rng.randbytes(rng.randrange(1, 8)) + valid[position:])
        else:
            position = rng.randrange(len(valid))
            bodies.append(valid[:position] + valid[position + 1 :])
    with trio.fail_after(DEADLINE_S):
        for body in bodies:
            response = await http.post(node.url, content=body, headers=node.bearer())
            assert response.status_code in (200, 204), (seed, body)
            if response.status_code == 200:
                answer = response.json()
                for item in answer if isinstance(answer, list) else [answer]:
                    assert item["jsonrpc"] == "2.0" and ("result" in item) != ("error" in item), (seed, body)
        after = await http.post(node.url, content=record_body(21, 99), headers=node.bearer())
    assert after.json() == {"jsonrpc": "2.0", "result": 42, "id": 99}


# --- lifecycle ------------------------------------------------------------------------------


async def test_cookie_is_private_while_running_and_removed_after_shutdown(tmp_path: Path) -> None:
    server = make_server(tmp_path, [])
    path = cookie_path_for(tmp_path)
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(server.run)
            assert server.cookie_path == path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            text = path.read_text()
            assert text.startswith("__cookie__:") and len(text) == len("__cookie__:") + 64
            port = server.port
            assert url == f"http://127.0.0.1:{port}/"
            server.shutdown()
    assert not path.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S):
        pass


async def test_cookie_is_removed_after_cancellation(tmp_path: Path) -> None:
    server = make_server(tmp_path, [])
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            assert cookie_path_for(tmp_path).exists()
            nursery.cancel_scope.cancel()
    assert not cookie_path_for(tmp_path).exists()
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_graceful_shutdown_lets_an_in_flight_call_finish(tmp_path: Path) -> None:
    entered = trio.Event()
    release = trio.Event()
    table = MethodTable()

    @table.method("test_slow")
    async def slow() -> str:
        entered.set()
        await release.wait()
        return "done"

    server = RpcServer(Dispatcher(table), home=tmp_path, port=0)
    answers: list[object] = []
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(server.run)

            async def caller() -> None:
                async with RpcClient.for_home(tmp_path, url) as client:
                    answers.append(await client.call("test_slow"))

            nursery.start_soon(caller)
            await entered.wait()
            server.shutdown()
            release.set()
    assert answers == ["done"]


async def test_port_in_use_is_a_bind_error(node: Node, tmp_path: Path) -> None:
    second = RpcServer(node.server.dispatcher, home=tmp_path / "second", port=node.server.port)
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            # nursery.start raises the failure to start bare, not wrapped in a group.
            with pytest.raises(RpcBindError) as caught:
                await nursery.start(second.run)
    assert caught.value.code == 5506
    assert not cookie_path_for(tmp_path / "second").exists()


async def test_unwritable_cookie_stops_the_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the home directory should be")
    server = make_server(home, [])
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            with pytest.raises(CookieError, match="cannot write"):
                await nursery.start(server.run)
    with pytest.raises(RuntimeError):
        _ = server.port


def test_non_loopback_needs_allow_remote_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(InvalidBindAddress):
        make_server(tmp_path, [], host="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="dcent.rpc"):
        make_server(tmp_path, [], host="0.0.0.0", allow_remote=True)
    assert any("non-loopback" in record.getMessage() for record in caplog.records)


# --- the client -----------------------------------------------------------------------------


async def test_client_calls_with_positional_and_named_params(node: Node) -> None:
    with trio.fail_after(DEADLINE_S):
        async with RpcClient.for_home(node.home, node.url) as client:
            assert await client.call("test_record", 1) == 2
            assert await client.call("test_record", value=2) == 4
            assert (await client.call("node_health"))["status"] == "ok"
        assert await RpcClient(node.url, token=node.cookie.secret_hex).call("test_record", 3) == 6
    assert node.calls == [1, 2, 3]


async def test_client_raises_the_servers_error(node: Node) -> None:
    with trio.fail_after(DEADLINE_S):
        async with RpcClient.for_home(node.home, node.url) as client:
            with pytest.raises(RpcCallError) as unknown:
                await client.call("nope_nope")
            with pytest.raises(RpcCallError) as refused:
                await client.call("test_record", -5)
            with pytest.raises(RpcCallError) as bad_params:
                await client.call("test_record", value="x")
    assert unknown.value.code == -32601
    assert (refused.value.code, refused.value.message, refused.value.data) == (
        2006,
        "cannot record -5",
        {"error": "InsufficientFunds"},
    )
    assert bad_params.value.code == -32602 and "'value'" in bad_params.value.message


async def test_client_batch_and_notify(node: Node) -> None:
    with trio.fail_after(DEADLINE_S):
        async with RpcClient.for_home(node.home, node.url) as client:
            results = await client.batch(
                [("test_record", [1]), ("test_record", {"value": -1}), ("nope_x", [])]
            )
            await client.notify("test_record", 10)
    assert results[0] == 2
    assert isinstance(results[1], RpcCallError) and results[1].code == 2006
    assert isinstance(results[2], RpcCallError) and results[2].code == -32601
    assert node.calls == [1, -1, 10]


async def test_client_with_a_wrong_token_is_unauthorized(node: Node) -> None:
    with trio.fail_after(DEADLINE_S), pytest.raises(RpcUnauthorized) as caught:
        await RpcClient(node.url, token=Cookie.generate().secret_hex).call("test_record", 1)
    assert caught.value.code == 5505
    assert node.calls == []


async def test_client_without_a_cookie_file_says_so(node: Node, tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE_S), pytest.raises(CookieError, match="is the node running"):
        await RpcClient.for_home(tmp_path / "elsewhere", node.url).call("node_health")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_blocking_client_reports_an_unreachable_node() -> None:
    client = RpcClient(f"http://127.0.0.1:{free_port()}/", token="00" * 32, timeout_s=DEADLINE_S)
    with pytest.raises(RpcTransportError) as caught:
        client.call_blocking("node_health")
    assert caught.value.code == 5504
