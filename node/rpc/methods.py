"""The method table: named async handlers, their declared params, docs and errors.

A method is ``namespace_method`` (``chain_head``, ``account_get``, ``job_submit``): a lowercase
namespace, then the method in snake_case or, where the RPC contract names it so, lowerCamelCase
(``chain_getBlock``, as Ethereum's ``eth_getBlockByNumber``).
Each service registers its own namespace on the node's one table::

    table = MethodTable()

    @table.method("account_get", params=[Param("address", AddressParam())], errors=[UnknownAccount])
    async def account_get(address: Address) -> dict[str, object]:
        "One account's balance and nonce."
        ...

The table checks at registration what can be checked before the first call: the name's form,
duplicates, that the handler is ``async def`` and that its keyword arguments are exactly the
declared params. :func:`render_reference` turns the table into the Markdown method reference.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from node.rpc.address import DEFAULT_MAX_BODY_BYTES, DEFAULT_RPC_PORT
from node.rpc.errors import STANDARD_ERRORS, MethodRegistrationError
from node.rpc.params import Param, check_param_names

Handler = Callable[..., Awaitable[object]]

#: ``namespace_method``: a lowercase namespace, then a snake_case or lowerCamelCase method name.
METHOD_NAME = re.compile(r"[a-z][a-z0-9]*_[a-z][a-z0-9]*(?:(?:_[a-z0-9]+)+|(?:[A-Z][a-z0-9]*)+)?")
MAX_METHOD_NAME_LEN = 64


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    params: tuple[Param, ...]
    doc: str
    #: The domain errors the handler may raise (classes with a stable ``code``), for the docs.
    errors: tuple[type[BaseException], ...]
    #: What the result is, in words, for the docs.
    returns: str

    @property
    def namespace(self) -> str:
        return self.name.split("_", 1)[0]

    def describe(self) -> dict[str, object]:
        """The JSON form ``rpc_methods`` lists."""
        return {
            "name": self.name,
            "doc": self.doc,
            "params": [
                {
                    "name": param.name,
                    "type": param.type.describe(),
                    "required": param.required,
                    **({} if param.required else {"default": param.default_value()}),
                    "doc": param.doc,
                }
                for param in self.params
            ],
            "returns": self.returns,
            "errors": [{"code": _error_code(error), "name": error.__name__} for error in self.errors],
        }


def _error_code(error: type[BaseException]) -> int:
    code = getattr(error, "code", None)
    if type(code) is not int:
        raise MethodRegistrationError(f"error class {error.__name__} has no integer code")
    return code


def _check_handler(name: str, handler: Handler, params: Sequence[Param]) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise MethodRegistrationError(f"{name}: the handler must be an async function")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError) as exc:
        raise MethodRegistrationError(f"{name}: the handler has no inspectable signature") from exc
    accepted: set[str] = set()
    for parameter in signature.parameters.values():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise MethodRegistrationError(
                f"{name}: handler parameter {parameter.name!r} must be passable by keyword"
            )
        accepted.add(parameter.name)
    declared = {param.name for param in params}
    if accepted != declared:
        raise MethodRegistrationError(
            f"{name}: handler arguments {sorted(accepted)} differ from declared params {sorted(declared)}"
        )


class MethodTable:
    """The node's RPC methods by name. Iterates in name order."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        params: Sequence[Param] = (),
        doc: str | None = None,
        *,
        errors: Iterable[type[BaseException]] = (),
        returns: str = "",
    ) -> Method:
        """Add a method. ``doc`` defaults to the handler's docstring.

        Raises :class:`MethodRegistrationError` for a malformed name, a duplicate, a bad schema, a
        handler that is not ``async def`` or whose arguments differ from ``params``, or an error
        class without an integer ``code``.
        """
        if len(name) > MAX_METHOD_NAME_LEN or not METHOD_NAME.fullmatch(name):
            raise MethodRegistrationError(
                f"method name {name!r} is not namespace_method in snake_case or lowerCamelCase"
            )
        if name in self._methods:
            raise MethodRegistrationError(f"method {name!r} is already registered")
        problem = check_param_names(params)
        if problem is not None:
            raise MethodRegistrationError(f"{name}: {problem}")
        _check_handler(name, handler, params)
        error_classes = tuple(errors)
        for error in error_classes:
            _error_code(error)
        method = Method(
            name=name,
            handler=handler,
            params=tuple(params),
            doc=inspect.cleandoc(doc) if doc is not None else (inspect.getdoc(handler) or ""),
            errors=error_classes,
            returns=returns,
        )
        self._methods[name] = method
        return method

    def method(
        self,
        name: str,
        params: Sequence[Param] = (),
        doc: str | None = None,
        *,
        errors: Iterable[type[BaseException]] = (),
        returns: str = "",
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`; returns the handler unchanged."""

        def decorate(handler: Handler) -> Handler:
            self.register(name, handler, params, doc, errors=errors, returns=returns)
            return handler

        return decorate

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self) -> Iterator[Method]:
        return iter(sorted(self._methods.values(), key=lambda method: method.name))

    def __len__(self) -> int:
        return len(self._methods)

    def describe(self) -> list[dict[str, object]]:
        return [method.describe() for method in self]


# --------------------------------------------------------------------------------------------
# The RPC layer's own methods
# --------------------------------------------------------------------------------------------


def package_version() -> str:
    try:
        return importlib.metadata.version("dcent")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def register_builtin_methods(
    table: MethodTable,
    *,
    version: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Register ``rpc_methods`` and ``node_health`` on ``table``."""
    node_version = version if version is not None else package_version()
    started = monotonic()

    async def rpc_methods() -> list[dict[str, object]]:
        """Every method this node serves, with its params, result and errors, in name order."""
        return table.describe()

    async def node_health() -> dict[str, object]:
        """Liveness: answers as soon as the RPC server is up. Needs no other service."""
        return {"status": "ok", "version": node_version, "uptime_s": int(monotonic() - started)}

    table.register("rpc_methods", rpc_methods, returns="array of method descriptions")
    table.register("node_health", node_health, returns='object: `status` ("ok"), `version`, `uptime_s`')


def builtin_table() -> MethodTable:
    """A table holding only the RPC layer's own methods."""
    table = MethodTable()
    register_builtin_methods(table)
    return table


# --------------------------------------------------------------------------------------------
# The Markdown reference
# --------------------------------------------------------------------------------------------

_PREAMBLE = """\
# JSON-RPC method reference

Generated from the node's method table by `python -m node.rpc.reference`; do not edit by hand.

The node serves JSON-RPC 2.0 over HTTP `POST /` on 127.0.0.1 (default port {port}), with
`Content-Type: application/json`. Every request must carry the cookie that the node writes to
`<home>/data/.cookie` at start (mode 0600, removed at exit; its content is `__cookie__:<hex>`):
either `Authorization: Basic base64("__cookie__:<hex>")` or `Authorization: Bearer <hex>`.
Anything else is answered with HTTP 401 and runs nothing. Bodies over {max_body} bytes get HTTP 413.
`dcent node run --rpc-addr HOST:PORT` (or `rpc.addr` in config.toml) moves it; port 0 picks a free
port, and the node writes the URL it really serves to `<home>/data/rpc.url` (removed at exit).

Params may be given by name (an object) or by position (an array, in the order listed). An
optional param may be omitted or `null`. Integers may also be sent as decimal strings. Byte
strings are hex, with or without `0x`; results carry them as lowercase hex without `0x`.
Amounts in results are decimal strings of base units (1 DCT = 10^9 base units), addresses are
bech32m `dct1...` strings, heights, nonces and counts are integers.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_reference(table: MethodTable) -> str:
    """The Markdown method reference of ``table``: standard errors, then each namespace."""
    preamble = _PREAMBLE.format(port=DEFAULT_RPC_PORT, max_body=DEFAULT_MAX_BODY_BYTES)
    lines = [preamble, "## Standard errors", "", "| code | message |", "|---|---|"]
    lines += [f"| {code} | {message} |" for code, message in STANDARD_ERRORS.items()]
    lines += [
        "",
        "A refused call answers with the domain error's own stable code (ledger 2000-2999, market "
        "4000-4999, node 5000-5999: RPC 5500-5599, mempool 5600-5649, ...) and its message; for a "
        "typed error, `data.error` names its class.",
    ]
    namespace = None
    for method in table:
        if method.namespace != namespace:
            namespace = method.namespace
            lines += ["", f"## `{namespace}`"]
        lines += ["", f"### `{method.name}`", ""]
        lines += [method.doc or "(undocumented)", ""]
        if method.params:
            lines += ["| # | param | type | required | default | description |", "|---|---|---|---|---|---|"]
            for index, param in enumerate(method.params):
                default = "" if param.required else f"`{param.default_json()}`"
                lines.append(
                    f"| {index} | `{param.name}` | {_cell(param.type.describe())} | "
                    f"{'yes' if param.required else 'no'} | {_cell(default)} | {_cell(param.doc)} |"
                )
        else:
            lines.append("No params.")
        if method.returns:
            lines += ["", f"**Returns:** {method.returns}"]
        if method.errors:
            lines += ["", "**Errors:**", ""]
            for error in method.errors:
                # Only the class's own docstring: an inherited one describes the base, not this error.
                summary = inspect.cleandoc(error.__dict__.get("__doc__") or "").split("\n", 1)[0]
                lines.append(
                    f"- `{_error_code(error)}` {error.__name__}" + (f": {summary}" if summary else "")
                )
    return "\n".join(lines) + "\n"
