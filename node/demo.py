"""`make demo`: a fresh 4-node testnet, a wallet, and one GPU job from submission to settlement.

Every step is a real `dcent` command, printed before it runs, so the demo doubles as a tour of the
CLI: `testnet up` (4 validator processes, the first two sell GPUs: real ones through NVML when
this machine has them, simulated ones otherwise), a new encrypted wallet funded from the genesis
faucet, a transfer from the wallet to the account of the node that will pay for the job, `job
submit --wait` (matching, contract, escrow, the run in the provider's bubblewrap sandbox,
delivery, settlement), `job result`. Then balances before and after, rewards and burned fees, and
`testnet down` unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from node.executor.selftest import self_test_here
from node.rpc.client import RpcClient
from node.secret_files import write_secret_file
from node.testnet.layout import NetworkLayout
from protocol.units import format_amount

ROOT = Path(__file__).resolve().parent.parent
JOB_SPEC = ROOT / "configs" / "jobs" / "python-train.toml"
#: The node whose account pays for the job: not a provider, so the job runs elsewhere.
REQUESTER = 2
DEFAULT_BASE_PORT = 27100


@dataclass
class Demo:
    directory: Path
    env: dict[str, str]

    def dcent(self, *args: str, capture: bool = False) -> str:
        """Run one CLI command as a user would (printed first); exit on failure."""
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        print(f"\n$ dcent {shown}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "node.cli.main", *args],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"demo: `dcent {shown}` failed with exit code {result.returncode}")
        return result.stdout if capture else ""

    def dcent_json(self, *args: str) -> object:
        out = self.dcent(*args, "--output", "json", capture=True)
        return json.loads(out)


def balances(layout: NetworkLayout, addresses: dict[str, str]) -> dict[str, int]:
    node = layout.node(0)
    client = RpcClient.for_home(node.paths.root, node.rpc_url)
    return {
        name: int(client.call_blocking("account_get", address)["balance"])
        for name, address in addresses.items()
    }


def economics(layout: NetworkLayout) -> dict[str, int]:
    node = layout.node(0)
    client = RpcClient.for_home(node.paths.root, node.rpc_url)
    answer = client.call_blocking("economics_params")
    return {key: int(answer[key]) for key in ("supply", "minted", "burned")}


def print_job_money(job: dict[str, object], layout: NetworkLayout) -> None:
    """Where the job's money went, from the contract's terms and the receipt both signed."""
    node = layout.node(0)
    params = RpcClient.for_home(node.paths.root, node.rpc_url).call_blocking("economics_params")["params"]
    price, gpu_ms = int(str(job["price_per_gpu_second"])), int(str(job["gpu_ms"]))
    max_cost, collateral = int(str(job["max_cost"])), int(str(job["collateral"]))
    paid = int(str(job["cost"]))
    fee = paid * int(params["protocol_fee_share"]) // 10**18
    print("\nThe job's money (contract both signed, settled on the ledger):")
    print(f"  escrowed by the requester: {format_amount(max_cost)} (max GPU-seconds x price)")
    print(f"  locked by the provider:    {format_amount(collateral)} collateral, returned at settlement")
    print(
        f"  metered: {gpu_ms} GPU-milliseconds x {format_amount(price)} per GPU-second = "
        f"{format_amount(paid)} (rounded up to a base unit: no job is free)"
    )
    print(
        f"  to the provider:           {format_amount(paid - fee)}; protocol fee burned: {format_amount(fee)}"
    )
    print(f"  back to the requester:     {format_amount(max_cost - paid)}")


def check_model(result_dir: Path) -> str | None:
    """Print the trained model the job wrote to out/model.json; why it is not right, or None.

    The job fits a line to eight points near y = 2x + 1 by gradient descent.
    """
    path = result_dir / "model.json"
    if not path.is_file():
        return f"the job's output {path.name} did not come back"
    try:
        model = json.loads(path.read_text())
        slope, intercept, loss = float(model["slope"]), float(model["intercept"]), float(model["loss"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path.name} is not the model the job writes: {exc!r}"
    print(
        f"\nThe trained model (out/model.json): y = {slope:.4f} x + {intercept:.4f}, mean squared error {loss:.4f}"
    )
    if not (1.8 < slope < 2.2 and 0.5 < intercept < 1.5 and loss < 0.5):
        return f"the model does not fit the points (slope {slope}, intercept {intercept}, loss {loss})"
    print("  it fits the points (y = 2x + 1 with noise): the job really ran")
    return None


def print_sandbox(layout: NetworkLayout, provider_address: str) -> None:
    """How the provider ran the job: in its sandbox, or unsandboxed, and why."""
    node = next((n for n in layout.nodes if n.address == provider_address), None)
    if node is None:
        return
    status = RpcClient.for_home(node.paths.root, node.rpc_url).call_blocking("node_status")
    provider = status["provider"]
    if provider.get("sandboxed"):
        print(f"\nThe job ran in {node.moniker}'s sandbox: {provider['summary']}")
        return
    report = self_test_here("bubblewrap")
    print(f"\nNOTE: the job ran UNSANDBOXED on {node.moniker} ({provider['summary']}).")
    print(f"  why: bubblewrap cannot build its sandbox on this host: {report.reason or 'see testnet up'}")
    print(f"  fix: {report.fix or '-'}")


def run(directory: Path, base_port: int, keep: bool) -> int:
    env = {**os.environ, "DCENT_TESTNET_DIR": str(directory)}
    demo = Demo(directory, env)
    print("dcent demo: a 4-node testnet, two GPU providers, one job from a wallet to settlement")
    demo.dcent(
        "testnet",
        "up",
        "-n",
        "4",
        "--providers",
        "2",
        "--dir",
        str(directory),
        "--base-port",
        str(base_port),
        "--fresh",
    )
    try:
        layout = NetworkLayout.load(directory)
        requester = layout.node(REQUESTER)
        home = str(requester.paths.root)
        keystore = directory / "keystore"
        password = directory / "wallet.password"
        # Mode 0600 from the first byte (write_text then chmod leaves it readable for a moment).
        write_secret_file(password, (secrets.token_hex(16) + "\n").encode(), replace=True)
        wallet = demo.dcent_json(
            "wallet", "new", "--name", "demo", "--keystore", str(keystore), "--password-file", str(password)
        )
        assert isinstance(wallet, dict)
        address = str(wallet["address"])

        accounts = {"wallet": address, f"node-{REQUESTER} (pays for the job)": requester.address}
        accounts |= {f"node-{i} (provider)": layout.node(i).address for i in range(2)}
        accounts["node-3"] = layout.node(3).address
        before, econ_before = balances(layout, accounts), economics(layout)

        demo.dcent("testnet", "faucet", address, "1000", "--dir", str(directory))
        signing = (
            "--keystore",
            str(keystore),
            "--password-file",
            str(password),
            "--from",
            "demo",
            "--home",
            home,
        )
        demo.dcent("wallet", "transfer", requester.address, "250", *signing)
        demo.dcent("wallet", "balance", address, "--home", home)
        demo.dcent("job", "submit", str(JOB_SPEC), "--wait", "--home", home)
        jobs = demo.dcent_json("job", "list", "--home", home)
        assert isinstance(jobs, list) and jobs, "the node lists no job"
        job = jobs[0]
        result_dir = directory / "result"
        demo.dcent("job", "result", str(job["job_id"]), "--out", str(result_dir), "--home", home)
        demo.dcent("job", "logs", str(job["job_id"]), "--home", home)
        for path in sorted(result_dir.rglob("*")):
            if path.is_file():
                print(f"  {path.relative_to(result_dir)}: {path.read_text(errors='replace').strip()[:200]}")
        print_sandbox(layout, str(job["provider"]))
        wrong = check_model(result_dir)

        after, econ_after = balances(layout, accounts), economics(layout)
        print("\nBalances (before -> after):")
        for name in accounts:
            delta = after[name] - before[name]
            sign = "+" if delta >= 0 else "-"
            print(
                f"  {name:<28} {format_amount(before[name]):>24} -> {format_amount(after[name]):>24}"
                f"  ({sign}{format_amount(abs(delta))})"
            )
        if job["state"] == "settled" and job.get("cost") is not None:
            print_job_money(job, layout)
        print(
            f"\nWhile the demo ran: {format_amount(econ_after['minted'] - econ_before['minted'])} issued as "
            f"block rewards to validators and providers, {format_amount(econ_after['burned'] - econ_before['burned'])} "
            f"burned (fee share and protocol fee); supply {format_amount(econ_after['supply'])}."
        )
        if job["state"] != "settled" or job.get("outcome") != "completed" or job.get("exit_status") != [0]:
            print(
                f"demo failed: the job ended {job['state']}, outcome {job.get('outcome')}, exit status "
                f"{job.get('exit_status')}: {job.get('error')}",
                file=sys.stderr,
            )
            return 1
        if wrong is not None:
            print(f"demo failed: {wrong}", file=sys.stderr)
            return 1
        print(
            f"\ndemo complete: the job completed with exit status 0 and settled: {job['job_id']} ran on "
            f"{job['provider']} ({int(job['gpu_ms']) / 1000:.3f} GPU-seconds at "
            f"{format_amount(int(job['price_per_gpu_second']))}/GPU-s), contract {str(job['contract_hash'])[:16]}..."
        )
        return 0
    finally:
        if keep:
            print(
                f"\nThe testnet keeps running in {directory}; stop it with: dcent testnet down --dir {directory}"
            )
        else:
            demo.dcent("testnet", "down", "--dir", str(directory))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the testnet running at the end")
    parser.add_argument("--dir", type=Path, help="testnet directory (default: a temporary one)")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="first port of the testnet")
    args = parser.parse_args(argv)
    if args.dir is not None:
        return run(args.dir.resolve(), args.base_port, args.keep)
    directory = Path(tempfile.mkdtemp(prefix="dcent-demo-"))
    try:
        return run(directory, args.base_port, args.keep)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
