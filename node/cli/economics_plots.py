"""PNG charts of simulated (or, later, recorded) economics series, with matplotlib's Agg backend.

Every chart takes one or more labelled series, so a governance preview draws "as is" and "with
the change" on the same axes. Files only: no display is needed or touched. Output is
byte-identical for identical input on one machine (no timestamps; the "Software" metadata is
dropped so a matplotlib upgrade does not change the bytes either).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a display

from matplotlib import pyplot
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from protocol.econsim.agents import DAYS_PER_YEAR
from protocol.econsim.engine import Row
from protocol.units import DCT, DEC

Series = Mapping[str, Sequence[Row]]
_METADATA: dict[str, str | None] = {"Software": None}


def _years(rows: Sequence[Row]) -> list[float]:
    return [row.day / DAYS_PER_YEAR for row in rows]


def _annual(values: Sequence[int], rows: Sequence[Row]) -> list[float]:
    """Per-step amounts as annual percentages of the supply, averaged over 30 days (smoother)."""
    out = []
    step_days = rows[1].day - rows[0].day if len(rows) > 1 else 1
    window = max(1, 30 // max(1, step_days))
    for index in range(len(rows)):
        chunk = range(max(0, index - window + 1), index + 1)
        total = sum(values[i] for i in chunk)
        supply = rows[index].supply
        out.append(total / supply * 100 * DAYS_PER_YEAR / (step_days * len(chunk)) if supply else 0.0)
    return out


def _smoothed(values: Sequence[float], rows: Sequence[Row]) -> list[float]:
    """A 30-day trailing mean: daily demand noise would otherwise draw a solid band."""
    step_days = rows[1].day - rows[0].day if len(rows) > 1 else 1
    window = max(1, 30 // max(1, step_days))
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


#: name -> (title, y label, value per row (given all rows))
CHARTS: dict[str, tuple[str, str, Callable[[Sequence[Row]], list[float]]]] = {
    "supply": ("Total supply", "DCT (millions)", lambda rows: [row.supply / DCT / 1e6 for row in rows]),
    "inflation": (
        "Inflation: the ledger's rate and the net change of supply",
        "% per year",
        lambda rows: [row.inflation / DEC * 100 for row in rows],
    ),
    "bonded_ratio": (
        "Bonded ratio",
        "% of supply",
        lambda rows: [row.bonded_ratio / DEC * 100 for row in rows],
    ),
    "burn_vs_issuance": (
        "Burn vs issuance (30-day average)",
        "% of supply per year",
        lambda rows: _annual([row.issued for row in rows], rows),
    ),
    "provider_income": (
        "Provider income per GPU-hour: pay + pool rewards - slashes (30-day average)",
        "DCT per GPU-hour",
        lambda rows: _smoothed([row.provider_income_per_gpu_hour / DCT for row in rows], rows),
    ),
    "gpu_hour_price": (
        "Price of a GPU-hour (30-day average)",
        "DCT",
        lambda rows: _smoothed([row.price_per_gpu_hour / DCT for row in rows], rows),
    ),
    "active_providers": (
        "Active providers",
        "providers",
        lambda rows: [float(row.providers) for row in rows],
    ),
    "utilization": (
        "Utilization of offered GPUs (30-day average)",
        "%",
        lambda rows: _smoothed([row.utilization * 100 for row in rows], rows),
    ),
}


def _draw(axes: Axes, name: str, series: Series) -> None:
    title, ylabel, values = CHARTS[name]
    many = len(series) > 1
    for label, rows in series.items():
        if not rows:
            continue
        years = _years(rows)
        prefix = f"{label}: " if many else ""
        if name == "burn_vs_issuance":
            axes.plot(years, values(rows), label=f"{prefix}issuance")
            axes.plot(years, _annual([row.burned_step for row in rows], rows), label=f"{prefix}burn")
        elif name == "inflation":
            axes.plot(years, values(rows), label=f"{prefix}ledger inflation rate")
            net = _annual([row.issued - row.burned_step for row in rows], rows)
            axes.plot(years, net, linestyle="--", label=f"{prefix}net supply change")
        elif name == "gpu_hour_price":
            axes.plot(years, values(rows), label=f"{prefix}price")
        else:
            axes.plot(years, values(rows), label=label if many else None)
    if name == "inflation":
        axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("years")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if many or name in ("burn_vs_issuance", "inflation"):
        axes.legend(fontsize=7)


def write_charts(out_dir: Path, series: Series, *, title: str = "") -> list[Path]:
    """One PNG per chart in :data:`CHARTS` plus ``overview.png`` with all of them; returns the
    paths written. Raises OSError when a file cannot be written."""
    written = write_chart_files(out_dir, list(CHARTS), lambda axes, name: _draw(axes, name, series))
    if any(row.pool_dct for rows in series.values() for row in rows):
        written.append(_write_liquidity(out_dir, series))
    written.append(write_overview(out_dir, list(CHARTS), lambda axes, name: _draw(axes, name, series), title))
    return written


def save_figure(figure: Figure, path: Path) -> Path:
    """Lay ``figure`` out, write it to ``path`` (no "Software" metadata) and free it."""
    figure.tight_layout()
    figure.savefig(path, metadata=_METADATA)
    pyplot.close(figure)
    return path


def write_chart_files(out_dir: Path, names: Sequence[str], draw: Callable[[Axes, str], None]) -> list[Path]:
    """``<name>.png`` for each of ``names``, drawn by ``draw``; the paths, in that order."""
    written = []
    for name in names:
        figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
        draw(axes, name)
        written.append(save_figure(figure, out_dir / f"{name}.png"))
    return written


def write_overview(
    out_dir: Path, names: Sequence[str], draw: Callable[[Axes, str], None], title: str
) -> Path:
    """``overview.png``: the eight charts ``names`` on one 4 x 2 page, under ``title`` (if any)."""
    figure, grid = pyplot.subplots(4, 2, figsize=(14, 16), dpi=80)
    for axes, name in zip(grid.flat, names, strict=True):
        draw(axes, name)
    if title:
        figure.suptitle(title, fontsize=13)
    return save_figure(figure, out_dir / "overview.png")


def _write_liquidity(out_dir: Path, series: Series) -> Path:
    """``liquidity.png``, for runs with a pool (protocol/econsim/liquidity.py): what liquidity
    mining and the standing offer earn per day, and the pool's price of DCT in TUSD."""
    many = len(series) > 1
    figure, (rewards, price) = pyplot.subplots(1, 2, figsize=(14, 4.5), dpi=100)
    for label, rows in series.items():
        if not rows:
            continue
        years = _years(rows)
        step_days = rows[1].day - rows[0].day if len(rows) > 1 else 1
        prefix = f"{label}: " if many else ""
        mining = _smoothed([row.mining_rewards / DCT / step_days for row in rows], rows)
        standing = _smoothed([row.availability_rewards / DCT / step_days for row in rows], rows)
        rewards.plot(years, mining, label=f"{prefix}liquidity mining")
        rewards.plot(years, standing, label=f"{prefix}standing offer (availability)")
        price.plot(years, [row.pool_price / DCT for row in rows], label=label if many else None)
    rewards.set_title("Liquidity programmes' rewards (30-day average)", fontsize=10)
    rewards.set_ylabel("DCT per day")
    price.set_title("Pool price of DCT", fontsize=10)
    price.set_ylabel("TUSD per DCT")
    for axes in (rewards, price):
        axes.set_xlabel("years")
        axes.grid(True, alpha=0.3)
    rewards.legend(fontsize=7)
    if many:
        price.legend(fontsize=7)
    return save_figure(figure, out_dir / "liquidity.png")
