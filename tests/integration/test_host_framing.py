"""Frames on a stream: the one ``Stream`` class both hosts use, over an in-memory byte pipe.

The wire format (4-byte big-endian length, then the body) is exercised byte by byte here; the
host tests run the same class over yamux.
"""

from __future__ import annotations

import pytest
import trio

from node.p2p.errors import (
    FrameTooLargeError,
    MessageTooLargeError,
    StreamClosedError,
    StreamResetError,
    StreamStateError,
    TruncatedFrameError,
)
from node.p2p.framing import FRAME_HEADER, MAX_FRAME_BYTES, RawStream, Stream, frame_buffer
from node.p2p.memory import pipe_pair

PROTOCOL = "/dcent/test/frames/1"


def streams() -> tuple[Stream, Stream]:
    near_raw, far_raw = pipe_pair()
    near = Stream(near_raw, peer_id="far", protocol_id=PROTOCOL)
    return near, Stream(far_raw, peer_id="near", protocol_id=PROTOCOL)


async def test_frame_wire_format_is_a_big_endian_length_then_the_body(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    await Stream(near_raw, peer_id="far", protocol_id=PROTOCOL).send_frame(b"abc")
    assert await far_raw.read(100) == b"\x00\x00\x00\x03abc"


@pytest.mark.parametrize(
    ("partial", "where"), [(b"\x00\x00", "length prefix"), (b"\x00\x00\x00\x05ab", "body")]
)
async def test_stream_ending_inside_a_frame_is_truncated(
    autojump_clock: object, partial: bytes, where: str
) -> None:
    near_raw, far_raw = pipe_pair()
    await near_raw.write(partial)
    await near_raw.close_write()
    with pytest.raises(TruncatedFrameError, match=where):
        await Stream(far_raw, peer_id="near", protocol_id=PROTOCOL).receive_frame(100)


async def test_clean_close_between_frames_is_stream_closed(autojump_clock: object) -> None:
    near, far = streams()
    await near.send_frame(b"only")
    await near.close_write()
    assert await far.receive_frame(100) == b"only"
    with pytest.raises(StreamClosedError):
        await far.receive_frame(100)
    await far.send_frame(b"reply after their close_write")  # our side is still open
    assert await near.receive_frame(100) == b"reply after their close_write"


async def test_oversize_frame_is_refused_before_its_body_is_read(autojump_clock: object) -> None:
    near, far = streams()
    await near.send_frame(b"x" * 101)
    with pytest.raises(FrameTooLargeError) as refused:
        await far.receive_frame(100)
    assert refused.value.code == 5253
    with pytest.raises(StreamResetError):  # the receiver reset the stream: the sender learns
        await near.send_frame(b"more")


async def test_frames_above_the_protocol_cap_are_not_sent(autojump_clock: object) -> None:
    near, _far = streams()
    with pytest.raises(MessageTooLargeError):
        await near.send_frame(bytes(MAX_FRAME_BYTES + 1))


async def test_use_after_close_or_reset_is_a_state_error(autojump_clock: object) -> None:
    near, far = streams()
    await near.close()
    await near.close()  # idempotent
    with pytest.raises(StreamStateError):
        await near.send_frame(b"x")
    with pytest.raises(StreamStateError):
        await near.receive_frame(10)
    await far.reset()
    with pytest.raises(StreamStateError):
        await far.send_frame(b"x")


async def test_reset_wakes_a_blocked_reader_on_the_other_side(autojump_clock: object) -> None:
    near, far = streams()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(near.reset)
        with pytest.raises(StreamResetError):
            await far.receive_frame(10)


async def test_concurrent_senders_never_interleave_frames(autojump_clock: object) -> None:
    near, far = streams()
    payloads = [bytes([i]) * (1000 + i) for i in range(20)]
    async with trio.open_nursery() as nursery:
        for payload in payloads:
            nursery.start_soon(near.send_frame, payload)
        received = [await far.receive_frame(4096) for _ in payloads]
    assert sorted(received) == sorted(payloads)


async def test_a_frame_buffer_goes_out_as_one_write_in_the_same_wire_format(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    buffer = frame_buffer(3)
    buffer[FRAME_HEADER.size :] = b"xyz"
    await Stream(near_raw, peer_id="far", protocol_id=PROTOCOL).send_frame_buffer(buffer)
    # One write: the prefix and the body arrive as one piece on the pipe.
    assert await far_raw.read(100) == b"\x00\x00\x00\x03xyz"


async def test_a_frame_buffer_without_room_for_the_prefix_is_refused(autojump_clock: object) -> None:
    near, _far = streams()
    with pytest.raises(ValueError):
        await near.send_frame_buffer(bytearray(FRAME_HEADER.size - 1))


async def test_a_body_in_pieces_comes_back_whole_from_either_receive(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    far = Stream(far_raw, peer_id="near", protocol_id=PROTOCOL)
    body = bytes(range(256)) * 40
    for receive in (far.receive_frame, far.receive_frame_buffer):
        await near_raw.write(FRAME_HEADER.pack(len(body)))
        for start in range(0, len(body), 1000):  # a body that arrives in ten reads
            await near_raw.write(body[start : start + 1000])
        got = await receive(len(body))
        assert got == body
        assert type(got) is (bytes if receive == far.receive_frame else bytearray)  # one copy, no more
    assert type(await _echo(far, near_raw, b"one read")) is bytes  # a body in one read: as it came


async def _echo(far: Stream, near_raw: RawStream, body: bytes) -> bytes | bytearray:
    await near_raw.write(FRAME_HEADER.pack(len(body)) + body)
    return await far.receive_frame_buffer(len(body))


async def test_receive_frame_pieces_hands_back_the_body_as_it_was_read(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    far = Stream(far_raw, peer_id="near", protocol_id=PROTOCOL)
    body = bytes(range(256)) * 40
    await near_raw.write(FRAME_HEADER.pack(len(body)))
    for start in range(0, len(body), 1000):  # a body that arrives in eleven reads
        await near_raw.write(body[start : start + 1000])
    await near_raw.write(FRAME_HEADER.pack(0) + FRAME_HEADER.pack(3) + b"end")
    pieces = await far.receive_frame_pieces(len(body))
    assert [len(piece) for piece in pieces] == [1000] * 10 + [240]  # not joined here
    assert b"".join(pieces) == body
    assert await far.receive_frame_pieces(10) == []  # an empty frame has no pieces
    assert await far.receive_frame_pieces(10) == [b"end"]  # reads stop at each frame's end


async def test_receive_frame_pieces_refuses_an_oversize_frame_before_its_body(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    far = Stream(far_raw, peer_id="near", protocol_id=PROTOCOL)
    await near_raw.write(FRAME_HEADER.pack(101))
    with pytest.raises(FrameTooLargeError):
        await far.receive_frame_pieces(100)  # no body byte was sent: refused from the prefix
    with pytest.raises(StreamResetError):
        await near_raw.write(b"x" * 101)


async def test_receive_frame_pieces_ending_inside_a_body_is_truncated(autojump_clock: object) -> None:
    near_raw, far_raw = pipe_pair()
    await near_raw.write(FRAME_HEADER.pack(5) + b"ab")
    await near_raw.close_write()
    with pytest.raises(TruncatedFrameError, match=r"body \(2 of 5 bytes\)"):
        await Stream(far_raw, peer_id="near", protocol_id=PROTOCOL).receive_frame_pieces(100)
