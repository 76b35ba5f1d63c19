"""`dcent node run --home DIR`: run the node until SIGINT or SIGTERM, then exit 0 cleanly.
(`dcent node info` and `dcent node peers` ask a running node: ``node/cli/node_status.py``.)

``--rpc-addr HOST:PORT`` and ``--rpc-allow-remote`` override the ``[rpc]`` section (a non-loopback
address without the allow flag is refused before anything starts); ``--metrics-addr HOST:PORT``
overrides ``metrics.addr`` (loopback only). A node that cannot start (a bad config, a wrong
database, an address in use) prints ``error: ...`` and exits 1, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import time

import trio

from node.cli import node_status
from node.cli.report import report_error
from node.config import (
    HomePaths,
    MetricsConfig,
    NodeConfig,
    check_rpc_bind,
    load_config,
    parse_metrics_bind,
    parse_rpc_bind,
    resolve_home,
)
from node.daemon import Node
from node.errors import NodeError, leaf_exceptions
from node.rpc.errors import RpcError
from node.wallet.cliargs import add_command_group
from protocol.errors import ProtocolError

#: What a node that cannot start raises: typed errors with a message for the operator.
StartFailure = NodeError | RpcError | ProtocolError
_START_FAILURES = (NodeError, RpcError, ProtocolError)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
        logging.Formatter.converter = time.localtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = add_command_group(subparsers, "node", help_text="run a node")
    run = commands.add_parser("run", help="run until SIGINT/SIGTERM")
    run.add_argument("--home", help="home directory (default: $DCENT_HOME or ~/.dcent)")
    run.add_argument("--log-format", choices=("text", "json"), help="override log.format")
    run.add_argument("--log-level", help="override log.level (debug, info, warning, error)")
    run.add_argument(
        "--rpc-addr",
        metavar="HOST:PORT",
        help="serve the JSON-RPC here (overrides rpc.addr); port 0 picks a free port, written to "
        "<home>/data/rpc.url",
    )
    run.add_argument(
        "--rpc-allow-remote",
        action="store_true",
        help="allow a non-loopback RPC address: the RPC and its cookie travel in clear HTTP",
    )
    run.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, loopback only (overrides metrics.addr)",
    )
    run.set_defaults(func=run_node)
    node_status.register_commands(commands)


async def _serve(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            async for signum in signals:
                logging.getLogger("dcent.node").info(
                    "received %s, shutting down", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break


def with_overrides(config: NodeConfig, args: argparse.Namespace) -> NodeConfig:
    """``config`` with the command line's RPC and metrics flags applied and checked.

    Raises :class:`ConfigError` naming the flag (or the config field) that is wrong.
    """
    rpc = config.rpc
    rpc_where = "rpc.addr"
    if args.rpc_addr is not None:
        parse_rpc_bind(args.rpc_addr, "--rpc-addr")
        rpc = dataclasses.replace(rpc, addr=args.rpc_addr)
        rpc_where = "--rpc-addr"
    if args.rpc_allow_remote:
        rpc = dataclasses.replace(rpc, allow_remote=True)
    check_rpc_bind(rpc, rpc_where)
    metrics = config.metrics
    if args.metrics_addr is not None:
        parse_metrics_bind(args.metrics_addr, "--metrics-addr")
        metrics = MetricsConfig(args.metrics_addr)
    return dataclasses.replace(config, rpc=rpc, metrics=metrics)


def _start_failures(group: BaseExceptionGroup[BaseException]) -> list[StartFailure] | None:
    """The typed errors in ``group``, when nothing else is in it."""
    matched, rest = group.split(_START_FAILURES)
    if matched is None or rest is not None:
        return None
    return [exc for exc in leaf_exceptions(matched) if isinstance(exc, _START_FAILURES)]


def run_node(args: argparse.Namespace) -> int:
    paths = HomePaths(resolve_home(args.home))
    node: Node | None = None
    try:
        config = with_overrides(load_config(paths), args)
        setup_logging(args.log_format or config.log_format, args.log_level or config.log_level)
        node = Node(paths, config)
        trio.run(_serve, node)
    except _START_FAILURES as exc:
        if node is not None and node.started:
            return _stopped_by_fault(exc)
        report_error(exc.message, exc.code)
        return 1
    except BaseExceptionGroup as group:
        # The node's nursery wraps what stopped its start (an address in use, a wrong database).
        failures = _start_failures(group)
        if failures is None or (node is not None and node.started):
            return _stopped_by_fault(group)
        for failure in failures:
            report_error(failure.message, failure.code)
        return 1
    return 0


def _stopped_by_fault(exc: BaseException) -> int:
    """A running node stopped on an error: a fault of the node itself (input from peers is
    refused, never raised this far), so the log gets the whole traceback."""
    logging.getLogger("dcent.node").critical("node stopped by an internal fault", exc_info=exc)
    return 1
