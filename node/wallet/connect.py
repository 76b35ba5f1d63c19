"""Which node the wallet talks to, and with which cookie.

A node started with ``dcent node run`` writes its real RPC URL to ``<home>/data/rpc.url`` and its
cookie to ``<home>/data/.cookie`` (both removed at exit), so a client that knows the home finds it
even when it listens on a port picked at start. The choice, first match wins:

1. ``--rpc URL``: that URL; the cookie from ``--rpc-cookie``, else ``$DCENT_RPC_COOKIE``, else the
   home's (``--home``, ``$DCENT_HOME``, ``~/.dcent``);
2. ``--home DIR``: the URL and the cookie that home's node wrote (``--rpc-cookie`` overrides);
3. ``$DCENT_RPC``: as 1;
4. the home ``$DCENT_HOME`` or ``~/.dcent``: as 2.

An explicit flag beats an environment variable, so ``--home`` wins over ``$DCENT_RPC``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from node.config import DEFAULT_HOME
from node.rpc.client import RpcClient
from node.rpc.cookie import cookie_path_for
from node.wallet.errors import InvalidArgument, NodeNotRunning

RPC_URL_FILE_NAME = "rpc.url"
ENV_HOME = "DCENT_HOME"
ENV_RPC = "DCENT_RPC"
ENV_RPC_COOKIE = "DCENT_RPC_COOKIE"
#: A node answers a call in milliseconds; this bounds one call, not a whole command.
CALL_TIMEOUT_S = 30.0


class NodeRpc(Protocol):
    """What the wallet needs of a node connection: :class:`~node.rpc.client.RpcClient`'s ``call``."""

    async def call(self, method: str, *args: object, **params: object) -> Any: ...


@dataclass(frozen=True, slots=True)
class NodeTarget:
    url: str
    cookie_path: Path


def rpc_url_path_for(home: Path) -> Path:
    """Where a node whose home is ``home`` writes its RPC URL: ``<home>/data/rpc.url``."""
    return Path(home) / "data" / RPC_URL_FILE_NAME


def home_dir(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """``--home`` if given, else ``$DCENT_HOME``, else ``~/.dcent``; absolute."""
    raw = explicit or environ.get(ENV_HOME) or str(DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


def check_url(url: str, where: str) -> str:
    """Return ``url`` if it is an ``http(s)://host[:port]/...`` URL. Raises InvalidArgument."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{where}: {url.strip()!r} is not an http:// URL")
    return url.strip()


def read_rpc_url(home: Path) -> str:
    """The URL the node running with ``home`` serves its RPC on.

    Raises :class:`NodeNotRunning` when the file is missing (no node runs with this home),
    :class:`InvalidArgument` when it holds no URL.
    """
    path = rpc_url_path_for(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NodeNotRunning(
            f"no node is running with home {home} ({path} is missing): start it with "
            f"`dcent node run --home {home}`, or give --rpc URL"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeNotRunning(f"cannot read {path}: {exc}") from exc
    return check_url(text, str(path))


def resolve_target(
    *,
    home: str | None,
    rpc: str | None,
    rpc_cookie: str | None,
    environ: Mapping[str, str] | None = None,
) -> NodeTarget:
    """Pick the node and cookie by the rules in the module docstring. Reads ``rpc.url`` only.

    Raises :class:`NodeNotRunning`, :class:`InvalidArgument`.
    """
    env = os.environ if environ is None else environ
    explicit_cookie = Path(rpc_cookie).expanduser() if rpc_cookie else None
    url_flag = rpc or (None if home else env.get(ENV_RPC))
    if url_flag:
        url = check_url(url_flag, "--rpc" if rpc else f"${ENV_RPC}")
        env_cookie = env.get(ENV_RPC_COOKIE)
        cookie = explicit_cookie or (Path(env_cookie).expanduser() if env_cookie else None)
        return NodeTarget(url, cookie or cookie_path_for(home_dir(home, env)))
    node_home = home_dir(home, env)
    return NodeTarget(read_rpc_url(node_home), explicit_cookie or cookie_path_for(node_home))


def open_client(target: NodeTarget) -> RpcClient:
    """A client for ``target``; use it as ``async with open_client(target) as rpc``."""
    return RpcClient(target.url, cookie_path=target.cookie_path, timeout_s=CALL_TIMEOUT_S)
