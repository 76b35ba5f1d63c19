"""Running one wallet command: pick the node, open one connection, map errors to exit codes.

Every failure a user can cause or meet (a refused call, a node that is down, a wrong password, a
bad amount) ends as the one line ``error <code>: <message>`` on stderr and exit status 1; only a
bug leaves a traceback.

:data:`BACKEND` is the seam the CLI layer's unit tests use to put a fake node (and a
``MockClock``) behind the real commands; nothing else replaces it.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from rich.console import Console

from node.errors import NodeError
from node.rpc.errors import RpcError, RpcTransportError, RpcUnauthorized
from node.wallet.cliargs import account_address
from node.wallet.connect import NodeRpc, NodeTarget, open_client, resolve_target
from node.wallet.console import Output, table
from node.wallet.errors import NodeNotRunning
from node.wallet.values import answer_list
from protocol.errors import ProtocolError

EXIT_OK = 0
EXIT_FAILED = 1

NodeBody = Callable[[NodeRpc], Awaitable[int]]
#: A command's work against the node for one account's address.
AccountBody = Callable[[NodeRpc, str], Awaitable[int]]


@dataclass
class Backend:
    """How commands reach a node: a client factory, and the trio clock they run on."""

    open_client: Callable[[NodeTarget], AbstractAsyncContextManager[NodeRpc]]
    clock: trio.abc.Clock | None = None


BACKEND = Backend(open_client=open_client)


def output_of(args: argparse.Namespace) -> Output:
    return Output(getattr(args, "output", "text") or "text")


def report(out: Output, error: NodeError | ProtocolError | RpcError) -> int:
    out.error(error.code, error.message)
    return EXIT_FAILED


def guarded(out: Output, action: Callable[[], int]) -> int:
    """Run ``action``; a typed error becomes ``error <code>: <message>`` and exit status 1."""
    try:
        return action()
    except (NodeError, ProtocolError, RpcError) as exc:
        return report(out, exc)


async def _with_node(target: NodeTarget, body: NodeBody) -> int:
    try:
        async with BACKEND.open_client(target) as rpc:
            return await body(rpc)
    except RpcUnauthorized:
        raise
    except RpcTransportError as exc:
        if isinstance(exc.__cause__, httpx.ConnectError):
            raise NodeNotRunning(
                f"no node answers at {target.url} (connection refused): is it running?"
            ) from exc
        raise NodeNotRunning(exc.message) from exc


def run_node_command(args: argparse.Namespace, out: Output, body: NodeBody) -> int:
    """Resolve the node from ``--home`` / ``--rpc`` / the environment and run ``body`` against it."""

    def action() -> int:
        target = resolve_target(home=args.home, rpc=args.rpc, rpc_cookie=args.rpc_cookie)
        code: int = trio.run(_with_node, target, body, clock=BACKEND.clock)
        return code

    return guarded(out, action)


def run_account_command(args: argparse.Namespace, out: Output, body: AccountBody) -> int:
    """``[WALLET|ADDR]`` commands: resolve ``args.account`` here (an address as typed, else a
    wallet's, by default the keystore's only one), then run ``body`` with it against the node."""

    def action() -> int:
        address = account_address(args, args.account)

        async def with_address(rpc: NodeRpc) -> int:
            return await body(rpc, address)

        return run_node_command(args, out, with_address)

    return guarded(out, action)


def run_account_table(
    args: argparse.Namespace,
    method: str,
    columns: Sequence[str],
    row: Callable[[dict[str, Any]], Sequence[object]],
    *,
    empty: str,
) -> int:
    """An account's entries as the node lists them (``method`` with its address): the list for
    ``--output json``, else a table titled with the address, or ``"<address> <empty>"``."""
    out = output_of(args)

    async def body(rpc: NodeRpc, address: str) -> int:
        entries = answer_list(await rpc.call(method, address=address), method)

        def render(console: Console) -> None:
            if not entries:
                console.print(f"{address} {empty}")
                return
            rows = [row(entry) for entry in entries if isinstance(entry, dict)]
            console.print(table(columns, rows, title=address))

        out.result(entries, render)
        return EXIT_OK

    return run_account_command(args, out, body)
