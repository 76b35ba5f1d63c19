"""The simulated economy's accounts, and the starting ledger state they hold.

Actors (deterministic keys, ``PrivateKey.from_label("econsim/...")``, never for real funds):

- ``validators``: K validators with equal stake. They stand for every holder: the liquid supply
  not working in the market sits in their accounts, and "holders bond" means these accounts send
  ``stake`` transactions (the ledger has no delegation yet; when it does, holders become
  delegators). Equal stakes keep the validators' rewards equal, and the kernel on its one-division
  path.
- ``requester``: every buyer of compute, holding a working balance.
- ``provider``: every seller of compute; its income is divided by the GPUs it stands for.

A scenario's economy starts from :class:`Start` (a genesis); a governance preview starts from a
real chain's totals (:class:`EconomyStart`, e.g. :meth:`EconomyStart.from_ledger`), with the same
supply, minted, burned, bonded stake, pools, inflation, height and parameters, and the liquid rest
spread over the simulated actors. Unbonding, escrowed and deposited amounts of the real chain are
counted as liquid (they return to balances within a period or two).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from protocol.crypto import PrivateKey
from protocol.econsim.errors import ScenarioError
from protocol.econsim.scenario import Start
from protocol.ledger.genesis import bond_genesis_validator
from protocol.ledger.params import Params
from protocol.ledger.state import Account, LedgerState

CHAIN_ID = "dcent-econsim-1"


@functools.cache
def actor_key(label: str) -> PrivateKey:
    return PrivateKey.from_label(f"econsim/{label}")


def validator_labels(count: int) -> tuple[str, ...]:
    return tuple(f"validator-{index}" for index in range(count))


@dataclass(frozen=True, slots=True)
class EconomyStart:
    """A chain's economic totals: where a preview starts. Amounts in base units, ratios DEC."""

    height: int
    genesis_supply: int
    minted: int
    burned: int
    inflation: int
    bonded: int
    community_pool: int
    provider_pool: int
    params: Params

    @property
    def supply(self) -> int:
        return self.genesis_supply + self.minted - self.burned

    @classmethod
    def from_ledger(cls, state: LedgerState) -> EconomyStart:
        """The totals of a real ledger state (e.g. a node's committed state)."""
        v = state.vars
        return cls(
            height=state.height,
            genesis_supply=v["genesis_supply"],
            minted=v["minted"],
            burned=v["burned"],
            inflation=v["inflation"],
            bonded=v["total_bonded"],
            community_pool=v["community_pool"],
            provider_pool=v["provider_pool"],
            params=state.params,
        )

    @classmethod
    def from_start(cls, start: Start, params: Params) -> EconomyStart:
        bonded = start.supply * start.bonded_ratio // 10**18
        return cls(0, start.supply, 0, 0, start.inflation, bonded, 0, 0, params)


def build_state(origin: EconomyStart, start: Start) -> LedgerState:
    """The simulated ledger state holding ``origin``'s totals. Raises ScenarioError when the
    totals cannot be held (e.g. the working balances exceed the liquid supply)."""
    count = start.validators
    per_validator = origin.bonded // count
    if origin.bonded > 0 and per_validator < origin.params.min_validator_stake:
        raise ScenarioError(
            f"start.validators: {count} validators would each bond {per_validator} base units, "
            f"below min_validator_stake {origin.params.min_validator_stake}"
        )
    liquid = origin.supply - per_validator * count - origin.community_pool - origin.provider_pool
    working = start.requester_balance + start.provider_balance
    if liquid < working:
        raise ScenarioError(
            f"start: the requester and provider balances ({working} base units) exceed the liquid "
            f"supply ({liquid})"
        )
    holders = liquid - working
    state = LedgerState(CHAIN_ID, origin.params)
    for index, label in enumerate(validator_labels(count)):
        key = actor_key(label)
        share = holders // count + (holders % count if index == 0 else 0)
        state.accounts.set(key.address.raw, Account(share, 0))
        if per_validator > 0:
            bond_genesis_validator(state, key.public_key.raw, per_validator)
    state.accounts.set(actor_key("requester").address.raw, Account(start.requester_balance, 0))
    state.accounts.set(actor_key("provider").address.raw, Account(start.provider_balance, 0))
    v = state.vars
    v.set("height", origin.height)
    v.set("genesis_supply", origin.genesis_supply)
    v.set("minted", origin.minted)
    v.set("burned", origin.burned)
    v.set("inflation", origin.inflation)
    v.set("community_pool", origin.community_pool)
    v.set("provider_pool", origin.provider_pool)
    state.check_invariants()
    return state
