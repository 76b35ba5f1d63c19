"""The hostile-peer harness: a real ``dcent node run`` process, a hostile libp2p peer and an honest
observer, both of our own (no tests here; tests/integration/test_hostile_peers_process.py uses it).

Neither peer goes through the node's code (``node/host.py``, ``node/p2p/``, ``node/services/``):
they are assembled from py-libp2p's parts (swarm, Noise, yamux, multistream, identify, the
pubsub protobufs), as another implementation would be, and speak to the node over real TCP.

- :class:`NodeProcess` runs a single-validator dev chain as a real process, and reads its height,
  peers and RSS from the outside (RPC, ``/proc``).
- :class:`HostilePeer` writes what it likes: pubsub RPCs built by hand on ``/meshsub/1.1.0``
  (any payload, any originator, seqno or signature, as fast as it wants) and raw bytes on any
  stream protocol.
- :class:`Observer` is an honest GossipSub peer (py-libp2p's own router, with the parameters
  docs/protocol.md states), connected to the node only; it records every pubsub message that
  reaches it, before any check of its own, so whatever the node forwards is seen.
- :func:`refusal_counts` and :func:`wait_judged` read the node's verdicts from the outside: its
  peer guard's counters of refused and ignored input by protocol (or topic) and reason (RPC
  ``net_scores``, node/p2p/guard.py), so a test can tell a judged input from a dropped one.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_swarm
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_noise_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.host.exceptions import StreamFailure
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_uvarint

from node.rpc.client import RpcClient
from node.rpc.errors import RpcError
from node.testnet.sandbox import UNSANDBOXED
from tests.integration.executor_helpers import testnet_executor
from tests.waiting import sample_every, wait_until, wait_until_async, wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
DCENT = [sys.executable, "-m", "node.cli.main"]
MESHSUB = TProtocol(PROTOCOL_ID_V11)
PUBSUB_SIGNING_PREFIX = b"libp2p-pubsub:"


# --------------------------------------------------------------------------------------------
# The node under test: a real process
# --------------------------------------------------------------------------------------------


class NodeProcess:
    """``dcent node run`` on a fresh ``--dev`` home: one validator, fast blocks, a simulated GPU
    announced every second (so the capacity topic carries valid traffic of the node's own)."""

    def __init__(self, root: Path) -> None:
        self.home = root / "node"
        result = subprocess.run(
            [*DCENT, "init", "--home", str(self.home), "--dev"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        config = self.home / "config.toml"
        # What is attacked here is the network, not the sandbox: on a host that cannot sandbox (a
        # chroot) the node still sells, as a local testnet would, so it still announces capacity.
        executor = testnet_executor()
        config.write_text(
            config.read_text()
            .replace('executor = "bubblewrap"', f'executor = "{executor}"')
            .replace(
                "allow_unsandboxed = false", f"allow_unsandboxed = {str(executor == UNSANDBOXED).lower()}"
            )
            .replace("/tcp/26656", "/tcp/0")
            .replace("timeout_commit_ms = 500", "timeout_commit_ms = 100")
            .replace('simulated_gpus = ""', 'simulated_gpus = "1xH100-80GB"')
            .replace("announce_interval_s = 10", "announce_interval_s = 1")
        )
        self.genesis = json.loads((self.home / "genesis.json").read_text())
        self.log_path = root / "node.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.rpc_url = ""
        self.info: dict[str, Any] = {}
        #: What the node's identify says it serves (asked by the tests once per start).
        self.protocols: set[str] | None = None
        self.starts = 0

    @property
    def chain_id(self) -> str:
        return str(self.genesis["chain_id"])

    def start(self) -> None:
        """Start the process and wait until it serves RPC and commits blocks."""
        url_file = self.home / "data" / "rpc.url"
        url_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*DCENT, "node", "run", "--home", str(self.home), "--rpc-addr", "127.0.0.1:0"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.protocols = None

        def url_written() -> str:
            assert self.alive, f"the node exited early: {self.log_tail()}"
            return url_file.read_text().strip() if url_file.exists() else ""

        self.rpc_url = wait_until_blocking(url_written, what="the node writes rpc.url", timeout=90)
        self.info = self.call_blocking("node_info")

    def ensure_running(self) -> None:
        """Restart the node if it died, or hangs, in an earlier test (a finding of that test)."""
        if self.alive:
            try:
                self.call_blocking("chain_head")
                return
            except (RpcError, OSError):
                pass
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the node process now (``VmRSS``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self) -> RpcClient:
        return RpcClient.for_home(self.home, self.rpc_url, timeout_s=10)

    def call_blocking(self, method: str, *args: object) -> Any:
        return self.client().call_blocking(method, *args)

    async def call(self, method: str, *args: object) -> Any:
        return await self.client().call(method, *args)

    async def height(self) -> int:
        return int((await self.call("chain_head"))["height"])

    async def peer_ids(self) -> list[str]:
        return [peer["peer_id"] for peer in await self.call("net_peers")]

    @property
    def peer_id(self) -> str:
        return str(self.info["peer_id"])

    @property
    def address(self) -> str:
        return str(self.info["listen_addrs"][0])

    async def wait_for_blocks(self, count: int, *, timeout: float = 60) -> int:
        """Wait until ``count`` more blocks are committed; returns the new height."""
        target = await self.height() + count

        async def reached() -> int | None:
            assert self.alive, f"the node died: {self.log_tail()}"
            height = await self.height()
            return height if height >= target else None

        return await wait_until_async(reached, what=f"height {target}", timeout=timeout, poll=0.1)


@dataclass
class RssWatch:
    """The node's peak RSS while a test runs (sampled every 50 ms: a measurement, not a wait)."""

    node: NodeProcess
    peak: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await sample_every(0.05, self._sample)

    def _sample(self) -> bool:
        if not self.node.alive:
            return False
        try:
            self.peak = max(self.peak, self.node.rss_bytes())
        except (OSError, AssertionError):
            return False  # the process is gone
        return True


# --------------------------------------------------------------------------------------------
# libp2p hosts of our own
# --------------------------------------------------------------------------------------------


def key_pair(label: str) -> KeyPair:
    return create_new_key_pair(hashlib.sha256(f"hostile-harness/{label}".encode()).digest())


@asynccontextmanager
async def libp2p_host(keys: KeyPair) -> AsyncIterator[BasicHost]:
    """A py-libp2p host: TCP, Noise, yamux, the default identify and ping handlers."""
    noise = NoiseTransport(keys, noise_privkey=create_noise_key_pair().private_key)
    swarm = new_swarm(
        key_pair=keys,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        retry_config=RetryConfig(max_retries=0),
        # No auto-connector dials of our own: we talk to the node only.
        connection_config=ConnectionConfig(
            max_connections=8, high_watermark=8, low_watermark=0, min_connections=0
        ),
    )
    host = BasicHost(network=swarm)
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    try:
        async with host.run([listen]):
            try:
                yield host
            finally:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + 5
                    await host.close()
    except* RuntimeError as group:
        # py-libp2p 0.8.1's pubsub can schedule a task for a message that arrives while its
        # service is stopping; that one teardown race is not the test's business, anything
        # else is.
        rest = group.subgroup(
            lambda exc: (
                not isinstance(exc, BaseExceptionGroup)
                and "Nursery is closed to new arrivals" not in str(exc)
            )
        )
        if rest is not None:
            raise rest from None


async def connect(host: BasicHost, address: str) -> ID:
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    with trio.fail_after(20):
        await host.connect(info)
    return info.peer_id


def is_connected(host: BasicHost, peer: ID) -> bool:
    return any(not conn.is_closed for conn in host.get_network().connections.get(peer, []))


# --------------------------------------------------------------------------------------------
# The hostile peer
# --------------------------------------------------------------------------------------------


@dataclass
class HostilePeer:
    """Writes hand-built pubsub RPCs and raw stream bytes to the node."""

    host: BasicHost
    keys: KeyPair
    node: ID
    rng: random.Random = field(default_factory=lambda: random.Random(18))
    #: The node closed our pubsub stream or the connection.
    cut_off: bool = False
    _meshsub: Any = None
    _seqno: int = 0

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    def message(
        self,
        topic: str,
        data: bytes,
        *,
        originator: ID | None = None,
        seqno: bytes | None = None,
        corrupt_signature: bool = False,
    ) -> rpc_pb2.Message:
        """A pubsub message signed (StrictSign) by our libp2p key, whatever it claims."""
        if seqno is None:
            self._seqno += 1
            seqno = (self.rng.getrandbits(32) << 32 | self._seqno).to_bytes(8, "big")
        msg = rpc_pb2.Message(
            data=data,
            topicIDs=[topic],
            from_id=(originator or self.peer_id).to_bytes(),
            seqno=seqno,
        )
        signature = self.keys.private_key.sign(PUBSUB_SIGNING_PREFIX + msg.SerializeToString())
        if corrupt_signature:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        msg.signature = signature
        return msg

    async def _pubsub_stream(self) -> Any:
        if self._meshsub is None:
            self._meshsub = await self.host.new_stream(self.node, [MESHSUB])
        return self._meshsub

    async def send_rpc(self, rpc: rpc_pb2.RPC) -> bool:
        """Write one RPC; False once the node has closed our pubsub stream or the connection
        (then nothing more is sent: the node defended itself, or died, which the test tells)."""
        if self.cut_off:
            return False
        payload = rpc.SerializeToString()
        try:
            stream = await self._pubsub_stream()
            await stream.write(encode_uvarint(len(payload)) + payload)
        except (StreamError, MuxedStreamError, SwarmException, StreamFailure):
            self.cut_off = True
            return False
        return True

    async def subscribe(self, *topics: str) -> bool:
        return await self.send_rpc(
            rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics])
        )

    async def publish(self, *messages: rpc_pb2.Message) -> bool:
        """One RPC carrying ``messages`` (several per RPC, as a flood would)."""
        return await self.send_rpc(rpc_pb2.RPC(publish=list(messages)))

    async def open_stream(self, protocol: str) -> Any:
        return await self.host.new_stream(self.node, [TProtocol(protocol)])

    async def redial(self, address: str) -> bool:
        """Dial the node again; False when the dial itself is refused."""
        self._meshsub = None
        self.cut_off = False
        try:
            await connect(self.host, address)
        except (OSError, trio.TooSlowError, SwarmException):
            return False
        return True


async def drain_pubsub(stream: Any) -> None:
    """Our side of the node's own pubsub stream to us: read and discard."""
    try:
        while await stream.read(65536):
            pass
    except Exception:  # noqa: BLE001 - any end of the stream ends the drain
        return


@asynccontextmanager
async def hostile_peer(node: NodeProcess, label: str) -> AsyncIterator[HostilePeer]:
    keys = key_pair(label)
    async with libp2p_host(keys) as host:
        host.set_stream_handler(MESHSUB, drain_pubsub)
        node_id = await connect(host, node.address)
        yield HostilePeer(host, keys, node_id)


# --------------------------------------------------------------------------------------------
# The honest observer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    originator: str
    data: bytes
    forwarder: str


@dataclass
class Observer:
    host: BasicHost
    pubsub: Pubsub
    router: GossipSub
    received: list[Received] = field(default_factory=list)

    def from_originator(self, peer: ID | str) -> list[Received]:
        return [r for r in self.received if r.originator == str(peer)]


def _gossipsub() -> GossipSub:
    """docs/protocol.md section 1's parameters."""
    return GossipSub(
        protocols=[PROTOCOL_ID_V11],
        degree=3,
        degree_low=2,
        degree_high=4,
        time_to_live=60,
        gossip_window=3,
        gossip_history=5,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        prune_back_off=60,
        unsubscribe_back_off=10,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=200.0,
        eclipse_protection_enabled=False,
    )


@asynccontextmanager
async def observer(node: NodeProcess, label: str, topics: list[str]) -> AsyncIterator[Observer]:
    """An honest peer subscribed to ``topics``, connected to the node only."""
    async with libp2p_host(key_pair(label)) as host:
        router = _gossipsub()
        pubsub = Pubsub(host, router, strict_signing=True)
        seen = Observer(host, pubsub, router)
        push = pubsub.push_msg

        async def record_then_push(forwarder: ID, msg: rpc_pb2.Message) -> None:
            for topic in msg.topicIDs:
                seen.received.append(Received(topic, str(ID(msg.from_id)), bytes(msg.data), str(forwarder)))
            await push(forwarder, msg)

        pubsub.push_msg = record_then_push  # type: ignore[method-assign]
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            for topic in topics:
                await pubsub.subscribe(topic)
            await connect(host, node.address)
            yield seen


async def wait_for_traffic(seen: Observer, node: NodeProcess, topics: list[str], *, after: int = 0) -> None:
    """Wait until the node has forwarded its own messages on every topic to the observer (the
    path the hostile's messages would take is open), counting only those after index ``after``."""
    for topic in topics:
        await wait_until(
            lambda t=topic: any(r.topic == t and r.originator == node.peer_id for r in seen.received[after:]),
            what=f"the node's own messages on {topic} reach the observer",
            timeout=60,
        )


# --------------------------------------------------------------------------------------------
# The node's verdicts
# --------------------------------------------------------------------------------------------

#: Reasons that say how a peer's connection ended, not what the node made of its input: a peer
#: banned by the class before it sends on ("banned"), a stream it reset ("gone").
NOT_A_VERDICT = frozenset({"banned", "gone"})


async def refusal_counts(node: NodeProcess) -> Counter[tuple[str, str]]:
    """Every input the node refused or ignored since it started, by (protocol or topic, reason)."""
    scores = await node.call("net_scores")
    return Counter({(r["protocol"], r["reason"]): int(r["count"]) for r in scores["refusals"]})


async def banned_peers(node: NodeProcess) -> set[str]:
    return set((await node.call("net_scores"))["banned"])


@dataclass(frozen=True)
class Expected:
    """How the node must judge one class of hostile input on one protocol or topic: each
    reason's counter rises by ``reasons[reason]``, and no other verdict is counted there (with
    ``exact=False``, by at least that much, others allowed: a flood's count depends on timing);
    ``banned``: the class takes its peer past the ban threshold."""

    reasons: Mapping[str, int]
    exact: bool = True
    banned: bool = False


def rise_since(
    before: Counter[tuple[str, str]], now: Counter[tuple[str, str]], protocol: str
) -> dict[str, int]:
    """The verdicts on ``protocol`` counted between two readings, by reason."""
    return {
        reason: count - before[(p, reason)]
        for (p, reason), count in now.items()
        if p == protocol and count > before[(p, reason)] and reason not in NOT_A_VERDICT
    }


async def wait_judged(
    node: NodeProcess, protocol: str, before: Counter[tuple[str, str]], expected: Expected, what: str
) -> dict[str, int]:
    """Wait until the node has counted at least what ``expected`` names on ``protocol`` since
    ``before``; returns every verdict counted there since (a test compares it to ``expected``)."""

    async def judged() -> tuple[dict[str, int]] | None:
        rise = rise_since(before, await refusal_counts(node), protocol)
        return (rise,) if all(rise.get(r, 0) >= n for r, n in expected.reasons.items()) else None

    try:
        (rise,) = await wait_until_async(judged, what=f"the node judges {what}", timeout=30, poll=0.1)
        return rise
    except AssertionError as exc:
        seen = rise_since(before, await refusal_counts(node), protocol)
        raise AssertionError(
            f"{exc}: expected {dict(expected.reasons)} on {protocol}, counted {seen}"
        ) from None


def check_verdicts(rise: Mapping[str, int], expected: Expected, what: str) -> None:
    if expected.exact:
        assert dict(rise) == dict(expected.reasons), (
            f"{what}: counted {dict(rise)}, expected {dict(expected.reasons)}"
        )
    else:
        short = {r: n for r, n in expected.reasons.items() if rise.get(r, 0) < n}
        assert not short, f"{what}: counted {dict(rise)}, expected at least {dict(expected.reasons)}"
