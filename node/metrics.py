"""Prometheus metrics: ``GET /metrics`` on an opt-in loopback port, in the text exposition format.

The exposition is written by hand (version 0.0.4 of the text format: ``# HELP``, ``# TYPE``, one
sample per line) rather than with a client library: a handful of gauges read from the node at
scrape time needs no registry. The endpoint has no authentication, so it only ever binds a
loopback address (as node_exporter is usually fronted by a local Prometheus).

Gauges, read when scraped:

- ``dcent_height``: the last height committed and stored;
- ``dcent_peers``: connected peers;
- ``dcent_mempool_txs``: transactions waiting in the mempool;
- ``dcent_jobs{state=...}``: local job records by state (from the store's ``jobs`` table);
- ``dcent_gpu_units``: schedulable GPU units this node sells;
- ``dcent_gpu_units_allocated``: of those, how many are allocated to jobs now;
- ``dcent_gpu_utilization{uuid=...}``: utilization in percent, for each GPU whose probe reports it
  (NVML on real hardware; simulated GPUs and MIG devices have none, see the allocated count);
- ``dcent_p2p_refusals_total{protocol=...,reason=...}`` (counter): messages from peers refused
  since start, by stream protocol or gossip topic and reason (``node/p2p/guard.py``);
- ``dcent_p2p_banned_peers``: peers serving a ban for misbehaviour now;
- ``dcent_consensus_core_faults_total`` (counter): errors the consensus core raised on an event,
  survived by the driver (each is a bug, logged with its traceback).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

import hypercorn.config
import hypercorn.trio
import trio
from hypercorn.typing import Framework

from node.errors import NodeError
from node.rpc import http_limits
from node.rpc.address import is_loopback
from node.rpc.server import AsgiReceive, AsgiScope, AsgiSend, hypercorn_config, serve_lifespan, sole_exception
from node.rpc.views import MetricsReads

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.metrics")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"


class MetricsError(NodeError):
    """Root of the metrics endpoint's errors (codes 5800-5849)."""

    code: ClassVar[int] = 5800


class MetricsBindError(MetricsError):
    """The metrics endpoint cannot listen on its address (in use, not loopback, no permission)."""

    code: ClassVar[int] = 5801


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One metric name with its help text and samples (label pairs, value)."""

    name: str
    help: str
    samples: tuple[tuple[Labels, float], ...]
    type: str = "gauge"


def gauge(name: str, help_text: str, value: float) -> MetricFamily:
    """A gauge with one unlabelled sample."""
    return MetricFamily(name, help_text, (((), value),))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render_exposition(families: Sequence[MetricFamily]) -> str:
    """The Prometheus text format (0.0.4) of ``families``, in the order given."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            label_text = ",".join(f'{key}="{_escape_label(text)}"' for key, text in labels)
            selector = f"{family.name}{{{label_text}}}" if labels else family.name
            lines.append(f"{selector} {_format_value(value)}")
    return "\n".join(lines) + "\n"


async def collect_node_metrics(reads: MetricsReads) -> list[MetricFamily]:
    """The node's gauges, read now (the job counts from the store, in a worker thread).
    ``reads``: what the gauges read of the running node's services (a
    :class:`~node.services.wiring.NodeServices` satisfies it)."""
    job_counts = await trio.to_thread.run_sync(reads.store.job_counts)
    report = reads.capacity.last_report
    units = report.schedulable_units() if report is not None else ()
    allocated = len(reads.market.busy_gpu_uuids())
    guard = reads.host.guard
    return [
        gauge("dcent_height", "Last block height committed and stored.", reads.driver.height),
        gauge("dcent_peers", "Connected libp2p peers.", len(reads.host.peers())),
        gauge("dcent_mempool_txs", "Transactions waiting in the mempool.", len(reads.mempool)),
        MetricFamily(
            "dcent_jobs",
            "Local job records by state.",
            tuple(((("state", state),), count) for state, count in sorted(job_counts.items())),
        ),
        gauge("dcent_gpu_units", "Schedulable GPU units this node sells.", len(units)),
        gauge("dcent_gpu_units_allocated", "GPU units allocated to jobs now.", allocated),
        MetricFamily(
            "dcent_gpu_utilization",
            "GPU utilization in percent at the last probe, for GPUs that report it.",
            tuple(
                ((("uuid", device.uuid),), device.utilization_pct)
                for device in units
                if device.utilization_pct >= 0
            ),
        ),
        MetricFamily(
            "dcent_p2p_refusals_total",
            "Messages from peers refused, by protocol (stream id or gossip topic) and reason.",
            tuple(
                ((("protocol", protocol), ("reason", reason)), count)
                for (protocol, reason), count in sorted(guard.refusals.items())
            ),
            type="counter",
        ),
        gauge("dcent_p2p_banned_peers", "Peers banned for misbehaviour now.", len(guard.banned())),
        MetricFamily(
            "dcent_consensus_core_faults_total",
            "Errors the consensus core raised on an event (bugs), survived by the driver.",
            (((), reads.driver.core_faults),),
            type="counter",
        ),
    ]


class MetricsApp:
    """The ASGI application: ``GET /metrics`` answers the exposition, anything else 404/405."""

    def __init__(self, collect: Callable[[], Awaitable[Sequence[MetricFamily]]]) -> None:
        self.collect = collect

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Mapping[str, Any], send: AsgiSend) -> None:
        if scope.get("path") != METRICS_PATH:
            await _respond(send, 404, b"not found: metrics are at GET /metrics\n", [])
            return
        method = scope.get("method")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed: use GET\n", [(b"allow", b"GET, HEAD")])
            return
        body = render_exposition(await self.collect()).encode()
        await _respond(send, 200, b"" if method == "HEAD" else body, [], length=len(body))


async def _respond(
    send: AsgiSend, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, length: int | None = None
) -> None:
    size = len(body) if length is None else length
    all_headers = [*headers, (b"content-type", CONTENT_TYPE), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class MetricsServer:
    """Serves ``collect()``'s gauges at ``http://HOST:PORT/metrics``. Start it with
    ``await nursery.start(server.run)``, which returns the URL (port 0 picks a free port).

    Raises :class:`MetricsBindError` at construction for a non-loopback host.
    """

    def __init__(
        self,
        collect: Callable[[], Awaitable[Sequence[MetricFamily]]],
        *,
        host: str,
        port: int,
        graceful_timeout_s: float = 2.0,
    ) -> None:
        if not is_loopback(host):
            raise MetricsBindError(
                f"metrics address {host} is not loopback; the endpoint has no authentication"
            )
        self.app = MetricsApp(collect)
        self.host = host
        self.requested_port = port
        self.graceful_timeout_s = graceful_timeout_s
        self.url: str | None = None

    def _hypercorn_config(self) -> hypercorn.config.Config:
        return hypercorn_config(self.host, self.requested_port, "dcent.metrics.http", self.graceful_timeout_s)

    async def run(self, *, task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. ``task_status.started`` gets the URL of the metrics page.

        Raises :class:`MetricsBindError` when the address cannot be bound.
        """
        http_limits.apply()
        serve = partial(
            hypercorn.trio.serve, cast(Framework, self.app), self._hypercorn_config(), mode="asgi"
        )
        started = False
        try:
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(serve)
                port = int(binds[0].rsplit(":", 1)[1])
                host = f"[{self.host}]" if ":" in self.host else self.host
                self.url = f"http://{host}:{port}{METRICS_PATH}"
                log.info("metrics served at %s", self.url)
                task_status.started(self.url)
                started = True
        except BaseExceptionGroup as group:
            failure = None if started else sole_exception(group)
            if isinstance(failure, OSError):
                raise MetricsBindError(
                    f"cannot serve metrics on {self.host}:{self.requested_port}: {failure.strerror or failure}"
                ) from failure
            raise
        finally:
            self.url = None
