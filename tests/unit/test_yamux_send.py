"""A yamux writer with an empty send window resumes the moment credit arrives (libp2p polled
every 10 ms), still fails after libp2p's 5 s without credit, and still notices a stream closed
under it (workaround 27, node/p2p/yamux_send.py)."""

from __future__ import annotations

import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import pytest
import trio
import trio.testing
from libp2p.stream_muxer.exceptions import MuxedStreamError

from node.p2p import yamux_send


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _Sink:
    """A yamux connection that records when each frame was written, and its size."""

    def __init__(self) -> None:
        self.stream_buffers: dict[int, bytearray] = {}
        self.frames: list[tuple[float, int]] = []

    def rtt(self) -> float:
        return 0.001

    async def _write_frame(self, data: bytes) -> None:
        self.frames.append((trio.current_time(), len(data) - libp2p_yamux.HEADER_SIZE))


async def _credit(stream: libp2p_yamux.YamuxStream, increment: int) -> None:
    """What libp2p's connection does with a peer's WINDOW_UPDATE."""
    async with stream.window_lock:
        stream.send_window += increment


def _stream(sink: _Sink) -> libp2p_yamux.YamuxStream:
    stream = libp2p_yamux.YamuxStream(1, sink, True)  # type: ignore[arg-type]
    stream.send_window = 0
    return stream


@pytest.mark.parametrize("woken", [True, False], ids=["ours", "libp2p"])
async def test_a_writer_out_of_credit_resumes_when_credit_arrives(
    woken: bool, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Credit arrives 1 ms into the wait: our writer sends then; libp2p's at its next 10 ms poll."""
    monkeypatch.setattr(libp2p_yamux.YamuxStream, "write", yamux_send.LIBP2P_WRITE)  # undone after
    if woken:
        yamux_send.install()
    sink = _Sink()
    stream = _stream(sink)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.write, bytes(3000))
        await trio.sleep(0.001)
        assert sink.frames == []  # nothing to send with: it waits
        started = trio.current_time()
        await _credit(stream, 1000)
        await trio.sleep(0.05)
        await _credit(stream, 2000)
    sent = [size for _, size in sink.frames]
    assert sent == [1000, 2000]
    delays = [round(at - started, 4) for at, _ in sink.frames]
    assert delays == ([0.0, 0.05] if woken else [0.009, 0.059])
    assert stream._zero_window_waits == 2


async def test_a_writer_given_no_credit_fails_after_libp2ps_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    yamux_send.install()
    stream = _stream(_Sink())
    started = trio.current_time()
    with pytest.raises(MuxedStreamError, match="5 seconds"):
        await stream.write(b"x")
    assert trio.current_time() - started == pytest.approx(yamux_send.ZERO_WINDOW_LIMIT_S, abs=0.06)


async def test_a_stream_closed_under_a_waiting_writer_fails_the_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    yamux_send.install()
    stream = _stream(_Sink())
    failed: list[float] = []

    async def write() -> None:
        with pytest.raises(MuxedStreamError, match="closed"):
            await stream.write(b"x")
        failed.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.sleep(0.2)
        closed_at = trio.current_time()
        stream.closed = True  # a reset: no credit, no event
    assert failed and failed[0] - closed_at <= yamux_send.ZERO_WINDOW_RECHECK_S


async def test_a_stream_made_before_the_install_keeps_its_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The window lives in the instance under the same name, so a stream that libp2p made before
    the descriptor was installed reads and spends it as before."""
    sink = _Sink()
    stream = libp2p_yamux.YamuxStream(1, sink, True)  # type: ignore[arg-type]
    yamux_send.install()
    assert stream.send_window == libp2p_yamux.DEFAULT_WINDOW_SIZE
    await stream.write(bytes(1000))
    assert stream.send_window == libp2p_yamux.DEFAULT_WINDOW_SIZE - 1000
    assert [size for _, size in sink.frames] == [1000]
