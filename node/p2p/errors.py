"""Errors of the peer-to-peer layer: codes 5200-5299, split by whose fault it is.

    5200        P2PError (root)
    5210-5249   HostError: ours (config, key file, port, local limits, misuse)
    5250-5299   PeerError: the remote side's (unreachable, misbehaving, too slow, gone)

A ``PeerError`` is what an upper layer may answer by dropping, scoring or retrying the peer; a
``HostError`` is ours to fix or report. Every error leaves the host's state as it was.
"""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class P2PError(NodeError):
    """Root of every error of the p2p layer."""

    code: ClassVar[int] = 5200


# --- ours ------------------------------------------------------------------------------------
class HostError(P2PError):
    """Something on our side: configuration, key file, port, a local limit, or misuse."""

    code = 5210


class NodeKeyError(HostError):
    """The node key file is unreadable, malformed, or readable by other users."""

    code = 5211


class HostConfigError(HostError):
    """A host setting is invalid: a listen or bootstrap multiaddr, a peer id, a parameter."""

    code = 5212


class PortInUseError(HostError):
    """The fixed listen port is already bound (possibly by another dcent on SO_REUSEPORT)."""

    code = 5213


class ListenError(HostError):
    """The transport could not listen on the configured address for another reason."""

    code = 5214


class HostStateError(HostError):
    """The host was used in the wrong state: before ``run()`` started it, after ``close()``, or
    run a second time (a host runs once; make a new one to restart)."""

    code = 5215


class MessageTooLargeError(HostError):
    """A frame or gossip message we were asked to send exceeds the configured maximum."""

    code = 5216


class GossipBackpressureError(HostError):
    """No connected subscriber could take the message in time: every outbound queue stayed full."""

    code = 5217


class StreamStateError(HostError):
    """A send on a stream we already closed or reset."""

    code = 5218


# --- theirs ----------------------------------------------------------------------------------
class PeerError(P2PError):
    """Something on the remote side: unreachable, misbehaving, too slow, or gone."""

    code = 5250


class DialError(PeerError):
    """No connection to the peer could be established (refused, timed out, wrong peer id)."""

    code = 5251


class ProtocolNotSupportedError(PeerError):
    """The peer does not handle the requested stream protocol."""

    code = 5252


class FrameTooLargeError(PeerError):
    """The peer announced a frame larger than the receiver allows; the stream was reset."""

    code = 5253


class TruncatedFrameError(PeerError):
    """The stream ended inside a frame (in its length prefix or its body)."""

    code = 5254


class StreamClosedError(PeerError):
    """The peer closed its side of the stream where a frame was expected."""

    code = 5255


class StreamResetError(PeerError):
    """The stream was reset (by the peer, or because its connection dropped)."""

    code = 5256


class RequestTimeoutError(PeerError):
    """The peer did not answer a request within its deadline."""

    code = 5257


class PeerBannedError(PeerError):
    """The peer is serving a ban for misbehaviour: we neither dial it nor take its streams."""

    code = 5258


class FrameRefusedError(PeerError):
    """We refused a frame the peer had started on an inbound stream (see
    ``node/p2p/frame_budget.py``); the stream was reset and the refusal already counted and
    scored, so whoever catches this does not report it again."""

    code = 5265


class FrameBudgetError(FrameRefusedError):
    """No room for the frame's body in our receive budget within a short wait: the peer's own
    budget (``peer_exhausted``: scored) or the node-wide one (a squeeze: counted, not scored)."""

    code = 5266

    def __init__(self, message: str, *, peer_exhausted: bool) -> None:
        super().__init__(message)
        self.peer_exhausted = peer_exhausted


class SlowFrameError(FrameRefusedError):
    """A frame arrived too slowly: its body below the minimum rate, or a stream's first frame
    not started in time (a slow-loris)."""

    code = 5267
