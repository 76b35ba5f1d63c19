"""The health-ping tolerance (issue 14): one late ping must not abort a connection."""

from __future__ import annotations

import pytest
from libp2p.network.health.ping_probe import ConnectionPingResult

from node.p2p.libp2p_tuning import PingTolerance

FAILED = ConnectionPingResult(success=False)
OK = ConnectionPingResult(success=True, rtt_ms=1.0, protocol_supported=True)


class Conn:
    """Stands in for a libp2p connection: only its identity matters."""


def test_failures_below_the_threshold_are_reported_as_no_measurement() -> None:
    tolerance = PingTolerance(3)
    conn = Conn()
    assert tolerance.judge(conn, FAILED).skipped
    assert tolerance.judge(conn, FAILED).skipped
    third = tolerance.judge(conn, FAILED)
    assert not third.skipped and not third.success  # now libp2p may abort it


def test_a_successful_ping_starts_the_count_over() -> None:
    tolerance = PingTolerance(2)
    conn = Conn()
    assert tolerance.judge(conn, FAILED).skipped
    assert tolerance.judge(conn, OK) is OK
    assert tolerance.judge(conn, FAILED).skipped
    assert not tolerance.judge(conn, FAILED).skipped


def test_connections_are_counted_apart() -> None:
    tolerance = PingTolerance(2)
    a, b = Conn(), Conn()
    assert tolerance.judge(a, FAILED).skipped
    assert tolerance.judge(b, FAILED).skipped
    assert not tolerance.judge(a, FAILED).skipped


def test_skipped_pings_pass_through_and_one_means_libp2ps_behaviour() -> None:
    skipped = ConnectionPingResult(success=False, skipped=True)
    assert PingTolerance(3).judge(Conn(), skipped) is skipped
    assert PingTolerance(1).judge(Conn(), FAILED) is FAILED
    with pytest.raises(ValueError):
        PingTolerance(0)
