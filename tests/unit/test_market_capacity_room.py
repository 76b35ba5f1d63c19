"""Room in the capacity table: bounded in entries and bytes, ranked by stake on the ledger.

The attack these hold off (capacity-table squatting): one peer signs announcements for 10,000
fresh provider keys (no stake, up to 256 KiB each) and, before the bounds, filled every node's
table (gigabytes) so that honest providers were refused for up to 10 minutes, repeatably.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from protocol.market.capacity import CapacityAnnouncement, CapacityTable, Quota
from protocol.market.errors import CapacityTableFull, InvalidAnnouncement, StaleAnnouncement
from tests.unit.market_builders import CHAIN_ID, NOW_MS, announce, gpu, pub, uuid_n

STAKE = 1_000_000


def sized(label: str, gpus: int, **fields: object) -> CapacityAnnouncement:
    """``label``'s announcement of ``gpus`` GPUs (each adds ~380 encoded bytes)."""
    return announce(label, tuple(gpu(uuid_n(n)) for n in range(1, gpus + 1)), **fields)  # type: ignore[arg-type]


def providers(table: CapacityTable) -> set[bytes]:
    return {ann.provider for ann in table.entries()}


def test_ten_thousand_fresh_unstaked_keys_cannot_push_out_a_staked_provider() -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("honest"), NOW_MS, stake=STAKE)
    admitted = refused = 0
    for n in range(10_000):
        try:
            table.offer(announce(f"sybil-{n}", stake=10**15), NOW_MS)  # a claimed stake: no weight
            admitted += 1
        except CapacityTableFull:
            refused += 1
    assert pub("honest") in table
    assert admitted == table.unstaked.entries and refused == 10_000 - admitted
    assert len(table) == 1 + table.unstaked.entries
    # The squatters leave room for every staked newcomer, who still gets in.
    assert table.offer(announce("newcomer"), NOW_MS, stake=1) == []
    assert pub("newcomer") in table


def test_a_staked_newcomer_evicts_the_lowest_ranked_unstaked_entry_when_the_table_is_full() -> None:
    table = CapacityTable(CHAIN_ID, max_providers=4)
    table.offer(announce("staked"), NOW_MS, stake=5)
    for label in ("old", "middle", "young"):
        table.offer(announce(label), NOW_MS)
    # A new sequence refreshes an entry's age: "old" is now the youngest of the unstaked.
    table.offer(announce("old", sequence=2), NOW_MS)
    assert table.offer(announce("newcomer"), NOW_MS, stake=1) == [pub("middle")]
    assert providers(table) == {pub("staked"), pub("old"), pub("young"), pub("newcomer")}
    # Lowest stake goes first: "newcomer" (1) before "staked" (5), once the unstaked are gone.
    assert table.offer(announce("richer"), NOW_MS, stake=10) == [pub("young")]
    assert table.offer(announce("richest"), NOW_MS, stake=10) == [pub("old")]
    assert table.offer(announce("last"), NOW_MS, stake=10) == [pub("newcomer")]
    assert table.stake(pub("staked")) == 5


def test_a_newcomer_with_no_more_stake_than_the_lowest_is_refused_and_changes_nothing() -> None:
    table = CapacityTable(CHAIN_ID, max_providers=2)
    table.offer(announce("a"), NOW_MS, stake=7)
    table.offer(announce("b"), NOW_MS, stake=9)
    before = table.entries()
    with pytest.raises(CapacityTableFull):
        table.offer(announce("tie"), NOW_MS, stake=7)
    with pytest.raises(CapacityTableFull):
        table.offer(announce("unstaked"), NOW_MS)
    assert table.entries() == before
    # A known provider still updates its entry in a full table.
    table.offer(announce("a", sequence=2, price=3), NOW_MS, stake=7)
    assert len(table) == 2


def test_a_refused_eviction_puts_back_what_it_looked_at() -> None:
    small = len(announce("a").encode())
    table = CapacityTable(CHAIN_ID, max_bytes=3 * small + 100)
    table.offer(announce("a"), NOW_MS)
    table.offer(announce("b"), NOW_MS, stake=50)
    table.offer(announce("c"), NOW_MS, stake=50)
    big = sized("big", 4)  # needs the room of two entries, and only "a" has less stake
    with pytest.raises(CapacityTableFull):
        table.offer(big, NOW_MS, stake=20)
    assert providers(table) == {pub("a"), pub("b"), pub("c")}
    assert table.offer(announce("d"), NOW_MS, stake=20) == [pub("a")]


def test_a_self_declared_stake_the_ledger_does_not_back_counts_as_zero() -> None:
    table = CapacityTable(CHAIN_ID, max_providers=2, unstaked=Quota(entries=1, max_bytes=2**20))
    table.offer(announce("honest"), NOW_MS, stake=1)
    table.offer(announce("liar", stake=10**15), NOW_MS, stake=0)
    assert table.stake(pub("liar")) == 0
    # It is unstaked: its share is full, and it outranks nobody, not even a stake of 1.
    with pytest.raises(CapacityTableFull, match="unstaked"):
        table.offer(announce("liar-2", stake=10**15), NOW_MS)
    assert table.offer(announce("staked"), NOW_MS, stake=2) == [pub("liar")]
    with pytest.raises(CapacityTableFull):
        table.offer(announce("liar", sequence=2, stake=10**15), NOW_MS)
    assert pub("honest") in table


def test_a_stake_below_the_minimum_counts_as_unstaked() -> None:
    table = CapacityTable(CHAIN_ID, min_stake=100)
    table.offer(announce("dust"), NOW_MS, stake=99)
    assert table.stake(pub("dust")) == 0


@pytest.mark.parametrize("seed", range(5))
def test_the_table_never_exceeds_its_byte_bound_nor_the_unstaked_share(seed: int) -> None:
    rng = random.Random(seed)
    unstaked = Quota(entries=6, max_bytes=4_000)
    table = CapacityTable(CHAIN_ID, max_providers=40, max_bytes=12_000, unstaked=unstaked)
    sequences: dict[str, int] = {}
    for _ in range(120):
        label = f"p{rng.randrange(30)}"
        sequences[label] = sequences.get(label, 0) + 1
        ann = sized(label, rng.randrange(0, 6), sequence=sequences[label])
        stake = rng.choice((0, 0, 1, 5, 100))
        with contextlib.suppress(CapacityTableFull):
            table.offer(ann, NOW_MS, stake=stake)
        entries = table.entries()
        assert table.size == sum(len(ann.encode()) for ann in entries) <= 12_000
        unstaked_entries = [ann for ann in entries if table.stake(ann.provider) == 0]
        assert len(unstaked_entries) <= unstaked.entries
        assert sum(len(ann.encode()) for ann in unstaked_entries) <= unstaked.max_bytes
        assert len({ann.provider for ann in entries}) == len(entries)


def test_expiry_and_removal_give_the_room_back() -> None:
    table = CapacityTable(CHAIN_ID, unstaked=Quota(entries=1, max_bytes=2**20))
    table.offer(announce("a", validity_ms=10_000), NOW_MS)
    with pytest.raises(CapacityTableFull):
        table.offer(announce("b"), NOW_MS)
    table.expire(NOW_MS + 10_000)
    assert table.size == 0
    table.offer(announce("b", issued_at_ms=NOW_MS + 10_000), NOW_MS + 10_000)
    assert table.remove(pub("b")) and table.size == 0
    table.offer(announce("c", issued_at_ms=NOW_MS + 10_000), NOW_MS + 10_000)


def test_an_entry_larger_than_the_per_entry_bound_is_refused() -> None:
    ann = sized("big", 3)
    table = CapacityTable(CHAIN_ID, max_entry_bytes=len(ann.encode()) - 1)
    with pytest.raises(InvalidAnnouncement, match="bytes"):
        table.offer(ann, NOW_MS, stake=STAKE)
    assert len(table) == 0


def test_the_given_encoded_size_is_the_one_counted() -> None:
    table = CapacityTable(CHAIN_ID)
    ann = announce("a")
    table.offer(ann, NOW_MS, encoded_size=len(ann.encode()))
    assert table.size == len(ann.encode())


def test_the_remembered_sequences_of_expired_providers_are_bounded_first_in_first_out() -> None:
    table = CapacityTable(CHAIN_ID, max_tombstones=3)
    for n in range(5):
        table.offer(announce(f"short-{n}", sequence=9, validity_ms=1_000 + n), NOW_MS)
    table.expire(NOW_MS + 10_000)
    later = NOW_MS + 10_000
    # The two first remembered were forgotten: an older copy of theirs is welcome again.
    for n in range(5):
        older = announce(f"short-{n}", sequence=8, issued_at_ms=later, validity_ms=1_000)
        if n < 2:
            table.offer(older, later)
        else:
            with pytest.raises(StaleAnnouncement):
                table.offer(older, later)
