"""The job lifecycle on a testnet of real processes: a job submitted over RPC to a node that sells
no GPUs runs in the bubblewrap sandbox of a provider, its outputs come back checked against the
receipt both signed, and the contract settles."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from protocol.market.delivery import output_listing_hash
from tests.e2e.framework import TestNetwork
from tests.integration.executor_helpers import bubblewrap_executor_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETWORK = {"nodes": 4, "providers": 2}
REQUESTER = 2
SPEC = {
    "name": "e2e-job",
    "argv": ["sh", "-c", 'mkdir -p out; echo "gpus=$CUDA_VISIBLE_DEVICES" | tee out/gpus.txt'],
    "max_runtime_s": "30s",
    "max_price_per_gpu_second": "0.01 DCT",
    "resources": {"gpu_count": 1},
}
ORDER = ["matching", "negotiating", "contracted", "escrowed", "running", "delivered", "settled"]


def test_a_job_submitted_over_rpc_runs_on_a_provider_and_settles(network: TestNetwork) -> None:
    bubblewrap_executor_or_skip()
    job_id = network.call(REQUESTER, "job_submit", SPEC)["job_id"]

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = network.call(REQUESTER, "job_get", job_id)
        return job if job["state"] in ("settled", "failed", "refunded", "disputed") else None

    job = network.wait_until(ended, what=f"job {job_id} ended")
    assert job["state"] == "settled", job["error"]
    assert [entry["state"] for entry in job["history"]] == ORDER
    provider = next(i for i in (0, 1) if network.address(i) == job["provider"])

    result = network.call(REQUESTER, "job_result", job_id)
    files = {path: base64.b64decode(data) for path, data in result["files"].items()}
    assert files == {"gpus.txt": f"gpus={job['gpu_uuids'][0]}\n".encode()}
    assert output_listing_hash(files).hex() == result["output_hash"] == job["output_hash"]

    # The provider's node tells the same story from its side.
    sold = [j for j in network.call(provider, "job_list") if j["contract_hash"] == job["contract_hash"]]
    assert len(sold) == 1 and sold[0]["role"] == "provider"
    network.wait_until(
        lambda: network.call(provider, "job_get", sold[0]["job_id"])["state"] == "settled",
        what="the provider's record settled",
    )
    logs = network.call(REQUESTER, "job_logs", job_id)
    assert f"gpus={job['gpu_uuids'][0]}" in logs["stdout"]
