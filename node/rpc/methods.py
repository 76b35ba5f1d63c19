"""The method table: named async handlers, their declared params, docs and errors.

A method is ``namespace_method`` (``chain_head``, ``account_get``, ``job_submit``): a lowercase
namespace, then the method in snake_case or, where the RPC contract names it so, lowerCamelCase
(``chain_getBlock``, as Ethereum's ``eth_getBlockByNumber``).

The schema stands apart from the handlers: a :class:`MethodSpec` says what a caller sees (name,
params, doc, errors, result) and holds no handler, so the reference is rendered from specs alone.
Each service module declares its namespace's specs as data and a handler class over the narrow
view it reads (:mod:`node.rpc.views`); a running node binds them on its one table::

    ACCOUNT_METHODS = (
        MethodSpec("account_get", "One account's balance and nonce.",
                   (Param("address", AddressParam()),), errors=(UnknownAccount,)),
    )
    table.bind(ACCOUNT_METHODS, AccountMethods(view))   # serves account_get with .account_get

The spec checks its name's form and schema when declared; the table checks at binding what can
be checked before the first call: duplicates, that each handler is ``async def`` and that its
keyword arguments are exactly the declared params. :func:`render_reference` turns a schema (or a
table's) into the Markdown method reference. Small tables (tests, the builtins) may still
``register`` a handler with its spec written in place.
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
class MethodSpec:
    """A method's schema, what a caller sees of it: name, params, doc, errors and result. It holds
    no handler, so the reference (``docs/rpc.md``) is rendered from the schema alone; a running
    node binds each spec to a handler (:meth:`MethodTable.bind`).

    Raises :class:`MethodRegistrationError` for a malformed name, params that are not a valid
    schema, or an error class without an integer ``code``.
    """

    name: str
    doc: str = ""
    params: tuple[Param, ...] = ()
    #: The domain errors the handler may raise (classes with a stable ``code``), for the docs.
    errors: tuple[type[BaseException], ...] = ()
    #: What the result is, in words, for the docs.
    returns: str = ""

    def __post_init__(self) -> None:
        if len(self.name) > MAX_METHOD_NAME_LEN or not METHOD_NAME.fullmatch(self.name):
            raise MethodRegistrationError(
                f"method name {self.name!r} is not namespace_method in snake_case or lowerCamelCase"
            )
        problem = check_param_names(self.params)
        if problem is not None:
            raise MethodRegistrationError(f"{self.name}: {problem}")
        for error in self.errors:
            _error_code(error)
        object.__setattr__(self, "doc", inspect.cleandoc(self.doc))

    @property
    def namespace(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def handler_name(self) -> str:
        """The handler's attribute name :meth:`MethodTable.bind` looks up: the method name in
        snake_case (``chain_getBlock``: ``chain_get_block``)."""
        return _CAMEL_HUMP.sub(r"_\1", self.name).lower()

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


_CAMEL_HUMP = re.compile(r"([A-Z])")


@dataclass(frozen=True, slots=True)
class Method:
    """A spec bound to the handler that serves it."""

    spec: MethodSpec
    handler: Handler

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def params(self) -> tuple[Param, ...]:
        return self.spec.params

    @property
    def doc(self) -> str:
        return self.spec.doc

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return self.spec.errors

    @property
    def returns(self) -> str:
        return self.spec.returns

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    def describe(self) -> dict[str, object]:
        return self.spec.describe()


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
        """Add a method, its spec written in place. ``doc`` defaults to the handler's docstring.

        Raises :class:`MethodRegistrationError` for a malformed name, a duplicate, a bad schema, a
        handler that is not ``async def`` or whose arguments differ from ``params``, or an error
        class without an integer ``code``.
        """
        spec = MethodSpec(
            name=name,
            doc=doc if doc is not None else (inspect.getdoc(handler) or ""),
            params=tuple(params),
            errors=tuple(errors),
            returns=returns,
        )
        return self.add(spec, handler)

    def add(self, spec: MethodSpec, handler: Handler) -> Method:
        """Serve ``spec`` with ``handler``. Raises :class:`MethodRegistrationError` for a
        duplicate, or a handler that is not ``async def`` or whose arguments differ from the
        spec's params."""
        if spec.name in self._methods:
            raise MethodRegistrationError(f"method {spec.name!r} is already registered")
        _check_handler(spec.name, handler, spec.params)
        method = Method(spec, handler)
        self._methods[spec.name] = method
        return method

    def bind(self, schema: Iterable[MethodSpec], handlers: object) -> None:
        """Serve every spec of ``schema`` with the method of ``handlers`` named
        :attr:`MethodSpec.handler_name`. Raises :class:`MethodRegistrationError` when one is
        missing, besides what :meth:`add` raises."""
        for spec in schema:
            handler = getattr(handlers, spec.handler_name, None)
            if not callable(handler):
                raise MethodRegistrationError(
                    f"{spec.name}: {type(handlers).__name__} has no handler {spec.handler_name}"
                )
            self.add(spec, handler)

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

    def schema(self) -> tuple[MethodSpec, ...]:
        """The specs this table serves, in name order."""
        return tuple(method.spec for method in self)


# --------------------------------------------------------------------------------------------
# The RPC layer's own methods
# --------------------------------------------------------------------------------------------


def package_version() -> str:
    try:
        return importlib.metadata.version("dcent")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


#: The RPC layer's own methods, which every table serves.
BUILTIN_METHODS = (
    MethodSpec(
        "rpc_methods",
        "Every method this node serves, with its params, result and errors, in name order.",
        returns="array of method descriptions",
    ),
    MethodSpec(
        "node_health",
        "Liveness: answers as soon as the RPC server is up. Needs no other service.",
        returns='object: `status` ("ok"), `version`, `uptime_s`',
    ),
)


class BuiltinMethods:
    """The handlers of :data:`BUILTIN_METHODS`, over the table they describe."""

    def __init__(self, table: MethodTable, version: str, monotonic: Callable[[], float]) -> None:
        self._table = table
        self._version = version
        self._monotonic = monotonic
        self._started = monotonic()

    async def rpc_methods(self) -> list[dict[str, object]]:
        return self._table.describe()

    async def node_health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "version": self._version,
            "uptime_s": int(self._monotonic() - self._started),
        }


def register_builtin_methods(
    table: MethodTable,
    *,
    version: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Register ``rpc_methods`` and ``node_health`` on ``table``."""
    node_version = version if version is not None else package_version()
    table.bind(BUILTIN_METHODS, BuiltinMethods(table, node_version, monotonic))


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

The node serves JSON-RPC 2.0 over HTTP/1.1 `POST /` on 127.0.0.1 (default port {port}), with
`Content-Type: application/json` (or `application/json-rpc`, `application/jsonrequest`); HTTP/2
is not spoken (the prior-knowledge preface closes the connection, an `Upgrade: h2c` is ignored).
Every request must carry the cookie that the node writes to
`<home>/data/.cookie` at start (mode 0600, removed at exit; its content is `__cookie__:<hex>`):
either `Authorization: Basic base64("__cookie__:<hex>")` or `Authorization: Bearer <hex>`.
Anything else is answered with HTTP 401 and runs nothing. Bodies over {max_body} bytes get HTTP 413,
and a body that has not arrived 30 s after its headers HTTP 408. A client that reads nothing of
an answer for 30 s loses its connection; a process serves at most 256 connections at once (the
metrics endpoint included) and closes any beyond them on arrival. A batch (at most 1,000 calls)
whose answers pass 16 MiB runs no further calls: each of those is answered with error 5507.
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


def render_reference(schema: MethodTable | Iterable[MethodSpec]) -> str:
    """The Markdown method reference of ``schema`` (a table's or a bare schema): standard errors,
    then each namespace, methods in name order."""
    specs = schema.schema() if isinstance(schema, MethodTable) else sorted(schema, key=lambda spec: spec.name)
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
    for method in specs:
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
