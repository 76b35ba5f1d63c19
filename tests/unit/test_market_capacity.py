"""Capacity announcements: signing, refusal of forged, expired and replayed ones, and the table."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gpu.simulated import parse_gpu_spec
from protocol.encoding import DecodeError, encode
from protocol.market.capacity import (
    DEFAULT_MAX_CLOCK_SKEW_MS,
    DEFAULT_MAX_VALIDITY_MS,
    MAX_ANNOUNCEMENT_BYTES,
    CapacityAnnouncement,
    CapacityTable,
    decode_announcement,
    verify_announcement,
)
from protocol.market.errors import (
    AnnouncementError,
    AnnouncementFromFuture,
    AnnouncementValidityTooLong,
    CapacityTableFull,
    ExpiredAnnouncement,
    ForgedAnnouncement,
    InvalidAnnouncement,
    MalformedMessage,
    StaleAnnouncement,
)
from tests.unit.market_builders import (
    CHAIN_ID,
    NOW_MS,
    OTHER_CHAIN_ID,
    announce,
    gpu,
    pub,
    uuid_n,
)


def test_a_signed_announcement_verifies_after_a_trip_over_the_wire() -> None:
    gpus = parse_gpu_spec("2xH100-80GB,1xRTX4090-24GB", "provider-a")
    ann = announce("alice", gpus, executors=("docker", "bubblewrap"), busy=(gpus[1].uuid,))
    received = decode_announcement(ann.encode())
    assert received == ann
    verify_announcement(received, CHAIN_ID, NOW_MS)
    assert received.executors == ("bubblewrap", "docker")  # sorted when signed
    assert received.simulated
    assert [g.uuid for g in received.free_gpus()] == [gpus[0].uuid, gpus[2].uuid]


def test_a_tampered_field_breaks_the_signature() -> None:
    ann = announce("alice", price=1_000)
    cheaper = dataclasses.replace(ann, price_per_gpu_second=1)
    with pytest.raises(ForgedAnnouncement) as caught:
        verify_announcement(cheaper, CHAIN_ID, NOW_MS)
    assert caught.value.code == 4022


def test_an_announcement_signed_by_another_key_is_forged() -> None:
    ann = announce("alice", signer="mallory")
    assert ann.provider == pub("alice")
    with pytest.raises(ForgedAnnouncement):
        verify_announcement(ann, CHAIN_ID, NOW_MS)


def test_an_announcement_for_another_chain_is_forged_here() -> None:
    ann = announce("alice", chain_id=OTHER_CHAIN_ID)
    verify_announcement(ann, OTHER_CHAIN_ID, NOW_MS)
    with pytest.raises(ForgedAnnouncement):
        verify_announcement(ann, CHAIN_ID, NOW_MS)


def test_expiry_is_exclusive() -> None:
    ann = announce("alice", validity_ms=60_000)
    verify_announcement(ann, CHAIN_ID, NOW_MS + 59_999)
    with pytest.raises(ExpiredAnnouncement) as caught:
        verify_announcement(ann, CHAIN_ID, NOW_MS + 60_000)
    assert caught.value.code == 4023


def test_an_announcement_from_the_future_beyond_the_skew_is_refused() -> None:
    ann = announce("alice", issued_at_ms=NOW_MS + DEFAULT_MAX_CLOCK_SKEW_MS)
    verify_announcement(ann, CHAIN_ID, NOW_MS)
    later = announce("alice", issued_at_ms=NOW_MS + DEFAULT_MAX_CLOCK_SKEW_MS + 1)
    with pytest.raises(AnnouncementFromFuture):
        verify_announcement(later, CHAIN_ID, NOW_MS)


def test_an_announcement_valid_for_too_long_is_refused() -> None:
    verify_announcement(announce("alice", validity_ms=DEFAULT_MAX_VALIDITY_MS), CHAIN_ID, NOW_MS)
    with pytest.raises(AnnouncementValidityTooLong):
        verify_announcement(announce("alice", validity_ms=DEFAULT_MAX_VALIDITY_MS + 1), CHAIN_ID, NOW_MS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"busy_gpu_uuids": (uuid_n(9),)}, "busy_gpu_uuids: names a GPU not listed"),
        ({"gpus": (gpu(uuid_n(1)), gpu(uuid_n(1)))}, "gpus: a UUID is listed twice"),
        ({"executors": ("docker", "bubblewrap")}, "executors: ascending"),
        ({"executors": ()}, "executors: 1 to 8"),
        ({"executors": ("rm -rf",)}, "executors: 'rm -rf' is not an executor name"),
        ({"peer_id": "has space"}, "peer_id:"),
        ({"sequence": 0}, "sequence: positive"),
        ({"price_per_gpu_second": -1}, "price_per_gpu_second: between 0"),
        ({"expires_at_ms": NOW_MS}, "expires_at_ms: after issued_at_ms"),
        ({"provider": b"short"}, "provider: a 32-byte public key"),
        ({"signature": b""}, "signature: 64 bytes"),
    ],
)
def test_malformed_announcements_are_refused_when_built_and_when_decoded(
    change: dict[str, Any], message: str
) -> None:
    ann = announce("alice", (gpu(uuid_n(1)),))
    with pytest.raises(InvalidAnnouncement, match=message):
        dataclasses.replace(ann, **change)
    wire = ann.to_wire()
    for name, value in change.items():
        wire[name] = [g.to_wire() for g in value] if name == "gpus" else value
    with pytest.raises(DecodeError, match=message):
        decode_announcement(encode(wire))


def test_an_oversized_announcement_is_refused_before_decoding() -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_announcement(b"\x00" * (MAX_ANNOUNCEMENT_BYTES + 1))
    assert isinstance(caught.value, DecodeError)
    with pytest.raises(DecodeError):
        decode_announcement(b"\xc1garbage")


# --- the table ------------------------------------------------------------------------------------


def snapshot(table: CapacityTable) -> tuple[CapacityAnnouncement, ...]:
    return table.entries()


def test_the_newest_sequence_replaces_the_older() -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("alice", sequence=1, price=10), NOW_MS)
    table.offer(announce("alice", sequence=5, price=20), NOW_MS)
    entry = table.get(pub("alice"))
    assert entry is not None
    assert (entry.sequence, entry.price_per_gpu_second) == (5, 20)
    assert len(table) == 1


@pytest.mark.parametrize("sequence", [5, 4, 1])
def test_an_older_or_replayed_announcement_is_refused_and_changes_nothing(sequence: int) -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("alice", sequence=5, price=20), NOW_MS)
    before = snapshot(table)
    with pytest.raises(StaleAnnouncement) as caught:
        table.offer(announce("alice", sequence=sequence, price=1), NOW_MS)
    assert caught.value.code == 4026
    assert snapshot(table) == before


@pytest.mark.parametrize(
    "bad",
    [
        announce("alice", sequence=9, signer="mallory"),
        announce("alice", sequence=9, validity_ms=1_000),  # expired at NOW_MS + 5_000
        announce("alice", sequence=9, chain_id=OTHER_CHAIN_ID),
    ],
    ids=["forged", "expired", "other-chain"],
)
def test_a_refused_announcement_changes_nothing(bad: CapacityAnnouncement) -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("alice", sequence=1, validity_ms=60_000), NOW_MS)
    before = snapshot(table)
    with pytest.raises(AnnouncementError):
        table.offer(bad, NOW_MS + 5_000)
    assert snapshot(table) == before


def test_entries_come_in_provider_key_order_whatever_the_arrival_order() -> None:
    labels = ["alice", "bob", "carol", "dave", "erin"]
    forward, backward = CapacityTable(CHAIN_ID), CapacityTable(CHAIN_ID)
    for label in labels:
        forward.offer(announce(label), NOW_MS)
    for label in reversed(labels):
        backward.offer(announce(label), NOW_MS)
    assert forward.entries() == backward.entries()
    keys = [ann.provider for ann in forward.entries()]
    assert keys == sorted(keys)


def test_expire_drops_exactly_the_expired_entries() -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("alice", validity_ms=10_000), NOW_MS)
    table.offer(announce("bob", validity_ms=20_000), NOW_MS)
    table.offer(announce("carol", validity_ms=10_000), NOW_MS)
    assert table.expire(NOW_MS + 9_999) == []
    assert len(table) == 3
    removed = table.expire(NOW_MS + 10_000)
    assert removed == sorted([pub("alice"), pub("carol")])
    assert [ann.provider for ann in table.entries()] == [pub("bob")]
    assert pub("alice") not in table


def test_an_older_copy_cannot_revive_an_expired_provider_until_it_could_no_longer_be_current() -> None:
    table = CapacityTable(CHAIN_ID)
    table.offer(announce("alice", sequence=NOW_MS, validity_ms=10_000), NOW_MS)
    table.expire(NOW_MS + 10_000)
    older = announce("alice", sequence=NOW_MS - 1, issued_at_ms=NOW_MS - 1, validity_ms=20_000)
    with pytest.raises(StaleAnnouncement):
        table.offer(older, NOW_MS + 15_000)
    # A fresh announcement with a higher sequence is welcome at once.
    table.offer(announce("alice", sequence=NOW_MS + 15_000, issued_at_ms=NOW_MS + 15_000), NOW_MS + 15_000)
    assert pub("alice") in table


def test_the_tombstone_is_forgotten_after_the_longest_validity() -> None:
    table = CapacityTable(CHAIN_ID, max_validity_ms=20_000)
    table.offer(announce("alice", sequence=7, validity_ms=10_000), NOW_MS)
    table.expire(NOW_MS + 10_000)
    later = NOW_MS + 10_000 + 20_000
    with pytest.raises(StaleAnnouncement):
        table.offer(announce("alice", sequence=3, issued_at_ms=later - 1, validity_ms=10_000), later - 1)
    table.expire(later)
    table.offer(announce("alice", sequence=3, issued_at_ms=later, validity_ms=10_000), later)
    assert pub("alice") in table


def test_a_full_table_refuses_new_providers_but_updates_known_ones() -> None:
    table = CapacityTable(CHAIN_ID, max_providers=2)
    table.offer(announce("alice"), NOW_MS)
    table.offer(announce("bob"), NOW_MS)
    with pytest.raises(CapacityTableFull):
        table.offer(announce("carol"), NOW_MS)
    table.offer(announce("alice", sequence=2, price=7), NOW_MS)
    entry = table.get(pub("alice"))
    assert entry is not None and entry.price_per_gpu_second == 7
    assert table.remove(pub("bob"))
    table.offer(announce("carol"), NOW_MS)
    assert [a.provider for a in table.entries()] == sorted([pub("alice"), pub("carol")])
