"""PNG charts of a node's recorded per-block economics (``dcent economics plot``), matplotlib Agg.

The rows are those ``dcent economics history`` prints (DCT and percent as exact decimal
strings); the x axis is the block height. Files only, no display; like the simulator's charts the
output carries no timestamp or software version, so equal input gives equal bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a display

from matplotlib.axes import Axes

from node.cli.economics_plots import write_chart_files, write_overview

Row = Mapping[str, object]


def _number(value: object) -> float:
    """A plotted value: charts are the one place figures become floats."""
    return float(Decimal(str(value))) if value not in (None, "") else float("nan")


def _column(rows: Sequence[Row], name: str) -> list[float]:
    return [_number(row[name]) for row in rows]


def _cumulative(rows: Sequence[Row], name: str) -> list[float]:
    total, out = Decimal(0), []
    for row in rows:
        total += Decimal(str(row[name]))
        out.append(float(total))
    return out


#: chart name -> (title, y label, [(series label, values of the rows)])
CHARTS: dict[str, tuple[str, str, list[tuple[str, Callable[[Sequence[Row]], list[float]]]]]] = {
    "supply": ("Total supply", "DCT", [("supply", lambda rows: _column(rows, "supply_dct"))]),
    "minted_burned": (
        "Minted and burned since genesis",
        "DCT",
        [
            ("minted", lambda rows: _column(rows, "minted_dct")),
            ("burned", lambda rows: _column(rows, "burned_dct")),
        ],
    ),
    "issuance_vs_burn": (
        "Issued vs burned in the range (cumulative)",
        "DCT",
        [
            ("issued", lambda rows: _cumulative(rows, "issued_dct")),
            ("burned", lambda rows: _cumulative(rows, "burned_in_block_dct")),
        ],
    ),
    "inflation_bonded": (
        "Inflation and bonded ratio",
        "%",
        [
            ("inflation (a year)", lambda rows: _column(rows, "inflation_pct")),
            ("bonded ratio", lambda rows: _column(rows, "bonded_ratio_pct")),
        ],
    ),
    "pools": (
        "Pools and locked amounts",
        "DCT",
        [
            ("community pool", lambda rows: _column(rows, "community_pool_dct")),
            ("provider pool", lambda rows: _column(rows, "provider_pool_dct")),
            ("escrowed", lambda rows: _column(rows, "escrowed_dct")),
            ("unbonding", lambda rows: _column(rows, "unbonding_dct")),
        ],
    ),
    "fees": ("Fees per block", "DCT", [("fees", lambda rows: _column(rows, "fees_dct"))]),
    "gpu_seconds": (
        "GPU-seconds settled (cumulative)",
        "GPU-seconds",
        [("settled", lambda rows: _cumulative(rows, "gpu_seconds"))],
    ),
    "gpu_price": (
        "Price paid per GPU-second (blocks with settlements)",
        "DCT",
        [("price", lambda rows: _column(rows, "price_per_gpu_second_dct"))],
    ),
}


def _draw(axes: Axes, name: str, rows: Sequence[Row]) -> None:
    title, ylabel, series = CHARTS[name]
    heights = _column(rows, "height")
    for label, values in series:
        if name == "gpu_price":
            axes.plot(heights, values(rows), marker="o", linestyle="none", markersize=3, label=label)
        else:
            axes.plot(heights, values(rows), label=label)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("block height")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=7)


def write_history_charts(out_dir: Path, rows: Sequence[Row]) -> list[Path]:
    """One PNG per chart in :data:`CHARTS` plus ``overview.png``; returns the paths written.
    Raises OSError when a file cannot be written."""

    def draw(axes: Axes, name: str) -> None:
        _draw(axes, name, rows)

    written = write_chart_files(out_dir, list(CHARTS), draw)
    title = f"Blocks {rows[0]['height']} to {rows[-1]['height']}" if rows else ""
    written.append(write_overview(out_dir, list(CHARTS), draw, title))
    return written
