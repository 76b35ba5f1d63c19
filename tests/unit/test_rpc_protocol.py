"""JSON-RPC 2.0 conformance of the pure dispatcher.

The first group replays the "Examples" section of https://www.jsonrpc.org/specification; method
names there (``subtract``, ``sum``, ...) are given our ``namespace_method`` form.
"""

from __future__ import annotations

import json
import logging

import pytest
import trio

from node.rpc import protocol as rpc_protocol
from node.rpc.errors import RpcError
from node.rpc.methods import MethodTable
from node.rpc.params import Int, Param
from node.rpc.protocol import Dispatcher
from protocol.crypto import PrivateKey
from protocol.ledger.errors import InsufficientFunds


class Recorder:
    """A method table whose methods record their calls, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.table = MethodTable()
        table = self.table

        @table.method("math_subtract", [Param("minuend", Int()), Param("subtrahend", Int())])
        async def subtract(minuend: int, subtrahend: int) -> int:
            self.calls.append(("math_subtract", (minuend, subtrahend)))
            return minuend - subtrahend

        @table.method("math_sum", [Param(name, Int(), default=0) for name in ("a", "b", "c")])
        async def total(a: int, b: int, c: int) -> int:
            self.calls.append(("math_sum", (a, b, c)))
            return a + b + c

        @table.method("notify_hello", [Param("value", Int())])
        async def hello(value: int) -> None:
            self.calls.append(("notify_hello", value))

        @table.method("notify_update", [Param(name, Int()) for name in ("a", "b", "c", "d", "e")])
        async def update(a: int, b: int, c: int, d: int, e: int) -> None:
            self.calls.append(("notify_update", (a, b, c, d, e)))

        @table.method("test_get_data")
        async def get_data() -> list[object]:
            self.calls.append(("test_get_data", None))
            return ["hello", 5]

    def dispatcher(self, **kwargs: object) -> Dispatcher:
        return Dispatcher(self.table, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def call(dispatcher: Dispatcher, body: str | bytes) -> object:
    """Dispatch ``body``; the parsed response, or None when there is no response."""
    raw = body.encode() if isinstance(body, str) else body
    answer = await dispatcher.dispatch(raw)
    return None if answer is None else json.loads(answer)


def error(code: int, request_id: object) -> tuple[int, object]:
    return (code, request_id)


def errors_of(response: object) -> tuple[int, object]:
    assert isinstance(response, dict)
    assert response["jsonrpc"] == "2.0"
    assert "result" not in response
    return (response["error"]["code"], response["id"])


# --- the specification's examples ------------------------------------------------------------


async def test_positional_params(recorder: Recorder) -> None:
    d = recorder.dispatcher()
    assert await call(d, '{"jsonrpc": "2.0", "method": "math_subtract", "params": [42, 23], "id": 1}') == {
        "jsonrpc": "2.0",
        "result": 19,
        "id": 1,
    }
    assert await call(d, '{"jsonrpc": "2.0", "method": "math_subtract", "params": [23, 42], "id": 2}') == {
        "jsonrpc": "2.0",
        "result": -19,
        "id": 2,
    }


async def test_named_params(recorder: Recorder) -> None:
    d = recorder.dispatcher()
    body = (
        '{"jsonrpc": "2.0", "method": "math_subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    )
    assert await call(d, body) == {"jsonrpc": "2.0", "result": 19, "id": 3}
    body = (
        '{"jsonrpc": "2.0", "method": "math_subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}'
    )
    assert await call(d, body) == {"jsonrpc": "2.0", "result": 19, "id": 4}


async def test_notification_is_executed_and_not_answered(recorder: Recorder) -> None:
    d = recorder.dispatcher()
    assert await call(d, '{"jsonrpc": "2.0", "method": "notify_update", "params": [1,2,3,4,5]}') is None
    assert await call(d, '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}') is None
    assert recorder.calls == [("notify_update", (1, 2, 3, 4, 5)), ("notify_hello", 7)]


async def test_notification_of_unknown_method_is_not_answered(recorder: Recorder) -> None:
    assert await call(recorder.dispatcher(), '{"jsonrpc": "2.0", "method": "foo_bar"}') is None


async def test_non_existent_method(recorder: Recorder) -> None:
    response = await call(recorder.dispatcher(), '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert errors_of(response) == error(-32601, "1")


async def test_invalid_json(recorder: Recorder) -> None:
    body = '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'
    assert errors_of(await call(recorder.dispatcher(), body)) == error(-32700, None)


async def test_invalid_request_object(recorder: Recorder) -> None:
    body = '{"jsonrpc": "2.0", "method": 1, "params": "bar"}'
    assert errors_of(await call(recorder.dispatcher(), body)) == error(-32600, None)
    assert recorder.calls == []


async def test_batch_with_invalid_json(recorder: Recorder) -> None:
    body = (
        '[{"jsonrpc": "2.0", "method": "math_sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]'
    )
    assert errors_of(await call(recorder.dispatcher(), body)) == error(-32700, None)
    assert recorder.calls == []


async def test_empty_batch_is_one_invalid_request_error(recorder: Recorder) -> None:
    response = await call(recorder.dispatcher(), "[]")
    assert isinstance(response, dict)
    assert errors_of(response) == error(-32600, None)


async def test_batch_of_one_invalid_entry(recorder: Recorder) -> None:
    response = await call(recorder.dispatcher(), "[1]")
    assert isinstance(response, list)
    assert [errors_of(item) for item in response] == [error(-32600, None)]


async def test_batch_of_invalid_entries(recorder: Recorder) -> None:
    response = await call(recorder.dispatcher(), "[1,2,3]")
    assert isinstance(response, list)
    assert [errors_of(item) for item in response] == [error(-32600, None)] * 3


async def test_mixed_batch(recorder: Recorder) -> None:
    body = """[
        {"jsonrpc": "2.0", "method": "math_sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "math_subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "test_get_data", "id": "9"}
    ]"""
    response = await call(recorder.dispatcher(), body)
    assert isinstance(response, list)
    assert response[0] == {"jsonrpc": "2.0", "result": 7, "id": "1"}
    assert response[1] == {"jsonrpc": "2.0", "result": 19, "id": "2"}
    assert errors_of(response[2]) == error(-32600, None)
    assert errors_of(response[3]) == error(-32601, "5")
    assert response[4] == {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    assert len(response) == 5
    # Executed one at a time, in the order sent, the notification included.
    assert [name for name, _ in recorder.calls] == [
        "math_sum",
        "notify_hello",
        "math_subtract",
        "test_get_data",
    ]


async def test_batch_of_notifications_has_no_response(recorder: Recorder) -> None:
    body = """[
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [1]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [2]}
    ]"""
    assert await call(recorder.dispatcher(), body) is None
    assert recorder.calls == [("notify_hello", 1), ("notify_hello", 2)]


# --- request validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "1.0", "method": "math_sum", "id": 1}',
        '{"jsonrpc": 2.0, "method": "math_sum", "id": 1}',
        '{"method": "math_sum", "id": 1}',
        '{"jsonrpc": "2.0", "id": 1}',
        '{"jsonrpc": "2.0", "method": null, "id": 1}',
        '{"jsonrpc": "2.0", "method": "math_sum", "params": 3, "id": 1}',
        '{"jsonrpc": "2.0", "method": "math_sum", "params": null, "id": 1}',
        '"a string"',
        "null",
    ],
)
async def test_invalid_request_runs_nothing(recorder: Recorder, body: str) -> None:
    response = await call(recorder.dispatcher(), body)
    code, _ = errors_of(response)
    assert code == -32600
    assert recorder.calls == []


@pytest.mark.parametrize("bad_id", ["{}", "[1]", "true", "false"])
async def test_invalid_id_is_answered_with_null_id(recorder: Recorder, bad_id: str) -> None:
    response = await call(
        recorder.dispatcher(), f'{{"jsonrpc": "2.0", "method": "math_sum", "id": {bad_id}}}'
    )
    assert errors_of(response) == error(-32600, None)
    assert recorder.calls == []


async def test_invalid_request_with_valid_id_echoes_the_id(recorder: Recorder) -> None:
    response = await call(recorder.dispatcher(), '{"jsonrpc": "1.0", "method": "math_sum", "id": 77}')
    assert errors_of(response) == error(-32600, 77)


@pytest.mark.parametrize("request_id", ['"abc"', "0", "-5", "1.5", "18446744073709551616"])
async def test_ids_are_echoed_unchanged(recorder: Recorder, request_id: str) -> None:
    response = await call(
        recorder.dispatcher(), f'{{"jsonrpc": "2.0", "method": "math_sum", "id": {request_id}}}'
    )
    assert response == {"jsonrpc": "2.0", "result": 0, "id": json.loads(request_id)}


async def test_null_id_is_a_request_not_a_notification(recorder: Recorder) -> None:
    response = await call(
        recorder.dispatcher(), '{"jsonrpc": "2.0", "method": "math_sum", "params": [1], "id": null}'
    )
    assert response == {"jsonrpc": "2.0", "result": 1, "id": None}


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "method": "math_sum", "params": [NaN], "id": 1}',
        b'{"jsonrpc": "2.0", "method": "math_sum", "params": [Infinity], "id": 1}',
        b'{"jsonrpc": "2.0", "method": "math_sum", "params": [1e999], "id": 1}',
        b"\xff\xfe\x00garbage",
        b'{"jsonrpc": "2.0", "method": "\xc3\x28", "id": 1}',
        b"",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": ' + b"9" * 5000 + b"}",
    ],
)
async def test_malformed_json_is_a_parse_error(recorder: Recorder, body: bytes) -> None:
    assert errors_of(await call(recorder.dispatcher(), body)) == error(-32700, None)
    assert recorder.calls == []


async def test_batch_over_the_limit_is_refused_whole(recorder: Recorder) -> None:
    entry = '{"jsonrpc": "2.0", "method": "notify_hello", "params": [1]}'
    response = await call(recorder.dispatcher(max_batch=3), "[" + ",".join([entry] * 4) + "]")
    assert errors_of(response) == error(-32600, None)
    assert recorder.calls == []


# --- params ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ('{"minuend": 1}', "subtrahend"),
        ('{"minuend": 1, "subtrahend": "x"}', "subtrahend"),
        ('{"minuend": 1, "subtrahend": 2, "extra": 3}', "extra"),
        ("[1]", "subtrahend"),
        ("[1, null]", "subtrahend"),
        ("[true, 1]", "minuend"),
        ("[1.5, 1]", "minuend"),
    ],
)
async def test_bad_params_are_invalid_params_naming_the_param(
    recorder: Recorder, params: str, named: str
) -> None:
    body = f'{{"jsonrpc": "2.0", "method": "math_subtract", "params": {params}, "id": 1}}'
    response = await call(recorder.dispatcher(), body)
    assert errors_of(response) == error(-32602, 1)
    assert isinstance(response, dict)
    assert repr(named) in response["error"]["message"]
    assert recorder.calls == []


async def test_too_many_positional_params(recorder: Recorder) -> None:
    body = '{"jsonrpc": "2.0", "method": "math_subtract", "params": [1, 2, 3], "id": 1}'
    response = await call(recorder.dispatcher(), body)
    assert errors_of(response) == error(-32602, 1)
    assert recorder.calls == []


async def test_optional_params_take_their_defaults(recorder: Recorder) -> None:
    d = recorder.dispatcher()
    body = '{"jsonrpc": "2.0", "method": "math_sum", "params": {"b": 5, "c": null}, "id": 1}'
    assert await call(d, body) == {"jsonrpc": "2.0", "result": 5, "id": 1}
    assert recorder.calls == [("math_sum", (0, 5, 0))]


# --- domain errors, internal errors and results ---------------------------------------------


class NodeFailure(Exception):
    """Stands in for a node-level error root handed to the dispatcher."""

    code = 5001

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def failing_table(exc: BaseException, effects: list[str]) -> MethodTable:
    table = MethodTable()

    @table.method("test_fail")
    async def fail() -> None:
        effects.append("ran")
        raise exc

    return table


async def test_protocol_error_answers_with_its_code_and_message() -> None:
    d = Dispatcher(failing_table(InsufficientFunds("balance 5 < 7"), []))
    response = await call(d, '{"jsonrpc": "2.0", "method": "test_fail", "id": 1}')
    assert response == {
        "jsonrpc": "2.0",
        "error": {"code": 2006, "message": "balance 5 < 7", "data": {"error": "InsufficientFunds"}},
        "id": 1,
    }


async def test_rpc_error_answers_with_its_code_message_and_data() -> None:
    d = Dispatcher(failing_table(RpcError(5599, "not yet", {"retry_after_s": 3}), []))
    response = await call(d, '{"jsonrpc": "2.0", "method": "test_fail", "id": "x"}')
    assert response == {
        "jsonrpc": "2.0",
        "error": {"code": 5599, "message": "not yet", "data": {"retry_after_s": 3}},
        "id": "x",
    }


async def test_declared_domain_error_root_answers_with_its_code() -> None:
    d = Dispatcher(failing_table(NodeFailure("store is closed"), []), domain_errors=[NodeFailure])
    response = await call(d, '{"jsonrpc": "2.0", "method": "test_fail", "id": 1}')
    assert errors_of(response) == error(5001, 1)
    assert isinstance(response, dict)
    assert response["error"]["message"] == "store is closed"


async def test_undeclared_error_is_internal_and_leaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    effects: list[str] = []
    d = Dispatcher(failing_table(RuntimeError("secret path /home/x"), effects))
    with caplog.at_level(logging.ERROR, logger="dcent.rpc"):
        answer = await d.dispatch(b'{"jsonrpc": "2.0", "method": "test_fail", "id": 1}')
    assert answer is not None
    assert json.loads(answer) == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": 1,
    }
    assert b"secret" not in answer and b"Traceback" not in answer
    # The traceback goes to the log instead.
    assert any(record.exc_info and "test_fail" in record.getMessage() for record in caplog.records)
    assert effects == ["ran"]


async def test_failing_notification_is_executed_and_silent() -> None:
    effects: list[str] = []
    d = Dispatcher(failing_table(InsufficientFunds("no"), effects))
    assert await call(d, '{"jsonrpc": "2.0", "method": "test_fail"}') is None
    assert effects == ["ran"]


async def test_result_without_json_form_is_internal_error() -> None:
    table = MethodTable()

    @table.method("test_weird")
    async def weird() -> object:
        return {"value": object()}

    response = await call(Dispatcher(table), '{"jsonrpc": "2.0", "method": "test_weird", "id": 1}')
    assert errors_of(response) == error(-32603, 1)


async def test_bytes_and_addresses_in_results_are_text() -> None:
    address = PrivateKey.from_label("alice").address
    table = MethodTable()

    @table.method("test_mixed")
    async def mixed() -> object:
        return {"hash": b"\x00\xab", "owner": address, "pair": (1, 2)}

    response = await call(Dispatcher(table), '{"jsonrpc": "2.0", "method": "test_mixed", "id": 1}')
    assert response == {
        "jsonrpc": "2.0",
        "result": {"hash": "00ab", "owner": str(address), "pair": [1, 2]},
        "id": 1,
    }


# --- bounds on a batch (review33) ----------------------------------------------------------------


async def test_a_batch_whose_answer_grows_too_large_runs_no_further_calls(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """56 KB of cheap calls made a 28.8 MB answer; past the bound the rest are refused, 5507."""
    monkeypatch.setattr(rpc_protocol, "MAX_BATCH_ANSWER_CHARS", 120)
    batch = [{"jsonrpc": "2.0", "method": "test_get_data", "id": n} for n in range(5)]
    batch.append({"jsonrpc": "2.0", "method": "notify_hello", "params": [1]})  # a notification
    answers = await call(recorder.dispatcher(), json.dumps(batch))
    assert isinstance(answers, list)
    ran = [answer["id"] for answer in answers if "result" in answer]
    refused = [errors_of(answer) for answer in answers if "error" in answer]
    assert ran == [0, 1, 2] and refused == [(5507, 3), (5507, 4)]
    assert len(recorder.calls) == 3  # nothing past the bound ran, the notification included


async def test_a_long_batch_lets_other_tasks_run_between_its_calls(recorder: Recorder) -> None:
    """Most handlers never await: a 1,000-call batch held the event loop (consensus with it)."""
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    batch = [{"jsonrpc": "2.0", "method": "math_sum", "params": [n], "id": n} for n in range(200)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        before = turns
        answers = await call(recorder.dispatcher(), json.dumps(batch))
        during = turns - before
        nursery.cancel_scope.cancel()
    assert isinstance(answers, list) and len(answers) == 200
    assert during >= 100  # about one turn per call; without the checkpoints, none
