"""`dcent testnet stop | start | restart | kill NODE...`: operate single nodes of a running testnet.

A node is named by its index (``2``) or moniker (``node-2``). ``stop`` is a clean shutdown
(SIGTERM, SIGKILL after ``--grace``); ``kill`` is a crash (SIGKILL: no shutdown code runs, and a
node started with ``--restart on-failure`` is started again by its supervisor); ``start`` starts
stopped nodes with the testnet's restart policy (``up --restart``) unless ``--restart`` says
otherwise, and waits until each answers and has peers; ``restart`` is ``stop`` then ``start``.
Each prints one line per node and exits 1 if any node could not be handled.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from node.cli.report import USAGE, report_error
from node.testnet.errors import LocalnetError
from node.testnet.layout import NetworkLayout, NodeLayout, default_dir
from node.testnet.processes import kill_node, start_node, stop_nodes
from node.testnet.readiness import READY_TIMEOUT_S, wait_ready
from node.testnet.supervisor import RESTART_POLICIES


def register_ops(commands: argparse._SubParsersAction[argparse.ArgumentParser], dir_help: str) -> None:
    for name, help_text, func in (
        ("stop", "stop nodes cleanly (SIGTERM, then SIGKILL after --grace)", run_stop),
        ("start", "start stopped nodes again and wait until they serve", run_start),
        ("restart", "stop, then start nodes", run_restart),
        ("kill", "crash nodes (SIGKILL): what --restart on-failure recovers from", run_kill),
    ):
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("nodes", nargs="+", metavar="NODE", help="index (2) or moniker (node-2)")
        parser.add_argument("--dir", type=Path, help=dir_help)
        if name in ("stop", "restart"):
            parser.add_argument("--grace", type=float, default=20.0, help="seconds to exit (default 20)")
        if name in ("start", "restart"):
            parser.add_argument(
                "--restart",
                choices=RESTART_POLICIES,
                help="restart the node after a crash (default: the policy `testnet up` was given)",
            )
            parser.add_argument(
                "--timeout", type=float, default=READY_TIMEOUT_S, help="seconds to wait for the node to serve"
            )
        parser.set_defaults(func=func)


def _error(message: str, code: int) -> int:
    return report_error(message, code)


def _load(args: argparse.Namespace) -> NetworkLayout:
    return NetworkLayout.load((args.dir or default_dir()).expanduser().resolve())


def pick_nodes(layout: NetworkLayout, names: Sequence[str]) -> list[NodeLayout]:
    """The nodes named by index or moniker, in the order given, each once. Raises ValueError."""
    chosen: list[NodeLayout] = []
    for name in names:
        text = name.removeprefix("node-")
        if not text.isdigit() or not 0 <= int(text) < len(layout.nodes):
            raise ValueError(f"{name!r}: the testnet has nodes 0-{len(layout.nodes) - 1} (node-0 ...)")
        node = layout.node(int(text))
        if node not in chosen:
            chosen.append(node)
    return chosen


def _with_nodes(args: argparse.Namespace, act: Callable[[NetworkLayout, list[NodeLayout]], int]) -> int:
    try:
        layout = _load(args)
        nodes = pick_nodes(layout, args.nodes)
    except LocalnetError as exc:
        return _error(exc.message, exc.code)
    except ValueError as exc:
        return _error(str(exc), USAGE)
    return act(layout, nodes)


def _stop(nodes: list[NodeLayout], grace_s: float) -> bool:
    ok = True
    for result in stop_nodes(nodes, grace_s=grace_s):
        name = f"node-{result.index}"
        if result.pid is None:
            print(f"{name}: not running")
        elif result.killed:
            ok = False
            print(f"{name} (pid {result.pid}): did not exit within {grace_s:g} s; killed")
        else:
            print(f"{name} (pid {result.pid}): stopped, exit code {result.exit_code}")
    return ok


def _start(layout: NetworkLayout, nodes: list[NodeLayout], policy: str | None, timeout_s: float) -> bool:
    restart = policy or layout.restart
    started = []
    ok = True
    for node in nodes:
        try:
            process = start_node(node, restart=restart)
        except LocalnetError as exc:
            ok = False
            print(f"{node.moniker}: {exc.message}")
            continue
        started.append(node)
        print(f"{node.moniker}: started, pid {process.pid} (restart {restart})")
    if started:
        # It is up once it answers and has a peer; the chain's own progress is `status`'s business.
        try:
            trio.run(
                lambda: wait_ready(started, min_peers=min(1, len(layout.nodes) - 1), timeout_s=timeout_s)
            )
        except LocalnetError as exc:
            print(exc.message)
            return False
        print(f"{', '.join(node.moniker for node in started)}: serving")
    return ok


def run_stop(args: argparse.Namespace) -> int:
    return _with_nodes(args, lambda layout, nodes: 0 if _stop(nodes, args.grace) else 1)


def run_start(args: argparse.Namespace) -> int:
    return _with_nodes(
        args, lambda layout, nodes: 0 if _start(layout, nodes, args.restart, args.timeout) else 1
    )


def run_restart(args: argparse.Namespace) -> int:
    def act(layout: NetworkLayout, nodes: list[NodeLayout]) -> int:
        stopped = _stop(nodes, args.grace)
        return 0 if _start(layout, nodes, args.restart, args.timeout) and stopped else 1

    return _with_nodes(args, act)


def run_kill(args: argparse.Namespace) -> int:
    def act(layout: NetworkLayout, nodes: list[NodeLayout]) -> int:
        for node in nodes:
            result = kill_node(node)
            if result.pid is None:
                print(f"{node.moniker}: not running")
            else:
                print(f"{node.moniker} (pid {result.pid}): killed, exit code {result.exit_code}")
        return 0

    return _with_nodes(args, act)
