"""`dcent blob ...`: the node's content-addressed blob store.

    dcent blob put FILE [--no-pin]          add a file; prints its content id
    dcent blob get CID [--out FILE] [--peer PEER_ID ...] [--pin] [--timeout S]
                                            fetch by content id (progress shown; resumes a
                                            broken fetch), then optionally write it to FILE
    dcent blob ls                           every blob, complete and partial, and the store's usage
    dcent blob rm CID                       delete (cancels a fetch of it)
    dcent blob pin CID [--unpin]            keep out of (or return to) garbage collection
    dcent blob gc                           evict unpinned blobs down to the size cap now

Files are read and written by the node process (the RPC is local), so FILE is made absolute
here first. ``get --out`` never overwrites a file and checks every chunk against the content id
while writing it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from node.blobs.errors import FetchWaitTimeout
from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import Output, key_values, table
from node.wallet.errors import InvalidArgument
from node.wallet.runner import EXIT_FAILED, EXIT_OK, guarded, output_of, run_node_command
from node.wallet.values import answer_list, answer_object
from protocol.blobs.merkle import format_content_id, parse_content_id

POLL_INTERVAL_S = 0.5
FINISHED = ("complete", "failed", "cancelled")


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "blob",
        help_text="the node's content-addressed blob store",
        description="Add files to the node's blob store, fetch blobs by content id from peers, manage them.",
    )

    put = commands.add_parser("put", help="add a file; prints its content id")
    put.add_argument("file", metavar="FILE")
    put.add_argument("--no-pin", dest="pin", action="store_false", help="let garbage collection evict it")
    put.set_defaults(func=run_put)

    get = commands.add_parser("get", help="fetch a blob by content id, optionally write it to a file")
    get.add_argument("cid", metavar="CID")
    get.add_argument("--out", metavar="FILE", help="write the blob to FILE (which must not exist)")
    get.add_argument(
        "--peer", action="append", default=[], metavar="PEER_ID", help="ask this peer first (repeatable)"
    )
    get.add_argument("--pin", action="store_true", help="pin the blob once fetched")
    get.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this long")
    get.set_defaults(func=run_get)

    listing = commands.add_parser("ls", help="every blob in the store and its usage")
    listing.set_defaults(func=run_ls)

    remove = commands.add_parser("rm", help="delete a blob (cancels a fetch of it)")
    remove.add_argument("cid", metavar="CID")
    remove.set_defaults(func=run_rm)

    pin = commands.add_parser("pin", help="pin a blob (or --unpin it)")
    pin.add_argument("cid", metavar="CID")
    pin.add_argument("--unpin", action="store_true", help="return it to garbage collection")
    pin.set_defaults(func=run_pin)

    gc = commands.add_parser("gc", help="evict unpinned blobs down to the size cap now")
    gc.set_defaults(func=run_gc)

    for command in (put, get, listing, remove, pin, gc):
        add_common_args(command)
        add_node_args(command)


def _cid(text: str) -> str:
    """The content id argument, checked here. Raises InvalidContentId."""
    return format_content_id(parse_content_id(text.strip().lower()))


def _size(value: object) -> str:
    if type(value) is not int:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop returns at GiB


def render_blob(console: Console, blob: Mapping[str, Any]) -> None:
    console.print(
        key_values(
            [
                ("cid", blob.get("cid")),
                ("size", f"{blob.get('size')} bytes ({_size(blob.get('size'))})"),
                ("chunks", f"{blob.get('chunks')} x {_size(blob.get('chunk_size'))}"),
                ("state", blob.get("state")),
                ("pinned", blob.get("pinned")),
            ]
        )
    )


# --------------------------------------------------------------------------------------------
# put, ls, rm, pin, gc
# --------------------------------------------------------------------------------------------


def run_put(args: argparse.Namespace) -> int:
    out = output_of(args)
    path = Path(args.file).expanduser().resolve()

    async def body(rpc: NodeRpc) -> int:
        blob = answer_object(await rpc.call("blob_put", path=str(path), pin=args.pin), "blob_put")

        def render(console: Console) -> None:
            render_blob(console, blob)
            if blob.get("new") is False:
                console.print("(the store already had it)")

        out.result(dict(blob), render)
        return EXIT_OK

    return run_node_command(args, out, body)


def run_ls(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        answer = answer_object(await rpc.call("blob_list"), "blob_list")
        blobs = [
            blob for blob in answer_list(answer.get("blobs"), "blob_list.blobs") if isinstance(blob, Mapping)
        ]

        def render(console: Console) -> None:
            if blobs:
                rows = [
                    (
                        blob.get("cid"),
                        _size(blob.get("size")),
                        blob.get("state"),
                        "yes" if blob.get("pinned") else "no",
                        f"{blob.get('have_chunks')}/{blob.get('chunks')}",
                    )
                    for blob in blobs
                ]
                console.print(table(("CID", "SIZE", "STATE", "PINNED", "CHUNKS"), rows))
            else:
                console.print("no blobs")
            console.print(f"used {_size(answer.get('used_bytes'))} of {_size(answer.get('max_bytes'))}")

        out.result(dict(answer), render)
        return EXIT_OK

    return run_node_command(args, out, body)


def _simple(args: argparse.Namespace, method: str, params: dict[str, object], say: str) -> int:
    out = output_of(args)

    def action() -> int:
        cid = _cid(args.cid)

        async def body(rpc: NodeRpc) -> int:
            answer = answer_object(await rpc.call(method, cid=cid, **params), method)
            out.result(dict(answer), lambda console: console.print(say.format(**{**answer, "cid": cid})))
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)


def run_rm(args: argparse.Namespace) -> int:
    return _simple(args, "blob_remove", {}, "{cid}: removed={removed}")


def run_pin(args: argparse.Namespace) -> int:
    return _simple(args, "blob_pin", {"pinned": not args.unpin}, "{cid}: pinned={pinned}")


def run_gc(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        report = answer_object(await rpc.call("blob_gc"), "blob_gc")
        evicted = report.get("evicted") or []
        out.result(
            dict(report),
            lambda console: console.print(
                f"evicted {len(evicted)} blob(s), freed {_size(report.get('freed_bytes'))}; "
                f"used {_size(report.get('used_bytes'))} of {_size(report.get('max_bytes'))}"
            ),
        )
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# get
# --------------------------------------------------------------------------------------------


async def follow_fetch(
    out: Output, rpc: NodeRpc, cid: str, status: Mapping[str, Any], timeout_s: float | None
) -> Mapping[str, Any]:
    """Poll ``blob_status`` until the fetch ends; for people, with a progress bar."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    console = out.console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=console,
        disable=out.json_mode or not console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"blob {cid[:16]}", total=None)
        while True:
            fetch = status.get("fetch") if isinstance(status.get("fetch"), Mapping) else {}
            assert isinstance(fetch, Mapping)
            size, chunks, have = status.get("size"), status.get("chunks"), status.get("have_chunks")
            if type(size) is int and type(chunks) is int and type(have) is int and chunks:
                progress.update(task, total=size, completed=min(size, size * have // chunks))
            if status.get("state") == "complete" or fetch.get("state") in FINISHED:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise FetchWaitTimeout(
                    f"gave up waiting after {timeout_s:g} s; the fetch goes on in the node "
                    f"(`dcent blob get {cid}` again follows it)"
                )
            await trio.sleep(POLL_INTERVAL_S)
            status = answer_object(await rpc.call("blob_status", cid=cid), "blob_status")


def run_get(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        cid = _cid(args.cid)
        destination = Path(args.out).expanduser().resolve() if args.out else None
        if destination is not None and destination.exists():
            raise InvalidArgument(f"--out {destination}: already exists; not overwritten")
        if args.timeout is not None and not args.timeout > 0:
            raise InvalidArgument("--timeout: must be more than zero seconds")

        async def body(rpc: NodeRpc) -> int:
            status = answer_object(
                await rpc.call("blob_fetch", cid=cid, peers=list(args.peer), pin=args.pin), "blob_fetch"
            )
            status = await follow_fetch(out, rpc, cid, status, args.timeout)
            fetch = status.get("fetch") if isinstance(status.get("fetch"), Mapping) else None
            if status.get("state") != "complete":
                error = fetch.get("error") if fetch is not None else None
                if isinstance(error, Mapping) and type(error.get("code")) is int:
                    out.error(error["code"], str(error.get("message")))
                else:
                    out.error(6052, f"the fetch of {cid} ended in state {status.get('state')}")
                return EXIT_FAILED
            document = dict(status)
            if destination is not None:
                exported = answer_object(
                    await rpc.call("blob_export", cid=cid, path=str(destination)), "blob_export"
                )
                document["path"] = exported.get("path")

            def render(console: Console) -> None:
                pairs: list[tuple[str, object]] = [
                    ("cid", cid),
                    ("size", f"{status.get('size')} bytes ({_size(status.get('size'))})"),
                    ("verified", f"{status.get('chunks')} chunks against the content id"),
                ]
                if fetch is not None:
                    pairs.append(
                        (
                            "fetched",
                            f"{fetch.get('fetched_chunks')} chunks, {fetch.get('resumed_chunks')} resumed",
                        )
                    )
                if destination is not None:
                    pairs.append(("written to", str(destination)))
                console.print(key_values(pairs))

            out.result(document, render)
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)
