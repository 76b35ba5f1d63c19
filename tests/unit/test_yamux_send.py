"""A yamux writer with an empty send window resumes the moment credit arrives (libp2p polled
every 10 ms), still fails after libp2p's 5 s without credit, and fails as soon as the stream is
closed or reset under it (workaround 27, node/p2p/yamux_send.py)."""

from __future__ import annotations

from collections.abc import Iterator

import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import pytest
import trio
import trio.testing
from libp2p.stream_muxer.exceptions import MuxedStreamError

from node.p2p import yamux_send
from tests.waiting import spend_virtual_time


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

    async def _finalize_stream(self, stream: object, *, fully_closed: bool) -> None:
        """What a reset asks of its connection once the stream is marked closed."""


async def _credit(stream: libp2p_yamux.YamuxStream, increment: int) -> None:
    """What libp2p's connection does with a peer's WINDOW_UPDATE."""
    async with stream.window_lock:
        stream.send_window += increment


def _stream(sink: _Sink) -> libp2p_yamux.YamuxStream:
    stream = libp2p_yamux.YamuxStream(1, sink, True)  # type: ignore[arg-type]
    stream.send_window = 0
    return stream


_REPLACED = ("send_window", "closed", "write")


@pytest.fixture(autouse=True)
def _stream_class_restored() -> Iterator[None]:
    """What the stream class has under the names :func:`yamux_send.install` sets (libp2p's own,
    or an earlier test's install) comes back after each test here."""
    cls = libp2p_yamux.YamuxStream
    saved = {name: vars(cls)[name] for name in _REPLACED if name in vars(cls)}
    yield
    for name in _REPLACED:
        if name in saved:
            setattr(cls, name, saved[name])
        elif name in vars(cls):
            delattr(cls, name)


@pytest.fixture
def installed() -> None:
    yamux_send.install()


def _uninstall() -> None:
    """libp2p's own stream class, as before any install."""
    for name in ("send_window", "closed"):
        if name in vars(libp2p_yamux.YamuxStream):
            delattr(libp2p_yamux.YamuxStream, name)
    libp2p_yamux.YamuxStream.write = yamux_send.LIBP2P_WRITE  # type: ignore[method-assign]


@pytest.mark.parametrize("woken", [True, False], ids=["ours", "libp2p"])
async def test_a_writer_out_of_credit_resumes_when_credit_arrives(
    woken: bool, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Credit arrives 1 ms into the wait: our writer sends then; libp2p's at its next 10 ms poll."""
    _uninstall()
    if woken:
        yamux_send.install()
    sink = _Sink()
    stream = _stream(sink)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.write, bytes(3000))
        await spend_virtual_time(0.001)
        assert sink.frames == []  # nothing to send with: it waits
        started = trio.current_time()
        await _credit(stream, 1000)
        await spend_virtual_time(0.03)
        await _credit(stream, 2000)
    sent = [size for _, size in sink.frames]
    assert sent == [1000, 2000]
    delays = [round(at - started, 4) for at, _ in sink.frames]
    assert delays == ([0.0, 0.03] if woken else [0.009, 0.039])
    assert stream._zero_window_waits == 2


async def test_a_writer_given_no_credit_fails_after_libp2ps_limit(
    installed: None, autojump_clock: trio.testing.MockClock
) -> None:
    stream = _stream(_Sink())
    started = trio.current_time()
    with pytest.raises(MuxedStreamError, match="5 seconds"):
        await stream.write(b"x")
    assert trio.current_time() - started == pytest.approx(yamux_send.ZERO_WINDOW_LIMIT_S, abs=0.06)


@pytest.mark.parametrize("how", ["reset", "fin-and-rst-frame"])
async def test_a_stream_closed_under_a_waiting_writer_fails_the_write_at_once(
    how: str, installed: None, autojump_clock: trio.testing.MockClock
) -> None:
    stream = _stream(_Sink())
    failed: list[float] = []

    async def write() -> None:
        with pytest.raises(MuxedStreamError, match="closed"):
            await stream.write(b"x")
        failed.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await spend_virtual_time(0.22)  # between two of the writer's own 50 ms looks
        closed_at = trio.current_time()
        if how == "reset":
            await stream.reset()  # libp2p's own: sends RST, marks the stream closed
        else:  # a zero-increment WINDOW_UPDATE with RST, as libp2p's handler takes it
            stream.closed = True
    assert failed == [closed_at]


async def test_a_stream_made_before_the_install_keeps_its_window(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The window lives in the instance under the same name, so a stream that libp2p made before
    the descriptors were installed reads and spends it as before."""
    _uninstall()
    sink = _Sink()
    stream = libp2p_yamux.YamuxStream(1, sink, True)  # type: ignore[arg-type]
    yamux_send.install()
    assert stream.send_window == libp2p_yamux.DEFAULT_WINDOW_SIZE
    await stream.write(bytes(1000))
    assert stream.send_window == libp2p_yamux.DEFAULT_WINDOW_SIZE - 1000
    assert [size for _, size in sink.frames] == [1000]


def test_a_stream_without_a_window_yet_has_no_attribute(installed: None) -> None:
    """``hasattr`` and ``getattr`` with a default work as on libp2p's class (no KeyError)."""
    bare = libp2p_yamux.YamuxStream.__new__(libp2p_yamux.YamuxStream)
    assert not hasattr(bare, "send_window")
    assert getattr(bare, "closed", None) is None
