"""Bounded blocks (issue 14): a block's encoding is at most MAX_BLOCK_BYTES; validators prevote
nil on a larger proposal before executing anything; proposers fill blocks only up to the bound
and stop choosing transactions when their assembly time is up."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from protocol.consensus.errors import BlockExecutionFailed, InvalidBlock
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    MAX_BLOCK_BYTES,
    NIL,
    PREVOTE,
    Block,
    block_size,
    tx_bytes_budget,
    tx_wire_cost,
)
from protocol.ledger.params import Params
from protocol.ledger.tx import Transfer, sign_tx

from .consensus_support import CHAIN_ID, Chain, vkey
from .consensus_support import client_key as client
from .test_consensus_rules import Setup


def _transfers(count: int) -> list[bytes]:
    to = client(1).address.raw
    return [sign_tx(client(0), CHAIN_ID, n, Params().min_fee, Transfer(to, 1)) for n in range(1, count + 1)]


def _build(app: LedgerApp) -> Block:
    return app.build_block(height=app.height + 1, proposer=vkey(0).address.raw, evidence=())


def _stuffed(block: Block, total: int) -> Block:
    """``block`` with junk transactions making its encoding at least ``total`` bytes."""
    filler = b"\xff" * 60_000
    return dataclasses.replace(block, txs=(filler,) * (total // len(filler) + 1))


def test_the_bound_is_4_mib_and_every_ledger_app_applies_it() -> None:
    assert MAX_BLOCK_BYTES == 4 * 1024 * 1024
    assert Chain().app().max_block_bytes == MAX_BLOCK_BYTES


def test_a_block_over_the_byte_bound_is_invalid_before_it_is_executed() -> None:
    chain = Chain()
    app = chain.app()
    stuffed = _stuffed(_build(chain.app()), MAX_BLOCK_BYTES)
    assert block_size(stuffed) > MAX_BLOCK_BYTES
    before = app.state.state_hash()
    with pytest.raises(InvalidBlock) as caught:
        app.check_block(stuffed)
    # Refused on its size, not on its junk transactions (executing them would raise this):
    assert not isinstance(caught.value, BlockExecutionFailed)
    assert f"over the bound of {MAX_BLOCK_BYTES}" in caught.value.message
    assert app.state.state_hash() == before


def test_a_validator_prevotes_nil_on_a_proposal_over_the_bound_and_for_it_within_the_bound() -> None:
    # A block otherwise valid (it executes to its state hash), one byte over this validator's bound:
    s = Setup()
    s.app.max_block_bytes = block_size(s.block_a) - 1
    effects = s.core.receive(s.proposal(0, s.block_a), 10)
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL)]
    fits = Setup()
    fits.app.max_block_bytes = block_size(fits.block_a)
    effects = fits.core.receive(fits.proposal(0, fits.block_a), 10)
    assert fits.my_votes(effects) == [(PREVOTE, 0, fits.block_a.hash)]


def test_a_validator_prevotes_nil_on_a_proposal_stuffed_past_4_mib() -> None:
    s = Setup()
    effects = s.core.receive(s.proposal(0, _stuffed(s.block_a, MAX_BLOCK_BYTES)), 10)
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL)]


@pytest.mark.parametrize("room_for", [0, 1, 3, 7])
def test_the_proposer_fills_a_block_exactly_up_to_the_byte_bound(room_for: int) -> None:
    chain = Chain()
    pending = _transfers(10)
    empty = _build(chain.app())
    bound = block_size(empty) + 4 + sum(tx_wire_cost(raw) for raw in pending[:room_for])
    block = _build(chain.app(tx_source=lambda: pending, max_block_bytes=bound))
    assert block.txs == tuple(pending[:room_for])
    assert block_size(block) <= bound
    chain.app(max_block_bytes=bound).check_block(block)  # a validator with the same bound accepts it
    one_byte_less = _build(chain.app(tx_source=lambda: pending, max_block_bytes=bound - 1))
    assert len(one_byte_less.txs) == max(0, room_for - 1)


def test_a_transaction_that_does_not_fit_is_passed_over_for_a_later_one_that_does() -> None:
    chain = Chain()
    [small] = _transfers(1)
    big = sign_tx(client(1), CHAIN_ID, 1, Params().min_fee * 1000, Transfer(client(0).address.raw, 1))
    empty = _build(chain.app())
    bound = block_size(empty) + 4 + tx_wire_cost(small)
    assert tx_wire_cost(big) > tx_wire_cost(small)  # a larger fee takes more bytes
    block = _build(chain.app(tx_source=lambda: [big, small], max_block_bytes=bound))
    assert block.txs == (small,)
    assert block_size(block) <= bound


def test_the_wire_cost_of_transactions_bounds_the_encoded_block_for_every_length_class() -> None:
    chain = Chain()
    empty = _build(chain.app())
    budget = tx_bytes_budget(dataclasses.replace(empty, state_hash=empty.state_hash))
    assert budget == MAX_BLOCK_BYTES - block_size(empty) - 4
    for size, count in itertools.product((1, 255, 256, 65_535, 65_536), (1, 15, 16, 300)):
        txs = (b"\x01" * size,) * count
        block = dataclasses.replace(empty, txs=txs)
        assert block_size(block) <= block_size(empty) + 4 + sum(tx_wire_cost(t) for t in txs)
    with pytest.raises(ValueError, match="must not hold"):
        tx_bytes_budget(dataclasses.replace(empty, txs=(b"x",)))


def test_assembly_stops_choosing_when_its_time_is_up_and_the_block_stays_valid() -> None:
    chain = Chain()
    pending = _transfers(10)
    ticks = itertools.count()

    def timer() -> object:
        start = next(ticks)
        return lambda: next(ticks) - start > 4  # "time" is up after four looks at the clock

    app = chain.app(tx_source=lambda: pending, assembly_timer=timer)
    block = _build(app)
    assert block.txs == tuple(pending[:4])
    assert app.builds_out_of_time == 1
    chain.app().check_block(block)
    unhurried = _build(chain.app(tx_source=lambda: pending))
    assert unhurried.txs == tuple(pending)
