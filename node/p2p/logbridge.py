"""Route py-libp2p's log records into ours (``dcent.p2p.libp2p.*``), minus its known noise.

``import libp2p`` sets the ``libp2p`` logger to ``propagate=False`` with no handler, so its
WARNING and ERROR lines bypass the node's logging configuration and reach stderr through
Python's last-resort handler. The bridge is a handler on that logger which re-emits each record
through ``dcent.p2p.libp2p.<module>`` (where the node's handlers, format and level apply):

- INFO becomes DEBUG: libp2p's INFO lines are internal state (the auto-connector prints its
  watermarks every 30 s);
- the ERROR and WARNING lines in :data:`BENIGN` become DEBUG: they are races and teardown
  paths that normal operation hits and that change nothing (each entry says why);
- everything else keeps its level.

libp2p's own level filter still applies first (WARNING on the ``libp2p`` logger, INFO on a few
modules that set their own); to see its DEBUG lines set ``logging.getLogger("libp2p")`` lower.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

TARGET_PREFIX = "dcent.p2p.libp2p"


@dataclass(frozen=True, slots=True)
class BenignRecord:
    """Records from ``logger`` (a libp2p logger name prefix) whose message matches ``pattern``."""

    logger: str
    pattern: re.Pattern[str]
    reason: str


# Anyone can open a TCP connection to a node and fail a handshake, or vanish mid-dial: logging
# that at ERROR would let any stranger fill our error log, and the host already reports what
# matters to its caller as a typed error. Each entry was seen in normal operation (tests).
_REMOTE_FAILED_HANDSHAKE = (
    "a peer offered no security or muxer protocol we accept (plaintext, secio, mplex), or "
    "closed the connection during the handshake; the connection is refused, nothing else changes"
)
BENIGN: tuple[BenignRecord, ...] = (
    BenignRecord(
        "libp2p.host.basic_host",
        re.compile(r"^Failed to open stream to peer"),
        "new_stream logs a multi-line ERROR dump before raising StreamFailure; the host turns "
        "that into ProtocolNotSupportedError/StreamResetError for the caller, who decides",
    ),
    BenignRecord(
        "libp2p.network.swarm", re.compile(r"^failed to upgrade security"), _REMOTE_FAILED_HANDSHAKE
    ),
    BenignRecord("libp2p.network.swarm", re.compile(r"^fail to upgrade mux"), _REMOTE_FAILED_HANDSHAKE),
    BenignRecord(
        "libp2p.protocol_muxer.multiselect_client",
        re.compile(r"^MultiselectClient handshake: (read|write) failed"),
        _REMOTE_FAILED_HANDSHAKE,
    ),
    BenignRecord(
        "libp2p.transport.tcp.tcp",
        re.compile(r"^Failed to open TCP stream"),
        "a dial to a peer that is down; the dialler gets a DialError and the reconnect loop "
        "logs the retry at INFO",
    ),
    BenignRecord(
        "libp2p.stream_muxer.yamux.yamux",
        re.compile(r"^Error in handle_incoming for peer .*ClosedResourceError"),
        "yamux's read loop racing our own close of the connection (shutdown, disconnect)",
    ),
)


class _Libp2pLogBridge(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        if level < logging.WARNING or is_benign(record):
            level = logging.DEBUG
        suffix = record.name[len("libp2p") :]
        target = logging.getLogger(TARGET_PREFIX + suffix)
        if not target.isEnabledFor(level):
            return
        copy = logging.makeLogRecord(record.__dict__)
        copy.name = target.name
        copy.levelno = level
        copy.levelname = logging.getLevelName(level)
        target.handle(copy)


def is_benign(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return any(record.name.startswith(entry.logger) and entry.pattern.search(message) for entry in BENIGN)


def install_libp2p_log_bridge() -> None:
    """Attach the bridge to the ``libp2p`` logger (once; later calls do nothing)."""
    source = logging.getLogger("libp2p")
    if not any(isinstance(handler, _Libp2pLogBridge) for handler in source.handlers):
        source.addHandler(_Libp2pLogBridge())
