"""The libp2p host's configuration and the parsing of addresses and peer ids it accepts.

Every malformed multiaddr or peer id becomes a :class:`HostConfigError` naming the text.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

import multiaddr
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.p2p.errors import HostConfigError, ListenError, PortInUseError
from node.p2p.frame_budget import FrameBudgetSettings
from node.p2p.gossip_params import GossipParams
from node.p2p.guard import GuardSettings
from node.p2p.identity import peer_id_from_seed
from node.p2p.reconnect import BackoffPolicy


@dataclass(frozen=True, slots=True)
class HostConfig:
    """What a :class:`P2PHost` needs. Validated when built; raises :class:`HostConfigError`."""

    #: The node key's 32-byte Ed25519 seed; the peer id derives from it.
    node_key_seed: bytes
    #: A TCP multiaddr without ``/p2p``: ``/ip4/0.0.0.0/tcp/26656``; port 0 picks a free port.
    listen_addr: str = "/ip4/127.0.0.1/tcp/0"
    #: Full multiaddrs with ``/p2p/<peer id>``, dialled at start and redialled whenever they drop.
    bootstrap: tuple[str, ...] = ()
    #: Peer ids whose GRAFTs a full gossip mesh still takes and which a trim keeps first, beside
    #: the bootstrap peers (node/p2p/mesh_quota.py: identities made up by others cannot take
    #: their places).
    trusted_peers: tuple[str, ...] = ()
    gossip: GossipParams = field(default_factory=GossipParams)
    reconnect: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Peer scores, rate limits and bans.
    guard: GuardSettings = field(default_factory=GuardSettings)
    #: Bytes of frames in flight on inbound streams, per peer and node-wide, and their deadlines.
    frame_budget: FrameBudgetSettings = field(default_factory=FrameBudgetSettings)
    #: Connections we accept and keep (inbound and outbound together).
    max_peers: int = 64
    dial_timeout_s: float = 10.0
    #: Health monitoring: every connection is pinged this often; PING_FAILURES_BEFORE_ABORT failed
    #: pings in a row drop it (node/p2p/libp2p_tuning.py: one miss is load, not a dead peer).
    health_check_interval_s: float = 1.0
    ping_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        if type(self.node_key_seed) is not bytes or len(self.node_key_seed) != 32:
            raise HostConfigError("node_key_seed: a 32-byte Ed25519 seed")
        listen = parse_multiaddr(self.listen_addr, "listen_addr")
        if not _is_tcp_address(listen):
            raise HostConfigError(f"listen_addr {self.listen_addr!r}: expected /ip4|ip6/<addr>/tcp/<port>")
        own_peer_id = peer_id_from_seed(self.node_key_seed)
        for address in self.bootstrap:
            peer_id = parse_peer_address(address)[0]
            if str(peer_id) == own_peer_id:
                raise HostConfigError(f"bootstrap {address!r} is this node itself")
        for text in self.trusted_peers:
            if str(parse_peer_id(text)) == own_peer_id:
                raise HostConfigError(f"trusted peer {text!r} is this node itself")
        if self.max_peers < 1:
            raise HostConfigError("max_peers: at least 1")
        if min(self.dial_timeout_s, self.health_check_interval_s, self.ping_timeout_s) <= 0:
            raise HostConfigError("dial_timeout_s, health_check_interval_s, ping_timeout_s: positive")

    def trusted_peer_ids(self) -> frozenset[ID]:
        """The bootstrap peers' ids and ``trusted_peers``."""
        return frozenset(
            [parse_peer_address(address)[0] for address in self.bootstrap]
            + [parse_peer_id(text) for text in self.trusted_peers]
        )


def parse_multiaddr(text: str, what: str = "multiaddr") -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except ValueError as exc:  # multiaddr's parse errors all derive from ValueError
        raise HostConfigError(f"{what} {text!r}: {exc}") from None


def parse_peer_address(text: str) -> tuple[ID, list[multiaddr.Multiaddr]]:
    """``/ip4/.../tcp/N/p2p/<id>`` -> (peer id, [address without /p2p]). Raises HostConfigError."""
    try:
        info = info_from_p2p_addr(parse_multiaddr(text, "peer address"))
    except ValueError as exc:
        raise HostConfigError(f"peer address {text!r}: needs /p2p/<peer id> ({exc})") from None
    if not info.addrs or not all(_is_tcp_address(addr) for addr in info.addrs):
        raise HostConfigError(f"peer address {text!r}: expected /ip4|ip6/<addr>/tcp/<port>/p2p/<id>")
    return info.peer_id, list(info.addrs)


def parse_peer_id(text: str) -> ID:
    try:
        return ID.from_base58(text)
    except ValueError as exc:
        raise HostConfigError(f"peer id {text!r}: {exc}") from None


def _is_tcp_address(address: multiaddr.Multiaddr) -> bool:
    names = [protocol.name for protocol in address.protocols()]
    return len(names) == 2 and names[0] in ("ip4", "ip6") and names[1] == "tcp"


def ensure_port_free(ip: str, port: int) -> None:
    """Refuse a fixed port another socket is listening on (workaround 8 in node/p2p/__init__.py).

    libp2p's TCP listener sets SO_REUSEPORT, so a second daemon on the same port would bind
    silently and the kernel would split inbound connections between the two. A probe socket
    without SO_REUSEPORT cannot share the port with a listening socket, so its bind fails
    exactly when someone is listening. SO_REUSEADDR on the probe lets a restart reuse a port
    whose old connections are still in TIME_WAIT. Raises :class:`PortInUseError`,
    :class:`ListenError`.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"{ip}:{port} is already in use (another dcent node?)") from None
            raise ListenError(f"cannot bind {ip}:{port}: {exc.strerror}") from None


def ip_of(address: multiaddr.Multiaddr) -> str:
    for name in ("ip4", "ip6"):
        try:
            return str(address.value_for_protocol(name))
        except (ValueError, LookupError):
            continue
    raise HostConfigError(f"{address} has no IP address")
