"""Matching a job spec against the capacity table: each filter, the ranking, MIG units, simulated GPUs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gpu.simulated import parse_gpu_spec
from protocol.hardware import GpuDevice
from protocol.market.capacity import CapacityAnnouncement, OfferedLimits
from protocol.market.errors import InvalidAnnouncement
from protocol.market.matching import device_meets, limits_refusal, match, select_gpus
from tests.unit.market_builders import (
    GIB,
    NOW_MS,
    OFFERED_LIMITS,
    announce,
    gpu,
    make_spec,
    pub,
    uuid_n,
)

MIN_STAKE = 1_000


def offers_for(
    spec_overrides: dict[str, Any], *announcements: CapacityAnnouncement, **kwargs: Any
) -> list[Any]:
    kwargs.setdefault("now_ms", NOW_MS)
    kwargs.setdefault("min_provider_stake", MIN_STAKE)
    return match(make_spec(**spec_overrides), announcements, **kwargs)


def test_a_fitting_provider_matches_with_its_first_fitting_gpus() -> None:
    ann = announce("alice", (gpu(uuid_n(1)), gpu(uuid_n(2)), gpu(uuid_n(3))), price=1_000, collateral=77)
    [offer] = offers_for({"resources": {"gpu_count": 2}}, ann)
    assert offer.provider == pub("alice")
    assert offer.peer_id == ann.peer_id
    assert offer.gpu_uuids == (uuid_n(1), uuid_n(2))
    assert offer.eligible_gpu_uuids == (uuid_n(1), uuid_n(2), uuid_n(3))
    assert (offer.price_per_gpu_second, offer.collateral, offer.stake) == (1_000, 77, ann.stake)
    assert not offer.simulated


def test_busy_units_are_not_offered_but_a_quote_may_still_name_them() -> None:
    # Busy-ness lags: the provider's last announcement may predate a job ending, so the
    # requester accepts a quote on any announced unit that fits, while offering only free ones.
    ann = announce(
        "alice",
        (
            gpu(uuid_n(1)),
            gpu(uuid_n(2)),
            gpu(
                uuid_n(
                    3,
                ),
                name="NVIDIA A100",
            ),
        ),
        busy=(uuid_n(1),),
    )
    [offer] = offers_for({"resources": {"gpu_count": 1, "model_pattern": "*H100*"}}, ann)
    assert offer.gpu_uuids == (uuid_n(2),)
    assert offer.eligible_gpu_uuids == (uuid_n(1), uuid_n(2))


# Each case: the spec, a GPU and announcement settings that match, then one change that must not.
FILTERS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("unhealthy GPU", {}, {}, {"gpu": {"healthy": False}}),
    ("too little free memory", {"resources": {"min_memory_bytes": "40 GiB"}}, {}, {"gpu": {"free_gib": 39}}),
    ("unknown free memory", {"resources": {"min_memory_bytes": 1}}, {}, {"gpu": {"free_gib": -1}}),
    ("model pattern", {"resources": {"model_pattern": "*h100*"}}, {}, {"gpu": {"name": "NVIDIA A100"}}),
    (
        "compute capability below",
        {"resources": {"min_compute_capability": "8.6"}},
        {"gpu": {"compute_capability": (8, 6)}},
        {"gpu": {"compute_capability": (8, 0)}},
    ),
    (
        "compute capability unknown",
        {"resources": {"min_compute_capability": "7.0"}},
        {},
        {"gpu": {"compute_capability": (-1, -1)}},
    ),
    (
        "CUDA below",
        {"resources": {"min_cuda_version": "12.4"}},
        {"gpu": {"cuda_version": 12040}},
        {"gpu": {"cuda_version": 12020}},
    ),
    ("CUDA unknown", {"resources": {"min_cuda_version": "11.0"}}, {}, {"gpu": {"cuda_version": 0}}),
    ("GPU in MIG mode", {}, {}, {"gpu": {"mig_enabled": True}}),
    ("busy GPU", {}, {}, {"ann": {"busy": (uuid_n(1),)}}),
    (
        "price above maximum",
        {"max_price_per_gpu_second": 500},
        {"ann": {"price": 500}},
        {"ann": {"price": 501}},
    ),
    ("stake below minimum", {}, {"ann": {"stake": MIN_STAKE}}, {"ann": {"stake": MIN_STAKE - 1}}),
    (
        "no container engine",
        {"image": "alpine:3"},
        {"ann": {"executors": ("podman",)}},
        {"ann": {"executors": ("bubblewrap", "subprocess")}},
    ),
    ("no sandbox", {}, {"ann": {"executors": ("bubblewrap",)}}, {"ann": {"executors": ("docker",)}}),
    ("expired announcement", {}, {"now_ms": NOW_MS + 59_999}, {"now_ms": NOW_MS + 60_000}),
    ("too few GPUs", {"resources": {"gpu_count": 1}}, {}, {"spec": {"resources": {"gpu_count": 2}}}),
]


def _case(spec: dict[str, Any], settings: dict[str, Any]) -> list[Any]:
    ann = announce("alice", (gpu(uuid_n(1), **settings.get("gpu", {})),), **settings.get("ann", {}))
    spec = {**spec, **settings.get("spec", {})}
    return offers_for(spec, ann, now_ms=settings.get("now_ms", NOW_MS))


@pytest.mark.parametrize(("case", "spec", "passing", "failing"), FILTERS, ids=[f[0] for f in FILTERS])
def test_each_criterion_filters(
    case: str, spec: dict[str, Any], passing: dict[str, Any], failing: dict[str, Any]
) -> None:
    assert len(_case(spec, passing)) == 1, "the baseline must match, or the test proves nothing"
    merged = {key: {**passing.get(key, {}), **failing.get(key, {})} for key in ("gpu", "ann", "spec")}
    merged["now_ms"] = failing.get("now_ms", passing.get("now_ms", NOW_MS))
    assert _case(spec, merged) == []


def test_the_ledger_stake_overrides_the_announced_one() -> None:
    ann = announce("alice", stake=10**9)
    assert offers_for({}, ann)
    assert offers_for({}, ann, stake_of=lambda provider: MIN_STAKE - 1) == []
    [offer] = offers_for({}, ann, stake_of=lambda provider: 4_242)
    assert offer.stake == 4_242


def test_ranking_is_price_then_stake_then_provider_key() -> None:
    anns = [
        announce("alice", price=300, stake=5_000),
        announce("bob", price=100, stake=2_000),
        announce("carol", price=100, stake=9_000),
        announce("dave", price=200, stake=5_000),
        announce("erin", price=200, stake=5_000),
    ]
    offers = offers_for({}, *anns)
    dave_erin = sorted([pub("dave"), pub("erin")])
    assert [o.provider for o in offers] == [pub("carol"), pub("bob"), *dave_erin, pub("alice")]
    assert offers_for({}, *reversed(anns)) == offers


def test_the_requester_can_exclude_itself() -> None:
    anns = [announce("alice"), announce("bob")]
    assert [o.provider for o in offers_for({}, *anns, exclude=[pub("alice")])] == [pub("bob")]


def _mig_host() -> tuple[GpuDevice, ...]:
    parent = "GPU-00000000-0000-0000-0000-0000000000aa"
    return (
        gpu(parent, name="NVIDIA A100-SXM4-40GB", memory_gib=40, mig_enabled=True),
        gpu(
            "MIG-1", name="NVIDIA A100-SXM4-40GB MIG 3g.20gb", memory_gib=20, parent_uuid=parent, mig_index=0
        ),
        gpu(
            "MIG-2", name="NVIDIA A100-SXM4-40GB MIG 2g.10gb", memory_gib=10, parent_uuid=parent, mig_index=1
        ),
        gpu("MIG-3", name="NVIDIA A100-SXM4-40GB MIG 1g.5gb", memory_gib=5, parent_uuid=parent, mig_index=2),
    )


def test_mig_units_count_as_gpus_and_the_mig_parent_is_never_sold() -> None:
    ann = announce("alice", _mig_host())
    [offer] = offers_for({"resources": {"gpu_count": 3, "model_pattern": "*A100*"}}, ann)
    assert offer.gpu_uuids == ("MIG-1", "MIG-2", "MIG-3")
    assert offers_for({"resources": {"gpu_count": 4}}, ann) == []


def test_memory_is_checked_per_mig_unit() -> None:
    ann = announce("alice", _mig_host())
    [offer] = offers_for({"resources": {"gpu_count": 2, "min_memory_bytes": "10 GiB"}}, ann)
    assert offer.gpu_uuids == ("MIG-1", "MIG-2")
    assert offers_for({"resources": {"gpu_count": 1, "min_memory_bytes": "21 GiB"}}, ann) == []


def test_simulated_gpus_match_and_are_flagged() -> None:
    simulated = parse_gpu_spec("2xH100-80GB", "testnet-node-1")
    ann = announce("bob", simulated)
    assert ann.simulated
    [offer] = offers_for(
        {"resources": {"gpu_count": 2, "model_pattern": "*H100*", "min_cuda_version": "12.4"}}, ann
    )
    assert offer.simulated
    assert offer.gpu_uuids == tuple(device.uuid for device in simulated)


def test_select_gpus_skips_units_that_do_not_fit() -> None:
    units = (gpu(uuid_n(1), free_gib=1), gpu(uuid_n(2)), gpu(uuid_n(3), healthy=False), gpu(uuid_n(4)))
    spec = make_spec(resources={"gpu_count": 2, "min_memory_bytes": 10 * GIB})
    assert select_gpus(spec, units) == (uuid_n(2), uuid_n(4))
    assert select_gpus(make_spec(resources={"gpu_count": 3, "min_memory_bytes": 10 * GIB}), units) is None


def test_no_requirement_accepts_unknown_values() -> None:
    unknown = gpu(uuid_n(1), compute_capability=(-1, -1), cuda_version=0, free_gib=-1, name="")
    assert device_meets(make_spec().resources, unknown)


# --- resource limits: what one job may ask, and what the provider enforces -----------------------

SMALL = {"limits": {"memory": "1 GiB", "cpu_cores": "1.5", "processes": 64, "disk": "2 GiB"}}


@pytest.mark.parametrize(
    ("field", "ceiling"),
    [
        ("memory_bytes", 2**30 - 1),
        ("cpu_millicores", 1_499),
        ("processes", 63),
        ("disk_bytes", 2 * 2**30 - 1),
    ],
)
def test_a_job_asking_more_than_the_provider_sells_one_job_does_not_match(field: str, ceiling: int) -> None:
    enough = announce("alice", (gpu(),))
    assert offers_for(SMALL, enough)
    short = announce("alice", (gpu(),), limits=dataclasses.replace(OFFERED_LIMITS, **{field: ceiling}))
    assert offers_for(SMALL, short) == []
    assert "exceed" in str(limits_refusal(make_spec(**SMALL).limits, short.limits))


def test_a_sandboxed_provider_that_cannot_enforce_a_limit_is_never_offered() -> None:
    no_memory = dataclasses.replace(OFFERED_LIMITS, enforced=("cpu", "disk", "processes"))
    assert offers_for({}, announce("alice", (gpu(),), limits=no_memory)) == []
    assert (
        limits_refusal(make_spec().limits, no_memory)
        == "this provider cannot enforce the job's memory limit(s)"
    )


def test_an_unsandboxed_provider_is_offered_and_says_which_limits_it_cannot_enforce() -> None:
    dev = dataclasses.replace(OFFERED_LIMITS, enforced=("disk",), sandboxed=False)
    [offer] = offers_for({}, announce("alice", (gpu(),), executors=("subprocess",), limits=dev))
    assert offer.unenforced_limits == ("cpu", "memory", "processes")
    [sandboxed] = offers_for({}, announce("bob", (gpu(),)))
    assert sandboxed.unenforced_limits == ()


@pytest.mark.parametrize(
    "changes",
    [
        {"enforced": ("memory", "cpu")},
        {"enforced": ("gpus",)},
        {"enforced": ("cpu", "cpu")},
        {"memory_bytes": -1},
    ],
)
def test_offered_limits_are_validated_when_built(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidAnnouncement):
        OfferedLimits(**(dataclasses.asdict(OFFERED_LIMITS) | changes))
