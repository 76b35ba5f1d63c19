"""Where the RPC server listens: parsing ``HOST:PORT`` and telling loopback from remote.

The RPC server binds 127.0.0.1 unless told otherwise, because the cookie travels in clear HTTP:
a non-loopback address is refused unless the operator passes ``allow_remote`` explicitly.
"""

from __future__ import annotations

import ipaddress

from node.rpc.errors import InvalidBindAddress

DEFAULT_RPC_HOST = "127.0.0.1"
DEFAULT_RPC_PORT = 8645
DEFAULT_MAX_BODY_BYTES = 1 << 20


def parse_rpc_addr(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (loopback) as ``--rpc-addr`` takes it.

    Raises :class:`InvalidBindAddress` for anything else, or a port outside 0-65535 (0 picks a
    free port).
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidBindAddress(f"RPC address {text!r} is not HOST:PORT with a port in 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidBindAddress(f"RPC address {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise InvalidBindAddress(f"RPC address {text!r}: write an IPv6 host in brackets, [::1]:PORT")
    return (host or DEFAULT_RPC_HOST), int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name counts as remote."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``. Raises :class:`InvalidBindAddress`."""
    if not host or any(char.isspace() for char in host):
        raise InvalidBindAddress(f"RPC host {host!r} is empty or contains whitespace")
    if not allow_remote and not is_loopback(host):
        raise InvalidBindAddress(
            f"RPC host {host} is not a loopback address; binding it exposes the node's RPC to the "
            "network in clear HTTP, and needs the explicit allow-remote flag"
        )
