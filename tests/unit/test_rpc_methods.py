"""The method table, the param types, the builtin methods and the Markdown reference."""

from __future__ import annotations

import pytest

from node.rpc import reference
from node.rpc.errors import INVALID_PARAMS, InvalidParams, MethodRegistrationError
from node.rpc.methods import MethodTable, register_builtin_methods, render_reference
from node.rpc.params import (
    AddressParam,
    Bool,
    HexBytes,
    Int,
    ListOf,
    Object,
    Param,
    Str,
    bind_params,
)
from protocol.crypto import Address, PrivateKey
from protocol.ledger.errors import BadNonce, InsufficientFunds

ALICE = PrivateKey.from_label("alice").address


def refusal(param_type: object, value: object) -> InvalidParams:
    assert hasattr(param_type, "convert")
    with pytest.raises(InvalidParams) as caught:
        param_type.convert(value, "amount")
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.message.startswith("param 'amount")
    return caught.value


# --- param types ----------------------------------------------------------------------------


def test_int_accepts_json_integers_and_decimal_strings() -> None:
    assert Int().convert(5, "amount") == 5
    assert Int().convert("18446744073709551615", "amount") == 2**64 - 1
    assert Int().convert("-3", "amount") == -3


@pytest.mark.parametrize("value", [True, 1.0, "1.5", "0x10", "", " 1", None, [1], "9" * 81])
def test_int_refuses_everything_else(value: object) -> None:
    refusal(Int(), value)


def test_int_bounds_are_checked_and_named() -> None:
    assert Int(min=0, max=10).convert(10, "amount") == 10
    error = refusal(Int(min=0, max=10), 11)
    assert "[0, 10]" in error.message
    refusal(Int(min=0), "-1")


def test_str_and_bool() -> None:
    assert Str().convert("hi", "amount") == "hi"
    refusal(Str(), 1)
    refusal(Str(max_len=3), "four")
    assert Bool().convert(False, "amount") is False
    refusal(Bool(), 0)
    refusal(Bool(), "true")


def test_hex_bytes() -> None:
    assert HexBytes().convert("0xABcd", "amount") == b"\xab\xcd"
    assert HexBytes().convert("abcd", "amount") == b"\xab\xcd"
    assert HexBytes().convert("", "amount") == b""
    assert HexBytes(length=2).convert("0x0001", "amount") == b"\x00\x01"
    refusal(HexBytes(), "abc")
    refusal(HexBytes(), "zz")
    refusal(HexBytes(), b"\x00")
    assert "expected 3 bytes" in refusal(HexBytes(length=3), "0001").message


def test_address() -> None:
    assert AddressParam().convert(str(ALICE), "amount") == ALICE
    text = str(ALICE)
    typo = text[:-1] + ("q" if text[-1] != "q" else "p")
    assert "checksum" in refusal(AddressParam(), typo).message
    refusal(AddressParam(), 5)


def test_list_names_the_bad_item() -> None:
    assert ListOf(Int()).convert([1, "2"], "amount") == [1, 2]
    error = refusal(ListOf(Int()), [1, "x"])
    assert "'amount[1]'" in error.message
    refusal(ListOf(Int(), max_len=2), [1, 2, 3])
    refusal(ListOf(Int()), {"a": 1})


def test_object_passes_through() -> None:
    assert Object().convert({"a": [1]}, "amount") == {"a": [1]}
    refusal(Object(), [])


def test_bind_params_named_positional_and_defaults() -> None:
    schema = [Param("to", AddressParam()), Param("amount", Int()), Param("memo", Str(), default="")]
    assert bind_params(schema, [str(ALICE), 5]) == {"to": ALICE, "amount": 5, "memo": ""}
    assert bind_params(schema, {"amount": "7", "to": str(ALICE), "memo": "x"}) == {
        "to": ALICE,
        "amount": 7,
        "memo": "x",
    }
    with pytest.raises(InvalidParams, match="'to' is required"):
        bind_params(schema, {"amount": 1})
    with pytest.raises(InvalidParams, match="'to' must not be null"):
        bind_params(schema, [None, 1])
    with pytest.raises(InvalidParams, match="unknown param 'amunt'"):
        bind_params(schema, {"to": str(ALICE), "amunt": 1})
    with pytest.raises(InvalidParams, match="at most 3"):
        bind_params(schema, [str(ALICE), 1, "", 4])


def test_mutable_defaults_are_fresh_per_call() -> None:
    schema = [Param("items", ListOf(Int()), default=[])]
    first = bind_params(schema, {})
    first["items"].append(1)  # type: ignore[attr-defined]
    assert bind_params(schema, {}) == {"items": []}


# --- the table ------------------------------------------------------------------------------


async def handler_amount(amount: int) -> int:
    return amount


async def handler_limit(limit: int) -> int:
    return limit


@pytest.mark.parametrize(
    "name",
    [
        "chainhead",
        "Chain_head",
        "chain.head",
        "chain_",
        "_head",
        "chain__head",
        "rpc.discover",
        "chain_Head",
        "chain_get_Block",
        "chain_getBlock_by_height",
        "x_" + "a" * 70,
    ],
)
def test_method_names_must_be_namespace_method(name: str) -> None:
    with pytest.raises(MethodRegistrationError):
        MethodTable().register(name, handler_amount, [Param("amount", Int())])


@pytest.mark.parametrize(
    "name",
    ["chain_head", "account_get_nonce", "job_submit", "v2_list", "chain_getBlock", "eth_getBlockByNumber"],
)
def test_good_method_names(name: str) -> None:
    table = MethodTable()
    table.register(name, handler_amount, [Param("amount", Int())])
    assert name in table


def test_duplicates_are_refused() -> None:
    table = MethodTable()
    table.register("chain_head", handler_amount, [Param("amount", Int())])
    with pytest.raises(MethodRegistrationError, match="already registered"):
        table.register("chain_head", handler_amount, [Param("amount", Int())])


def test_handler_must_be_async() -> None:
    def sync_handler(amount: int) -> int:
        return amount

    with pytest.raises(MethodRegistrationError, match="async"):
        MethodTable().register("chain_head", sync_handler, [Param("amount", Int())])  # type: ignore[arg-type]


def test_handler_arguments_must_match_the_schema() -> None:
    with pytest.raises(MethodRegistrationError, match="differ"):
        MethodTable().register("chain_head", handler_amount, [Param("value", Int())])
    with pytest.raises(MethodRegistrationError, match="differ"):
        MethodTable().register("chain_head", handler_amount, [])

    async def variadic(*amounts: int) -> None:
        return None

    with pytest.raises(MethodRegistrationError, match="keyword"):
        MethodTable().register("chain_head", variadic, [])


def test_schema_must_be_well_formed() -> None:
    async def two(a: int, b: int) -> None:
        return None

    with pytest.raises(MethodRegistrationError, match="twice"):
        MethodTable().register("chain_head", two, [Param("a", Int()), Param("a", Int())])
    with pytest.raises(MethodRegistrationError, match="snake_case"):
        MethodTable().register("chain_head", two, [Param("A", Int()), Param("b", Int())])


def test_error_classes_need_a_code() -> None:
    with pytest.raises(MethodRegistrationError, match="no integer code"):
        MethodTable().register("chain_head", handler_amount, [Param("amount", Int())], errors=[KeyError])


def test_decorator_registers_and_returns_the_handler() -> None:
    table = MethodTable()

    @table.method("chain_head", doc="The head.")
    async def head() -> int:
        return 1

    method = table.get("chain_head")
    assert method is not None and method.handler is head
    assert method.doc == "The head."
    assert method.namespace == "chain"


def test_doc_defaults_to_the_docstring_and_iteration_is_by_name() -> None:
    table = MethodTable()

    async def zeta() -> None:
        """Last one."""

    async def alpha() -> None:
        return None

    table.register("zz_last", zeta)
    table.register("aa_first", alpha)
    assert [method.name for method in table] == ["aa_first", "zz_last"]
    assert table.get("zz_last") is not None and table.get("zz_last").doc == "Last one."  # type: ignore[union-attr]
    assert len(table) == 2


# --- builtin methods ------------------------------------------------------------------------


async def test_rpc_methods_lists_the_table() -> None:
    table = MethodTable()
    register_builtin_methods(table, version="9.9")
    table.register(
        "account_send",
        handler_amount,
        [Param("amount", Int(min=1), doc="base units")],
        errors=[InsufficientFunds],
    )
    table.register("account_list", handler_limit, [Param("limit", Int(), default=10)])
    rpc_methods = table.get("rpc_methods")
    assert rpc_methods is not None
    listed = await rpc_methods.handler()
    names = [entry["name"] for entry in listed]  # type: ignore[attr-defined]
    assert names == ["account_list", "account_send", "node_health", "rpc_methods"]
    assert listed[0]["params"] == [  # type: ignore[index]
        {"name": "limit", "type": "int", "required": False, "default": 10, "doc": ""}
    ]
    assert listed[1]["params"] == [  # type: ignore[index]
        {"name": "amount", "type": "int in [1, ]", "required": True, "doc": "base units"}
    ]
    assert listed[1]["errors"] == [{"code": 2006, "name": "InsufficientFunds"}]  # type: ignore[index]


async def test_node_health_reports_uptime_from_its_clock() -> None:
    now = [100.0]
    table = MethodTable()
    register_builtin_methods(table, version="1.2.3", monotonic=lambda: now[0])
    now[0] = 142.9
    health = table.get("node_health")
    assert health is not None
    assert await health.handler() == {"status": "ok", "version": "1.2.3", "uptime_s": 42}


# --- the reference --------------------------------------------------------------------------


def test_reference_lists_methods_params_defaults_and_errors() -> None:
    table = MethodTable()
    register_builtin_methods(table)

    async def send(to: Address, amount: int, memo: str) -> None:
        """Send base units to an account.

        Waits for nothing.
        """

    table.register(
        "account_send",
        send,
        [
            Param("to", AddressParam(), doc="recipient"),
            Param("amount", Int(min=1)),
            Param("memo", Str(), doc="free | text", default=""),
        ],
        errors=[InsufficientFunds, BadNonce],
        returns="the transaction hash, hex",
    )
    text = render_reference(table)
    assert "## `account`" in text and "### `account_send`" in text
    assert "Send base units to an account." in text
    assert "| 0 | `to` | address | yes |  | recipient |" in text
    assert '| 2 | `memo` | str | no | `""` | free \\| text |' in text
    assert "- `2006` InsufficientFunds" in text and "- `2004` BadNonce" in text
    assert "**Returns:** the transaction hash, hex" in text
    assert "| -32601 | Method not found |" in text
    assert (
        text.index("### `account_send`") < text.index("### `node_health`") < text.index("### `rpc_methods`")
    )


def test_reference_entry_point_prints_a_table_with_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# JSON-RPC method reference")
    assert "### `node_health`" in out and "### `rpc_methods`" in out


@pytest.mark.parametrize(
    "spec", ["nonsense", "node.rpc.methods:nope", "node.rpc.methods:package_version", "no_such_mod:x"]
)
def test_reference_entry_point_refuses_a_bad_table(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--table", spec]) == 2
    assert capsys.readouterr().err.startswith("error:")
