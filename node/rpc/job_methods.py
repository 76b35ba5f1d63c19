"""The ``job_*`` methods: submit a job paid by this node's account or a wallet's grant, and follow it
to settlement."""

from __future__ import annotations

import base64

from node.market.errors import (
    JobNotCancellable,
    JobNotFinished,
    MarketDisabled,
    OutputsAreBlobs,
    UnknownJob,
)
from node.market.service import MarketService
from node.rpc.methods import MethodTable
from node.rpc.params import AddressParam, Bool, Int, Object, Param, Str
from protocol.crypto import Address, PrivateKey
from protocol.ledger.errors import GrantExhausted, GrantExpired, GrantKindNotAllowed, NoGrant
from protocol.market.errors import JobSpecError
from protocol.market.jobspec import JobSpec

JOB_OBJECT = "job object (see docs/rpc.md): `job_id`, `state`, `contract_hash`, `provider`, ..."


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def register_job_methods(table: MethodTable, market: MarketService | None, key: PrivateKey | None) -> None:
    """Register the job methods. With ``market`` None (documentation builds) they answer
    :class:`MarketDisabled`."""
    requester_key = key.public_key.raw if key is not None else None

    def service() -> MarketService:
        if market is None:
            raise MarketDisabled("this node runs no job service")
        return market

    @table.method(
        "job_submit",
        params=[
            Param("spec", Object(), "the job spec as a JSON object (the JSON form of a job spec file)"),
            Param("max_attempts", Int(min=1, max=100), "providers to try at most", default=5),
            Param(
                "payer",
                AddressParam(),
                "a wallet that pays through its grant to this node (default: this node's account)",
                default=None,
            ),
            Param(
                "payer_signs",
                Bool(),
                "the payer gave no grant and signs the escrow itself: the node negotiates, then "
                "waits for it (`job_get` shows `awaiting_payer` and the `contract` to escrow)",
                default=False,
            ),
        ],
        errors=[JobSpecError, MarketDisabled, NoGrant, GrantExpired, GrantKindNotAllowed, GrantExhausted],
        returns="object: `job_id`",
    )
    async def job_submit(
        spec: dict[str, object], max_attempts: int, payer: Address | None, payer_signs: bool
    ) -> dict[str, object]:
        """Submit a job: the node matches it against the capacity table, negotiates a contract,
        escrows it, and follows it to settlement. Returns at once. The escrow comes from this
        node's account, or with ``payer`` from that wallet's account under its grant to this node
        (the contract names the wallet as payer; refunds go back to it). A grant that is missing,
        expired or does not cover the job's maximum price for its maximum GPU-seconds is refused
        here, before any provider is asked. With ``payer_signs`` the wallet gave no grant: once
        the contract is agreed, ``job_get`` shows it (``awaiting_payer``, ``contract``) and the
        node waits for the wallet to sign and submit its escrow (``dcent job submit --payer``
        does)."""
        parsed = JobSpec.from_document(spec)
        record = await service().submit(
            parsed,
            max_attempts=max_attempts,
            payer=payer.raw if payer is not None else b"",
            payer_signs=payer_signs,
        )
        return {"job_id": record.job_id}

    @table.method(
        "job_get", params=[Param("job_id", Str(max_len=64))], errors=[UnknownJob], returns=JOB_OBJECT
    )
    async def job_get(job_id: str) -> dict[str, object]:
        """One job, requested here or provided here."""
        return service().get(job_id).to_json(requester_key)

    @table.method(
        "job_list",
        params=[Param("state", Str(max_len=32), "only jobs in this state", default=None)],
        returns=f"array of {JOB_OBJECT}, newest first",
    )
    async def job_list(state: str | None) -> list[dict[str, object]]:
        """Every job this node requested or provided, newest first."""
        return [record.to_json(requester_key) for record in service().list(state)]

    @table.method(
        "job_logs",
        params=[Param("job_id", Str(max_len=64))],
        errors=[UnknownJob, JobNotFinished],
        returns="object: `stdout`, `stderr` (UTF-8 text, invalid bytes replaced), `live` (true while "
        "the job runs: what its provider streamed so far)",
    )
    async def job_logs(job_id: str) -> dict[str, object]:
        """The job's standard output and error, as the provider's sandbox captured them (capped):
        live while it runs (the lines its provider streams as the job prints them), then the
        complete logs delivered with its result."""
        stdout, stderr, live = await service().logs(job_id)
        return {"stdout": _text(stdout), "stderr": _text(stderr), "live": live}

    @table.method(
        "job_result",
        params=[Param("job_id", Str(max_len=64))],
        errors=[UnknownJob, JobNotFinished, OutputsAreBlobs],
        returns="object: `output_hash`, `files` (path -> base64), `outcome`, `exit_status`, `gpu_ms`, "
        "`gpu_seconds`",
    )
    async def job_result(job_id: str) -> dict[str, object]:
        """The job's output files (its ``out/`` directory) as delivered and checked against the
        receipt's output hash."""
        market = service()
        record = market.get(job_id)
        files = await market.result_files(job_id)
        assert record.receipt is not None
        return {
            "output_hash": record.receipt.output_hash.hex(),
            "files": {path: base64.b64encode(files[path]).decode("ascii") for path in sorted(files)},
            "outcome": record.receipt.outcome,
            "exit_status": record.receipt.exit_status,
            "gpu_ms": record.receipt.gpu_ms,
            "gpu_seconds": record.receipt.gpu_seconds,
        }

    @table.method(
        "job_outputs",
        params=[Param("job_id", Str(max_len=64))],
        errors=[UnknownJob, JobNotFinished],
        returns="object: `verified`, `output_hash` (null until verified), `provider` (peer id), `outputs`: "
        "array of `path`, `size`, `cid`, `state` (complete, partial, fetching or absent), `have_chunks`, "
        "`chunks`",
    )
    async def job_outputs(job_id: str) -> dict[str, object]:
        """The outputs a job returns as blobs (``output_mode = "blobs"``) with how much of each this
        node holds. ``verified``: fetched, checked against the receipt's signed listing and
        countersigned; before that, the listing of a delivery still being fetched (its progress).
        Fetch what is missing with ``blob_fetch`` (the provider first), write it with
        ``blob_export``."""
        market = service()
        record = market.get(job_id)
        listing, verified = await market.output_listing(job_id)
        outputs: list[dict[str, object]] = []
        for path, size, cid in listing:
            status = market.blobs.status(cid) if market.blobs is not None else None
            outputs.append(
                {
                    "path": path,
                    "size": size,
                    "cid": cid.hex(),
                    "state": status["state"] if status else "absent",
                    "have_chunks": status.get("have_chunks", 0) if status else 0,
                    "chunks": status.get("chunks", 0) if status else 0,
                }
            )
        return {
            "verified": verified,
            "output_hash": record.receipt.output_hash.hex() if record.receipt is not None else None,
            "provider": record.peer_id,
            "outputs": outputs,
        }

    @table.method(
        "job_cancel",
        params=[Param("job_id", Str(max_len=64))],
        errors=[UnknownJob, JobNotCancellable],
        returns=JOB_OBJECT,
    )
    async def job_cancel(job_id: str) -> dict[str, object]:
        """Stop a job still matching or negotiating. Once its escrow is open a contract runs to
        settlement, or to a refund at its deadline."""
        return service().cancel(job_id).to_json(requester_key)
