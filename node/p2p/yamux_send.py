"""Yamux writers wake when credit arrives (libp2p workaround 27, node/p2p/__init__.py).

py-libp2p 0.8.1's ``YamuxStream.write``, finding its send window empty, polls it every 10 ms
(``trio.sleep(0.01)``) for up to 5 s. Credit that arrives 0.1 ms later is still only seen at
the next poll, so a bulk sender idles up to 10 ms every time it outruns the reader. In
``bench/blob.py`` the serving node slept ~250 times (~2.7 s) over 2 GiB; at 400 tx/s on a
4-validator testnet, waking on the credit took 4-14% off the CPU per transaction and off p50.

Here the send window is a data descriptor: raising it (a WINDOW_UPDATE, wherever libp2p's
handler adds it) wakes the writer waiting for it at once, and so does the stream's ``closed``
flag becoming true (a reset, an RST or FIN, the connection going away). The rest of ``write`` is
libp2p's, line for line: the same locks, checks, frame sizes, counters and 5 s limit; only its
debug log lines are left out. The writer still looks again on its own every
:data:`ZERO_WINDOW_RECHECK_S`, in case some path changes either without the descriptors.

A writer may also be watched (:func:`observing_writes`): each data frame, once written, is
reported with its size, which is how the blob server sees a slow client taking a large chunk.

A peer granting credit a byte at a time now gets a one-byte frame per grant (libp2p's poll merged
up to 10 ms of them): one small frame out per 12-byte frame in, as go-yamux's writer does.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import Any

import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import trio
from libp2p.stream_muxer.exceptions import MuxedStreamError

#: How long a writer whose send window is empty waits before it looks at the stream again by
#: itself, should credit or closure arrive other than through the descriptors. libp2p looked
#: every 10 ms, for both.
ZERO_WINDOW_RECHECK_S = 0.05

#: libp2p's bound on one wait for credit; a peer that grants none for this long fails the write.
ZERO_WINDOW_LIMIT_S = 5.0

_WAITER = "_dcent_credit_waiter"
_OBSERVER = "_dcent_on_sent"

#: libp2p's own ``YamuxStream.write``, kept before :func:`install` replaces it (for tests).
LIBP2P_WRITE = libp2p_yamux.YamuxStream.write


def _wake_writer(fields: dict[str, Any]) -> None:
    waiter = fields.pop(_WAITER, None)
    if waiter is not None:
        waiter.set()


class _KeptInInstance:
    """A data descriptor for libp2p's attribute :attr:`name`, whose value stays in the instance's
    ``__dict__`` under that same name, so streams made before it was installed read as before."""

    name = ""

    def __get__(self, stream: Any, owner: type | None = None) -> Any:
        if stream is None:
            return self
        try:
            return stream.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


class SendWindow(_KeptInInstance):
    """``YamuxStream.send_window``: any increase wakes the writer waiting for credit."""

    name = "send_window"

    def __set__(self, stream: Any, value: int) -> None:
        fields = stream.__dict__
        before = fields.get(self.name, 0)
        fields[self.name] = value
        if value > before:
            _wake_writer(fields)


class ClosedFlag(_KeptInInstance):
    """``YamuxStream.closed``: becoming true wakes the writer waiting for credit, which then
    fails as libp2p's would."""

    name = "closed"

    def __set__(self, stream: Any, value: bool) -> None:
        fields = stream.__dict__
        fields[self.name] = value
        if value:
            _wake_writer(fields)


async def write_waking_on_credit(self: Any, data: bytes) -> None:
    """libp2p's ``YamuxStream.write``, waiting on an event for credit rather than polling."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    total_len = len(data)
    sent = 0
    while sent < total_len:
        frame: bytes | None = None
        while frame is None:
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    if self.send_window > 0:
                        to_send = min(
                            self.send_window,
                            libp2p_yamux.MAX_MESSAGE_SIZE - libp2p_yamux.HEADER_SIZE,
                            total_len - sent,
                        )
                        chunk = data[sent : sent + to_send]
                        self.send_window -= to_send
                        header = struct.pack(
                            libp2p_yamux.YAMUX_HEADER_FORMAT,
                            0,
                            libp2p_yamux.TYPE_DATA,
                            0,
                            self.stream_id,
                            len(chunk),
                        )
                        frame = header + chunk
            if frame is not None:
                break
            self._zero_window_waits += 1
            await _wait_for_credit(self)
        await self.conn._write_frame(frame)
        sent += len(frame) - libp2p_yamux.HEADER_SIZE
        observer = self.__dict__.get(_OBSERVER)
        if observer is not None:
            observer(len(frame) - libp2p_yamux.HEADER_SIZE)


async def _wait_for_credit(stream: Any) -> None:
    """Until the send window is open or the stream closed; :class:`MuxedStreamError` after
    :data:`ZERO_WINDOW_LIMIT_S`, as libp2p."""
    with trio.move_on_after(ZERO_WINDOW_LIMIT_S) as limit:
        while True:
            async with stream.window_lock:
                if stream.send_window > 0 or stream.closed:
                    return
                # Made under the window lock, which every credit is added under, so none is
                # missed between the check and the wait.
                waiter = stream.__dict__.setdefault(_WAITER, trio.Event())
            with trio.move_on_after(ZERO_WINDOW_RECHECK_S):
                await waiter.wait()
    if limit.cancelled_caught:
        raise MuxedStreamError(f"Timed out waiting for window update after {ZERO_WINDOW_LIMIT_S:g} seconds.")


@contextlib.contextmanager
def observing_writes(stream: Any, on_sent: Callable[[int], None]) -> Iterator[None]:
    """While inside, ``on_sent(n)`` is called as each data frame of ``n`` bytes of
    ``stream`` (a libp2p ``YamuxStream``) has been written to its connection: the progress of a
    large write to a slow reader, frame by frame, at no extra write."""
    stream.__dict__[_OBSERVER] = on_sent
    try:
        yield
    finally:
        stream.__dict__.pop(_OBSERVER, None)


def install() -> None:
    """Put the event-driven wait in place of libp2p's poll (idempotent)."""
    libp2p_yamux.YamuxStream.send_window = SendWindow()  # type: ignore[assignment]
    libp2p_yamux.YamuxStream.closed = ClosedFlag()  # type: ignore[assignment]
    libp2p_yamux.YamuxStream.write = write_waking_on_credit  # type: ignore[method-assign]
