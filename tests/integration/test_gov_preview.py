"""`dcent gov propose PARAM VALUE --preview` and `dcent gov show ID --preview` against a real
two-validator network: the simulator starts from the chain's own totals and shows the projected
supply and bonded ratio with and without the change, writes both series and their charts, and
signs nothing. The two changes the issue names: ``fee_burn_share`` and ``inflation_max``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.main import main
from node.daemon import Node
from protocol.ledger.tx import GovPropose, sign_tx
from protocol.units import DCT, percent
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet
from tests.waiting import wait_until

DEADLINE_S = 240
YEARS = "0.1"


async def gov(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, ["gov", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_of(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {row["what"]: (row["as_is"], row["changed"]) for row in document["table"]}


def proposals_and_nonce(node: Node) -> tuple[int, int]:
    assert node.app is not None
    state = node.app.state
    return len(state.proposals), state.account(FAUCET.address.raw).nonce


@pytest.mark.parametrize(
    ("param", "value", "lower"),
    [("fee_burn_share", "100%", "supply after"), ("inflation_max", "10%", "supply after")],
)
async def test_propose_preview_shows_supply_and_bonded_ratio_with_and_without_the_change(
    nursery: trio.Nursery,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    param: str,
    value: str,
    lower: str,
) -> None:
    # The testnet's inflation starts at 13%: a maximum of 10% clamps it at once; fees flow in
    # the simulated market, so a higher burn share burns more.
    net = LocalNet(nursery, tmp_path / "net", validators=2)
    with trio.fail_after(DEADLINE_S):
        first = await net.start(0)
        second = await net.start(1)
        await wait_until(lambda: first.host.peer_id in second.host.peer_ids(), what="the nodes connected")
        await first.wait_for_height(2)
        before = proposals_and_nonce(first)
        out = tmp_path / "preview"
        code, stdout, err = await gov(
            capsys,
            "propose", param, value, "--preview", "--years", YEARS, "--seed", "7",
            "--preview-out", str(out), "--home", str(first.paths.root), "--output", "json",
        )  # fmt: skip
    assert code == 0, err
    document = json.loads(stdout)
    assert document["signed"] is False and document["param"] == param
    assert document["value"] == str(percent(value.rstrip("%")))
    assert document["height"] >= 2
    table = table_of(document)
    as_is, changed = table[lower]
    assert float(changed) < float(as_is), table  # the change lowers the projected supply
    assert "bonded ratio at the end" in table
    if param == "inflation_max":
        assert float(table["inflation at the end"][1]) <= 10 < float(table["inflation at the end"][0])
    else:
        assert float(table["burned"][1]) > float(table["burned"][0])
    names = {Path(path).name for path in document["files"]}
    assert {"as_is.csv", "changed.csv", "supply.png", "bonded_ratio.png", "overview.png"} <= names
    as_is_rows = (out / "as_is.csv").read_text().splitlines()
    # The simulation continues the chain: its first row is past the chain's height.
    header = as_is_rows[0].split(",")
    first_row = dict(zip(header, as_is_rows[1].split(","), strict=True))
    assert int(first_row["height"]) > document["height"]
    assert proposals_and_nonce(first) == before  # nothing was signed or submitted

    # Text for people: the two columns side by side.
    with trio.fail_after(DEADLINE_S):
        code, stdout, err = await gov(
            capsys, "propose", param, value, "--preview", "--years", "0.01",
            "--preview-out", str(tmp_path / "text"), "--home", str(first.paths.root),
        )  # fmt: skip
    assert code == 0, err
    assert "AS IS" in stdout and f"WITH {param.upper()}" in stdout and "nothing was signed" in stdout


async def test_show_preview_simulates_an_open_proposal(
    nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = LocalNet(nursery, tmp_path / "net", validators=1, params={"gov_voting_period": 10_000})
    with trio.fail_after(DEADLINE_S):
        node = await net.start(0)
        await node.wait_for_height(1)
        raw = sign_tx(FAUCET, CHAIN_ID, 1, 10_000, GovPropose("fee_burn_share", percent(90), 10 * DCT))
        tx = await node.submit_tx(raw)
        await wait_until(lambda: node.store is not None and node.store.tx(tx.hash), what="proposal committed")
        home = str(node.paths.root)
        code, stdout, err = await gov(
            capsys, "show", "1", "--preview", "--years", "0.02", "--preview-out", str(tmp_path / "p"),
            "--home", home, "--output", "json",
        )  # fmt: skip
        assert code == 0, err
        document = json.loads(stdout)
        assert document["param"] == "fee_burn_share" and document["change"] == "fee_burn_share 90%"
        assert table_of(document)["burned"][1] != table_of(document)["burned"][0]
        # Without --preview, show is what it was.
        code, stdout, err = await gov(capsys, "show", "1", "--home", home, "--output", "json")
        assert code == 0 and json.loads(stdout)["param"] == "fee_burn_share"
        # Bad input: typed errors, exit 1, nothing simulated.
        code, _, err = await gov(capsys, "show", "7", "--preview", "--home", home)
        assert code == 1 and err.startswith("error 2")  # the ledger's UnknownProposal
        code, _, err = await gov(capsys, "propose", "fee_burn_share", "140%", "--preview", "--home", home)
        assert code == 1 and err.startswith("error ")
        code, _, err = await gov(capsys, "propose", "fee_burn_share", "50%", "--submit", "--home", home)
        assert code == 1 and "--submit goes with --preview" in err
