"""Fuzzing the dispatcher: any bytes, any JSON value, any almost-valid request.

Whatever arrives, the dispatcher answers with a valid JSON-RPC 2.0 response (or a batch of
them), or with nothing; it never raises.
"""

from __future__ import annotations

import json

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.rpc.errors import RpcError
from node.rpc.methods import MethodTable, register_builtin_methods
from node.rpc.params import AddressParam, Bool, HexBytes, Int, ListOf, Param, Str
from node.rpc.protocol import Dispatcher
from protocol.ledger.errors import InsufficientFunds


def _table() -> MethodTable:
    table = MethodTable()
    register_builtin_methods(table, version="test")

    @table.method(
        "test_echo",
        [
            Param("number", Int(min=0, max=100), default=1),
            Param("text", Str(), default=""),
            Param("flag", Bool(), default=False),
            Param("blob", HexBytes(), default=b""),
            Param("items", ListOf(Int()), default=[]),
            Param("to", AddressParam(), default=None),
        ],
    )
    async def echo(number: int, text: str, flag: bool, blob: bytes, items: list[int], to: object) -> object:
        if number == 13:
            raise InsufficientFunds("unlucky")
        if number == 14:
            raise RpcError(5599, "refused", {"number": number})
        if number == 15:
            raise ValueError("a bug")
        return {"number": number, "text": text, "flag": flag, "blob": blob, "items": items, "to": str(to)}

    return table


DISPATCHER = Dispatcher(_table(), max_batch=50)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
method_names = st.sampled_from(
    ["test_echo", "node_health", "rpc_methods", "nope_nope", "", "rpc.x"]
) | st.text(max_size=10)
request_ids = (
    st.none()
    | st.integers()
    | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)


@st.composite
def near_requests(draw: st.DrawFn) -> dict[str, object]:
    """Requests that are valid, or wrong in one or a few members."""
    request: dict[str, object] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        request["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "1.0", 2]))
    if draw(st.integers(0, 9)) > 0:
        request["method"] = draw(method_names)
    if draw(st.booleans()):
        request["params"] = draw(
            st.dictionaries(
                st.sampled_from(["number", "text", "flag", "blob", "items", "to", "x"]),
                json_values,
                max_size=4,
            )
            | st.lists(json_values, max_size=7)
            | json_scalars
        )
    if draw(st.booleans()):
        request["id"] = draw(request_ids)
    return request


def assert_valid_response(response: object) -> None:
    assert isinstance(response, dict), response
    assert response["jsonrpc"] == "2.0"
    assert set(response) in ({"jsonrpc", "result", "id"}, {"jsonrpc", "error", "id"})
    request_id = response["id"]
    assert request_id is None or type(request_id) in (str, int, float)
    if "error" in response:
        error = response["error"]
        assert isinstance(error, dict)
        assert type(error["code"]) is int
        assert isinstance(error["message"], str)
        assert set(error) <= {"code", "message", "data"}


def check_answer(answer: bytes | None) -> None:
    if answer is None:
        return
    message = json.loads(answer)
    if isinstance(message, list):
        assert message, "a batch answer is never an empty array"
        for response in message:
            assert_valid_response(response)
    else:
        assert_valid_response(message)


def dispatch(body: bytes) -> bytes | None:
    return trio.run(DISPATCHER.dispatch, body)


# Dispatching is cheap, so at least 300 examples even under the quick "ci" profile; "soak" gives more.
fuzz_settings = settings(
    max_examples=max(300, settings().max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@fuzz_settings
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    check_answer(dispatch(body))


@fuzz_settings
@given(json_values)
def test_arbitrary_json_values_never_crash(value: object) -> None:
    check_answer(dispatch(json.dumps(value).encode()))


@fuzz_settings
@given(near_requests() | st.lists(near_requests() | json_values, max_size=8))
def test_near_valid_requests_never_crash(message: object) -> None:
    answer = dispatch(json.dumps(message).encode())
    check_answer(answer)
    if isinstance(message, dict) and "id" in message:
        # A single request with an id is always answered, and a valid id is echoed back as sent.
        assert answer is not None
        if message["id"] is None or type(message["id"]) in (str, int, float):
            assert json.loads(answer)["id"] == message["id"]


@fuzz_settings
@given(st.binary(max_size=64), st.integers(0, 64))
def test_mangled_valid_requests_never_crash(noise: bytes, position: int) -> None:
    valid = b'{"jsonrpc": "2.0", "method": "test_echo", "params": {"number": 3}, "id": 1}'
    check_answer(dispatch(valid[:position] + noise + valid[position:]))
