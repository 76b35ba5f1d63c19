"""`dcent gov` and `dcent job`: proposals and votes, specs, following a job, results."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from node.rpc.errors import RpcCallError
from node.wallet.errors import ResultFilesMismatch, UnsafeOutputPath
from node.wallet.results import decode_result, write_files
from protocol.ledger.tx import GovPropose, GovVote
from protocol.market.delivery import output_listing_hash
from protocol.units import DCT, DEC
from tests.unit.wallet.conftest import (
    ALICE,
    Cli,
    FakeNode,
    job_object,
    submitted_tx,
)

# --------------------------------------------------------------------------------------------
# Governance
# --------------------------------------------------------------------------------------------


def proposal(**fields: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "param": "gov_quorum",
        "value": str(4 * DEC // 10),
        "proposer": str(ALICE.address),
        "deposit": str(10 * DCT),
        "status": "voting",
        "end_height": 110,
        "tally": {"yes": "0", "no": "0", "abstain": "0", "veto": "0"},
    }
    return {**base, **fields}


def test_propose_sends_the_scaled_value_and_reports_the_proposal_id(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 100 * DCT)
    node.proposals = [proposal(id=1, value="1"), proposal(id=2)]
    document = cli.json(
        "gov", "propose", "gov_quorum", "40%", "--deposit", "10 DCT", *cli.key_args(), *cli.node_args()
    )
    assert submitted_tx(node).msg == GovPropose(param="gov_quorum", value=4 * DEC // 10, deposit=10 * DCT)
    assert document["proposal_id"] == 2
    assert (document["param"], document["value"], document["deposit"]) == (
        "gov_quorum",
        str(4 * DEC // 10),
        str(10 * DCT),
    )


def test_propose_prints_the_proposal_id_in_text_too(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 100 * DCT, nonce=1)
    node.proposals = [proposal(id=7)]
    code, out, _ = cli.run(
        "gov", "propose", "gov_quorum", "40%", "--deposit", "10 DCT", *cli.key_args(), *cli.node_args()
    )
    assert code == 0 and "proposal id" in out and " 7" in out


def test_a_proposal_below_the_minimum_deposit_or_for_no_parameter_is_refused(
    cli: Cli, node: FakeNode
) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 100 * DCT)
    code, _, err = cli.run(
        "gov", "propose", "gov_quorum", "40%", "--deposit", "1", *cli.key_args(), *cli.node_args()
    )
    assert (code, err.split(":")[0]) == (1, "error 2032")
    code, _, err = cli.run(
        "gov", "propose", "warp_speed", "9", "--deposit", "10", *cli.key_args(), *cli.node_args()
    )
    assert (code, err.split(":")[0]) == (1, "error 2030")
    # The deposit may be left out only for a preview (which signs nothing).
    code, _, err = cli.run("gov", "propose", "gov_quorum", "40%", *cli.key_args(), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 5714") and "--deposit" in err
    assert node.submitted == []


def test_vote_checks_the_proposal_and_the_voters_stake(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.proposals = [proposal(id=1), proposal(id=2, status="passed")]
    node.fund(ALICE, 1 * DCT)
    code, _, err = cli.run("gov", "vote", "1", "yes", *cli.key_args(), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 2035")
    node.fund(ALICE, 1 * DCT, bonded=5 * DCT)
    code, _, err = cli.run("gov", "vote", "2", "yes", *cli.key_args(), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 2034")
    assert node.submitted == []
    document = cli.json("gov", "vote", "1", "veto", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == GovVote(proposal_id=1, option="veto")
    assert (document["proposal_id"], document["option"], document["status"]) == (1, "veto", "committed")


def test_gov_list_and_show(cli: Cli, node: FakeNode) -> None:
    node.proposals = [proposal(id=1)]
    assert cli.json("gov", "list", *cli.node_args()) == node.proposals
    assert cli.json("gov", "show", "1", *cli.node_args()) == node.proposals[0]
    code, out, _ = cli.run("gov", "list", *cli.node_args())
    assert code == 0 and "gov_quorum" in out and "40%" in out
    code, _, err = cli.run("gov", "show", "9", *cli.node_args())
    assert (code, err) == (1, "error 2033: no proposal 9\n")


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------

GOOD_SPEC = """
name = "hello"
argv = ["echo", "hi"]
max_runtime_s = "1m"
max_price_per_gpu_second = "0.001 DCT"
[resources]
gpu_count = 1
"""


def test_a_bad_spec_is_refused_locally_with_the_field_path(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(GOOD_SPEC.replace("gpu_count = 1", "gpu_count = 0"))
    code, out, err = cli.run("job", "submit", str(spec), "--home", str(tmp_path / "no-node"))
    assert (code, out) == (1, "")
    assert err.startswith("error 4010: resources.gpu_count:")
    assert node.calls == []
    wrong_kind = tmp_path / "spec.yaml"
    wrong_kind.write_text(GOOD_SPEC)
    code, _, err = cli.run("job", "submit", str(wrong_kind), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 4010")
    assert node.calls == []


def test_submit_sends_the_specs_json_form(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    assert cli.json("job", "submit", str(spec), "--max-attempts", "3", *cli.node_args()) == {
        "job_id": "job-1"
    }
    method, params = node.calls[0]
    assert method == "job_submit"
    assert params["max_attempts"] == 3
    assert params["spec"]["argv"] == ["echo", "hi"]
    assert params["spec"]["max_price_per_gpu_second"] == 1_000_000


def test_submit_wait_follows_the_stages_to_settled(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    stages = ["matching", "negotiating", "contracted", "escrowed", "running", "delivered", "settled"]
    node.jobs["job-1"] = [job_object(state) for state in stages]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert code == 0, err
    for label in ("matching", "negotiating", "contract", "escrow", "running", "delivered", "settled"):
        assert label in out
    assert "job job-1: settled" in out
    assert node.job_polls["job-1"] == len(stages)

    node.job_polls.clear()
    final = cli.json("job", "submit", str(spec), "--wait", *cli.node_args())
    assert final["state"] == "settled"


@pytest.mark.parametrize("state", ["failed", "refunded", "cancelled"])
def test_submit_wait_exits_1_with_the_jobs_error(
    cli: Cli, node: FakeNode, tmp_path: Path, state: str
) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    error = {"code": 4051, "message": "no provider agreed after 3 attempts"}
    node.jobs["job-1"] = [job_object("matching"), job_object(state, error=error)]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", "--output", "json", *cli.node_args())
    assert code == 1
    assert json.loads(out)["state"] == state
    assert json.loads(err) == {"error": error}  # --output json: the error as a JSON object too


def test_submit_wait_prints_the_outcome_exit_status_and_cost_of_a_completed_job(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    node.jobs["job-1"] = [job_object("running"), job_object("settled")]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert (code, err) == (0, "")
    assert "outcome: completed, exit status 0: the job completed; paid 0.005 DCT for 2.500 GPU-seconds" in out


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"outcome": "job_failed", "exit_status": [1]}, "the job failed (job_failed, exit status 1)"),
        (
            {"outcome": "timed_out", "exit_status": [143]},
            "the job was still running at its max runtime and was stopped (timed_out, exit status 143)",
        ),
        (
            {"outcome": "limit_exceeded", "limit": "memory", "exit_status": [137]},
            "the job was stopped at its memory limit (limit_exceeded, exit status 137)",
        ),
    ],
)
def test_submit_wait_exits_1_for_a_settled_job_that_did_not_complete(
    cli: Cli, node: FakeNode, tmp_path: Path, fields: dict[str, object], words: str
) -> None:
    """Settled means the money moved, not that the job worked: only exit 0 of a completed job is success."""
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    node.jobs["job-1"] = [job_object("running"), job_object("settled", **fields)]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert code == 1
    assert err == f"error 5962: {words}\n"
    assert f"outcome: {fields['outcome']}, exit status {fields['exit_status'][0]}" in out  # type: ignore[index]
    node.job_polls.clear()
    code, out, err = cli.run("job", "submit", str(spec), "--wait", "--output", "json", *cli.node_args())
    document = json.loads(out)
    assert code == 1 and json.loads(err) == {"error": {"code": 5962, "message": words}}
    assert (document["outcome"], document["exit_status"]) == (fields["outcome"], fields["exit_status"])


def test_a_refunded_job_never_reports_error_0(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    provider_error = job_object(
        "refunded",
        error={"code": 5959, "message": "the provider's sandbox failed; refunded in full"},
        outcome="provider_error",
        exit_status=[-1],
    )
    node.jobs["job-1"] = [job_object("running"), provider_error]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert code == 1
    assert err == "error 5959: the provider's sandbox failed; refunded in full\n"
    assert "outcome: provider_error, exit status -1: the provider's sandbox failed" in out
    # An older node that gave no error: the state still names a code, never 0.
    node.jobs["job-1"] = [job_object("refunded", error={"code": 0, "message": ""})]
    node.job_polls.clear()
    code, _, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert (code, err) == (1, "error 5960: job ended refunded\n")


def test_submit_wait_gives_up_at_its_deadline(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    node.jobs["job-1"] = [job_object("running")]
    code, _, err = cli.run("job", "submit", str(spec), "--wait", "--timeout", "120", *cli.node_args())
    assert code == 1
    assert err.startswith("error 5718: job job-1 is still running after 120 s")


def test_status_list_and_cancel(cli: Cli, node: FakeNode) -> None:
    node.jobs["job-1"] = [job_object("running")]
    assert cli.json("job", "status", "job-1", *cli.node_args())["state"] == "running"
    assert [job["job_id"] for job in cli.json("job", "list", "--state", "running", *cli.node_args())] == [
        "job-1"
    ]
    assert cli.json("job", "list", "--state", "settled", *cli.node_args()) == []
    code, _, err = cli.run("job", "status", "job-9", *cli.node_args())
    assert (code, err) == (1, "error 5951: no job job-9\n")
    node.refusals["job_cancel"] = RpcCallError(5953, "job job-1 is past escrowed")
    code, _, err = cli.run("job", "cancel", "job-1", *cli.node_args())
    assert (code, err) == (1, "error 5953: job job-1 is past escrowed\n")


def test_logs_follow_prints_each_new_piece_once(cli: Cli, node: FakeNode) -> None:
    node.jobs["job-1"] = [job_object("running"), job_object("running"), job_object("settled")]
    node.logs["job-1"] = [
        {"stdout": "step 1\n", "stderr": ""},
        {"stdout": "step 1\nstep 2\n", "stderr": "warn\n"},
        {"stdout": "step 1\nstep 2\ndone\n", "stderr": "warn\n", "stdout_truncated": False},
    ]
    code, out, err = cli.run("job", "logs", "job-1", "--follow", *cli.node_args())
    assert code == 0
    assert out == "step 1\nstep 2\ndone\n"
    assert err == "warn\n"


def result_answer(files: dict[str, bytes], *, output_hash: str | None = None) -> dict[str, Any]:
    return {
        "output_hash": output_hash or output_listing_hash(files).hex(),
        "files": {path: base64.b64encode(content).decode() for path, content in files.items()},
        "exit_status": 0,
        "gpu_seconds": 4,
    }


def test_result_writes_verified_files_under_the_directory(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    files = {"model.bin": b"\x00\x01weights", "logs/loss.csv": b"1,0.5\n"}
    node.results["job-1"] = result_answer(files)
    out_dir = tmp_path / "results"
    document = cli.json("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert (out_dir / "model.bin").read_bytes() == files["model.bin"]
    assert (out_dir / "logs" / "loss.csv").read_bytes() == files["logs/loss.csv"]
    assert document["output_hash"] == output_listing_hash(files).hex()
    assert [entry["path"] for entry in document["files"]] == ["logs/loss.csv", "model.bin"]
    assert document["written_to"] == str(out_dir)


@pytest.mark.parametrize("bad_path", ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "./x"])
def test_result_refuses_paths_that_leave_the_directory(
    cli: Cli, node: FakeNode, tmp_path: Path, bad_path: str
) -> None:
    node.results["job-1"] = result_answer({"ok.txt": b"fine", bad_path: b"evil"})
    out_dir = tmp_path / "results"
    code, _, err = cli.run("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert code == 1
    assert err.startswith("error 5715:")
    assert not out_dir.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_result_refuses_files_that_do_not_match_the_reported_hash(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    reported = output_listing_hash({"out.txt": b"what the provider promised"}).hex()
    node.results["job-1"] = result_answer({"out.txt": b"something else"}, output_hash=reported)
    out_dir = tmp_path / "results"
    code, _, err = cli.run("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert code == 1
    assert err.startswith(f"error 5716: job job-1: the node reports output hash {reported}")
    assert not out_dir.exists()


def test_result_writer_does_not_follow_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    (out_dir / "sub").symlink_to(outside)
    files = {"sub/planted.txt": b"x"}
    result = decode_result("job-1", result_answer(files))
    with pytest.raises(UnsafeOutputPath):
        write_files(result, out_dir)
    assert list(outside.iterdir()) == []


def test_decode_result_checks_the_hash_without_writing(tmp_path: Path) -> None:
    files = {"a.txt": b"a"}
    assert decode_result("j", result_answer(files)).files == files
    with pytest.raises(ResultFilesMismatch):
        decode_result("j", result_answer(files, output_hash="00" * 32))


def test_logs_and_tx_print_the_nodes_documents(cli: Cli, node: FakeNode) -> None:
    node.logs["job-1"] = [
        {"stdout": "hi\n", "stderr": "", "stdout_truncated": True, "stderr_truncated": False}
    ]
    assert cli.json("job", "logs", "job-1", *cli.node_args())["stdout"] == "hi\n"
    code, out, err = cli.run("job", "logs", "job-1", *cli.node_args())
    assert (code, out) == (0, "hi\n")
    assert err == "(stdout was truncated by the provider)\n"
    node.refusals["tx_get"] = RpcCallError(5202, "unknown transaction")
    code, _, err = cli.run("wallet", "tx", "ab" * 32, *cli.node_args())
    assert (code, err) == (1, "error 5202: unknown transaction\n")
