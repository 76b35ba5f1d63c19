"""`dcent testnet up | status | down | faucet`: a local multi-node testnet of real node processes.

``up`` writes a genesis and one home per node into DIR (``--dir``, else ``$DCENT_TESTNET_DIR``,
else ``./testnet``), starts every node detached, waits until they are connected and making blocks,
prints the endpoints, writes ``DIR/testnet.env`` and returns with the nodes running. Run again on
a stopped testnet, it starts the same nodes again (the chain continues); ``--fresh`` wipes it and
makes a new one. The layout is described in :mod:`node.testnet.layout`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gpu.nvml import probe
from node.cli.report import FILE_ACCESS, USAGE, report_error
from node.cli.testnet_netns import (
    add_netns_arguments,
    build_fabric,
    fresh_placement,
    remove_fabric,
    requested_shape,
    resumed_placement,
    start_switch,
)
from node.cli.testnet_ops import register_ops
from node.config import ConfigError
from node.errors import NodeError
from node.rpc.errors import RpcError
from node.testnet.errors import AlreadyRunning, InvalidPlan, LocalnetError, NotATestnet
from node.testnet.faucet import faucet_transfer
from node.testnet.layout import (
    DEFAULT_BASE_PORT,
    DEFAULT_GPU_SPEC,
    EXECUTOR_NAMES,
    GPU_NVML,
    GPU_SIMULATED,
    NetworkLayout,
    NetworkPlan,
    build_network,
    default_dir,
    is_testnet_dir,
)
from node.testnet.processes import (
    NodeProcess,
    check_base_port_free,
    check_ports_free,
    running,
    start_node,
    stop_nodes,
)
from node.testnet.readiness import READY_TIMEOUT_S, Progress, wait_ready
from node.testnet.sandbox import AUTO, UNSANDBOXED, choose_executor, unsandboxed_banner
from node.testnet.status import STALL_AFTER_MS, ChainHealth, chain_health, network_status
from node.testnet.supervisor import RESTART_POLICIES
from protocol.crypto import Address, InvalidAddressError
from protocol.errors import ProtocolError
from protocol.units import AmountError, format_amount, parse_amount

DEFAULT_NODES = 4
DEFAULT_PROVIDERS = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("testnet", help="run a local multi-node testnet")
    commands = parser.add_subparsers(dest="testnet_command", metavar="COMMAND")
    commands.required = True
    dir_help = "testnet directory (default: $DCENT_TESTNET_DIR or ./testnet)"

    up = commands.add_parser("up", help="create (or restart) a testnet and start its nodes")
    up.add_argument("-n", "--nodes", type=int, help=f"number of nodes (default {DEFAULT_NODES})")
    up.add_argument(
        "--providers",
        type=int,
        help=f"how many nodes sell GPUs, the first ones (default {DEFAULT_PROVIDERS})",
    )
    up.add_argument(
        "--simulated-gpus",
        default=DEFAULT_GPU_SPEC,
        metavar="SPEC",
        help=f"GPUs each provider declares when the host has none, e.g. 1xA100-40GB (default {DEFAULT_GPU_SPEC})",
    )
    up.add_argument(
        "--no-nvml", action="store_true", help="simulated GPUs only, even on a host with real GPUs"
    )
    up.add_argument("--dir", type=Path, help=dir_help)
    up.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"node i uses P+10i (p2p), P+10i+1 (RPC), P+10i+2 (metrics) (default {DEFAULT_BASE_PORT})",
    )
    up.add_argument(
        "--executor",
        choices=(AUTO, *EXECUTOR_NAMES),
        default=AUTO,
        help="job sandbox of the providers (default auto: bubblewrap when its self-test passes here, "
        "else subprocess, which runs jobs UNSANDBOXED and says so)",
    )
    up.add_argument("--fresh", action="store_true", help="wipe the testnet in DIR and create a new one")
    up.add_argument(
        "--restart",
        choices=RESTART_POLICIES,
        help="on-failure: each node's supervisor starts it again after a crash (kept for `testnet start`)",
    )
    up.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT_S, help="seconds to wait for the nodes to be ready"
    )
    add_netns_arguments(up)
    up.set_defaults(func=run_up)

    status = commands.add_parser("status", help="height, peers, role and GPUs of every node")
    status.add_argument("--dir", type=Path, help=dir_help)
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.add_argument(
        "--stall-after",
        type=float,
        default=STALL_AFTER_MS / 1000,
        metavar="SECONDS",
        help="call the chain stalled when no block came for this long (default %(default)g)",
    )
    status.set_defaults(func=run_status)

    down = commands.add_parser("down", help="stop every node (SIGTERM, then SIGKILL after a grace)")
    down.add_argument("--dir", type=Path, help=dir_help)
    down.add_argument("--grace", type=float, default=20.0, help="seconds each node gets to exit (default 20)")
    down.set_defaults(func=run_down)

    register_ops(commands, dir_help)

    faucet = commands.add_parser("faucet", help="send tokens from the testnet's faucet account")
    faucet.add_argument("address", help="recipient (dct1...)")
    faucet.add_argument("amount", help='amount: "1.5", "1.5 DCT" or "1500base"')
    faucet.add_argument("--dir", type=Path, help=dir_help)
    faucet.add_argument("--node", type=int, default=0, help="submit through this node (default 0)")
    faucet.add_argument("--json", action="store_true", help="print one JSON document")
    faucet.add_argument(
        "--request-id",
        help="name this request: running it again never pays twice (default: a plain rerun with the "
        "same address and amount continues a transfer that was not seen committed)",
    )
    faucet.set_defaults(func=run_faucet)


def _error(message: str, code: int) -> int:
    return report_error(message, code)


def _resolve_dir(args: argparse.Namespace) -> Path:
    return (args.dir or default_dir()).expanduser().resolve()


# --- up ------------------------------------------------------------------------------------


def run_up(args: argparse.Namespace) -> int:
    root = _resolve_dir(args)
    console = Console()
    try:
        layout = _prepare(root, args, console)
        if args.restart is not None and args.restart != layout.restart:
            layout = replace(layout, restart=args.restart)
            layout.save()
        processes = _start_all(layout)
    except (LocalnetError, ConfigError, ProtocolError) as exc:
        return _error(exc.message, exc.code)
    except OSError as exc:
        return _error(f"cannot write the testnet into {root}: {exc}", FILE_ACCESS)
    try:
        trio.run(_wait_with_display, layout, console, args.timeout)
    except LocalnetError as exc:
        stop_nodes([p.node for p in processes])
        remove_fabric(layout)
        return _error(
            f"{exc.message}\nthe nodes were stopped; their logs are in {root}/node-*/node.log", exc.code
        )
    except KeyboardInterrupt:
        # An aborted `up` leaves nothing running behind the operator's back.
        stop_nodes([p.node for p in processes])
        remove_fabric(layout)
        raise
    write_env_file(layout)
    _print_endpoints(layout)
    return 0


def _prepare(root: Path, args: argparse.Namespace, console: Console) -> NetworkLayout:
    """The layout to start: the existing one (resumed), or a new one. Raises LocalnetError."""
    replacing = False
    shape = requested_shape(args)
    if is_testnet_dir(root):
        layout = NetworkLayout.load(root)
        live = [n.moniker for n in layout.nodes if running(n) is not None]
        if live:
            raise AlreadyRunning(
                f"a testnet is already running in {root} ({', '.join(live)}); "
                f"stop it first with: dcent testnet down --dir {shlex.quote(str(root))}"
            )
        if not args.fresh:
            if args.nodes is not None and args.nodes != len(layout.nodes):
                raise InvalidPlan(
                    f"{root} holds a {len(layout.nodes)}-node testnet; use --fresh to replace it "
                    f"with a {args.nodes}-node one"
                )
            placement = resumed_placement(layout, shape)
            if placement != layout.placement:
                layout = replace(layout, placement=placement)
                layout.save()
            _, needs_switch = build_fabric(placement, len(layout.nodes))
            if needs_switch:
                console.print(start_switch(layout))
            console.print(
                f"Restarting the {len(layout.nodes)}-node testnet in {root} (chain {layout.chain_id})."
            )
            if layout.executor == UNSANDBOXED and any(node.provider for node in layout.nodes):
                _warn(
                    console, unsandboxed_banner("this testnet was created with the subprocess executor", "-")
                )
            return layout
        replacing = True
    elif root.exists() and any(root.iterdir()):
        raise NotATestnet(f"{root} exists and is not a testnet directory; choose an empty or new --dir")
    nodes = DEFAULT_NODES if args.nodes is None else args.nodes
    providers = min(DEFAULT_PROVIDERS, nodes) if args.providers is None else args.providers
    choice = choose_executor(args.executor, providers=providers)
    _warn(console, choice.warnings)
    plan = NetworkPlan(
        nodes=nodes,
        providers=providers,
        simulated_gpus=args.simulated_gpus,
        base_port=args.base_port,
        executor=choice.executor,
        placement=fresh_placement(shape),
    )
    # Everything that can refuse is checked before the old testnet is wiped or a file written.
    plan.check()
    if plan.placement is None:  # in namespaces, each node has its namespace's ports to itself
        check_base_port_free(plan.base_port, plan.nodes)
    real_gpus = providers > 0 and not args.no_nvml and _host_has_gpus(console)
    if replacing:
        old = NetworkLayout.load(root)
        remove_fabric(old)
    # The namespaces first: a host that cannot make them (or shape them) refuses here.
    fabric, needs_switch = build_fabric(plan.placement, plan.nodes)
    if replacing:
        shutil.rmtree(root)
    try:
        layout = build_network(root, replace(plan, real_gpus=real_gpus))
        if needs_switch:
            console.print(start_switch(layout))
    except (LocalnetError, ConfigError, ProtocolError, OSError):
        if fabric is not None:
            fabric.destroy()
        raise
    console.print(f"Created a {nodes}-node testnet in {root} (chain {layout.chain_id}).")
    if plan.placement is not None:
        console.print(
            f"  nodes in network namespaces {plan.placement.namespace(0)}.. on bridge {plan.placement.bridge} "
            f"({plan.placement.subnet}.0/24), RTT {plan.placement.shape.rtt_ms} ms, jitter "
            f"{plan.placement.shape.jitter_ms} ms, loss {plan.placement.shape.loss_pct:g}% per link"
        )
    _print_gpu_roles(layout, console)
    return layout


def _warn(console: Console, lines: tuple[str, ...]) -> None:
    """Loud: on stderr as well, so it is seen even when stdout goes to a log."""
    for line in lines:
        console.print(line, style="bold red", markup=False, highlight=False)
        if not console.is_terminal:
            print(line, file=sys.stderr)


def _host_has_gpus(console: Console) -> bool:
    report = probe()
    units = report.schedulable_units()
    if units:
        names = sorted({d.name for d in units})
        console.print(f"NVML: this host has {len(units)} GPU(s): {', '.join(names)}.")
        return True
    console.print(f"NVML: no GPUs on this host ({report.message}).")
    return False


def _print_gpu_roles(layout: NetworkLayout, console: Console) -> None:
    for node in layout.nodes:
        if node.gpu_source == GPU_NVML:
            console.print(f"  {node.moniker} sells this host's real GPUs (NVML)")
        elif node.gpu_source == GPU_SIMULATED:
            console.print(f"  {node.moniker} sells simulated GPUs: {node.gpu_spec}")
    if not any(node.provider for node in layout.nodes):
        console.print("  no node sells GPUs (--providers 0)")


def _start_all(layout: NetworkLayout) -> list[NodeProcess]:
    check_ports_free(layout.nodes)
    started: list[NodeProcess] = []
    try:
        for node in layout.nodes:
            started.append(start_node(node, restart=layout.restart))
    except LocalnetError:
        stop_nodes([p.node for p in started])
        raise
    return started


async def _wait_with_display(layout: NetworkLayout, console: Console, timeout_s: float) -> None:
    if not console.is_terminal:
        stages: list[str] = []

        def report(progress: Progress) -> None:
            stage = progress.stage()
            if not stages or stages[-1] != stage:
                stages.append(stage)
                console.print(f"  {stage}")

        await wait_ready(layout.nodes, timeout_s=timeout_s, on_progress=report)
        return
    with Live(_progress_table(None, layout), console=console, refresh_per_second=8) as live:
        await wait_ready(
            layout.nodes, timeout_s=timeout_s, on_progress=lambda p: live.update(_progress_table(p, layout))
        )


def _progress_table(progress: Progress | None, layout: NetworkLayout) -> Table:
    table = Table(title=progress.stage() if progress else "starting nodes", title_justify="left")
    for column in ("node", "rpc", "peers", "height"):
        table.add_column(column)
    for node in layout.nodes:
        entry = progress.nodes[node.index] if progress else None
        if entry is None or not entry.answering:
            table.add_row(node.moniker, "…", "", "")
        else:
            table.add_row(node.moniker, "up", f"{entry.peers}/{len(layout.nodes) - 1}", str(entry.height))
    return table


def env_lines(layout: NetworkLayout) -> list[str]:
    values = [
        ("DCENT_TESTNET_DIR", str(layout.root)),
        ("DCENT_HOME", str(layout.nodes[0].home)),
        ("DCENT_CHAIN_ID", layout.chain_id),
    ] + [(f"DCENT_RPC_{node.index}", node.rpc_url) for node in layout.nodes]
    return [f"export {name}={shlex.quote(value)}" for name, value in values]


def write_env_file(layout: NetworkLayout) -> None:
    header = f"# dcent testnet {layout.chain_id}: `source {layout.env_path}` to point wallets at node-0\n"
    layout.env_path.write_text(header + "\n".join(env_lines(layout)) + "\n")


def _print_endpoints(layout: NetworkLayout) -> None:
    # Plain lines, not a table: URLs and paths stay whole for copying, in any terminal width.
    print(f"testnet {layout.chain_id} is up in {layout.root}:")
    for node in layout.nodes:
        role = "validator" if node.validator else "full node"
        if node.gpu_source == GPU_NVML:
            role += ", sells real GPUs (NVML)"
        elif node.gpu_source == GPU_SIMULATED:
            role += f", sells simulated {node.gpu_spec}"
        print(f"  {node.moniker}  rpc {node.rpc_url}  p2p {node.p2p_port}  ({role})")
        print(f"          log {node.log_path}")
    print(f"faucet: {layout.faucet_address} (key {layout.faucet_key_path})")
    print(f"environment: source {layout.env_path}")
    print(f"stop: dcent testnet down --dir {shlex.quote(str(layout.root))}")


# --- status ----------------------------------------------------------------------------------

STATUS_KEYS = (
    "index",
    "moniker",
    "height",
    "peers",
    "validator",
    "gpus",
    "selling",
    "sandbox",
    "rpc_url",
    "pid",
    "alive",
    "state",
    "restarts",
    "multiaddr",
)


def run_status(args: argparse.Namespace) -> int:
    try:
        layout = NetworkLayout.load(_resolve_dir(args))
    except LocalnetError as exc:
        return _error(exc.message, exc.code)
    statuses = trio.run(network_status, layout)
    health = chain_health(statuses, int(time.time() * 1000), stall_after_ms=int(args.stall_after * 1000))
    if args.json:
        nodes = [{key: status.to_json()[key] for key in STATUS_KEYS} for status in statuses]
        doc = {
            "chain_id": layout.chain_id,
            "dir": str(layout.root),
            "chain": health.to_json(),
            "nodes": nodes,
        }
        print(json.dumps(doc))
        return 0
    table = Table(title=f"testnet {layout.chain_id} in {layout.root}", title_justify="left")
    for column in (
        "node",
        "state",
        "pid",
        "height",
        "peers",
        "validator",
        "gpus",
        "rpc",
        "multiaddr",
        "note",
    ):
        table.add_column(column)
    for s in statuses:
        state = s.state if not s.restarts else f"{s.state} ({s.restarts} restarts)"
        table.add_row(
            s.moniker,
            state,
            str(s.pid) if s.pid else "-",
            "-" if s.height is None else str(s.height),
            "-" if s.peers is None else str(s.peers),
            "yes" if s.validator else "no",
            "-" if s.gpus is None else str(s.gpus),
            s.rpc_url,
            s.multiaddr,
            s.error,
        )
    console = Console()
    console.print(table)
    # The sandbox's state in full, never cut by the table's width: it names the fix.
    for s in statuses:
        if s.gpus and s.sandbox:
            unsafe = s.selling is False or "UNSANDBOXED" in s.sandbox
            console.print(
                f"{s.moniker} sandbox: {s.sandbox}", style="bold red" if unsafe else None, markup=False
            )
    console.print(_health_line(health), highlight=False)
    return 0


def _health_line(health: ChainHealth) -> str:
    if health.since_block_ms is None:
        return "chain: no node answers"
    age = f"newest block {health.height}, {health.since_block_ms / 1000:.1f} s ago"
    missing = ", ".join(f"{name} ({why})" for name, why in health.missing)
    if health.stalled:
        return f"chain: STALLED ({age}); missing validators: {missing or 'none (see the node logs)'}"
    return f"chain: committing ({age})" + (f"; did not sign the newest block: {missing}" if missing else "")


# --- down ------------------------------------------------------------------------------------


def run_down(args: argparse.Namespace) -> int:
    try:
        layout = NetworkLayout.load(_resolve_dir(args))
    except LocalnetError as exc:
        return _error(exc.message, exc.code)
    failed = False
    for result in stop_nodes(layout.nodes, grace_s=args.grace):
        name = layout.node(result.index).moniker
        if result.pid is None:
            last = "" if result.exit_code is None else f" (last exit code {result.exit_code})"
            print(f"{name}: not running{last}")
        elif result.killed:
            failed = True
            print(
                f"{name} (pid {result.pid}): did not exit within {args.grace:g} s; killed (exit code {result.exit_code})"
            )
        else:
            failed = failed or result.exit_code != 0
            print(f"{name} (pid {result.pid}): stopped, exit code {result.exit_code}")
    removed = remove_fabric(layout)
    if removed is not None:
        print(removed)
    return 1 if failed else 0


# --- faucet ----------------------------------------------------------------------------------


def run_faucet(args: argparse.Namespace) -> int:
    try:
        to = Address.parse(args.address)
        amount = parse_amount(args.amount)
    except (InvalidAddressError, AmountError) as exc:
        return _error(exc.message, exc.code)
    if amount <= 0:
        return _error("the amount must be positive", USAGE)
    try:
        layout = NetworkLayout.load(_resolve_dir(args))
        if not 0 <= args.node < len(layout.nodes):
            return _error(f"--node: the testnet has nodes 0-{len(layout.nodes) - 1}", USAGE)
        receipt = trio.run(
            partial(faucet_transfer, layout, to, amount, node_index=args.node, request_id=args.request_id)
        )
    except (NodeError, RpcError) as exc:
        return _error(exc.message, exc.code)
    if args.json:
        print(
            json.dumps(
                {
                    "hash": receipt.hash,
                    "height": receipt.height,
                    "to": str(to),
                    "amount": str(amount),
                    "request_id": receipt.request_id,
                    "resumed": receipt.resumed,
                }
            )
        )
    else:
        earlier = " (the transfer an earlier run sent: nothing paid again)" if receipt.resumed else ""
        print(f"sent {format_amount(amount)} to {to} in block {receipt.height}{earlier}")
        print(receipt.hash)
    return 0
