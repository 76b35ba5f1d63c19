"""The frame reader (node/p2p/framing.py) over a scripted transport: each transport read hands out
at most the next scripted piece, so where reads stop, and how much each one asked for, is exact.

A length-prefix read on a stream we opened asks for up to READ_AHEAD bytes and keeps what comes
beyond the prefix for the next frames; body reads stop at the frame's end; an inbound (budgeted)
stream reads no byte past a prefix before the body is reserved.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from node.p2p.errors import FrameTooLargeError, StreamClosedError, TruncatedFrameError
from node.p2p.frame_budget import MIB, FrameBudget, FrameBudgetSettings
from node.p2p.framing import FRAME_HEADER, READ_AHEAD, RESET_TIMEOUT_S, Stream
from node.p2p.guard import PeerGuard

PROTOCOL = "/test/reader/1.0.0"


class ScriptedRaw:
    """A ``RawStream`` whose reads return the scripted pieces in order (a piece longer than a
    read asks for is split), then ``b""``; it records what each read asked for and got."""

    def __init__(self, *pieces: bytes) -> None:
        self._pieces = list(pieces)
        self.asked: list[int] = []
        self.got: list[int] = []
        self.reset_called = False

    @property
    def bytes_read(self) -> int:
        return sum(self.got)

    async def read(self, max_bytes: int) -> bytes:
        await trio.lowlevel.checkpoint()
        data = b""
        if self._pieces:
            data, rest = self._pieces[0][:max_bytes], self._pieces[0][max_bytes:]
            if rest:
                self._pieces[0] = rest
            else:
                self._pieces.pop(0)
        self.asked.append(max_bytes)
        self.got.append(len(data))
        return data

    async def write(
        self, data: bytes | bytearray | memoryview, on_sent: Callable[[int], None] | None = None
    ) -> None:
        await trio.lowlevel.checkpoint()

    async def close_write(self) -> None:
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        self.reset_called = True
        await trio.lowlevel.checkpoint()


def frame(body: bytes) -> bytes:
    return FRAME_HEADER.pack(len(body)) + body


def outbound(raw: ScriptedRaw) -> Stream:
    return Stream(raw, peer_id="peer", protocol_id=PROTOCOL)


def budget_of() -> FrameBudget:
    return FrameBudget(PeerGuard(clock=trio.current_time), FrameBudgetSettings())


async def test_many_small_frames_in_one_read_cost_one_transport_read(autojump_clock: object) -> None:
    bodies = [b"", b"a", b"bc" * 100, b"reply header", b"x" * 1000]
    raw = ScriptedRaw(b"".join(frame(body) for body in bodies))
    stream = outbound(raw)
    assert [await stream.receive_frame(10_000) for _ in bodies] == bodies
    assert raw.got == [sum(4 + len(body) for body in bodies)]
    assert raw.asked == [READ_AHEAD]
    with pytest.raises(StreamClosedError):
        await stream.receive_frame(10_000)


async def test_a_frame_in_one_byte_reads_comes_back_whole(autojump_clock: object) -> None:
    wire = frame(b"hello, frames") + frame(b"") + frame(b"!")
    raw = ScriptedRaw(*(wire[i : i + 1] for i in range(len(wire))))
    stream = outbound(raw)
    assert await stream.receive_frame(100) == b"hello, frames"
    assert await stream.receive_frame(100) == b""
    assert await stream.receive_frame_pieces(100) == [b"!"]
    assert raw.bytes_read == len(wire)


async def test_a_prefix_split_across_reads_is_put_together(autojump_clock: object) -> None:
    raw = ScriptedRaw(b"\x00", b"\x00\x00", b"\x03ab", b"c\x00\x00", b"\x00\x01z")
    stream = outbound(raw)
    assert await stream.receive_frame(3) == b"abc"
    assert await stream.receive_frame(3) == b"z"


async def test_a_large_body_is_read_after_what_the_prefix_read_took(autojump_clock: object) -> None:
    body = bytes(range(256)) * (3 * READ_AHEAD // 256)
    wire = frame(body) + frame(b"next")
    raw = ScriptedRaw(wire[:1000], wire[1000:])
    stream = outbound(raw)
    pieces = await stream.receive_frame_pieces(len(body))
    assert b"".join(pieces) == body and len(pieces[0]) == 996  # the prefix read's share first
    # Body reads stop at the frame's end: the next frame's bytes are not read with the body.
    assert raw.asked[1] == len(body) - 996 and raw.got[1] == len(body) - 996
    assert await stream.receive_frame(10) == b"next"


async def test_an_oversize_prefix_is_refused_with_at_most_one_read_of_its_body(
    autojump_clock: object,
) -> None:
    raw = ScriptedRaw(FRAME_HEADER.pack(MIB) + bytes(MIB))
    with pytest.raises(FrameTooLargeError):
        await outbound(raw).receive_frame(MIB - 1)
    assert raw.reset_called
    assert raw.bytes_read <= FRAME_HEADER.size + READ_AHEAD


async def test_an_inbound_stream_reads_no_body_byte_before_reserving_it(autojump_clock: object) -> None:
    budget = budget_of()
    raw = ScriptedRaw(frame(b"small") + frame(b"x" * 3000))
    stream = Stream(raw, peer_id="peer", protocol_id=PROTOCOL, budget=budget)
    assert await stream.receive_frame(10_000) == b"small"
    assert await stream.receive_frame(10_000) == b"x" * 3000
    # Each prefix read asked for the prefix alone; each body read for that body at most.
    assert raw.asked == [4, 5, 4, 3000]
    assert budget.reserved == 0 and budget.peak_reserved == 3000


async def test_an_oversize_prefix_on_an_inbound_stream_is_refused_before_any_body_byte(
    autojump_clock: object,
) -> None:
    raw = ScriptedRaw(FRAME_HEADER.pack(MIB) + bytes(MIB))
    stream = Stream(raw, peer_id="peer", protocol_id=PROTOCOL, budget=budget_of())
    with pytest.raises(FrameTooLargeError):
        await stream.receive_frame(MIB - 1)
    assert raw.bytes_read == FRAME_HEADER.size


@pytest.mark.parametrize(
    ("wire", "where"),
    [
        (frame(b"whole") + b"\x00\x00", r"length prefix \(2 of 4 bytes\)"),
        (frame(b"whole") + FRAME_HEADER.pack(10) + b"abc", r"body \(3 of 10 bytes\)"),
    ],
)
async def test_eof_inside_a_frame_after_a_read_ahead_is_truncated(
    autojump_clock: object, wire: bytes, where: str
) -> None:
    stream = outbound(ScriptedRaw(wire))
    assert await stream.receive_frame(100) == b"whole"
    with pytest.raises(TruncatedFrameError, match=where):
        await stream.receive_frame(100)


class WedgedRaw(ScriptedRaw):
    """A transport whose reset never returns: libp2p's, on a connection that stopped moving."""

    async def reset(self) -> None:
        self.reset_called = True
        await trio.sleep_forever()


async def test_a_reset_that_hangs_is_given_up_after_its_bound_even_for_a_cancelled_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    raw = WedgedRaw()
    stream = outbound(raw)
    started = trio.current_time()
    with trio.move_on_after(1):  # the caller's own deadline: the reset is shielded from it
        await stream.reset()
    assert raw.reset_called
    assert trio.current_time() - started == pytest.approx(RESET_TIMEOUT_S)
    await stream.reset()  # idempotent: the stream counts as reset
    assert trio.current_time() - started == pytest.approx(RESET_TIMEOUT_S)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)
