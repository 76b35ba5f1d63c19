"""Nodes as hosts: one Linux network namespace per node, joined to one bridge, links shaped by netem.

The fabric (``dcent testnet up --netns``, ``tests/e2e/test_netns.py``, ``bench/finality.py
--latency``)::

    root namespace:  bridge dcb<tag>  (address <subnet>.254/24: the CLI, wallets and the RPC
                     clients of the root namespace reach every node through it)
                       |-- veth dcv<tag><i>  <==>  eth0 in namespace dcent-<tag>-<i>
                                                   (address <subnet>.<i+1>/24, plus its own lo)

Node i listens for peers and serves its RPC on ``<subnet>.<i+1>``; its metrics stay on the
namespace's own loopback. A :class:`Placement` (tag, subnet, link shape) is plain data kept in
the testnet's manifest; :class:`Fabric` makes it real and takes it down again, and is idempotent
both ways (``up`` after a reboot re-creates what is missing).

Latency: ``tc qdisc ... root netem delay D J loss L%`` on each node's ``eth0`` (inside its
namespace), so every packet a node sends waits D (+-J) once on its way out. A round trip between
two nodes crosses two such links: **RTT = 2 x D**, so ``--latency MS`` (an RTT, as ping shows it)
becomes ``delay MS/2`` on every link, ``--jitter MS`` becomes ``MS/2`` each way, and ``--loss PCT``
applies on each sender's link (a round trip then sees about twice it). The root namespace's side
is unshaped: an RPC call from the CLI sees half the RTT.

Needs root and iproute2 (``ip``, ``tc``), and a kernel with ``sch_netem`` for any shaping; each
missing piece is a typed error naming it (:class:`NetnsUnavailable`, :class:`NetemUnavailable`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

from node.testnet.errors import FabricError, NetemUnavailable, NetnsUnavailable

#: Interface names are at most 15 characters: "dcv" + 4 hex digits + the index leaves room.
MAX_FABRIC_NODES = 250
COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class LinkShape:
    """What netem does to the links: a round-trip time, its jitter, and a loss rate per link."""

    rtt_ms: int = 0
    jitter_ms: int = 0
    loss_pct: float = 0.0

    @property
    def shaped(self) -> bool:
        return bool(self.rtt_ms or self.jitter_ms or self.loss_pct)

    def check(self) -> None:
        """Raises :class:`FabricError` for a negative or impossible value."""
        if self.rtt_ms < 0 or self.jitter_ms < 0:
            raise FabricError(f"latency and jitter must be >= 0 ms, got {self.rtt_ms} and {self.jitter_ms}")
        if not 0 <= self.loss_pct < 100:
            raise FabricError(f"loss: a percentage in [0, 100), got {self.loss_pct:g}")

    def netem_args(self) -> list[str]:
        """``tc ... netem`` arguments for one link: half the RTT and half the jitter, in us."""
        args = ["delay", f"{self.rtt_ms * 500}us"]
        if self.jitter_ms:
            args.append(f"{self.jitter_ms * 500}us")
        if self.loss_pct:
            args += ["loss", f"{self.loss_pct:g}%"]
        return args

    def to_dict(self) -> dict[str, object]:
        return {"rtt_ms": self.rtt_ms, "jitter_ms": self.jitter_ms, "loss_pct": self.loss_pct}

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> LinkShape:
        """Raises KeyError / TypeError / ValueError for a damaged entry."""
        return cls(int(str(doc["rtt_ms"])), int(str(doc["jitter_ms"])), float(str(doc["loss_pct"])))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a testnet's nodes live: namespace names and addresses, derived from a tag and a /24."""

    tag: str
    #: The first three octets, e.g. "10.123.45".
    subnet: str
    shape: LinkShape = field(default_factory=LinkShape)

    @classmethod
    def fresh(cls, shape: LinkShape | None = None) -> Placement:
        """A random tag and a random 10.x.y.0/24 (the chance that it meets another fabric's is small;
        :meth:`Fabric.create` refuses a bridge or namespace name that exists)."""
        return cls(
            secrets.token_hex(2),
            f"10.{77 + secrets.randbelow(100)}.{secrets.randbelow(250)}",
            shape or LinkShape(),
        )

    @property
    def bridge(self) -> str:
        return f"dcb{self.tag}"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.254"

    def link(self, index: int) -> str:
        return f"dcv{self.tag}{index}"

    def namespace(self, index: int) -> str:
        return f"dcent-{self.tag}-{index}"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{index + 1}"

    def to_dict(self) -> dict[str, object]:
        return {"tag": self.tag, "subnet": self.subnet, "shape": self.shape.to_dict()}

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> Placement:
        """Raises KeyError / TypeError / ValueError for a damaged entry."""
        shape = doc["shape"]
        if not isinstance(shape, dict):
            raise TypeError("netns.shape: expected an object")
        return cls(str(doc["tag"]), str(doc["subnet"]), LinkShape.from_dict(shape))


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can (probes with a throwaway one)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"iproute2's `{tool}` is not installed"
    probe = f"dcent-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def netem_unavailable() -> str | None:
    """Why links cannot be shaped here, or None when they can (probes netem on the loopback of a
    throwaway namespace). Assumes :func:`netns_unavailable` said None."""
    probe = f"dcent-probe-{secrets.token_hex(3)}"
    made = _run("ip", "netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        shaped = _run("tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
        if shaped.returncode != 0:
            return f"this kernel has no netem qdisc (sch_netem): tc says {shaped.stderr.strip()!r}"
        return None
    finally:
        _run("ip", "netns", "del", probe)


def require_netns() -> None:
    """Raises :class:`NetnsUnavailable` with the reason."""
    reason = netns_unavailable()
    if reason is not None:
        raise NetnsUnavailable(f"cannot place nodes in network namespaces: {reason}")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(args), capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S
        )
    except FileNotFoundError:
        raise NetnsUnavailable(f"`{args[0]}` is not installed (iproute2)") from None
    except subprocess.TimeoutExpired:
        raise FabricError(f"`{' '.join(args)}` did not finish within {COMMAND_TIMEOUT_S:g} s") from None


def _must(*args: str) -> None:
    done = _run(*args)
    if done.returncode != 0:
        raise FabricError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")


def existing_namespaces() -> set[str]:
    done = _run("ip", "netns", "list")
    # Lines look like "dcent-ab12-0 (id: 3)" or just the name.
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def _link_exists(name: str) -> bool:
    return _run("ip", "link", "show", name).returncode == 0


@dataclass(frozen=True, slots=True)
class Fabric:
    """A :class:`Placement` made real for ``nodes`` nodes."""

    placement: Placement
    nodes: int

    @property
    def namespaces(self) -> list[str]:
        return [self.placement.namespace(i) for i in range(self.nodes)]

    def address(self, index: int) -> str:
        return self.placement.address(index)

    @classmethod
    def create(cls, placement: Placement, nodes: int) -> Fabric:
        """Make the bridge, the namespaces and the links, and shape them; whatever already exists
        of this placement is kept (a restarted testnet). On failure, what this call made is removed.

        Raises :class:`NetnsUnavailable`, :class:`NetemUnavailable` (the shape needs netem and the
        kernel has none), :class:`FabricError`.
        """
        if not 1 <= nodes <= MAX_FABRIC_NODES:
            raise FabricError(f"a fabric holds 1 to {MAX_FABRIC_NODES} nodes, got {nodes}")
        placement.shape.check()
        require_netns()
        fabric = cls(placement, nodes)
        existed = existing_namespaces()
        try:
            fabric._build(existed)
            fabric.shape_links(placement.shape)
        except (FabricError, NetemUnavailable):
            fabric._remove(keep=existed)
            raise
        return fabric

    def _build(self, existed: set[str]) -> None:
        p = self.placement
        if not _link_exists(p.bridge):
            _must("ip", "link", "add", p.bridge, "type", "bridge")
            _must("ip", "addr", "add", f"{p.gateway}/24", "dev", p.bridge)
        _must("ip", "link", "set", p.bridge, "up")
        for index in range(self.nodes):
            namespace = p.namespace(index)
            if namespace in existed:
                continue
            _must("ip", "netns", "add", namespace)
            _must(
                "ip", "link", "add", p.link(index), "type", "veth", "peer", "name", "eth0", "netns", namespace
            )
            _must("ip", "link", "set", p.link(index), "master", p.bridge, "up")
            _must("ip", "-n", namespace, "addr", "add", f"{p.address(index)}/24", "dev", "eth0")
            _must("ip", "-n", namespace, "link", "set", "eth0", "up")
            _must("ip", "-n", namespace, "link", "set", "lo", "up")

    def shape_links(self, shape: LinkShape) -> None:
        """Put ``shape`` on every node's link (replacing any earlier shape; an unshaped
        ``shape`` removes netem). Raises :class:`NetemUnavailable`, :class:`FabricError`."""
        shape.check()
        for namespace in self.namespaces:
            if not shape.shaped:
                # "No such file" when there was no netem: nothing to remove.
                _run("tc", "-n", namespace, "qdisc", "del", "dev", "eth0", "root")
                continue
            args = (
                "tc",
                "-n",
                namespace,
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "netem",
                *shape.netem_args(),
            )
            done = _run(*args)
            if done.returncode != 0:
                message = done.stderr.strip()
                if "unknown" in message.lower():
                    raise NetemUnavailable(
                        f"this kernel has no netem qdisc (sch_netem): `{' '.join(args)}` says {message!r}; "
                        "latency, jitter and loss cannot be emulated here (namespaces without them can)"
                    )
                raise FabricError(f"`{' '.join(args)}` failed: {message}")

    def set_link(self, index: int, up: bool) -> None:
        """Take node ``index``'s link down (a partition of that node) or bring it back."""
        _must("ip", "link", "set", self.placement.link(index), "up" if up else "down")

    def exec_prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program inside node ``index``'s namespace."""
        return ["ip", "netns", "exec", self.placement.namespace(index)]

    def destroy(self) -> None:
        """Remove the namespaces (their veth pairs go with them) and the bridge. Never raises
        for what is already gone."""
        self._remove(keep=set())

    def _remove(self, keep: set[str]) -> None:
        for index, namespace in enumerate(self.namespaces):
            if namespace not in keep:
                # The veth pair goes first, by its root-side end: that removal is synchronous,
                # while a deleted namespace frees its devices later (the kernel's deferred net
                # cleanup), so a fabric remade at once met "File exists" for the old link.
                _run("ip", "link", "del", self.placement.link(index))
                _run("ip", "netns", "del", namespace)
        if not keep & set(self.namespaces):
            _run("ip", "link", "del", self.placement.bridge)
