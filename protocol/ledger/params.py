"""Economic and governance parameters, held in ledger state and changed only by governance.

Ratios are integers scaled by ``DEC`` (10^18), as Cosmos SDK's ``sdk.Dec``: 5% is ``DEC // 20``.
Amounts are base units (1 DCT = 10^9). Periods are in blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from protocol.encoding import Record
from protocol.ledger.errors import InvalidParamValue, UnknownParam
from protocol.units import DCT, DEC, percent


@dataclass(frozen=True, slots=True)
class Params(Record):
    # Fees
    min_fee: int = 10_000
    fee_burn_share: int = percent(50)
    # Staking
    unbonding_period: int = 100
    min_validator_stake: int = 1 * DCT
    max_validators: int = 100
    # Issuance (Cosmos x/mint model)
    inflation_min: int = percent(7)
    inflation_max: int = percent(20)
    inflation_rate_change: int = percent(13)
    goal_bonded: int = percent(67)
    blocks_per_year: int = 6_311_520
    # Reward split of each block's issuance; the community pool gets the rest.
    validator_reward_share: int = percent(60)
    provider_reward_share: int = percent(30)
    #: An epoch pays a provider at most this share of the protocol fees its contracts burned.
    provider_reward_cap: int = percent(50)
    epoch_length: int = 100
    # Compute market
    protocol_fee_share: int = percent(2)
    collateral_slash_share: int = percent(50)
    #: Blocks after a provider's unilateral claim during which the requester may dispute it.
    dispute_window_blocks: int = 20
    # Slashing
    double_sign_slash: int = percent(5)
    evidence_max_age: int = 100
    # Governance
    gov_min_deposit: int = 10 * DCT
    gov_voting_period: int = 100
    gov_quorum: int = percent("33.4")
    gov_threshold: int = percent(50)
    gov_veto_threshold: int = percent("33.4")

    def __post_init__(self) -> None:
        for name, (low, high) in PARAM_BOUNDS.items():
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise InvalidParamValue(f"params.{name}: {value!r} is outside [{low}, {high}]")
        if self.inflation_min > self.inflation_max:
            raise InvalidParamValue("params.inflation_min: must not exceed inflation_max")
        if self.validator_reward_share + self.provider_reward_share > DEC:
            raise InvalidParamValue(
                "params.provider_reward_share: validator and provider shares exceed 100% together"
            )

    def with_value(self, name: str, value: int) -> Params:
        """A copy with one parameter changed. Raises UnknownParam / InvalidParamValue."""
        if name not in PARAM_BOUNDS:
            raise UnknownParam(f"unknown parameter {name!r}")
        return dataclasses.replace(self, **{name: value})


_RATIO = (0, DEC)
_MAX_AMOUNT = 2**63 - 1

#: Every parameter governance may change, with the closed range of values it accepts.
PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "min_fee": (0, _MAX_AMOUNT),
    "fee_burn_share": _RATIO,
    "unbonding_period": (1, 10_000_000),
    "min_validator_stake": (1, _MAX_AMOUNT),
    "max_validators": (1, 1_000),
    "inflation_min": _RATIO,
    "inflation_max": _RATIO,
    "inflation_rate_change": _RATIO,
    "goal_bonded": (1, DEC),
    "blocks_per_year": (1, 10**9),
    "validator_reward_share": _RATIO,
    "provider_reward_share": _RATIO,
    # Below 100%: what makes trading with oneself for the pool a loss (economics.provider_payouts).
    "provider_reward_cap": (0, percent(90)),
    "epoch_length": (1, 10_000_000),
    "protocol_fee_share": _RATIO,
    "collateral_slash_share": _RATIO,
    "dispute_window_blocks": (1, 100_000),
    "double_sign_slash": _RATIO,
    "evidence_max_age": (1, 10_000_000),
    "gov_min_deposit": (0, _MAX_AMOUNT),
    "gov_voting_period": (1, 10_000_000),
    "gov_quorum": _RATIO,
    "gov_threshold": _RATIO,
    "gov_veto_threshold": _RATIO,
}
