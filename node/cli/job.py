"""`dcent job ...`: submit compute jobs to the market through a node, follow them, fetch results.

    dcent job submit SPEC [--wait] [--max-attempts N] [--payer [WALLET]]
                                                        SPEC is a .toml or .json job spec
    dcent job status ID | logs ID [--follow] | result ID [--out DIR] | cancel ID
    dcent job list [--state S]

The spec is parsed and validated here first: a bad one is refused with the path of the field at
fault and never reaches the node. The node's own account is the requester and pays, unless ``--payer``
names a wallet: the contract names it as payer and the escrow comes from its account, opened by
the node within the wallet's grant (``dcent wallet grant``), or, without a grant that covers the
job, signed here with the wallet's key once the contract is agreed (``node/wallet/payer.py``).
``--wait``
shows the job's stages live, then its outcome, exit status and what it cost, and exits 0 only
when the job completed with exit status 0: a job that failed, timed out, hit a limit, was
refunded, disputed or cancelled exits 1, its error on stderr (``--output json`` prints the job
object, outcome and exit status included). ``job result`` checks every output path and the output
hash before writing a byte. ``job logs --follow`` prints the job's lines as the provider's sandbox
streams them.
"""

from __future__ import annotations

import argparse
import copy
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.live import Live

from node.cli.blob import follow_fetch
from node.market.errors import JobNotFinished
from node.wallet import payer as payer_flow
from node.wallet.cliargs import (
    Subparsers,
    account_address,
    add_command_group,
    add_common_args,
    add_keystore_args,
    add_node_args,
)
from node.wallet.connect import NodeRpc
from node.wallet.console import Output, dct, key_values, short_hash, table
from node.wallet.errors import InvalidArgument
from node.wallet.jobwatch import (
    FINAL_STATES,
    JOB_WAIT_MARGIN_S,
    LOGS_COMPLETE_STATES,
    SUCCEEDED,
    JobProgress,
    LogFollower,
    describe_end,
    exit_status_of,
    get_job,
    job_logs,
    job_state,
    watch_job,
)
from node.wallet.results import decode_result, write_files
from node.wallet.runner import EXIT_FAILED, EXIT_OK, guarded, output_of, run_node_command
from node.wallet.txbuilder import TxOutcome
from node.wallet.values import answer_list, answer_object, answer_str
from protocol.market.jobspec import LOCAL_FILE_KEY, JobSpec, format_of

LOG_POLL_INTERVAL_S = 0.5
MAX_ATTEMPTS_LIMIT = 100


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "job",
        help_text="submit and follow compute jobs",
        description="Submit compute jobs through a node (its account pays), follow them, fetch results.",
    )

    submit = commands.add_parser("submit", help="submit a job spec (.toml or .json)")
    submit.add_argument("spec", metavar="SPEC", help="the job spec file")
    submit.add_argument("--wait", action="store_true", help="follow the job live until it ends")
    submit.add_argument("--max-attempts", type=int, metavar="N", help="providers to try before giving up")
    submit.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long (default: max runtime + {JOB_WAIT_MARGIN_S:g} s)",
    )
    submit.add_argument(
        "--payer",
        nargs="?",
        const="",
        metavar="WALLET",
        help="pay from this wallet's account (name or address; alone: the keystore's only wallet) "
        "through its grant to the node (`dcent wallet grant`)",
    )
    add_keystore_args(submit)
    submit.set_defaults(func=run_submit)

    status = commands.add_parser("status", help="one job's state, contract and history")
    status.add_argument("job_id", metavar="ID")
    status.set_defaults(func=run_status)

    logs = commands.add_parser("logs", help="a job's stdout and stderr")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job is done")
    logs.set_defaults(func=run_logs)

    result = commands.add_parser("result", help="a finished job's outputs, verified against their hash")
    result.add_argument("job_id", metavar="ID")
    result.add_argument("--out", metavar="DIR", type=Path, help="write the output files under DIR")
    result.set_defaults(func=run_result)

    output = commands.add_parser(
        "output", help="a finished job's outputs returned as blobs: fetch (resumable), verify, write"
    )
    output.add_argument("job_id", metavar="ID")
    output.add_argument("--out", metavar="DIR", type=Path, required=True, help="write the outputs under DIR")
    output.set_defaults(func=run_output)

    cancel = commands.add_parser("cancel", help="cancel a job that has not started running")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(func=run_cancel)

    listing = commands.add_parser("list", help="this node's jobs, newest first")
    listing.add_argument("--state", help="only jobs in this state (matching, running, settled, failed, ...)")
    listing.set_defaults(func=run_list)

    for command in (submit, status, logs, result, output, cancel, listing):
        add_common_args(command)
        add_node_args(command)


# --------------------------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------------------------


def load_spec(path: str) -> JobSpec:
    """Read and validate a spec file. Raises JobSpecError (naming the field), InvalidArgument."""
    fmt = format_of(path)
    return JobSpec.from_text(_read_spec_text(path), fmt)


def _read_spec_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read the job spec {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise InvalidArgument(f"the job spec {path} is not UTF-8 text") from None


def local_files(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str, Path]]:
    """The ``{ file = "..." }`` entries of ``[data]`` and ``image_archive``: (table, key, path)
    for each, the path resolved here (where ``job submit`` runs, beside the node)."""
    found: list[tuple[dict[str, Any], str, Path]] = []
    data = doc.get("data")
    if isinstance(data, dict):
        for key in sorted(data, key=str):
            entry = data[key]
            if (
                isinstance(entry, dict)
                and set(entry) == {LOCAL_FILE_KEY}
                and isinstance(entry[LOCAL_FILE_KEY], str)
            ):
                found.append((data, key, Path(entry[LOCAL_FILE_KEY]).expanduser().resolve()))
    archive = doc.get("image_archive")
    if (
        isinstance(archive, dict)
        and set(archive) == {LOCAL_FILE_KEY}
        and isinstance(archive[LOCAL_FILE_KEY], str)
    ):
        found.append((doc, "image_archive", Path(archive[LOCAL_FILE_KEY]).expanduser().resolve()))
    return found


def load_spec_document(path: str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str, Path]]]:
    """The spec's document and its local files, validated with each file standing in as a blob of
    its size (so a bad spec is refused before anything is put into the store)."""
    fmt = format_of(path)
    text = _read_spec_text(path)
    try:
        doc = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError):
        JobSpec.from_text(text, fmt)  # raises the parser's error, naming the format
        raise
    if not isinstance(doc, dict):
        JobSpec.from_document(doc)
        raise InvalidArgument("a job spec is a table / JSON object")
    files = local_files(doc)
    trial = copy.deepcopy(doc)
    for holder, key, file in local_files(trial):
        try:
            size = file.stat().st_size
        except OSError as exc:
            raise InvalidArgument(f"{key}: cannot read {file}: {exc.strerror}") from None
        holder[key] = {"cid": "00" * 32, "size": size}
    JobSpec.from_document(trial)
    return doc, files


def render_final(console: Console, job: Mapping[str, Any]) -> None:
    """How the job ended (outcome, exit status, money), and where its outputs are."""
    job_id = job.get("job_id")
    line, _error = describe_end(job)
    console.print(line)
    if job.get("state") == SUCCEEDED:
        command = "output" if job.get("output_mode") == "blobs" else "result"
        console.print(
            f"outputs {short_hash(job.get('output_hash'))}; fetch them with `dcent job {command} {job_id} --out DIR`"
        )


async def follow_live(out: Output, rpc: NodeRpc, job_id: str, timeout_s: float) -> Mapping[str, Any]:
    """Poll the job to its end; for people, with the stages shown live."""
    if out.json_mode:
        return await watch_job(rpc, job_id, timeout_s=timeout_s)
    console = out.console()
    progress = JobProgress(job_id)
    # Off a terminal, Live prints the final state once when it stops: no cursor tricks in logs.
    live = Live(
        progress,
        console=console,
        auto_refresh=console.is_terminal,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with live:

        def update(job: Mapping[str, Any]) -> None:
            progress.update(job)
            live.refresh()

        job = await watch_job(rpc, job_id, timeout_s=timeout_s, on_update=update)
    if not console.is_terminal:
        console.line()  # Live ends its one final print without a newline off a terminal
    render_final(console, job)
    return job


def _with_placeholders(doc: dict[str, Any]) -> dict[str, Any]:
    trial = copy.deepcopy(doc)
    for holder, key, file in local_files(trial):
        holder[key] = {"cid": "00" * 32, "size": file.stat().st_size}
    return trial


def run_submit(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        doc, files = load_spec_document(args.spec)
        spec = JobSpec.from_document(_with_placeholders(doc)) if files else JobSpec.from_document(doc)
        if args.max_attempts is not None and not 1 <= args.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidArgument(f"--max-attempts: between 1 and {MAX_ATTEMPTS_LIMIT}")
        timeout_s = args.timeout if args.timeout is not None else spec.max_runtime_s + JOB_WAIT_MARGIN_S
        if not timeout_s > 0:
            raise InvalidArgument("--timeout: must be more than zero seconds")
        params: dict[str, object] = {"spec": spec.to_document()}
        if args.max_attempts is not None:
            params["max_attempts"] = args.max_attempts
        payer: str | None = None
        if args.payer is not None:
            payer = params["payer"] = account_address(args, args.payer or None)

        async def body(rpc: NodeRpc) -> int:
            if files:
                # Local files go into the requester node's blob store (pinned: the provider fetches
                # them from there), and the spec names them by content id.
                for holder, key, file in files:
                    blob = answer_object(await rpc.call("blob_put", path=str(file), pin=True), "blob_put")
                    holder[key] = {"cid": answer_str(blob, "cid", "blob_put"), "size": blob.get("size")}
                    if not out.json_mode:
                        out.console().print(
                            f"{key}: {file} put as blob {answer_str(blob, 'cid', 'blob_put')}"
                        )
            # The spec the node receives (local files now named by content id): the contract a
            # paying wallet checks must be for this one.
            submitted = JobSpec.from_document(doc) if files else spec
            params["spec"] = submitted.to_document()
            signer = None
            if payer is not None and not await payer_flow.grant_covers(rpc, payer, submitted):
                signer = payer_flow.signing_payer(args, payer)  # no grant: the wallet escrows
                params["payer_signs"] = True
            answer = answer_object(await rpc.call("job_submit", **params), "job_submit")
            job_id = answer_str(answer, "job_id", "job_submit")
            if signer is not None:
                escrowed = await payer_flow.escrow_as_payer(
                    args, rpc, signer, job_id, submitted, timeout_s=timeout_s
                )
                if not isinstance(escrowed, TxOutcome):  # the job ended before its contract
                    out.result(dict(escrowed), lambda console: render_job(console, escrowed))
                    _line, error = describe_end(escrowed)
                    if error is not None:
                        out.error(*error)
                    return EXIT_FAILED
                if not args.wait:
                    document = {"job_id": job_id, "escrow": escrowed.describe()}
                    out.result(
                        document,
                        lambda console: console.print(
                            f"submitted job {job_id}; its escrow, signed by {signer.name}, committed at "
                            f"height {escrowed.height} (tx {escrowed.hash})"
                        ),
                    )
                    return EXIT_OK
            if not args.wait:
                out.result({"job_id": job_id}, lambda console: console.print(f"submitted job {job_id}"))
                return EXIT_OK
            job = await follow_live(out, rpc, job_id, timeout_s)
            if out.json_mode:
                out.result(dict(job), lambda console: None)
            _line, error = describe_end(job)
            if error is not None:
                out.error(*error)
                return EXIT_FAILED
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)


# --------------------------------------------------------------------------------------------
# status, list, cancel
# --------------------------------------------------------------------------------------------


def _quote_text(quote: object) -> str | None:
    """A quote in an asset: its price and the requester's DCT cap (None for a DCT price)."""
    if not isinstance(quote, Mapping):
        return None
    cap = dct(quote.get("max_dct_price_per_gpu_second"))
    return f"{quote.get('price_per_gpu_second')} {quote.get('asset')} base units / GPU-s (at most {cap})"


def render_job(console: Console, job: Mapping[str, Any]) -> None:
    pairs: list[tuple[str, object]] = [
        ("job", job.get("job_id")),
        ("state", job.get("state")),
        ("name", job.get("name") or None),
        ("role", job.get("role")),
        ("requester", job.get("requester")),
        ("provider", job.get("provider")),
        ("contract", job.get("contract_hash")),
        ("gpus", ", ".join(job.get("gpu_uuids") or []) or None),
        ("price / GPU-s", dct(job.get("price_per_gpu_second")) if job.get("price_per_gpu_second") else None),
        # Only a job quoted in an asset has the row: the DCT jobs' status stays as it was.
        *([("quoted", quoted)] if (quoted := _quote_text(job.get("quote"))) else []),
        ("max cost", dct(job.get("max_cost")) if job.get("max_cost") else None),
        ("collateral", dct(job.get("collateral")) if job.get("collateral") else None),
        ("escrow height", job.get("escrow_height")),
        ("outcome", job.get("outcome")),
        ("limit", job.get("limit")),
        ("exit status", exit_status_of(job)),
        ("GPU-seconds", f"{job['gpu_ms'] / 1000:.3f}" if type(job.get("gpu_ms")) is int else None),
        ("cost", dct(job.get("cost")) if job.get("cost") else None),
        ("output hash", job.get("output_hash")),
        ("settled height", job.get("settled_height")),
    ]
    console.print(key_values(pairs))
    if job.get("state") in FINAL_STATES:
        line, error = describe_end(job)
        console.print(line)
        if error is not None:
            console.print(f"error {error[0]}: {error[1]}")
    history = [entry for entry in job.get("history") or [] if isinstance(entry, Mapping)]
    times = [entry["at_ms"] for entry in history if type(entry.get("at_ms")) is int]
    if history:
        start = min(times, default=0)
        rows = [
            (
                entry.get("state"),
                f"+{(entry['at_ms'] - start) / 1000:.1f}s" if type(entry.get("at_ms")) is int else None,
            )
            for entry in history
        ]
        console.print(table(("STATE", "AFTER"), rows))


def run_status(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        job = await get_job(rpc, args.job_id)
        out.result(dict(job), lambda console: render_job(console, job))
        return EXIT_OK

    return run_node_command(args, out, body)


def run_cancel(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        job = answer_object(await rpc.call("job_cancel", job_id=args.job_id), "job_cancel")
        out.result(dict(job), lambda console: console.print(f"job {args.job_id}: {job.get('state')}"))
        return EXIT_OK

    return run_node_command(args, out, body)


def run_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        params = {} if args.state is None else {"state": args.state}
        jobs = answer_list(await rpc.call("job_list", **params), "job_list")

        def render(console: Console) -> None:
            if not jobs:
                console.print("no jobs" + (f" in state {args.state}" if args.state else ""))
                return
            rows = []
            for job in jobs:
                if not isinstance(job, Mapping):
                    continue
                peer = job.get("provider") if job.get("role") == "requester" else job.get("requester")
                rows.append(
                    (
                        job.get("job_id"),
                        job.get("state"),
                        job.get("name") or None,
                        job.get("role"),
                        peer,
                        job.get("outcome"),
                        exit_status_of(job),
                        job.get("gpu_seconds"),
                    )
                )
            console.print(table(("JOB", "STATE", "NAME", "ROLE", "PEER", "OUTCOME", "EXIT", "GPU-S"), rows))

        out.result(jobs, render)
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# logs, result
# --------------------------------------------------------------------------------------------


def _print_logs(out: Output, follower: LogFollower, logs: Mapping[str, Any]) -> None:
    out.stdout.write(follower.new_text(logs, "stdout"))
    out.stdout.flush()
    out.stderr.write(follower.new_text(logs, "stderr"))
    out.stderr.flush()


def run_logs(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        follower = LogFollower()
        while True:
            # State first: logs fetched after a final state are the complete logs.
            done = not args.follow or job_state(await get_job(rpc, args.job_id)) in LOGS_COMPLETE_STATES
            logs = await job_logs(rpc, args.job_id)
            if not out.json_mode:
                _print_logs(out, follower, logs)
            if done:
                break
            await trio.sleep(LOG_POLL_INTERVAL_S)
        if out.json_mode:
            out.result(dict(logs), lambda console: None)
        else:
            for stream in ("stdout", "stderr"):
                if logs.get(f"{stream}_truncated") is True:
                    out.note(f"({stream} was truncated by the provider)")
        return EXIT_OK

    return run_node_command(args, out, body)


def run_result(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        result = decode_result(args.job_id, await rpc.call("job_result", job_id=args.job_id))
        written = write_files(result, args.out) if args.out is not None else None

        def render(console: Console) -> None:
            console.print(
                key_values(
                    [
                        ("job", result.job_id),
                        ("outcome", result.outcome or None),
                        ("exit status", result.exit_status),
                        ("GPU-seconds", result.gpu_seconds),
                        ("output hash", f"{result.output_hash} (verified)"),
                    ]
                )
            )
            rows = [(entry["path"], entry["size"], short_hash(entry["sha256"])) for entry in result.listing()]
            if rows:
                console.print(table(("FILE", "BYTES", "SHA256"), rows))
            if written is not None:
                console.print(f"wrote {len(written)} file(s) under {args.out}")

        out.result(result.describe(args.out if written is not None else None), render)
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# output (outputs returned as blobs)
# --------------------------------------------------------------------------------------------


def _output_target(root: Path, path: object) -> Path:
    """``root/path`` for a listed output path, refusing one that would leave ``root``."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        raise InvalidArgument(f"the node listed an unusable output path {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\x00" in path:
        raise InvalidArgument(f"the node listed an unusable output path {path!r}")
    return root.joinpath(*parts)


def run_output(args: argparse.Namespace) -> int:
    """Write a job's blob outputs under ``--out``: each one the node lacks is fetched from the
    job's provider first (resuming what it holds, with a progress bar), then exported, verified
    chunk by chunk against its content id, through a ``.part`` file. A file already there with
    the listed size is kept (run again after an interruption: it resumes)."""
    out = output_of(args)

    def action() -> int:
        root = args.out.expanduser().resolve()

        async def body(rpc: NodeRpc) -> int:
            answer = answer_object(await rpc.call("job_outputs", job_id=args.job_id), "job_outputs")
            outputs = answer.get("outputs")
            provider = answer.get("provider")
            if not isinstance(outputs, list):
                raise InvalidArgument("job_outputs: no list of outputs")
            if answer.get("verified") is not True:
                # The node is still fetching and checking them: say how far, write nothing.
                have = sum(int(o.get("have_chunks") or 0) for o in outputs if isinstance(o, Mapping))
                total = sum(int(o.get("chunks") or 0) for o in outputs if isinstance(o, Mapping))
                out.error(
                    JobNotFinished.code,
                    f"job {args.job_id}: its outputs are not verified yet"
                    + (f" ({have} of {total} chunks fetched)" if outputs else " (nothing delivered yet)"),
                )
                return EXIT_FAILED
            written: list[dict[str, object]] = []
            for entry in outputs:
                if not isinstance(entry, Mapping):
                    raise InvalidArgument("job_outputs: an output is not an object")
                cid, size = answer_str(entry, "cid", "job_outputs"), entry.get("size")
                target = _output_target(root, entry.get("path"))
                if target.is_file() and target.stat().st_size == size:
                    written.append({"path": entry.get("path"), "cid": cid, "kept": True})
                    continue
                if entry.get("state") != "complete":
                    peers = [provider] if isinstance(provider, str) and provider else []
                    status = answer_object(
                        await rpc.call("blob_fetch", cid=cid, peers=peers, pin=True), "blob_fetch"
                    )
                    status = await follow_fetch(out, rpc, cid, status, None)
                    if status.get("state") != "complete":
                        out.error(
                            6052, f"{entry.get('path')}: the fetch of {cid} ended {status.get('state')}"
                        )
                        return EXIT_FAILED
                target.parent.mkdir(parents=True, exist_ok=True)
                part = target.with_name(target.name + ".part")
                part.unlink(missing_ok=True)
                await rpc.call("blob_export", cid=cid, path=str(part))
                part.replace(target)
                written.append({"path": entry.get("path"), "cid": cid, "kept": False})

            def render(console: Console) -> None:
                for row in written:
                    how = "already there" if row["kept"] else "verified and written"
                    console.print(f"{row['path']}: {how} ({short_hash(row['cid'])})")
                console.print(f"{len(written)} output(s) under {root}")

            out.result({"job_id": args.job_id, "out": str(root), "outputs": written}, render)
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)
