"""Helpers of node.testnet.processes used by the benches: free port ranges, process CPU time."""

from __future__ import annotations

import os
import random
import socket

from node.testnet.layout import PORT_STRIDE, PORTS_PER_NODE
from node.testnet.processes import free_base_port, process_cpu_seconds


def test_free_base_port_skips_a_range_with_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # A range of one base only, the one whose ports include the busy one, then a free one.
        low = busy - busy % PORT_STRIDE
        rng = random.Random(7)
        bases = {
            free_base_port(2, rng, low=low - 10 * PORT_STRIDE, high=low + 12 * PORT_STRIDE) for _ in range(30)
        }
    for base in bases:
        ports = [base + PORT_STRIDE * i + k for i in range(2) for k in range(PORTS_PER_NODE)]
        assert busy not in ports


def test_process_cpu_seconds_of_this_process_and_of_none() -> None:
    sum(i * i for i in range(200_000))  # some CPU
    assert process_cpu_seconds(os.getpid()) > 0
    assert process_cpu_seconds(None) == 0.0
