"""Who already holds a proposal waiting to be relayed (node/services/proposal_relay.py): its
sender, peers that sent a copy, peers that voted for its block; bounded, and forgotten once taken."""

from __future__ import annotations

from node.services.proposal_relay import MAX_PENDING, ProposalHolders

DIGEST, BLOCK = b"d" * 32, b"b" * 32


def test_the_sender_copies_and_voters_hold_it_and_taking_forgets_it() -> None:
    holders = ProposalHolders()
    assert holders.expect(DIGEST, BLOCK, "sender")
    holders.copy_from(DIGEST, "copier")
    holders.vote_from(BLOCK, "voter")
    holders.vote_from(b"x" * 32, "voter-for-another-block")
    holders.copy_from(b"y" * 32, "copier-of-another-proposal")
    assert holders.take(DIGEST) == {"sender", "copier", "voter"}
    assert len(holders) == 0
    assert holders.take(DIGEST) == set()
    holders.vote_from(BLOCK, "late")  # nothing waits: nothing is kept
    assert len(holders) == 0


def test_a_block_already_waiting_and_a_full_table_are_relayed_at_once() -> None:
    holders = ProposalHolders(limit=2)
    assert holders.expect(DIGEST, BLOCK, "a")
    assert not holders.expect(b"e" * 32, BLOCK, "b")  # the same block proposed again (another round)
    assert holders.expect(b"f" * 32, b"c" * 32, "c")
    assert not holders.expect(b"g" * 32, b"h" * 32, "d")  # full: the caller relays it at once
    assert len(holders) == 2


def test_the_default_bound_holds_against_a_stream_of_valid_proposals() -> None:
    holders = ProposalHolders()
    accepted = sum(
        holders.expect(bytes([i % 256, i // 256]) * 16, bytes([i // 256, i % 256]) * 16, "p")
        for i in range(1000)
    )
    assert accepted == MAX_PENDING == len(holders)
