"""Fuzz every network handler of a node, called directly without a network (tests/integration/
handler_rig.py): whatever a peer writes on a stream, or gossips, the handler serves it or refuses
it with a typed error (what the host contains: the stream is reset, nothing else); it never
raises anything else, and the node's services keep running.

Stream inputs are frames built from the decoder fuzz inputs of the protocol (tests/fuzz_targets.py),
framed right or wrong: well-formed, several in a row, a valid message followed by a mutated one
(so negotiations reach their second step), truncated bodies, cut length prefixes, lengths over
the protocol's limit, raw garbage.

Hypothesis runs in a worker thread against one node per test (building a node per input would
cost a tenth of a second each); each input is handed to the node's trio loop. The node keeps
what valid input did to it, as a node would.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.market.delivery import RESULT_PROTOCOL_ID
from tests.fuzz_targets import Tape, generate, node_stack, seeds_of
from tests.integration.handler_rig import (
    GOSSIP_TOPICS,
    STREAM_PROTOCOLS,
    feed_stream,
    frame,
    open_rig,
    stream_input,
    target,
)

EXAMPLES = int(os.environ.get("DCENT_FUZZ_HANDLER_EXAMPLES", "60"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", sorted(STREAM_PROTOCOLS))
async def test_stream_handler_serves_or_refuses_whatever_a_peer_sends(tmp_path: Path, protocol: str) -> None:
    async with open_rig(tmp_path) as rig:
        handler, limit = rig.stream_handlers()[protocol]

        @FUZZ_SETTINGS
        @given(tape=st.binary(max_size=400))
        def run(tape: bytes) -> None:
            wire = stream_input(Tape(tape), STREAM_PROTOCOLS[protocol], limit)
            trio.from_thread.run(_feed, wire)

        async def _feed(wire: bytes) -> None:
            with node_stack():
                await feed_stream(handler, wire, protocol)
            await rig.settle()

        await trio.to_thread.run_sync(run)
        # The test can fail both ways: a frame over the limit is refused from its prefix, and
        # the sample message is served.
        assert await feed_stream(handler, struct.pack(">I", limit + 1), protocol) == "refused"
        seeds = seeds_of(target(STREAM_PROTOCOLS[protocol]).name)
        # A negotiation is served once the contract follows the request (quote request, then
        # the sample contract proposal for the quoted terms).
        # Each stream carries its own kind of consensus message: a proposal, committed blocks.
        first = {"/dcent/consensus/proposal/1.0.0": 2, "/dcent/sync/push/1.0.0": 4}.get(protocol, 0)
        valid = frame(seeds[first]) + (frame(seeds[2]) if protocol == "/dcent/market/1.0.0" else b"")
        if protocol == RESULT_PROTOCOL_ID:  # the header, then the delivery it announces
            valid = frame(seeds[0]) + frame(seeds_of(target("result delivery").name)[0])
        assert await feed_stream(handler, valid, protocol) == "served"


@pytest.mark.slow
@pytest.mark.parametrize(
    "topic",
    ["consensus", "capacity"],
)
async def test_gossip_handler_drops_what_it_cannot_use(tmp_path: Path, topic: str) -> None:
    async with open_rig(tmp_path) as rig:
        gossip_target = target(GOSSIP_TOPICS[topic])

        @FUZZ_SETTINGS
        @given(tape=st.binary(max_size=400))
        def run(tape: bytes) -> None:
            data = generate(gossip_target, Tape(tape))
            trio.from_thread.run(_gossip, data)

        async def _gossip(data: bytes) -> None:
            with node_stack():
                await rig.gossip(topic, data)

        await trio.to_thread.run_sync(run)
