"""`dcent gpu list [--json]`: what the NVML probe sees on this host, and whether jobs can run here.

Exit status 0 whether or not there are GPUs: "no GPUs" is an answer, not a failure. Text output
is a plain table, or the one line ``no GPUs: <reason>``; ``--json`` prints one JSON document with
the same shape in both cases. ``--simulate SPEC`` shows the GPUs a testnet config would declare
(e.g. ``2xH100-80GB``) instead of probing, each marked simulated.

GPUs are sold only through a working sandbox, so the listing ends with the executor's self-test
(a real tiny job, as the node runs it at start): ``sandbox: bubblewrap sandbox ok; limits
enforced: ...``, or why jobs cannot run here and the fix (the AppArmor sysctl, a missing package, a
chroot); in JSON, the ``sandbox`` object. The executor is the one the node's config names
(``--home`` / ``DCENT_HOME``), else bubblewrap, or ``--executor``; ``--no-sandbox-check`` skips it.
"""

from __future__ import annotations

import argparse
import json

from gpu.errors import GpuError
from gpu.nvml import probe
from gpu.simulated import simulated_report
from node.cli.report import report_error
from node.config import ConfigError, HomePaths, load_config, resolve_home
from node.executor.errors import ExecutorError
from node.executor.select import EXECUTOR_NAMES
from node.executor.selftest import SelfTestReport, self_test_here
from node.wallet.cliargs import add_command_group
from protocol.hardware import GpuDevice, ProbeReport

MIB = 2**20
EXIT_OK = 0
EXIT_USAGE = 2

_COLUMNS = (
    "ID",
    "UUID",
    "NAME",
    "MEMORY FREE/TOTAL",
    "UTIL",
    "TEMP",
    "POWER",
    "CC",
    "MIG",
    "SOURCE",
    "HEALTH",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gpu`` and its subcommands to the ``dcent`` command tree."""
    commands = add_command_group(
        subparsers, "gpu", help_text="inspect this host's GPUs", description="Inspect this host's GPUs."
    )
    list_parser = commands.add_parser(
        "list",
        help="list the GPUs NVML sees",
        description="List the GPUs and MIG devices NVML sees, with their health.",
    )
    list_parser.add_argument("--json", action="store_true", help="print one JSON document")
    list_parser.add_argument(
        "--simulate",
        metavar="SPEC",
        help="show the simulated GPUs SPEC declares (e.g. 2xH100-80GB,1xA100-40GB) instead of probing",
    )
    list_parser.add_argument(
        "--label",
        default="node",
        help="node label the simulated GPUs' UUIDs derive from (default: %(default)s)",
    )
    list_parser.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        help="the sandbox to self-test (default: the node config's market.executor, else bubblewrap)",
    )
    list_parser.add_argument(
        "--home", help="the node's home, for its executor (default $DCENT_HOME, ~/.dcent)"
    )
    list_parser.add_argument(
        "--no-sandbox-check", action="store_true", help="do not run the executor's self-test"
    )
    list_parser.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    if args.simulate is not None:
        try:
            report = simulated_report(args.simulate, args.label)
        except GpuError as exc:
            return report_error(exc.message, exc.code, exit_code=EXIT_USAGE)
    else:
        report = probe()
    sandbox = (
        None if args.no_sandbox_check else sandbox_check(args.executor or configured_executor(args.home))
    )
    if args.json:
        print(report_json(report, sandbox))
    else:
        print(report_text(report))
        if sandbox is not None:
            print(sandbox_line(sandbox))
    return EXIT_OK


def configured_executor(home: str | None) -> str:
    """The executor the node's config names, or bubblewrap when there is no readable config."""
    paths = HomePaths(resolve_home(home))
    if not paths.config.exists():
        return "bubblewrap"
    try:
        return load_config(paths).market.executor
    except ConfigError:
        return "bubblewrap"


def sandbox_check(executor: str) -> SelfTestReport:
    """The executor's self-test here (a module attribute, so tests can stand in for it)."""
    try:
        return self_test_here(executor)
    except ExecutorError as exc:
        return SelfTestReport(False, executor, exc.message, "see the node configuration's market.executor")


def sandbox_line(report: SelfTestReport) -> str:
    return f"sandbox: {report.summary()}"


def report_json(report: ProbeReport, sandbox: SelfTestReport | None = None) -> str:
    """The report as one JSON document; ``gpus`` is an empty list when there are none;
    ``sandbox`` is the executor's self-test (``null`` when skipped)."""
    document: dict[str, object] = {
        "nvml_available": report.nvml_available,
        "driver_version": report.driver_version,
        "cuda_version": report.cuda_version,
        "cuda_version_text": report.cuda_version_text,
        "message": report.message,
        "gpus": [device.to_json() for device in report.devices],
        "sandbox": None if sandbox is None else {**sandbox.to_json(), "summary": sandbox.summary()},
    }
    return json.dumps(document, indent=2, sort_keys=True)


def report_text(report: ProbeReport) -> str:
    """A plain-text table, or the single line ``no GPUs: <reason>``."""
    if not report.devices:
        return f"no GPUs: {report.message}"
    driver = report.driver_version or "unknown"
    cuda = report.cuda_version_text or "unknown"
    lines = [f"driver {driver}, CUDA {cuda}"]
    if report.message:
        lines.append(report.message)
    rows = [_COLUMNS, *(_device_row(device) for device in report.devices)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines.extend(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n".join(lines)


def _device_row(device: GpuDevice) -> tuple[str, ...]:
    device_id = f"{device.index}:{device.mig_index}" if device.is_mig_device else str(device.index)
    if device.is_mig_device:
        mig = "device"
    elif device.mig_enabled:
        mig = "parent"  # sold only as its MIG devices
    else:
        mig = "-"
    return (
        device_id,
        device.uuid or "?",
        device.name or "?",
        _memory(device),
        _known(device.utilization_pct, "%"),
        _known(device.temperature_c, "C"),
        "-" if device.power_mw < 0 else f"{device.power_mw // 1000} W",
        device.compute_capability or "-",
        mig,
        "simulated" if device.simulated else "nvml",
        "ok" if device.healthy else f"UNHEALTHY: {device.health_reason}",
    )


def _memory(device: GpuDevice) -> str:
    total, free = device.memory_total_bytes, device.memory_free_bytes
    if total < 0:
        return "-"
    free_text = "-" if free < 0 else str(free // MIB)
    return f"{free_text}/{total // MIB} MiB"


def _known(value: int, unit: str) -> str:
    return "-" if value < 0 else f"{value}{unit}"
