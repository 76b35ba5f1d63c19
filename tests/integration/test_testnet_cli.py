"""`dcent testnet up | status | faucet | down` as real processes: `up` returns with its nodes
running detached, `status --json` reports them, `faucet` moves funds, `down` leaves no process,
and `up` refuses a directory whose testnet is running."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import parse_config
from node.rpc.client import RpcClient
from node.testnet.errors import InvalidPlan
from node.testnet.layout import (
    FAUCET_BALANCE,
    NODE_BALANCE,
    NetworkLayout,
    NetworkPlan,
    add_node,
    build_network,
)
from node.testnet.processes import is_alive, read_pid_file, stop_nodes, supervisor_of
from protocol.crypto import Address, PrivateKey
from protocol.units import DCT
from tests.e2e.framework import pick_base_port
from tests.integration.executor_helpers import host_sandbox_verdict
from tests.waiting import wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
DCENT = [sys.executable, "-m", "node.cli.main"]
SUPERVISOR = [sys.executable, "-m", "node.testnet.supervisor"]
HANDLES_SIGTERM_WITH_7 = (
    "import pathlib, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
    "pathlib.Path({ready!r}).touch()\n"
    "signal.pause()\n"
)
STATUS_KEYS = {
    "index", "moniker", "height", "peers", "validator", "gpus", "selling", "sandbox", "rpc_url", "pid", "alive",
    "state", "restarts", "multiaddr",
}  # fmt: skip


def dcent(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DCENT, "testnet", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def processes_using(directory: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``directory`` (nodes, supervisors)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(directory) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def testnet_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "testnet"
    yield directory
    # Whatever the test did, no node outlives it.
    if (directory / "testnet.json").exists():
        stop_nodes(NetworkLayout.load(directory).nodes, grace_s=10)


def status(directory: Path) -> list[dict[str, object]]:
    result = dcent("status", "--dir", str(directory), "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["nodes"])


@pytest.mark.slow
def test_up_status_faucet_down_and_up_again(testnet_dir: Path) -> None:
    base_port = pick_base_port(3)
    up = dcent(
        "up",
        "-n",
        "3",
        "--providers",
        "1",
        "--simulated-gpus",
        "1xA100-40GB",
        "--no-nvml",
        "--dir",
        str(testnet_dir),
        "--base-port",
        str(base_port),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "node-0 sells simulated GPUs: 1xA100-40GB" in up.stdout
    assert f"rpc http://127.0.0.1:{base_port + 1}/" in up.stdout

    # `up` has exited; its nodes run on, answering RPC, connected, with blocks.
    nodes = status(testnet_dir)
    assert [n["index"] for n in nodes] == [0, 1, 2]
    for node in nodes:
        assert set(node) == STATUS_KEYS
        assert node["alive"] is True and isinstance(node["pid"], int)
        assert node["moniker"] == f"node-{node['index']}"
        assert node["rpc_url"] == f"http://127.0.0.1:{base_port + 10 * int(str(node['index'])) + 1}/"
        assert isinstance(node["height"], int) and node["height"] >= 1
        assert node["peers"] == 2
        assert node["validator"] is True
        port = base_port + 10 * int(str(node["index"]))
        assert str(node["multiaddr"]).startswith(f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooW")
    assert [n["gpus"] for n in nodes] == [1, 0, 0]
    # `up --executor auto`: bubblewrap where its self-test passes here, else the unsandboxed
    # executor, said loudly; either way the provider sells, and the others sell nothing.
    assert nodes[0]["selling"] is True and [n["selling"] for n in nodes[1:]] == [False, False]
    if host_sandbox_verdict().ok:
        assert str(nodes[0]["sandbox"]).startswith("bubblewrap sandbox ok")
        assert "UNSANDBOXED" not in up.stdout + up.stderr
    else:
        assert "UNSANDBOXED" in str(nodes[0]["sandbox"])
        assert "jobs on this testnet run UNSANDBOXED" in up.stderr and host_sandbox_verdict().fix in up.stderr

    env = (testnet_dir / "testnet.env").read_text()
    assert f"export DCENT_TESTNET_DIR={testnet_dir.resolve()}" in env
    assert f"export DCENT_HOME={testnet_dir.resolve() / 'node-0'}" in env
    for index in range(3):
        assert f"export DCENT_RPC_{index}=http://127.0.0.1:{base_port + 10 * index + 1}/" in env
    assert stat.S_IMODE((testnet_dir / "faucet.key").stat().st_mode) == 0o600

    again = dcent("up", "--dir", str(testnet_dir))
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert [n["pid"] for n in status(testnet_dir)] == [n["pid"] for n in nodes]

    recipient = PrivateKey.generate().address
    faucet = dcent("faucet", str(recipient), "12.5", "--dir", str(testnet_dir), "--json")
    assert faucet.returncode == 0, faucet.stderr
    receipt = json.loads(faucet.stdout)
    client = RpcClient.for_home(testnet_dir / "node-2", f"http://127.0.0.1:{base_port + 21}/")
    tx = client.call_blocking("tx_get", hash=receipt["hash"])
    assert tx["status"] == "committed" and tx["height"] == receipt["height"]
    account = client.call_blocking("account_get", address=str(recipient))
    assert int(account["balance"]) == 12 * DCT + DCT // 2
    # A named request pays once however often it is run (issue 12: a retry paid twice).
    named = [
        dcent("faucet", str(recipient), "1", "--dir", str(testnet_dir), "--json", "--request-id", "grant-1")
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in named), [run.stderr for run in named]
    first, second = (json.loads(run.stdout) for run in named)
    assert (first["resumed"], second["resumed"]) == (False, True) and first["hash"] == second["hash"]
    account = client.call_blocking("account_get", address=str(recipient))
    assert int(account["balance"]) == 13 * DCT + DCT // 2

    down = dcent("down", "--dir", str(testnet_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    for node in nodes:
        assert f"node-{node['index']} (pid {node['pid']}): stopped, exit code 0" in down.stdout
    assert processes_using(testnet_dir.resolve()) == []
    assert [(n["alive"], n["pid"]) for n in status(testnet_dir)] == [(False, None)] * 3

    # `up` on the stopped testnet starts the same chain again: the funds are still there.
    restarted = dcent("up", "--dir", str(testnet_dir))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "Restarting the 3-node testnet" in restarted.stdout
    assert int(client.call_blocking("account_get", address=str(recipient))["balance"]) == 13 * DCT + DCT // 2
    assert dcent("down", "--dir", str(testnet_dir)).returncode == 0
    assert processes_using(testnet_dir.resolve()) == []


def status_doc(directory: Path, *extra: str) -> dict[str, Any]:
    result = dcent("status", "--dir", str(directory), "--json", *extra)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.slow
def test_stop_start_kill_restart_and_a_stalled_chain_named_in_status(testnet_dir: Path) -> None:
    d = str(testnet_dir)
    base_port = pick_base_port(3)
    up = dcent(
        "up",
        "-n",
        "3",
        "--providers",
        "0",
        "--dir",
        d,
        "--base-port",
        str(base_port),
        "--restart",
        "on-failure",
    )
    assert up.returncode == 0, up.stdout + up.stderr
    first = status(testnet_dir)

    # A crash (SIGKILL) is recovered by the node's supervisor, and status counts it.
    killed = dcent("kill", "2", "--dir", d)
    assert killed.returncode == 0 and f"node-2 (pid {first[2]['pid']}): killed" in killed.stdout

    def back_after_a_crash() -> dict[str, object] | None:
        node = status(testnet_dir)[2]
        fine = node["state"] == "running" and node["restarts"] == 1 and node["height"] is not None
        return node if fine and node["pid"] != first[2]["pid"] else None

    wait_until_blocking(back_after_a_crash, what="node-2's supervisor restarted it", timeout=120)

    # A clean stop is not restarted; with one of three equal validators gone no quorum remains,
    # and status says so, naming the missing validator.
    stopped = dcent("stop", "node-2", "--dir", d)
    assert stopped.returncode == 0 and "node-2" in stopped.stdout and "stopped, exit code 0" in stopped.stdout
    stalled = wait_until_blocking(
        lambda: (doc := status_doc(testnet_dir, "--stall-after", "4"))["chain"]["stalled"] and doc,
        what="status calls the chain stalled",
    )
    assert {"node": "node-2", "why": "not running"} in stalled["chain"]["missing_validators"]
    assert stalled["nodes"][2]["state"] == "stopped" and stalled["nodes"][2]["alive"] is False
    said = dcent("status", "--dir", d, "--stall-after", "4").stdout
    assert "STALLED" in said and "node-2 (not running)" in " ".join(said.split())

    # Started again it serves, and the chain commits past where it stalled.
    started = dcent("start", "2", "--dir", d)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "node-2: started" in started.stdout and "serving" in started.stdout
    wait_until_blocking(
        lambda: (
            (doc := status_doc(testnet_dir))["chain"]["height"] > stalled["chain"]["height"]
            and not doc["chain"]["stalled"]
        ),
        what="the chain commits again",
        timeout=120,
    )
    again = dcent("start", "2", "--dir", d)
    assert again.returncode == 1 and "already running" in again.stdout

    restarted = dcent("restart", "1", "--dir", d)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert status(testnet_dir)[1]["pid"] != first[1]["pid"]
    unknown = dcent("stop", "7", "--dir", d)
    assert unknown.returncode == 1 and "nodes 0-2" in unknown.stderr

    assert dcent("down", "--dir", d).returncode == 0
    assert processes_using(testnet_dir.resolve()) == []


def test_up_refuses_a_directory_that_is_not_a_testnet(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = dcent("up", "--dir", str(tmp_path), "--base-port", str(pick_base_port(4)))
    assert result.returncode == 1
    assert "is not a testnet directory" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_faucet_refuses_a_mistyped_address_before_anything_runs(tmp_path: Path) -> None:
    address = str(PrivateKey.generate().address)
    typo = address[:-1] + ("q" if address[-1] != "q" else "p")
    result = dcent("faucet", typo, "1", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error 1101: ")  # InvalidAddressError, with its code
    assert "Traceback" not in result.stderr


def test_status_of_a_directory_without_a_testnet_says_so(tmp_path: Path) -> None:
    result = dcent("status", "--dir", str(tmp_path), "--json")
    assert result.returncode == 1
    assert "holds no testnet" in result.stderr


# --- the layout `up` writes, and the supervisor it runs nodes under --------------------------


def test_layout_derives_ports_bootstrap_configs_and_genesis(tmp_path: Path) -> None:
    layout = build_network(tmp_path / "net", NetworkPlan(nodes=3, providers=1, base_port=30000, seed=b"s"))
    assert [(n.p2p_port, n.rpc_port, n.metrics_port) for n in layout.nodes] == [
        (30000, 30001, 30002),
        (30010, 30011, 30012),
        (30020, 30021, 30022),
    ]
    assert layout.nodes[2].bootstrap == (layout.nodes[0].p2p_addr, layout.nodes[1].p2p_addr)
    for node in layout.nodes:
        config = parse_config(node.paths.config.read_text())
        assert config.p2p.listen == f"/ip4/127.0.0.1/tcp/{node.p2p_port}"
        assert (config.rpc.host, config.rpc.port) == ("127.0.0.1", node.rpc_port)
        assert config.metrics_addr == f"127.0.0.1:{node.metrics_port}"
        assert config.consensus.timeout_commit_ms == 250
        assert config.market.simulated_gpus == ("2xH100-80GB" if node.index == 0 else "")
        assert node.ports_path.read_text().split() == [
            str(p) for p in (node.p2p_port, node.rpc_port, node.metrics_port)
        ]
        for key_file in (node.paths.validator_key, node.paths.node_key):
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert node.paths.genesis.read_text() == layout.genesis_path.read_text()
    genesis = layout.genesis()
    assert genesis.chain_id.startswith("dcent-testnet-")
    assert [v.public_key.hex() for v in genesis.validators] == [n.public_key for n in layout.nodes]
    balances = {str(Address(a.address)): a.balance for a in genesis.accounts}
    assert balances[layout.faucet_address] == FAUCET_BALANCE
    assert all(balances[n.address] == NODE_BALANCE for n in layout.nodes)
    assert str(layout.faucet_key().address) == layout.faucet_address
    assert NetworkLayout.load(layout.root) == layout


def test_a_seed_reproduces_every_key_and_the_chain_id(tmp_path: Path) -> None:
    first = build_network(tmp_path / "a", NetworkPlan(nodes=2, seed=b"seed-1"))
    again = build_network(tmp_path / "b", NetworkPlan(nodes=2, seed=b"seed-1"))
    other = build_network(tmp_path / "c", NetworkPlan(nodes=2, seed=b"seed-2"))
    identity = [(n.address, n.peer_id) for n in first.nodes]
    assert [(n.address, n.peer_id) for n in again.nodes] == identity
    assert (again.chain_id, again.faucet_address) == (first.chain_id, first.faucet_address)
    assert [(n.address, n.peer_id) for n in other.nodes] != identity
    assert other.chain_id != first.chain_id


def test_an_added_node_is_a_full_node_dialling_every_earlier_node(tmp_path: Path) -> None:
    layout = build_network(tmp_path / "net", NetworkPlan(nodes=2, base_port=30100, seed=b"s"))
    updated, late = add_node(layout)
    assert (late.index, late.p2p_port, late.validator) == (2, 30120, False)
    assert late.bootstrap == tuple(n.p2p_addr for n in layout.nodes)
    assert NetworkLayout.load(layout.root).nodes == updated.nodes
    twin = add_node(updated, validator_key=updated.validator_key(0))[1]
    assert (twin.validator, twin.address) == (True, layout.nodes[0].address)


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        (NetworkPlan(nodes=0), "nodes"),
        (NetworkPlan(nodes=2, providers=3), "providers"),
        (NetworkPlan(nodes=2, validators=0), "validators"),
        (NetworkPlan(nodes=3, base_port=65520), "base port"),
        (NetworkPlan(nodes=2, executor="chroot"), "executor"),
        (NetworkPlan(nodes=2, providers=1, simulated_gpus="2xH9000-80GB"), "simulated GPUs"),
    ],
)
def test_impossible_plans_are_refused_before_anything_is_written(
    tmp_path: Path, plan: NetworkPlan, field: str
) -> None:
    with pytest.raises(InvalidPlan) as refused:
        build_network(tmp_path / "net", plan)
    assert refused.value.code == 5907
    assert refused.value.message.startswith(field)
    assert not (tmp_path / "net").exists()


def test_supervisor_forwards_sigterm_and_records_the_exit_code(tmp_path: Path) -> None:
    pid_file, exit_file = tmp_path / "node.pid", tmp_path / "node.exit"
    ready = tmp_path / "ready"
    # The child says when its handler is in place: a SIGTERM before that would kill it outright.
    child = HANDLES_SIGTERM_WITH_7.format(ready=str(ready))
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.testnet.supervisor",
            str(pid_file),
            str(exit_file),
            "--",
            sys.executable,
            "-c",
            child,
        ],
        cwd=ROOT,
    )
    try:
        node = wait_until_blocking(lambda: read_pid_file(pid_file), what="the supervisor wrote the pid file")
        wait_until_blocking(ready.exists, what="the child installed its SIGTERM handler")
        assert node is not None
        assert node.pid != supervisor.pid and is_alive(node)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 7
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert exit_file.read_text() == "7\n"
    assert not pid_file.exists()
    assert not is_alive(node)


def supervise_on_failure(pid_file: Path, exit_file: Path, code: str) -> subprocess.Popen[bytes]:
    """The supervisor with ``--restart on-failure`` over ``python -c code``."""
    command = [*SUPERVISOR, "--restart", "on-failure", str(pid_file), str(exit_file), "--"]
    return subprocess.Popen([*command, sys.executable, "-c", code], cwd=ROOT)


def test_on_failure_the_supervisor_restarts_a_crashing_node_until_told_to_stop(tmp_path: Path) -> None:
    pid_file, exit_file = tmp_path / "node.pid", tmp_path / "node.exit"
    state_file = tmp_path / "node.supervisor"
    crash = "import sys\nsys.exit(3)\n"
    supervisor = supervise_on_failure(pid_file, exit_file, crash)
    try:

        def restarted() -> dict[str, object] | None:
            try:
                doc = json.loads(state_file.read_text())
            except (OSError, ValueError):
                return None
            return doc if doc["restarts"] >= 1 and doc["state"] == "backoff" else None

        state = wait_until_blocking(restarted, what="the supervisor restarted the crashed command once")
        assert state is not None and state["pid"] == supervisor.pid and state["restart"] == "on-failure"
        assert exit_file.read_text() == "3\n"
        # A stop signal in the back-off ends it: nothing is started again.
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 3
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert not state_file.exists() and not pid_file.exists()


def test_a_node_asked_to_stop_is_not_restarted_whatever_its_exit_code(tmp_path: Path) -> None:
    pid_file, exit_file = tmp_path / "node.pid", tmp_path / "node.exit"
    ready = tmp_path / "ready"
    # The child says when its handler is in place: a SIGTERM before that would kill it outright.
    child = HANDLES_SIGTERM_WITH_7.format(ready=str(ready))
    supervisor = supervise_on_failure(pid_file, exit_file, child)
    try:
        wait_until_blocking(lambda: read_pid_file(pid_file), what="the supervisor wrote the pid file")
        wait_until_blocking(ready.exists, what="the child installed its SIGTERM handler")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 7
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert exit_file.read_text() == "7\n" and not pid_file.exists()


# A supervisor that does not go once its node has exited: it records the exit code and then
# waits on its stdin, which the test never writes, before removing its state file. A `start` in
# that window was refused (testnet restart, in CI); here the window never closes by itself.
LINGERING_SUPERVISOR = (
    "import json, os, signal, subprocess, sys\n"
    "from pathlib import Path\n"
    "from node.testnet.supervisor import STATE_FILE_NAME, process_start_time, write_atomically\n"
    "pid_file, exit_file = Path(sys.argv[1]), Path(sys.argv[2])\n"
    "state = pid_file.with_name(STATE_FILE_NAME)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
    "signal.signal(signal.SIGTERM, lambda *_: child.terminate())\n"
    "me = os.getpid()\n"
    "doc = {'pid': me, 'start_time': process_start_time(me), 'restart': 'on-failure', 'restarts': 0}\n"
    "write_atomically(state, json.dumps({**doc, 'state': 'running'}))\n"
    "write_atomically(pid_file, f'{child.pid} {process_start_time(child.pid)}\\n')\n"
    "code = child.wait()\n"
    "write_atomically(exit_file, f'{code}\\n')\n"
    "pid_file.unlink()\n"
    "sys.stdin.read()\n"
    "state.unlink()\n"
)


def test_a_stop_returns_once_the_supervisor_is_gone_so_a_start_right_after_is_not_refused(
    tmp_path: Path,
) -> None:
    node = build_network(tmp_path / "net", NetworkPlan(nodes=1, seed=b"s")).nodes[0]
    supervisor = subprocess.Popen(
        [sys.executable, "-c", LINGERING_SUPERVISOR, str(node.pid_path), str(node.exit_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        start_new_session=True,  # as `testnet up` starts them: a stop may kill its process group
    )
    try:
        wait_until_blocking(lambda: supervisor_of(node) and read_pid_file(node.pid_path), what="it started")
        [stopped] = stop_nodes([node])
        assert stopped.exit_code == -signal.SIGTERM and not stopped.killed
        # Gone before stop returned (after a bounded wait, killed): without that wait, `start`
        # saw a live supervisor and refused with "about to restart it".
        assert supervisor_of(node) is None and supervisor.poll() is not None
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        supervisor.wait()
        assert supervisor.stdin is not None
        supervisor.stdin.close()


def test_on_a_host_with_real_gpus_provider_zero_sells_them_and_non_providers_sell_none(
    tmp_path: Path,
) -> None:
    layout = build_network(tmp_path / "net", NetworkPlan(nodes=3, providers=2, real_gpus=True))
    markets = [parse_config(n.paths.config.read_text()).market for n in layout.nodes]
    # "" makes node-0 probe NVML; node-1 declares simulated GPUs; node-2 sells none, so it does
    # not probe NVML and sell the host's GPUs a second time.
    assert [n.gpu_source for n in layout.nodes] == ["nvml", "simulated", "none"]
    assert [m.simulated_gpus for m in markets[:2]] == ["", "2xH100-80GB"]
    assert [m.sell_gpus for m in markets] == [True, True, False]
