"""The ``job_*`` methods: submit a job paid by this node's account or a wallet's grant, and follow it
to settlement."""

from __future__ import annotations

import base64

from node.market.errors import JobNotCancellable, JobNotFinished, OutputsAreBlobs, UnknownJob
from node.rpc.methods import MethodSpec
from node.rpc.params import AddressParam, Bool, Int, Object, Param, Str
from node.rpc.views import RequestedJobs
from protocol.crypto import Address, PublicKey
from protocol.ledger.errors import GrantExhausted, GrantExpired, GrantKindNotAllowed, NoGrant
from protocol.market.errors import JobSpecError
from protocol.market.jobspec import JobSpec

JOB_OBJECT = "job object (see docs/rpc.md): `job_id`, `state`, `contract_hash`, `provider`, ..."


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


_JOB_ID = Param("job_id", Str(max_len=64))

JOB_METHODS = (
    MethodSpec(
        "job_submit",
        """Submit a job: the node matches it against the capacity table, negotiates a contract,
        escrows it, and follows it to settlement. Returns at once. The escrow comes from this
        node's account, or with ``payer`` from that wallet's account under its grant to this node
        (the contract names the wallet as payer; refunds go back to it). A grant that is missing,
        expired or does not cover the job's maximum price for its maximum GPU-seconds is refused
        here, before any provider is asked. With ``payer_signs`` the wallet gave no grant: once
        the contract is agreed, ``job_get`` shows it (``awaiting_payer``, ``contract``) and the
        node waits for the wallet to sign and submit its escrow (``dcent job submit --payer``
        does).""",
        (
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
        ),
        errors=(JobSpecError, NoGrant, GrantExpired, GrantKindNotAllowed, GrantExhausted),
        returns="object: `job_id`",
    ),
    MethodSpec(
        "job_get",
        "One job, requested here or provided here.",
        (_JOB_ID,),
        errors=(UnknownJob,),
        returns=JOB_OBJECT,
    ),
    MethodSpec(
        "job_list",
        "Every job this node requested or provided, newest first.",
        (Param("state", Str(max_len=32), "only jobs in this state", default=None),),
        returns=f"array of {JOB_OBJECT}, newest first",
    ),
    MethodSpec(
        "job_logs",
        """The job's standard output and error, as the provider's sandbox captured them (capped):
        live while it runs (the lines its provider streams as the job prints them), then the
        complete logs delivered with its result.""",
        (_JOB_ID,),
        errors=(UnknownJob, JobNotFinished),
        returns="object: `stdout`, `stderr` (UTF-8 text, invalid bytes replaced), `live` (true while "
        "the job runs: what its provider streamed so far)",
    ),
    MethodSpec(
        "job_result",
        """The job's output files (its ``out/`` directory) as delivered and checked against the
        receipt's output hash.""",
        (_JOB_ID,),
        errors=(UnknownJob, JobNotFinished, OutputsAreBlobs),
        returns="object: `output_hash`, `files` (path -> base64), `outcome`, `exit_status`, `gpu_ms`, "
        "`gpu_seconds`",
    ),
    MethodSpec(
        "job_outputs",
        """The outputs a job returns as blobs (``output_mode = "blobs"``) with how much of each this
        node holds. ``verified``: fetched, checked against the receipt's signed listing and
        countersigned; before that, the listing of a delivery still being fetched (its progress).
        Fetch what is missing with ``blob_fetch`` (the provider first), write it with
        ``blob_export``.""",
        (_JOB_ID,),
        errors=(UnknownJob, JobNotFinished),
        returns="object: `verified`, `output_hash` (null until verified), `provider` (peer id), `outputs`: "
        "array of `path`, `size`, `cid`, `state` (complete, partial, fetching or absent), `have_chunks`, "
        "`chunks`",
    ),
    MethodSpec(
        "job_cancel",
        """Stop a job still matching or negotiating. Once its escrow is open a contract runs to
        settlement, or to a refund at its deadline.""",
        (_JOB_ID,),
        errors=(UnknownJob, JobNotCancellable),
        returns=JOB_OBJECT,
    ),
)


class JobMethods:
    """The handlers of :data:`JOB_METHODS`, over what they use of the node's job service
    (:class:`~node.rpc.views.RequestedJobs`); ``requester`` is the node's own key (a job's JSON
    says whether this node requested it)."""

    def __init__(self, market: RequestedJobs, requester: PublicKey) -> None:
        self._market = market
        self._requester = requester.raw

    async def job_submit(
        self, spec: dict[str, object], max_attempts: int, payer: Address | None, payer_signs: bool
    ) -> dict[str, object]:
        parsed = JobSpec.from_document(spec)
        record = await self._market.submit(
            parsed,
            max_attempts=max_attempts,
            payer=payer.raw if payer is not None else b"",
            payer_signs=payer_signs,
        )
        return {"job_id": record.job_id}

    async def job_get(self, job_id: str) -> dict[str, object]:
        return self._market.get(job_id).to_json(self._requester)

    async def job_list(self, state: str | None) -> list[dict[str, object]]:
        return [record.to_json(self._requester) for record in self._market.list(state)]

    async def job_logs(self, job_id: str) -> dict[str, object]:
        stdout, stderr, live = await self._market.logs(job_id)
        return {"stdout": _text(stdout), "stderr": _text(stderr), "live": live}

    async def job_result(self, job_id: str) -> dict[str, object]:
        market = self._market
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

    async def job_outputs(self, job_id: str) -> dict[str, object]:
        market = self._market
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

    async def job_cancel(self, job_id: str) -> dict[str, object]:
        return self._market.cancel(job_id).to_json(self._requester)
