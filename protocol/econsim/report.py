"""A run as text: the CSV series and a summary, exact for ledger amounts.

Amounts are written in DCT with all nine decimals (exact: base units have no rounding to do),
ratios as percentages with six decimals (truncated), the agents' floats with six decimals.
Pure formatting: the caller writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

from protocol.econsim.agents import DAYS_PER_YEAR
from protocol.econsim.engine import Row, Run
from protocol.units import DCT, DEC

COLUMNS = (
    "step",
    "day",
    "year",
    "height",
    "supply_dct",
    "minted_dct",
    "burned_dct",
    "inflation_pct",
    "issued_dct",
    "burned_step_dct",
    "issuance_annual_pct",
    "burn_annual_pct",
    "net_inflation_annual_pct",
    "bonded_dct",
    "bonded_ratio_pct",
    "community_pool_dct",
    "provider_pool_dct",
    "fees_dct",
    "staking_yield_pct",
    "providers",
    "gpus",
    "utilization_pct",
    "price_per_gpu_hour_dct",
    "demand_gpu_hours",
    "served_gpu_hours",
    "provider_income_per_gpu_hour_dct",
    "pool_dct",
    "pool_price_tusd_per_dct",
    "mining_rewards_dct",
    "availability_rewards_dct",
    "standing_gpus",
)

_SIX = Decimal("0.000001")


def amount(base_units: int) -> str:
    """Base units as an exact DCT decimal: ``1500000000`` -> ``"1.500000000"``."""
    sign = "-" if base_units < 0 else ""
    whole, fraction = divmod(abs(base_units), DCT)
    return f"{sign}{whole}.{fraction:09d}"


def ratio_pct(ratio: int) -> str:
    """A DEC ratio as a percentage, six decimals, truncated."""
    return str((Decimal(ratio) * 100 / DEC).quantize(_SIX, rounding=ROUND_DOWN))


def number(value: float) -> str:
    return f"{value:.6f}"


def annual_pct(per_step: int, supply: int, step_days: int) -> str:
    """``per_step`` as an annual percentage of ``supply`` (exact decimal, six places)."""
    if supply <= 0:
        return "0.000000"
    value = Decimal(per_step) * 100 * Decimal(DAYS_PER_YEAR) / step_days / supply
    return str(value.quantize(_SIX, rounding=ROUND_DOWN))


def row_values(row: Row, step_days: int) -> list[str]:
    return [
        str(row.step),
        str(row.day),
        number(row.day / DAYS_PER_YEAR),
        str(row.height),
        amount(row.supply),
        amount(row.minted),
        amount(row.burned),
        ratio_pct(row.inflation),
        amount(row.issued),
        amount(row.burned_step),
        annual_pct(row.issued, row.supply, step_days),
        annual_pct(row.burned_step, row.supply, step_days),
        annual_pct(row.issued - row.burned_step, row.supply, step_days),
        amount(row.bonded),
        ratio_pct(row.bonded_ratio),
        amount(row.community_pool),
        amount(row.provider_pool),
        amount(row.fees),
        number(row.staking_yield * 100),
        str(row.providers),
        str(row.gpus),
        number(row.utilization * 100),
        amount(row.price_per_gpu_hour),
        number(row.demand_gpu_hours),
        number(row.served_gpu_hours),
        number(row.provider_income_per_gpu_hour / DCT),
        amount(row.pool_dct),
        amount(row.pool_price),
        amount(row.mining_rewards),
        amount(row.availability_rewards),
        str(row.standing_gpus),
    ]


def series_csv(rows: Sequence[Row], step_days: int) -> str:
    """The whole series as CSV text (``\\n`` line ends, no quoting needed: no commas in values)."""
    lines = [",".join(COLUMNS)]
    lines.extend(",".join(row_values(row, step_days)) for row in rows)
    return "\n".join(lines) + "\n"


def first_deflation_day(rows: Sequence[Row]) -> int | None:
    """The first day after which a whole 30-day window burned more than it minted, if any."""
    window = max(1, 30 // max(1, rows[1].day - rows[0].day)) if len(rows) > 1 else 1
    for end in range(window, len(rows) + 1):
        chunk = rows[end - window : end]
        if sum(row.burned_step for row in chunk) > sum(row.issued for row in chunk):
            return chunk[0].day
    return None


def summary(run: Run) -> dict[str, str | int | None]:
    """The headline numbers of a run: start and end, cumulative issuance and burn."""
    rows = run.rows
    if not rows:
        return {"scenario": run.scenario.name, "seed": run.seed, "steps": 0}
    first, last = rows[0], rows[-1]
    deflation = first_deflation_day(rows)
    return {
        "scenario": run.scenario.name,
        "seed": run.seed,
        "steps": len(rows),
        "years": number(last.day / DAYS_PER_YEAR),
        "blocks": last.height,
        "start_supply_dct": amount(first.supply - first.issued + first.burned_step),
        "end_supply_dct": amount(last.supply),
        "issued_dct": amount(sum(row.issued for row in rows)),
        "burned_dct": amount(sum(row.burned_step for row in rows)),
        "end_inflation_pct": ratio_pct(last.inflation),
        "end_bonded_ratio_pct": ratio_pct(last.bonded_ratio),
        "end_providers": last.providers,
        "end_price_per_gpu_hour_dct": amount(last.price_per_gpu_hour),
        "first_deflation_day": deflation,
        "mining_rewards_dct": amount(sum(row.mining_rewards for row in rows)),
        "availability_rewards_dct": amount(sum(row.availability_rewards for row in rows)),
        "kernel_blocks": run.kernel_blocks,
        "ledger_blocks": run.ledger_blocks,
    }
