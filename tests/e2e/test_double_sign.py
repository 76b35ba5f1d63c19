"""A validator whose key signs in two places at once (a test-only duplicated key: two node
processes with one validator key) double-signs; the evidence reaches a block and the ledger slashes
and tombstones it, while the chain goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SEED
from tests.e2e.framework import TestNetwork, derived_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TWINNED = 3


@pytest.fixture
def twinned(tmp_path: Path) -> Iterator[tuple[TestNetwork, int]]:
    """Four validators plus a fifth process signing with validator 3's key, all started together
    (a twin started late would first spend its time syncing, signing nothing that conflicts)."""
    network = TestNetwork(tmp_path / "testnet", seed=derived_seed(SEED, __name__))
    network.build()
    twin = network.add_node(validator_key=network.validator_key(TWINNED))
    try:
        network.start_all()
        yield network, twin
    finally:
        results = network.shutdown()
    assert all(r.exit_code == 0 and not r.killed for r in results), results


def _validator(network: TestNetwork, address: str) -> dict[str, object] | None:
    for entry in network.call(0, "validator_list"):
        if entry["address"] == address:
            return entry  # type: ignore[no-any-return]
    return None


def test_a_double_signing_validator_is_slashed_and_tombstoned_through_evidence(
    twinned: tuple[TestNetwork, int],
) -> None:
    network, _twin = twinned
    victim = network.address(TWINNED)
    bonded_before = int(str(network.call(0, "validator_list")[0]["bonded"]))  # every genesis stake is equal

    def slashed() -> bool:
        # A tombstoned validator leaves the active set for good, its stake cut.
        return _validator(network, victim) is None

    network.wait_until(slashed, what=f"validator {victim} tombstoned and out of the active set")
    bonded_after = int(str(network.account(0, victim)["bonded"]))
    assert bonded_after < bonded_before, "the double-signer's stake was not slashed"
    # The evidence is on chain: some block carries it.
    head = network.height(0)
    blocks = network.blocks(0, range(1, head + 1))
    assert any(block["evidence"] > 0 for block in blocks.values()), "no block carries the evidence"
    assert len(network.call(0, "validator_list")) == 3
    # The other three keep finalizing, and agree.
    network.wait_for_height(head + 3, [0, 1, 2])
    network.sync_all([0, 1, 2])
