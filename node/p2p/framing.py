"""Length-prefixed frames over a byte stream: the one ``Stream`` both host implementations hand out.

Wire format: a 4-byte big-endian unsigned length, then that many bytes. A fixed-width prefix (not
libp2p's unsigned varint) leaves no room for non-minimal encodings and makes a truncated prefix
obvious. The receiver names the largest frame it accepts on every read, and refuses a larger one
from its prefix alone, before reading (or buffering) a byte of the body.

On streams a host hands to a handler (inbound), a frame's body is also budgeted and timed (see
:mod:`node.p2p.frame_budget`): its bytes are reserved from the peer's and the node's receive
budgets before it is read, it must arrive at a minimum rate, and the stream's first frame must
start soon after the stream opens; a frame that breaks either rule is refused and its stream reset.

Reads: a length-prefix read on a stream we opened asks the transport for up to
:data:`READ_AHEAD` bytes and keeps what came beyond the prefix (the body's start, whole small
frames after it) for the next parse, so a run of small frames costs one transport read; body reads
stop at the frame's end. So at most one read's worth is ever held beyond the frame being parsed,
and an oversize frame is refused from its prefix with at most that much of its body read. Inbound
streams read exactly the prefix: no byte of a body is read before it is reserved from the budget.

The transports underneath differ (a yamux stream, an in-memory pipe); they only have to offer
the small :class:`RawStream` interface and translate their own failures into ours.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable
from typing import NoReturn, Protocol

import trio

from node.p2p.errors import (
    FrameBudgetError,
    FrameRefusedError,
    FrameTooLargeError,
    MessageTooLargeError,
    SlowFrameError,
    StreamClosedError,
    StreamStateError,
    TruncatedFrameError,
)
from node.p2p.frame_budget import FrameBudget

log = logging.getLogger("dcent.p2p")

FRAME_HEADER = struct.Struct(">I")
#: How long a stream's reset may take before it is left to its connection (see Stream.reset).
RESET_TIMEOUT_S = 5.0
#: The largest frame anyone may send: block sync and job inputs travel as several frames.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# Body reads are chunked so a large frame is received in bounded steps.
_READ_CHUNK = 1024 * 1024
#: How much a length-prefix read may take beyond the prefix, on streams we opened: one yamux
#: data frame's worth, what one transport read returns anyway.
READ_AHEAD = 64 * 1024


class RawStream(Protocol):
    """A bidirectional byte stream, as the transports provide it.

    ``read`` returns at most ``max_bytes`` bytes, and ``b""`` once the peer has closed its side.
    Failures surface as :class:`StreamResetError` (reset, or the connection dropped).
    """

    async def read(self, max_bytes: int) -> bytes: ...

    async def write(
        self, data: bytes | bytearray | memoryview, on_sent: Callable[[int], None] | None = None
    ) -> None:
        """Write ``data``; ``on_sent(n)``, if given, is called as each part of it has left
        (parts of the transport's choosing, summing to ``len(data)``)."""

    async def close_write(self) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


def frame_buffer(length: int) -> bytearray:
    """A zeroed buffer for one frame of ``length`` bytes: room for the length prefix, then the
    body (``buffer[FRAME_HEADER.size:]``), to fill in place and send with
    :meth:`Stream.send_frame_buffer`."""
    return bytearray(FRAME_HEADER.size + length)


class Stream:
    """A stream of length-prefixed frames to one peer, on one protocol.

    One task may send while another receives; concurrent senders (or receivers) are serialized
    so frames never interleave. ``budget`` is given to inbound streams only (the host's
    :class:`~node.p2p.frame_budget.FrameBudget`): it budgets and times the frames received.
    """

    def __init__(
        self,
        raw: RawStream,
        *,
        peer_id: str,
        protocol_id: str,
        budget: FrameBudget | None = None,
        remote_host: str | None = None,
    ) -> None:
        self._raw = raw
        #: The address (IP) the stream's connection comes from, where the transport knows it.
        self.remote_host = remote_host
        self._budget = budget
        # When the first frame's length prefix is due (inbound streams); inf once it has come.
        self._first_frame_due = (
            trio.current_time() + budget.settings.first_frame_s if budget is not None else math.inf
        )
        self._peer_id = peer_id
        self._protocol_id = protocol_id
        # Bytes read and not yet parsed: a length prefix in progress, or what a prefix read took
        # beyond its prefix (at most READ_AHEAD). Inbound streams read no further than the
        # prefix: a body's bytes are reserved from the budget before a byte of it is read.
        self._pending = bytearray()
        self._read_ahead = READ_AHEAD if budget is None else 0
        self._body_received = 0  # bytes of the body in progress (for error messages)
        self._send_lock = trio.Lock()
        self._receive_lock = trio.Lock()
        self._write_closed = False
        self._closed = False
        self._reset = False

    @property
    def peer_id(self) -> str:
        """The remote peer's id (authenticated by the transport's handshake)."""
        return self._peer_id

    @property
    def protocol_id(self) -> str:
        return self._protocol_id

    async def send_frame(self, payload: bytes) -> None:
        """Send one frame.

        Raises :class:`MessageTooLargeError` above :data:`MAX_FRAME_BYTES`,
        :class:`StreamStateError` after our own ``close_write``/``close``/``reset``, and
        :class:`StreamResetError` if the stream was reset or its connection dropped.
        """
        if len(payload) > MAX_FRAME_BYTES:
            raise MessageTooLargeError(f"a frame is at most {MAX_FRAME_BYTES} bytes, not {len(payload)}")
        async with self._send_lock:
            self._check_open(sending=True)
            header = FRAME_HEADER.pack(len(payload))
            # One write for small frames (one yamux data frame); no copy of large bodies.
            if len(payload) <= _READ_CHUNK:
                await self._raw.write(header + payload)
            else:
                await self._raw.write(header)
                await self._raw.write(payload)

    async def send_frame_buffer(
        self, buffer: bytearray | memoryview, *, on_sent: Callable[[int], None] | None = None
    ) -> None:
        """Send one frame whose body is ``buffer[FRAME_HEADER.size:]``, the first bytes left free
        for the length prefix (see :func:`frame_buffer`): one transport write and no copy of the
        body, where :meth:`send_frame` writes a large body after its prefix, as a second write.
        ``on_sent(n)`` is called as each part of the frame leaves (a yamux data frame at a time):
        a sender watching a slow reader's progress. Raises as :meth:`send_frame` does."""
        length = len(buffer) - FRAME_HEADER.size
        if length < 0:
            raise ValueError("a frame buffer starts with room for the length prefix")
        if length > MAX_FRAME_BYTES:
            raise MessageTooLargeError(f"a frame is at most {MAX_FRAME_BYTES} bytes, not {length}")
        FRAME_HEADER.pack_into(buffer, 0, length)
        async with self._send_lock:
            self._check_open(sending=True)
            # A view: yamux cuts its frames from it without copying each piece first. Nothing
            # keeps a reference once the write returns, so the caller may reuse the buffer.
            await self._raw.write(memoryview(buffer), on_sent)

    async def receive_frame(self, max_size: int) -> bytes:
        """Receive one frame of at most ``max_size`` bytes.

        Raises :class:`FrameTooLargeError` (and resets the stream) when the peer announces a
        larger frame, :class:`TruncatedFrameError` when the stream ends inside a frame,
        :class:`StreamClosedError` when it ends cleanly before one, :class:`StreamResetError`
        on reset, and :class:`StreamStateError` after our own ``close``/``reset``. On an inbound
        stream also :class:`FrameBudgetError` and :class:`SlowFrameError` (the stream reset, the
        refusal already reported to the guard).
        """
        pieces = await self.receive_frame_pieces(max_size)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def receive_frame_buffer(self, max_size: int) -> bytes | bytearray:
        """:meth:`receive_frame` for bulk data, without its last copy: a body that arrived in
        several reads comes back as the ``bytearray`` it was assembled in (the caller owns it).
        Raises as :meth:`receive_frame` does."""
        pieces = await self.receive_frame_pieces(max_size)
        if len(pieces) <= 1:
            return pieces[0] if pieces else b""
        return bytearray().join(pieces)

    async def receive_frame_pieces(
        self, max_size: int, *, on_received: Callable[[int], None] | None = None
    ) -> list[bytes]:
        """:meth:`receive_frame` for bulk data handed on elsewhere (a worker thread): the body as
        the pieces the transport read it in, in order, not assembled here (``b"".join`` gives the
        frame; an empty frame is ``[]``): a large ``bytes.join`` in a worker thread runs
        without the GIL, where assembling it here costs the event loop a zeroed allocation and
        a copy. ``on_received(count)`` is told each piece of the body as it is read (a deadline
        that progress pushes forward). Raises as :meth:`receive_frame` does."""
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        async with self._receive_lock:
            self._check_open(sending=False)
            header = await self._read_prefix()
            (length,) = FRAME_HEADER.unpack(header)
            if length > max_size:
                await self.reset()
                raise FrameTooLargeError(
                    f"peer {self._peer_id} announced a {length}-byte frame on {self._protocol_id}; "
                    f"at most {max_size} accepted"
                )
            if self._budget is None or length == 0:
                return await self._read_body(length, on_received)
            return await self._read_budgeted_body(self._budget, length, on_received)

    async def close_write(self) -> None:
        """Tell the peer we will send no more frames; receiving still works."""
        async with self._send_lock:
            if self._write_closed or self._reset:
                return
            self._write_closed = True
            await self._raw.close_write()

    async def close(self) -> None:
        """Finish with the stream: close our side and release it. Idempotent."""
        if self._closed or self._reset:
            return
        self._closed = True
        self._write_closed = True
        await self._raw.close()

    async def reset(self) -> None:
        """Abort the stream in both directions; the peer's reads and writes fail. Idempotent."""
        if self._reset:
            return
        self._reset = True
        self._closed = True
        self._write_closed = True
        # Shielded, so a cancelled caller still resets; bounded, because libp2p's reset writes
        # a yamux frame under the connection's locks and, on a connection whose peer is gone but
        # not yet closed, that write can wait forever (the caller's own timeout cannot reach
        # inside the shield).
        with trio.CancelScope(shield=True), trio.move_on_after(RESET_TIMEOUT_S) as gave_up:
            await self._raw.reset()
        if gave_up.cancelled_caught:
            log.info(
                "reset of a stream to %s on %s took over %g s; left to its connection",
                self._peer_id,
                self._protocol_id,
                RESET_TIMEOUT_S,
            )

    def _check_open(self, *, sending: bool) -> None:
        if self._reset:
            raise StreamStateError(f"stream to {self._peer_id} on {self._protocol_id} was reset")
        if self._closed or (sending and self._write_closed):
            raise StreamStateError(f"stream to {self._peer_id} on {self._protocol_id} is closed")

    async def _read_prefix(self) -> bytes:
        """The next length prefix; a stream's first one by its deadline (inbound streams)."""
        due, self._first_frame_due = self._first_frame_due, math.inf
        if due == math.inf:
            return await self._read_exactly(FRAME_HEADER.size, in_header=True)
        with trio.move_on_at(due):
            return await self._read_exactly(FRAME_HEADER.size, in_header=True)
        assert self._budget is not None  # a first-frame deadline is set for inbound streams only
        await self._refuse(
            self._budget,
            SlowFrameError(
                f"no frame from {self._peer_id} on {self._protocol_id} within "
                f"{self._budget.settings.first_frame_s:g} s of opening the stream"
            ),
        )

    async def _read_budgeted_body(
        self, budget: FrameBudget, length: int, on_received: Callable[[int], None] | None
    ) -> list[bytes]:
        """A body of ``length`` bytes, its bytes reserved while it is read and read by its
        deadline. The reservation is released however the read ends: the returned bytes are
        the handler's, and a failed read's partial body is dropped."""
        try:
            await budget.reserve(self._peer_id, length)
        except FrameBudgetError as exc:
            await self._refuse(budget, exc)
        try:
            with trio.move_on_after(budget.settings.body_deadline_s(length)):
                return await self._read_body(length, on_received)
            await self._refuse(
                budget,
                SlowFrameError(
                    f"a {length}-byte frame from {self._peer_id} on {self._protocol_id} arrived "
                    f"below {budget.settings.min_rate_bytes_per_s} bytes/s "
                    f"({self._body_received} bytes in {budget.settings.body_deadline_s(length):g} s)"
                ),
            )
        finally:
            budget.release(self._peer_id, length)

    async def _refuse(self, budget: FrameBudget, error: FrameRefusedError) -> NoReturn:
        """Reset the stream, report ``error`` to the guard, raise it."""
        await self.reset()
        budget.report(self._peer_id, self._protocol_id, error)
        raise error

    async def _read_exactly(self, count: int, *, in_header: bool) -> bytes:
        """The next ``count`` bytes (a length prefix). A read asks for up to ``_read_ahead``
        bytes: what comes beyond the prefix (the body's start, small frames after it) stays in
        ``_pending`` for the next parse, so several small frames cost one transport read."""
        while len(self._pending) < count:
            chunk = await self._raw.read(max(count - len(self._pending), self._read_ahead))
            if not chunk:
                if in_header and not self._pending:
                    raise StreamClosedError(f"peer {self._peer_id} closed the stream on {self._protocol_id}")
                where = "length prefix" if in_header else "body"
                raise TruncatedFrameError(
                    f"stream from {self._peer_id} on {self._protocol_id} ended inside a frame's "
                    f"{where} ({len(self._pending)} of {count} bytes)"
                )
            self._pending += chunk
        data = bytes(self._pending[:count])
        del self._pending[:count]
        return data

    async def _read_body(self, count: int, on_received: Callable[[int], None] | None) -> list[bytes]:
        """A body of exactly ``count`` bytes, as the pieces it was read in. Reads stop at the
        frame's end (at most :data:`_READ_CHUNK` at a time): the only bytes read beyond a frame
        are a prefix read's (:meth:`_read_exactly`), taken here first."""
        self._body_received = 0
        pieces: list[bytes] = []
        got = min(count, len(self._pending))
        if got:
            pieces.append(bytes(self._pending[:got]))
            del self._pending[:got]
            self._body_received = got
            if on_received is not None:
                on_received(got)
        while got < count:
            piece = await self._raw.read(min(count - got, _READ_CHUNK))
            if not piece:
                raise TruncatedFrameError(
                    f"stream from {self._peer_id} on {self._protocol_id} ended inside a frame's "
                    f"body ({got} of {count} bytes)"
                )
            pieces.append(piece)
            got += len(piece)
            self._body_received = got
            if on_received is not None:
                on_received(len(piece))
        return pieces
