"""`dcent node run --home DIR`: run the node until SIGINT or SIGTERM, then exit 0 cleanly."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time

import trio

from node.config import ConfigError, HomePaths, load_config, resolve_home
from node.daemon import Node
from node.store import StoreError


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
            logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
        logging.Formatter.converter = time.localtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("node", help="run a node")
    commands = parser.add_subparsers(dest="node_command", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser("run", help="run until SIGINT/SIGTERM")
    run.add_argument("--home", help="home directory (default: $DCENT_HOME or ~/.dcent)")
    run.add_argument("--log-format", choices=("text", "json"), help="override log.format")
    run.add_argument("--log-level", help="override log.level (debug, info, warning, error)")
    run.set_defaults(func=run_node)


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


def run_node(args: argparse.Namespace) -> int:
    paths = HomePaths(resolve_home(args.home))
    try:
        config = load_config(paths)
        setup_logging(args.log_format or config.log_format, args.log_level or config.log_level)
        node = Node(paths, config)
        trio.run(_serve, node)
    except (ConfigError, StoreError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0
