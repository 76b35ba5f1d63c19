"""What people see of a provider quoting in an asset: ``dcent market offers`` prints the quote
beside the DCT price, and ``dcent job status`` the quote and the DCT cap it was signed under."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from node.cli.job import render_job
from node.cli.market import _render_offers, offer_document


def _printed(render: Any, value: Any) -> str:
    console = Console(record=True, width=240)
    render(console, value)
    return console.export_text()


def _offer(**fields: object) -> dict[str, Any]:
    offer = {
        "provider": "dct1provider",
        "gpus": 1,
        "free_gpus": 1,
        "models": ["H100"],
        "simulated": True,
        "memory_bytes": 80 * 2**30,
        "compute_capability": "9.0",
        "cuda_version": 12040,
        "price_per_gpu_second": "1000000",
        "collateral": "0",
        "stake": "0",
        "executors": ["bubblewrap"],
        "age_ms": 0,
        "quote": "DCT",
        "quoted_price": None,
        **fields,
    }
    return offer_document(offer)


def test_market_offers_prints_a_quote_beside_the_dct_price() -> None:
    text = _printed(
        _render_offers, [_offer(quote="TUSD", quoted_price="2000000"), _offer(provider="dct1other")]
    )
    quoted, plain = (line for line in text.splitlines() if "dct1" in line)
    assert "(2000000 TUSD/GPU-s)" in quoted
    assert "TUSD" not in plain


def test_job_status_prints_the_quote_and_its_cap() -> None:
    job = {
        "job_id": "job-1",
        "state": "settled",
        "price_per_gpu_second": "1000000",
        "quote": {
            "asset": "TUSD",
            "price_per_gpu_second": "2000000",
            "max_dct_price_per_gpu_second": "10000000",
        },
    }
    text = _printed(render_job, job)
    assert "2000000 TUSD base units / GPU-s (at most 0.01 DCT)" in text
    assert "quoted" not in _printed(render_job, {**job, "quote": None})
