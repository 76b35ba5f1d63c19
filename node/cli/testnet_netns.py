"""`dcent testnet up --netns [--latency MS] [--jitter MS] [--loss PCT]`: nodes as hosts on shaped links.

Each node runs in a network namespace of its own on a veth link to one bridge
(:mod:`node.testnet.netns`); ``--latency`` is the round-trip time between two nodes (netem adds
half of it on each node's link), ``--jitter`` its spread, ``--loss`` the share of packets each
node's link drops. Any of the three implies ``--netns``. On a kernel without ``sch_netem`` the
links are shaped by the userspace TUN switch instead (:mod:`node.testnet.tunshaper`), started
detached like the nodes (``DIR/netns-shaper.pid``, ``DIR/netns-shaper.log``). ``testnet down`` stops
the switch and removes the namespaces and the bridge. Without ``--netns`` nothing changes: nodes share the host's loopback.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from node.testnet.errors import InvalidPlan, NetemUnavailable
from node.testnet.layout import NetworkLayout
from node.testnet.netns import Fabric, LinkShape, Placement, netem_unavailable
from node.testnet.tunshaper import start_detached, stop_detached, tun_unavailable

SHAPER_PID = "netns-shaper.pid"
SHAPER_LOG = "netns-shaper.log"


def add_netns_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument(
        "--netns",
        action="store_true",
        help="run each node in a network namespace of its own, on a veth link to one bridge (root only)",
    )
    up.add_argument(
        "--latency",
        type=int,
        metavar="MS",
        help="round-trip time between any two nodes, emulated by netem (implies --netns)",
    )
    up.add_argument("--jitter", type=int, metavar="MS", help="jitter of that round trip (implies --netns)")
    up.add_argument(
        "--loss", type=float, metavar="PCT", help="packets each node's link drops, in %% (implies --netns)"
    )


def requested_shape(args: argparse.Namespace) -> LinkShape | None:
    """The link shape the arguments ask for; None when they ask for no namespaces at all.
    Raises :class:`~node.testnet.errors.FabricError` for a negative value."""
    if not (args.netns or args.latency is not None or args.jitter is not None or args.loss is not None):
        return None
    shape = LinkShape(args.latency or 0, args.jitter or 0, args.loss or 0.0)
    shape.check()
    return shape


def fresh_placement(shape: LinkShape | None) -> Placement | None:
    return None if shape is None else Placement.fresh(shape)


def resumed_placement(layout: NetworkLayout, shape: LinkShape | None) -> Placement | None:
    """The placement a restarted testnet keeps, with a new link shape when one is asked for.
    Raises :class:`InvalidPlan` when ``--netns`` is asked of a testnet laid out without it."""
    if layout.placement is None:
        if shape is not None:
            raise InvalidPlan(
                f"{layout.root} was laid out without --netns; use --fresh to replace it with a namespaced one"
            )
        return None
    if shape is None:
        return layout.placement
    return Placement(layout.placement.tag, layout.placement.subnet, shape)


def build_fabric(placement: Placement | None, nodes: int) -> tuple[Fabric | None, bool]:
    """Make (or complete) the namespaces and shape the links with netem. Returns the fabric, and
    True when the kernel has no netem and the links still need :func:`start_switch`. Raises
    NetnsUnavailable, FabricError."""
    if placement is None:
        return None, False
    no_netem = netem_unavailable() if placement.shape.shaped else None
    if no_netem is not None:
        # Known before anything is built: no fabric made, torn down and made again.
        no_tun = tun_unavailable()
        if no_tun is not None:
            raise NetemUnavailable(
                f"links cannot be shaped here: {no_netem}, and the TUN switch cannot run: {no_tun}"
            )
        return Fabric.create(replace(placement, shape=LinkShape()), nodes), True
    try:
        return Fabric.create(placement, nodes), False
    except NetemUnavailable:
        return Fabric.create(replace(placement, shape=LinkShape()), nodes), True


def start_switch(layout: NetworkLayout) -> str:
    """Shape the testnet's links with the userspace TUN switch (any earlier one stopped first); a
    line saying so. Raises FabricError."""
    assert layout.placement is not None
    stop_detached(layout.root / SHAPER_PID)
    pid = start_detached(
        layout.placement,
        len(layout.nodes),
        layout.placement.shape,
        layout.root / SHAPER_LOG,
        layout.root / SHAPER_PID,
    )
    return (
        f"  this kernel has no netem (sch_netem): the links are shaped by the userspace TUN switch "
        f"(node/testnet/tunshaper.py, pid {pid}, log {layout.root / SHAPER_LOG})"
    )


def remove_fabric(layout: NetworkLayout) -> str | None:
    """Remove the testnet's namespaces and bridge; a line saying so, or None without namespaces."""
    if layout.placement is None:
        return None
    stop_detached(layout.root / SHAPER_PID)
    fabric = Fabric(layout.placement, len(layout.nodes))
    fabric.destroy()
    return f"removed network namespaces {fabric.namespaces[0]}..{fabric.namespaces[-1]} and bridge {layout.placement.bridge}"
