"""Economic and governance parameters, held in ledger state and changed only by governance.

Ratios are integers scaled by ``DEC`` (10^18), as Cosmos SDK's ``sdk.Dec``: 5% is ``DEC // 20``.
Amounts are base units (1 DCT = 10^9). Periods are in blocks.

Two layers of bounds, both checked with messages in DCT and percentages:

- :data:`PARAM_BOUNDS` and the cross-parameter invariants of :meth:`Params.__post_init__` hold
  for every parameter set the ledger ever holds (genesis included): values the arithmetic is safe
  with, and the changes that could never be undone (a threshold of 100% passes nothing again, a
  quorum of 0 lets one holder pass anything, evidence younger than the unbonding period lets
  slashed stake walk away).
- :data:`GOVERNANCE_BOUNDS` and :func:`check_governance_change` are what governance may move a
  parameter to: stricter floors that a test chain's genesis may undercut (short periods, tiny
  deposits) but that no vote can break on a live chain. A change is checked when it is proposed
  and again when it would apply (``protocol.ledger.gov``), where the validator-set floor, which
  needs the state, is checked too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from protocol.encoding import Record
from protocol.ledger.errors import InvalidParamValue, UnknownParam
from protocol.units import DCT, DEC, format_amount, format_ratio, percent


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
    # Liquidity pool (protocol.ledger.pool): the swap fee stays in the pool; the time-weighted
    # price averages the prices blocks started with over this many blocks.
    pool_swap_fee: int = percent("0.3")
    twap_window: int = 30
    # Liquidity mining (protocol.ledger.mining): this share of each block's issuance, taken from
    # the community pool's part, pays pool shares bonded to the programme; they unbond after
    # ``mining_unbonding_period`` blocks.
    liquidity_mining_share: int = 0
    mining_unbonding_period: int = 100
    # Standing offers (protocol.ledger.availability): this share of issuance pays standing GPU
    # capacity; a challenge is answered within ``challenge_window`` blocks (so is a take accepted);
    # a miss or a refusal slashes ``availability_slash_share`` of the offer's collateral.
    availability_share: int = 0
    challenge_window: int = 10
    challenge_deposit: int = DCT // 10
    availability_slash_share: int = percent(10)
    standing_collateral_per_gpu: int = 10 * DCT
    standing_max_price: int = DCT // 100
    # Slashing
    double_sign_slash: int = percent(5)
    evidence_max_age: int = 100
    #: Downtime: a validator that signed less than ``min_signed_per_window`` of the last
    #: ``signed_blocks_window`` heights is jailed for ``downtime_jail_blocks`` and slashed.
    signed_blocks_window: int = 100
    min_signed_per_window: int = percent(50)
    downtime_jail_blocks: int = 120
    downtime_slash: int = percent(1)
    # Governance
    gov_min_deposit: int = 10 * DCT
    gov_voting_period: int = 720  # an hour of 5-second blocks
    gov_quorum: int = percent("33.4")
    gov_threshold: int = percent(50)
    gov_veto_threshold: int = percent("33.4")

    def __post_init__(self) -> None:
        for name, (low, high) in PARAM_BOUNDS.items():
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise InvalidParamValue(
                    f"params.{name}: {describe(name, value)} is outside "
                    f"[{describe(name, low)}, {describe(name, high)}]"
                )
        if self.inflation_min > self.inflation_max:
            raise InvalidParamValue(
                f"params.inflation_min: must not exceed inflation_max "
                f"({describe('inflation_min', self.inflation_min)} > {describe('inflation_max', self.inflation_max)})"
            )
        if self.validator_reward_share + self.provider_reward_share > DEC:
            raise InvalidParamValue(
                "params.provider_reward_share: validator and provider shares exceed 100% together "
                f"({format_ratio(self.validator_reward_share)} + {format_ratio(self.provider_reward_share)})"
            )
        if (
            self.validator_reward_share
            + self.provider_reward_share
            + self.liquidity_mining_share
            + self.availability_share
            > DEC
        ):
            raise InvalidParamValue(
                "params.liquidity_mining_share: validator, provider, liquidity mining and availability "
                f"shares exceed 100% together ({format_ratio(self.validator_reward_share)} + "
                f"{format_ratio(self.provider_reward_share)} + {format_ratio(self.liquidity_mining_share)} + "
                f"{format_ratio(self.availability_share)})"
            )
        if self.evidence_max_age < self.unbonding_period:
            raise InvalidParamValue(
                f"params.evidence_max_age: {self.evidence_max_age} blocks is shorter than the "
                f"unbonding period ({self.unbonding_period} blocks): stake could leave before its "
                "infraction can be proven"
            )

    def with_value(self, name: str, value: int) -> Params:
        """A copy with one parameter changed. Raises UnknownParam / InvalidParamValue."""
        if name not in PARAM_BOUNDS:
            raise UnknownParam(f"unknown parameter {name!r}")
        if type(value) is not int:
            raise InvalidParamValue(f"params.{name}: an integer")
        return dataclasses.replace(self, **{name: value})


_RATIO = (0, DEC)
_BLOCKS = (1, 1_000_000)

#: Every parameter governance may change, with the closed range of values any state may hold.
PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    # Above 1 DCT a transaction costs more than most accounts hold: nobody could vote it back.
    "min_fee": (0, DCT),
    "fee_burn_share": _RATIO,
    "unbonding_period": _BLOCKS,
    "min_validator_stake": (1, 1_000_000 * DCT),
    "max_validators": (1, 1_000),
    "inflation_min": _RATIO,
    "inflation_max": _RATIO,
    "inflation_rate_change": _RATIO,
    "goal_bonded": (1, DEC),
    "blocks_per_year": (1, 10**10),
    "validator_reward_share": _RATIO,
    "provider_reward_share": _RATIO,
    # Below 100%: what makes trading with oneself for the pool a loss (economics.provider_payouts).
    "provider_reward_cap": (0, percent(90)),
    "epoch_length": _BLOCKS,
    "protocol_fee_share": (0, percent(50)),
    "collateral_slash_share": _RATIO,
    "dispute_window_blocks": (1, 100_000),
    # Above 10% nobody trades; 0 lets wash trading cost only transaction fees.
    "pool_swap_fee": (0, percent(10)),
    # Bounds the price marks each pool keeps (one per block at most).
    "twap_window": (1, 1_000),
    "liquidity_mining_share": _RATIO,
    "mining_unbonding_period": _BLOCKS,
    "availability_share": _RATIO,
    "challenge_window": (1, 10_000),
    "challenge_deposit": (0, 1_000 * DCT),
    "availability_slash_share": _RATIO,
    "standing_collateral_per_gpu": (0, 1_000_000 * DCT),
    "standing_max_price": (1, 1_000 * DCT),
    "double_sign_slash": _RATIO,
    "evidence_max_age": _BLOCKS,
    "signed_blocks_window": (10, 10_000),
    "min_signed_per_window": (percent(1), percent(99)),
    "downtime_jail_blocks": _BLOCKS,
    "downtime_slash": (0, percent(50)),
    "gov_min_deposit": (0, 1_000_000 * DCT),
    "gov_voting_period": _BLOCKS,
    # A quorum of 0 let a 1/301 holder pass anything alone; one of 100% stops at the first absent.
    "gov_quorum": (percent(10), percent(90)),
    # A threshold of 100% passes nothing ever again, itself included; below half a minority rules.
    "gov_threshold": (percent(50), percent(95)),
    "gov_veto_threshold": (percent(10), DEC),
}

#: Parameters that are ratios (DEC-scaled; written "33.4%") and amounts (base units; "1.5 DCT").
RATIO_PARAMS = frozenset(
    {
        "fee_burn_share",
        "inflation_min",
        "inflation_max",
        "inflation_rate_change",
        "goal_bonded",
        "validator_reward_share",
        "provider_reward_share",
        "provider_reward_cap",
        "protocol_fee_share",
        "collateral_slash_share",
        "pool_swap_fee",
        "liquidity_mining_share",
        "availability_share",
        "availability_slash_share",
        "double_sign_slash",
        "min_signed_per_window",
        "downtime_slash",
        "gov_quorum",
        "gov_threshold",
        "gov_veto_threshold",
    }
)
AMOUNT_PARAMS = frozenset(
    {
        "min_fee",
        "min_validator_stake",
        "gov_min_deposit",
        "challenge_deposit",
        "standing_collateral_per_gpu",
        "standing_max_price",
    }
)

#: Tighter ranges that governance may not leave (a genesis may: test chains use small values).
GOVERNANCE_BOUNDS: dict[str, tuple[int, int]] = {
    # A deposit worth nothing lets anyone flood the proposals.
    "gov_min_deposit": (DCT, 1_000_000 * DCT),
    # Slashing that costs nothing deters nothing.
    "double_sign_slash": (percent(1), DEC),
    # Fewer than 4 validators tolerate no fault at all.
    "max_validators": (4, 1_000),
    # A chain whose blocks come a year apart would mint a year's inflation per block.
    "blocks_per_year": (365 * 24 * 60, 10**10),
    "inflation_max": (0, percent(100)),
    "downtime_jail_blocks": (10, 1_000_000),
    # A window of a few blocks is the spot price again: one block would move it.
    "twap_window": (10, 1_000),
    # Issuance to liquidity mining is a subsidy; beyond a fifth it starves validators' security.
    "liquidity_mining_share": (0, percent(20)),
    # Shares unbonded at once would let liquidity leave the pool the moment rewards stop.
    "mining_unbonding_period": (10, 1_000_000),
    "availability_share": (0, percent(20)),
    # Shorter than a few blocks and an honest node delayed by one slow block misses it.
    "challenge_window": (5, 10_000),
    # A miss that costs nothing deters nothing; all of it would ruin a provider for one slow block.
    "availability_slash_share": (percent(1), percent(50)),
}
#: The shortest voting period governance may set: long enough for a person to read and vote.
MIN_VOTING_SECONDS = 600
SECONDS_PER_YEAR = 31_557_600
#: Governance may not shrink the active set below this (nor below what it is, if smaller).
MIN_ACTIVE_VALIDATORS = 4


def describe(name: str, value: object) -> str:
    """``value`` of parameter ``name`` as people read it: DCT, a percentage, or blocks."""
    if type(value) is not int:
        return repr(value)
    if name in RATIO_PARAMS:
        return format_ratio(value)
    if name in AMOUNT_PARAMS:
        return format_amount(value)
    return f"{value:,}"


def min_voting_period(blocks_per_year: int) -> int:
    """The fewest blocks that last :data:`MIN_VOTING_SECONDS` at ``blocks_per_year``."""
    return -(-MIN_VOTING_SECONDS * blocks_per_year // SECONDS_PER_YEAR)


def check_governance_change(params: Params, name: str, value: int) -> Params:
    """``params`` with ``name`` set to ``value``, if governance may do that: the hard bounds and
    invariants, the governance bounds of ``name``, and a voting period that stays long enough for
    a person at the chain's declared block rate. Raises UnknownParam, InvalidParamValue."""
    changed = params.with_value(name, value)
    low, high = GOVERNANCE_BOUNDS.get(name, PARAM_BOUNDS[name])
    if not low <= value <= high:
        raise InvalidParamValue(
            f"{name}: governance keeps it within [{describe(name, low)}, {describe(name, high)}]; "
            f"{describe(name, value)} proposed"
        )
    if name in ("gov_voting_period", "blocks_per_year"):
        floor = min_voting_period(changed.blocks_per_year)
        if changed.gov_voting_period < floor:
            raise InvalidParamValue(
                f"{name}: a voting period of {changed.gov_voting_period:,} blocks at "
                f"{changed.blocks_per_year:,} blocks a year lasts less than {MIN_VOTING_SECONDS // 60} "
                f"minutes; at least {floor:,} blocks are needed"
            )
    return changed
