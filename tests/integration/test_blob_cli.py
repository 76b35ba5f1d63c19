"""`dcent blob` end to end: two real nodes in this process (libp2p, SQLite, consensus, JSON-RPC
with cookies), and the CLI as real subprocesses talking to each node's RPC.

Node 0 puts a file and node 1 gets it by content id (asking its connected peers) as real
`dcent` processes; the bytes written out match. Then, through the same command code run in this
process: ls / pin / rm / gc do what they say; bad input gets a typed error (here, with `--output json`, the JSON error object) and exit status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.main import main
from protocol.blobs.errors import InvalidContentId
from tests.blob_helpers import MIB, file_sha256, write_sparse_input
from tests.integration.node_helpers import LocalNet
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 180


async def dcent(home: Path, *args: str) -> trio.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "node.cli.main", "blob", *args, "--home", str(home), "--output", "json"],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def dcent_json(home: Path, *args: str) -> Any:
    result = await dcent(home, *args)
    assert result.returncode == 0, f"dcent blob {' '.join(args)}: {result.stderr.decode()}"
    return json.loads(result.stdout)


class InProcess:
    """The same commands through ``node.cli.main.main`` in a worker thread (its own trio run):
    the real command code and a real HTTP client, without a Python start-up per command."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    async def run(self, home: Path, *args: str, output: str = "json") -> tuple[int, str, str]:
        self._capsys.readouterr()
        argv = ["blob", *args, "--home", str(home), "--output", output]
        code = await trio.to_thread.run_sync(main, argv)
        captured = self._capsys.readouterr()
        return code, captured.out, captured.err

    async def json(self, home: Path, *args: str) -> Any:
        code, out, err = await self.run(home, *args)
        assert code == 0, f"dcent blob {' '.join(args)}: {err}"
        return json.loads(out)

    async def error(self, home: Path, *args: str) -> str:
        code, out, err = await self.run(home, *args)
        assert code == 1, out
        return err


async def test_put_on_one_node_get_on_another_and_manage_the_store(
    nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = InProcess(capsys)
    net = LocalNet(nursery, tmp_path / "net", validators=2)
    with trio.fail_after(DEADLINE_S):
        first = await net.start(0)
        second = await net.start(1)
        await wait_until(
            lambda: first.host.peer_id in second.host.peer_ids(), what="node 1 connected to node 0"
        )
    home0, home1 = first.paths.root, second.paths.root
    source = tmp_path / "model.bin"
    expected = write_sparse_input(source, 8 * MIB, seed=11)

    with trio.fail_after(DEADLINE_S):
        put = await dcent_json(home0, "put", str(source))
        assert put["new"] is True and put["pinned"] is True and put["size"] == 8 * MIB and put["chunks"] == 8
        cid = put["cid"]

        out = tmp_path / "fetched.bin"
        got = await dcent_json(home1, "get", cid, "--out", str(out))
        assert got["state"] == "complete" and got["path"] == str(out)
        assert (
            got["fetch"]["fetched_chunks"] == 8 and got["fetch"]["peers"][first.host.peer_id]["chunks"] == 8
        )
        assert file_sha256(out) == expected

        listing = await cli.json(home1, "ls")
        assert [(blob["cid"], blob["state"], blob["pinned"]) for blob in listing["blobs"]] == [
            (cid, "complete", False)
        ]
        assert listing["used_bytes"] == 8 * MIB + 8 * 32
        assert (await cli.json(home1, "pin", cid))["pinned"] is True
        assert (await cli.json(home1, "pin", cid, "--unpin"))["pinned"] is False
        # The text form names the blob and what changed (it once crashed after the change was made).
        assert await cli.run(home1, "pin", cid, output="text") == (0, f"{cid}: pinned=True\n", "")
        assert await cli.run(home1, "pin", cid, "--unpin", output="text") == (0, f"{cid}: pinned=False\n", "")

        assert "already exists" in await cli.error(home1, "get", cid, "--out", str(out))
        assert (await cli.json(home1, "rm", cid))["removed"] is True
        assert (await cli.json(home1, "ls"))["blobs"] == []
        assert (await cli.json(home1, "gc"))["evicted"] == []

        assert '"code": 6051,' in await cli.error(home1, "get", "00" * 32)  # nobody has it
        assert f'"code": {InvalidContentId.code},' in await cli.error(home1, "get", "not-a-content-id")
        assert '"code": 6013,' in await cli.error(home0, "put", str(tmp_path / "missing"))
        # The node's keys never enter the store (anyone who learnt the content id could fetch them).
        assert '"code": 6021,' in await cli.error(home0, "put", str(home0 / "keys" / "node_key"))
        assert '"code": 6021,' in await cli.error(home0, "get", cid, "--out", str(home0 / "keys" / "copy"))
