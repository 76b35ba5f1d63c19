"""Who takes part in a simulated run: keys, stakes, the genesis and the ledger parameters.

Stakes are drawn from the seed and unequal, so every threshold is really weighed by stake:
honest validators hold 4 to 10 stake units each; the Byzantine ones together hold less than 1/3
of the stake, often nearly that much (so they propose often), whenever fewer than a third of the
validators are Byzantine, and 1/3 or more otherwise (the negative control). One more validator key, the *joiner*, runs a
node from the start but holds no stake at genesis: it bonds during the run, votes once the set
takes it in (two heights later) and unbonds again, so the set changes under load.

The parameters are shortened so the rules that take many blocks happen within a run of twenty
heights: unbonding completes, evidence goes stale, dispute windows close, epochs pay providers.
Governance votes last longer than any run: a proposal's tally (which may change the parameters
under the checker's model) is the ledger's own tests' business.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.sim.rng import SplitMix64
from protocol.units import DCT

CHAIN_ID = "dcent-sim"
STAKE_UNIT = 100 * DCT
CLIENT_BALANCE = 1_000_000 * DCT
JOINER_BALANCE = 10_000 * DCT

SIM_PARAMS = Params(
    unbonding_period=4,
    evidence_max_age=4,
    dispute_window_blocks=3,
    epoch_length=5,
    gov_voting_period=10_000,
)


@functools.cache
def validator_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"dcent-sim/validator/{index}")


@functools.cache
def client_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"dcent-sim/client/{index}")


#: Signs next-height votes and proposals though it was never a validator (the flood of issue 12).
STRANGER = PrivateKey.from_label("dcent-sim/stranger")


def draw_stakes(rng: SplitMix64, validators: int, byzantine: int, *, unequal: bool) -> tuple[int, ...]:
    """Stake units per validator key; the last ``byzantine`` keys are the Byzantine ones."""
    if not unequal:
        return (10,) * validators
    honest = tuple(rng.between(4, 10) for _ in range(validators - byzantine))
    if byzantine == 0:
        return honest
    total_honest = sum(honest)
    if 3 * byzantine < validators:
        # Below 1/3 of the stake (2B < H), often close to it: Byzantine proposers propose often.
        ceiling = (total_honest - 1) // 2
        budget = rng.between(max(byzantine, ceiling // 2), max(byzantine, ceiling))
    else:
        # The negative control: half of the stake or more, so that a fork's two halves each
        # make a quorum with the coalition even when faults cost some votes.
        budget = rng.between(total_honest, 3 * total_honest)
    shares = [1] * byzantine
    for _ in range(budget - byzantine):
        shares[rng.below(byzantine)] += 1
    return honest + tuple(shares)


@dataclass(frozen=True, slots=True)
class Cast:
    """Everyone in one run, and the genesis they start from."""

    validators: int
    stakes: tuple[int, ...]
    clients: int

    @property
    def joiner(self) -> int:
        """The key index of the validator that bonds during the run."""
        return self.validators

    def genesis(self) -> tuple[Genesis, LedgerState, bytes]:
        return _genesis(self.stakes, self.clients)


@functools.cache
def _genesis(stakes: tuple[int, ...], clients: int) -> tuple[Genesis, LedgerState, bytes]:
    joiner = validator_key(len(stakes))
    genesis = dev_genesis(
        CHAIN_ID,
        [(validator_key(i).public_key.raw, units * STAKE_UNIT) for i, units in enumerate(stakes)],
        [(client_key(i).address.raw, CLIENT_BALANCE) for i in range(clients)]
        + [(joiner.address.raw, JOINER_BALANCE)]
        + [(validator_key(i).address.raw, JOINER_BALANCE) for i in range(len(stakes))],
        SIM_PARAMS,
    )
    return genesis, genesis_state(genesis), genesis.genesis_hash()
