"""`dcent market offers | stats` on a real two-node network: each node sells declared (simulated)
GPUs of another kind at another price, the announcements cross libp2p gossip, and the commands
list, filter, sort and sum them as the node holds them, through the node's RPC."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.main import main
from tests.integration.node_helpers import LocalNet
from tests.waiting import wait_until

DEADLINE_S = 120
MARKET = {
    0: {"simulated_gpus": "2xH100-80GB", "price_per_gpu_second": 3_000},
    1: {"simulated_gpus": "4xA100-40GB", "price_per_gpu_second": 1_000},
}


async def market(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, ["market", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def market_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = await market(capsys, *argv, "--output", "json")
    assert code == 0, err
    return json.loads(out)


async def test_offers_are_listed_filtered_and_sorted_and_stats_sum_them(
    nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = LocalNet(nursery, tmp_path / "net", validators=2, market=MARKET)  # type: ignore[arg-type]
    with trio.fail_after(DEADLINE_S):
        first = await net.start(0)
        second = await net.start(1)
        assert first.capacity is not None
        await wait_until(lambda: len(first.capacity.entries()) == 2, what="both offers reached node 0")  # type: ignore[union-attr]
        home = ("--home", str(first.paths.root))
        everything = await market_json(capsys, "offers", *home)
        assert [offer["provider"] for offer in everything] == [
            str(second.validator_key.address),
            str(first.validator_key.address),
        ]  # the cheaper first
        a100, h100 = everything
        assert (a100["gpus"], a100["free_gpus"], a100["simulated"]) == (4, 4, True)
        assert a100["price_per_gpu_second_dct"] == "0.000001" and a100["price_per_gpu_hour_dct"] == "0.0036"
        # Genesis bonds 100 DCT; rewards compound into it block by block before the announcement.
        assert Decimal(a100["stake_dct"]) >= 100 and a100["compute_capability"] == "8.0"
        assert (h100["memory_bytes"], h100["models"]) == (80 * 2**30, ["NVIDIA H100 80GB"])
        assert all(offer["age_s"] >= 0 and offer["executors"] for offer in everything)

        big = await market_json(capsys, "offers", "--min-memory", "60 GiB", *home)
        assert [offer["free_gpus"] for offer in big] == [2]
        assert [o["gpus"] for o in await market_json(capsys, "offers", "--gpus", "3", *home)] == [4]
        assert [o["gpus"] for o in await market_json(capsys, "offers", "--min-cc", "9.0", *home)] == [2]
        assert await market_json(capsys, "offers", "--max-price", "0.0000005 DCT", *home) == []
        by_free = await market_json(capsys, "offers", "--sort", "free", *home)
        assert [offer["gpus"] for offer in by_free] == [4, 2]
        by_memory = await market_json(capsys, "offers", "--sort", "memory", *home)
        assert [offer["gpus"] for offer in by_memory] == [2, 4]
        spec = tmp_path / "job.toml"
        spec.write_text(
            'name = "x"\nargv = ["true"]\nmax_runtime_s = "1m"\nmax_price_per_gpu_second = "0.000002 DCT"\n'
            '[resources]\ngpu_count = 2\nmin_memory_bytes = "30 GiB"\n'
        )
        assert [o["gpus"] for o in await market_json(capsys, "offers", "--spec", str(spec), *home)] == [4]

        code, out, err = await market(capsys, "offers", *home)
        assert code == 0, err
        assert "PROVIDER" in out and "DCT/GPU-H" in out and "(simulated)" in out

        stats = await market_json(capsys, "stats", *home)
        assert (stats["providers"], stats["gpus"], stats["free_gpus"], stats["simulated_gpus"]) == (
            2,
            6,
            6,
            6,
        )
        assert stats["offered_prices"] == {
            "units": 6,
            "min": "1000",
            "median": "1000",
            "max": "3000",
            "mean": "1666",
        }
        assert [(m["gpus"], m["providers"]) for m in stats["by_model"]] == [(4, 1), (2, 1)]
        assert stats["recent"]["settlements"] == 0 and stats["recent"]["price_per_gpu_second"] is None
        code, out, err = await market(capsys, "stats", *home)
        assert code == 0 and "providers" in out and "MODEL" in out

        code, _, err = await market(capsys, "offers", "--min-memory", "lots", *home)
        assert code == 1 and err.startswith("error 4")  # the job spec's own size error
