"""`dcent node info` and `dcent node peers`: a running node's identity and its peers, over RPC.

    dcent node info  [--home DIR | --rpc URL] [--output json]   peer id, multiaddrs, chain, height, role
    dcent node peers [--home DIR | --rpc URL] [--output json]   connected peers, scores, bans, refusals

``--output json`` of ``node peers``: ``connected`` (``net_peers``), ``scored`` (every peer with a
score, refusal or ban), ``banned``, ``refusals`` (by protocol and reason) and ``ban_threshold``.

``node info`` prints the multiaddrs other nodes put in their bootstrap lists (with ``/p2p/<peer
id>``). ``node peers`` shows each connected peer's misbehaviour score (banned at the threshold),
then the peers serving a ban, then every message refused since start by protocol and reason.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from node.wallet.cliargs import Subparsers, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import key_values, table
from node.wallet.runner import EXIT_OK, output_of, run_node_command
from node.wallet.values import answer_list, answer_object


def register_commands(commands: Subparsers) -> None:
    info = commands.add_parser("info", help="a running node's peer id, multiaddrs, chain, height and role")
    info.set_defaults(func=run_info)
    peers = commands.add_parser("peers", help="a running node's peers, their scores, bans and refusals")
    peers.set_defaults(func=run_peers)
    for command in (info, peers):
        add_common_args(command)
        add_node_args(command)


def role_of(info: Mapping[str, Any]) -> str:
    """``validator`` (in the active set) or ``full node``, and ``provider`` when it sells GPUs."""
    role = "validator" if info.get("validator") else "full node"
    return f"{role}, provider" if info.get("gpus") else role


def run_info(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        info = answer_object(await rpc.call("node_info"), "node_info")
        document = {
            "peer_id": info.get("peer_id"),
            "multiaddrs": list(info.get("listen_addrs") or []),
            "chain_id": info.get("chain_id"),
            "height": info.get("height"),
            "role": role_of(info),
            "moniker": info.get("moniker"),
            "address": info.get("address"),
            "version": info.get("version"),
        }

        def render(console: Console) -> None:
            pairs = [
                (key, document[key])
                for key in ("moniker", "peer_id", "chain_id", "height", "role", "address")
            ]
            console.print(key_values(pairs))
            for address in document["multiaddrs"]:  # type: ignore[union-attr]
                console.print(f"  {address}", soft_wrap=True, highlight=False)

        out.result(document, render)
        return EXIT_OK

    return run_node_command(args, out, body)


def run_peers(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        peers = answer_list(await rpc.call("net_peers"), "net_peers")
        scores = answer_object(await rpc.call("net_scores"), "net_scores")
        document = {
            "connected": peers,
            "scored": scores.get("peers", []),
            "banned": scores.get("banned", []),
            "refusals": scores.get("refusals", []),
            "ban_threshold": scores.get("ban_threshold"),
        }

        def render(console: Console) -> None:
            rows = [
                (
                    p.get("peer_id"),
                    p.get("direction"),
                    p.get("connected_s"),
                    p.get("score"),
                    p.get("refusals"),
                    p.get("bans"),
                )
                for p in peers
            ]
            console.print(
                table(("PEER", "DIRECTION", "UP (s)", "SCORE", "REFUSED", "BANS"), rows, title="connected")
            )
            banned = [p for p in document["scored"] if p.get("banned_for_s")]
            if banned:
                console.print(
                    table(
                        ("PEER", "BANNED FOR (s)", "BANS"),
                        [(p.get("peer_id"), p.get("banned_for_s"), p.get("bans")) for p in banned],
                        title="banned",
                    )
                )
            refusals = document["refusals"]
            if refusals:
                console.print(
                    table(
                        ("PROTOCOL", "REASON", "COUNT"),
                        [(r.get("protocol"), r.get("reason"), r.get("count")) for r in refusals],
                        title="refused messages",
                    )
                )

        out.result(document, render)
        return EXIT_OK

    return run_node_command(args, out, body)
