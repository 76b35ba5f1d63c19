"""Latency between namespaces without netem: a userspace switch on TUN devices.

Where the kernel has no ``sch_netem`` (:class:`~node.testnet.errors.NetemUnavailable`), this
process shapes the node-to-node traffic of a namespace fabric itself. It gives every namespace a
TUN device ``dct<tag><i>`` and a host route to each other node's address through it (more
specific than the bridge's /24, so node-to-node packets take the TUN; the root namespace still
reaches every node's RPC over the bridge, unshaped). It reads each IPv4 packet a node sends,
holds it for half the RTT (plus a uniform 0..jitter, or drops it with the loss rate), and writes
it into the destination node's TUN: a round trip between two nodes costs the RTT, as with netem
(:mod:`node.testnet.netns`).

Run as ``python -m node.testnet.tunshaper TAG SUBNET NODES RTT_MS JITTER_MS LOSS_PCT``: it prints
``ready`` once the devices and routes are up, and relays until SIGTERM / SIGINT. The TUN devices
live as long as the process (they are not persistent), so ending it removes them.

Cost: every packet passes through this one Python process (~10-30 us of CPU each); on a loaded
host that adds queueing on top of the configured delay, so the delay is a floor, and the
process's CPU time is printed at the end.
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import IO

from node.testnet.errors import FabricError, NetemUnavailable
from node.testnet.netns import Fabric, LinkShape, Placement

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536
READY_TIMEOUT_S = 30.0
#: How a fabric's links are shaped: netem only, the TUN switch only, or netem when the kernel has it.
SHAPERS = ("auto", "netem", "tun")


def tun_name(placement: Placement, index: int) -> str:
    return f"dct{placement.tag}{index}"


def tun_unavailable() -> str | None:
    """Why the TUN switch cannot run here, or None when it can: it needs ``/dev/net/tun`` (a
    container or chroot with a minimal /dev has none)."""
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        return f"/dev/net/tun cannot be opened ({exc.strerror})"
    return None


def open_tun(name: str) -> int:
    """A TUN device named ``name`` in this (the root) namespace, and the fd that owns it."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def wire(placement: Placement, nodes: int) -> dict[int, int]:
    """Make the TUN devices, move each into its namespace and route the other nodes through it.
    Returns fd -> node index."""
    fds: dict[int, int] = {}
    for index in range(nodes):
        name, namespace = tun_name(placement, index), placement.namespace(index)
        fd = open_tun(name)
        fds[fd] = index
        _ip("link", "set", name, "netns", namespace)
        _ip("-n", namespace, "link", "set", name, "up")
        for other in range(nodes):
            if other != index:
                _ip(
                    "-n", namespace, "route", "replace", f"{placement.address(other)}/32",
                    "dev", name, "src", placement.address(index),
                )  # fmt: skip
    return fds


def relay(fds: dict[int, int], placement: Placement, rtt_ms: int, jitter_ms: int, loss_pct: float) -> int:
    """Forward packets between the TUNs, each after its delay, until a stop signal. Returns the
    number of packets relayed."""
    by_address = {bytes(int(part) for part in placement.address(i).split(".")): i for i in fds.values()}
    fd_of = {index: fd for fd, index in fds.items()}
    one_way_s, jitter_s = rtt_ms / 2000, jitter_ms / 2000
    rng = random.Random(int(placement.tag, 16))
    selector = selectors.DefaultSelector()
    for fd in fds:
        selector.register(fd, selectors.EVENT_READ)
    pending: list[tuple[float, int, int, bytes]] = []
    sequence = relayed = 0
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, target, packet = heapq.heappop(pending)
            try:
                os.write(fd_of[target], packet)
                relayed += 1
            except BlockingIOError:
                pass  # the namespace's TUN queue is full: a drop, as a full link would
        timeout = max(0.0, pending[0][0] - now) if pending else 0.5
        for key, _ in selector.select(timeout):
            fd = int(key.fd)
            while True:
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    continue  # IPv4 only (the fabric has no IPv6 addresses)
                destination = by_address.get(packet[16:20])
                if destination is None or (loss_pct and rng.random() * 100 < loss_pct):
                    continue
                delay = one_way_s + (rng.random() * jitter_s if jitter_s else 0.0)
                sequence += 1
                heapq.heappush(pending, (time.monotonic() + delay, sequence, destination, packet))
    return relayed


@dataclass(slots=True)
class TunSwitch:
    """A running shaper process (``python -m node.testnet.tunshaper``) for one fabric."""

    process: subprocess.Popen[str]

    @classmethod
    def start(cls, placement: Placement, nodes: int, shape: LinkShape) -> TunSwitch:
        """Start it and return once its devices and routes are up. Raises :class:`FabricError`."""
        process = subprocess.Popen(
            _command(placement, nodes, shape), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        first = _read_line(process.stdout, READY_TIMEOUT_S)
        if first.strip() != "ready":
            process.kill()
            rest = process.communicate()[0]
            raise FabricError(f"the TUN shaper did not start: {first}{rest}".strip())
        return cls(process)

    def stop(self) -> str:
        """End it (its TUN devices go with it); its last words (packets relayed, CPU time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out = self.process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            out = self.process.communicate()[0]
        return out.strip()


def _command(placement: Placement, nodes: int, shape: LinkShape) -> list[str]:
    command = [sys.executable, "-m", "node.testnet.tunshaper", placement.tag, placement.subnet, str(nodes)]
    return command + [str(shape.rtt_ms), str(shape.jitter_ms), f"{shape.loss_pct:g}"]


def start_detached(placement: Placement, nodes: int, shape: LinkShape, log_path: Path, pid_path: Path) -> int:
    """Start the shaper in a session of its own (it outlives ``dcent testnet up``, as the nodes do),
    its output in ``log_path``, its pid in ``pid_path``; return once it is ready. Raises FabricError."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            _command(placement, nodes, shape),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if log_path.read_text().startswith("ready"):
            return process.pid
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    pid_path.unlink(missing_ok=True)
    raise FabricError(f"the TUN shaper did not start; {log_path}: {log_path.read_text().strip()}")


def stop_detached(pid_path: Path, timeout_s: float = 10.0) -> bool:
    """SIGTERM the shaper named in ``pid_path`` and wait for it; False when none was running."""
    try:
        pid = int(pid_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    pid_path.unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _read_line(stream: IO[str] | None, timeout_s: float) -> str:
    if stream is None:
        return ""
    ready = selectors.DefaultSelector()
    ready.register(stream, selectors.EVENT_READ)
    return stream.readline() if ready.select(timeout_s) else f"(nothing within {timeout_s:g} s)"


def shaped_fabric(placement: Placement, nodes: int, shaper: str = "auto") -> tuple[Fabric, TunSwitch | None]:
    """Make the fabric and shape its links: with netem (``netem``), with the TUN switch (``tun``),
    or with netem where the kernel has it and the switch where it has not (``auto``). Returns the
    fabric and the switch to stop (None with netem). Raises NetnsUnavailable, NetemUnavailable
    (``netem`` on a kernel without it), FabricError."""
    if shaper not in SHAPERS:
        raise FabricError(f"shaper: one of {', '.join(SHAPERS)}, got {shaper!r}")
    if shaper != "tun" or not placement.shape.shaped:
        try:
            return Fabric.create(placement, nodes), None
        except NetemUnavailable:
            if shaper == "netem":
                raise
    fabric = Fabric.create(replace(placement, shape=LinkShape()), nodes)
    try:
        return fabric, TunSwitch.start(placement, nodes, placement.shape)
    except FabricError:
        fabric.destroy()
        raise


def main(argv: list[str]) -> int:
    tag, subnet, nodes, rtt_ms, jitter_ms, loss_pct = argv
    placement = Placement(tag, subnet)
    fds = wire(placement, int(nodes))
    print("ready", flush=True)
    relayed = relay(fds, placement, int(rtt_ms), int(jitter_ms), float(loss_pct))
    print(f"tunshaper: relayed {relayed} packets, {time.process_time():.1f} s CPU", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
