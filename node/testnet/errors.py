"""Errors of the local testnet (codes 5900-5949), split by whose fault they are.

    5900  LocalnetError (root)
    5901  AlreadyRunning        the directory's testnet is already running
    5902  NotATestnet           the directory holds no testnet (or something else)
    5903  PortsInUse            a port the layout needs is taken by another program
    5904  NodeStartFailed       a node process exited during start-up
    5905  NotReady              the nodes did not connect and make blocks before the deadline
    5906  FaucetError           the faucet transfer was refused or never committed
    5907  InvalidPlan           impossible arguments (0 nodes, more providers than nodes, ...)
    5908  TestnetNodeNotRunning        a signal for a node that is not running
    5909  NetnsUnavailable      network namespaces cannot be made here (not root, no iproute2)
    5910  NetemUnavailable      the kernel has no netem qdisc: no emulated latency, jitter or loss
    5911  FabricError           an `ip` / `tc` command of the namespace fabric failed, or a bad shape

(The names avoid a ``Test`` prefix so that pytest never mistakes them for test classes.)
"""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class LocalnetError(NodeError):
    code: ClassVar[int] = 5900


class AlreadyRunning(LocalnetError):
    code: ClassVar[int] = 5901


class NotATestnet(LocalnetError):
    code: ClassVar[int] = 5902


class PortsInUse(LocalnetError):
    code: ClassVar[int] = 5903


class NodeStartFailed(LocalnetError):
    code: ClassVar[int] = 5904


class NotReady(LocalnetError):
    code: ClassVar[int] = 5905


class FaucetError(LocalnetError):
    code: ClassVar[int] = 5906


class InvalidPlan(LocalnetError):
    code: ClassVar[int] = 5907


class TestnetNodeNotRunning(LocalnetError):
    code: ClassVar[int] = 5908


class NetnsUnavailable(LocalnetError):
    code: ClassVar[int] = 5909


class NetemUnavailable(LocalnetError):
    code: ClassVar[int] = 5910


class FabricError(LocalnetError):
    code: ClassVar[int] = 5911
