"""Blob transfer over loopback next to raw yamux stream throughput, measured in the same run.

Two real nodes, each its own OS process (as two dcent nodes would be): a serving node (this
script with ``--serve``, a child process) puts the generated input into its blob store and
serves ``/dcent/blob/1.0.0``; the fetching node (this process) connects to it over libp2p
(TCP + Noise + yamux on 127.0.0.1) and:

1. reads ``--raw-mib`` of raw bytes on one yamux stream from the serving node (the child writes a
   1 MiB buffer in a loop; we read and discard): the ceiling any protocol on a stream can reach;
2. fetches the blob by content id into its own store: have, leaf list, chunks pipelined on one
   stream, each chunk verified against the Merkle root and written to disk;
3. reads the raw bytes again (the two raw runs bracket the fetch; their mean is the figure, so a
   neighbour's load during the run weighs on both sides of the ratio alike);
4. exports the fetched blob and checks its SHA-256 against the input's. A fetch that fails, a
   blob that does not verify or an export that differs exits 1.

The fetching process's RSS (VmRSS) is sampled every 20 ms during the fetch: the store streams
chunks to disk, so it stays near its idle size however large the blob.

The input is ``--size-mib`` (default 2048) of real bytes: by default one seeded random 4 KiB
block in every MiB and zeros elsewhere ("sparse-friendly": the store keeps zero 64 KiB blocks as
holes, so each copy of 2 GiB costs 128 MiB of disk), or ``--dense`` (every byte random: each
node's disk then writes all 2 GiB, which on a small VM is the bottleneck). The bytes on the wire,
hashed and verified, are the same 2 GiB either way.

Prints figures and one JSON line:
{"bench": "blob", "mb_per_s": ..., "raw_mb_per_s": ..., "ratio": ..., "rss_mb_peak": ..., ...}
Goal (issue 15): ratio >= 0.7 and >= 100 MB/s.
``loop_busy`` is the share of each phase's wall time the fetching node's trio thread spent on a
CPU: a loop that is the bottleneck and never waits (for the GIL, for a core) is near 1.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

from node.blobs.errors import BlobStoreError
from node.blobs.service import BlobService
from node.blobs.settings import BlobSettings
from node.host import HostConfig, P2PHost
from node.p2p.errors import P2PError
from node.p2p.framing import Stream
from node.testnet.processes import process_cpu_seconds
from protocol.blobs.merkle import format_content_id, parse_content_id
from protocol.crypto import PrivateKey

RAW_PROTOCOL_ID = "/dcent/bench/raw/1.0.0"
MIB = 1 << 20
BLOCK = 64 * 1024
RANDOM_BLOCK = 4096
RSS_SAMPLE_S = 0.02


def generate_input(path: Path, size: int, *, dense: bool, seed: int) -> str:
    """Write the input file; return its SHA-256 (hex). Sparse-friendly: in every MiB one seeded
    random 4 KiB block at a seeded 64 KiB-aligned offset, zeros elsewhere (written as holes)."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        out.truncate(size)
        for offset in range(0, size, MIB):
            length = min(MIB, size - offset)
            if dense:
                data = rng.randbytes(length)
                out.seek(offset)
                out.write(data)
                digest.update(data)
                continue
            block = rng.randrange(0, max(1, length // BLOCK)) * BLOCK
            piece = rng.randbytes(min(RANDOM_BLOCK, length - block))
            out.seek(offset + block)
            out.write(piece)
            digest.update(bytes(block) + piece + bytes(length - block - len(piece)))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


class RssProbe:
    """This process's resident memory (MB), from ``/proc/self/statm`` kept open and re-read with
    ``pread``. The sampler runs on the fetching node's trio thread during the fetch only, so it
    must cost next to nothing: reading ``/proc/self/status`` through pathlib every 20 ms cost
    about 2% of that thread, weighing on the blob side of the ratio and not the raw side."""

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / MIB

    def mb(self) -> float:
        fields = os.pread(self._fd, 128, 0).split()
        return int(fields[1]) * self._page_mb  # the second field: resident pages

    def close(self) -> None:
        os.close(self._fd)


@contextlib.contextmanager
def profiled(args: argparse.Namespace, phase: str) -> Iterator[None]:
    """cProfile this thread (the fetching node's trio thread) over one phase into
    ``<--profile>/<phase>.prof``; nothing without ``--profile``. Worker threads are not profiled."""
    if args.profile is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(Path(args.profile) / f"{phase}.prof")


def settings_of(args: argparse.Namespace) -> BlobSettings:
    return BlobSettings(**json.loads(args.settings))


def host_config(label: str) -> HostConfig:
    return HostConfig(node_key_seed=PrivateKey.from_label(label).seed(), listen_addr="/ip4/127.0.0.1/tcp/0")


# --------------------------------------------------------------------------------------------
# The serving node (child process)
# --------------------------------------------------------------------------------------------


async def serve_raw(stream: Stream) -> None:
    """Write as many raw bytes as the 8-byte request asks for, straight onto the yamux stream."""
    (count,) = struct.unpack(">Q", await stream.receive_frame(8))
    raw = stream._raw  # below our framing: libp2p's yamux stream as is
    buffer = random.Random(7).randbytes(MIB)
    sent = 0
    while sent < count:
        piece = buffer if count - sent >= MIB else buffer[: count - sent]
        await raw.write(piece)
        sent += len(piece)


async def serve(args: argparse.Namespace) -> None:
    host = P2PHost(host_config("bench-blob-server"))
    blobs = BlobService(host=host, root=Path(args.home) / "blobs", settings=settings_of(args))
    host.set_stream_handler(RAW_PROTOCOL_ID, serve_raw)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(blobs.run)
        started = time.perf_counter()
        info, _ = await blobs.put(Path(args.input), pin=True)
        put_s = time.perf_counter() - started
        print(json.dumps({"addr": host.listen_addrs[0], "cid": format_content_id(info.cid), "put_s": put_s}))
        sys.stdout.flush()
        # Serve until the parent closes our stdin.
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# The fetching node (this process)
# --------------------------------------------------------------------------------------------


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds over one phase: this process's, the serving node's, and this process's trio
    thread's alone (made and stopped on it; the rest of the process's is worker threads)."""

    def __init__(self, child_pid: int) -> None:
        self._child = child_pid
        self._start = (own_cpu_s(), process_cpu_seconds(child_pid), time.thread_time())

    def stop(self) -> tuple[float, float, float]:
        return (
            own_cpu_s() - self._start[0],
            process_cpu_seconds(self._child) - self._start[1],
            time.thread_time() - self._start[2],
        )


async def raw_throughput(host: P2PHost, peer: str, count: int) -> float:
    stream = await host.open_stream(peer, RAW_PROTOCOL_ID)
    await stream.send_frame(struct.pack(">Q", count))
    raw = stream._raw
    got = 0
    started = time.perf_counter()
    while got < count:
        data = await raw.read(MIB)
        if not data:
            raise BenchFailed(f"raw stream ended after {got} of {count} bytes")
        got += len(data)
    elapsed = time.perf_counter() - started
    await stream.close()
    return count / elapsed / 1e6


async def fetch_side(
    args: argparse.Namespace, addr: str, cid: bytes, root: Path, child_pid: int
) -> dict[str, float]:
    host = P2PHost(host_config("bench-blob-fetcher"))
    blobs = BlobService(host=host, root=root / "blobs", settings=settings_of(args))
    figures: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(blobs.run)
        peer = await host.connect(addr)
        raw_count = args.raw_mib * MIB
        await raw_throughput(host, peer, 64 * MIB)  # warm-up: yamux windows grow, code paths load
        meter = CpuMeter(child_pid)
        with profiled(args, "raw"):
            raw_before = await raw_throughput(host, peer, raw_count)
        raw_cpu = meter.stop()
        rss = RssProbe()
        rss_base = rss.mb()
        peak = rss_base
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss.mb())
                await trio.sleep(RSS_SAMPLE_S)

        nursery.start_soon(sample)
        print(f"fetching blob {format_content_id(cid)} ...", flush=True)
        started = time.perf_counter()
        meter = CpuMeter(child_pid)
        # A fetch that stalls is a fetch that gave up: exit 1 instead of waiting forever.
        with profiled(args, "fetch"), trio.move_on_after(args.timeout_s) as deadline:
            progress = await blobs.fetch(cid, peers=[peer])
        if deadline.cancelled_caught:
            raise BenchFailed(f"the fetch did not finish within {args.timeout_s:g} s")
        fetch_s = time.perf_counter() - started
        fetch_cpu = meter.stop()
        sampling = False
        rss.close()
        raw_after = await raw_throughput(host, peer, raw_count)
        exported = root / "exported"
        await blobs.export(cid, exported)
        figures.update(
            fetch_s=fetch_s,
            fetched_bytes=progress.fetched_bytes,
            raw_before=raw_before,
            raw_after=raw_after,
            rss_base=rss_base,
            rss_peak=peak,
            raw_cpu_fetcher_s_per_gib=raw_cpu[0] * (1 << 30) / raw_count,
            raw_cpu_server_s_per_gib=raw_cpu[1] * (1 << 30) / raw_count,
            fetch_cpu_fetcher_s_per_gib=fetch_cpu[0] * (1 << 30) / progress.fetched_bytes,
            fetch_cpu_server_s_per_gib=fetch_cpu[1] * (1 << 30) / progress.fetched_bytes,
            raw_cpu_loop_s_per_gib=raw_cpu[2] * (1 << 30) / raw_count,
            # Share of the phase's wall time the fetching node's trio thread was on a CPU: a
            # loop that is the bottleneck and never waits (for the GIL, for a CPU) is near 1.
            raw_loop_busy=raw_cpu[2] / (raw_count / (raw_before * 1e6)),
            blob_loop_busy=fetch_cpu[2] / fetch_s,
            fetch_cpu_loop_s_per_gib=fetch_cpu[2] * (1 << 30) / progress.fetched_bytes,
        )
        figures["export_sha256_ok"] = float(
            await trio.to_thread.run_sync(file_sha256, exported) == args.expected_sha256
        )
        nursery.cancel_scope.cancel()
    return figures


class BenchFailed(Exception):
    """The run gave up or lost data: reported, and the script exits 1."""


def _leaves(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_leaves(inner) for inner in exc.exceptions)
    return repr(exc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="blob size (default 2048)")
    parser.add_argument("--raw-mib", type=int, default=512, help="raw stream bytes per raw run")
    parser.add_argument("--dense", action="store_true", help="every byte random (disk-heavy)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="give up (exit 1) if the fetch takes longer (default: 120 s + 1 s per 5 MiB)",
    )
    parser.add_argument(
        "--settings", default="{}", help="BlobSettings overrides as JSON, e.g. '{\"window_chunks\": 32}'"
    )
    parser.add_argument(
        "--profile", help="cProfile the fetching node's first raw run and its fetch into DIR/{raw,fetch}.prof"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args)
        return 0
    if args.timeout_s is None:
        args.timeout_s = 120 + args.size_mib / 5

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dcent-bench-blob-") as tmp:
        root = Path(tmp)
        size = args.size_mib * MIB
        source = root / "input"
        started = time.perf_counter()
        args.expected_sha256 = generate_input(source, size, dense=args.dense, seed=args.seed)
        print(
            f"input: {args.size_mib} MiB ({'dense' if args.dense else 'sparse-friendly'}), "
            f"generated in {time.perf_counter() - started:.1f} s"
        )
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--home", str(root / "server"), "--input", str(source)]
            + ["--settings", args.settings],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                print("the serving node exited before it was ready", file=sys.stderr)
                return 1
            ready = json.loads(line)
            try:
                figures = trio.run(
                    fetch_side,
                    args,
                    ready["addr"],
                    parse_content_id(ready["cid"]),
                    root / "client",
                    child.pid,
                )
            except (BenchFailed, BlobStoreError, P2PError, ExceptionGroup) as exc:
                # trio wraps what a nursery raises in a group: the expected failures are
                # reported as such; anything else is a bug and keeps its traceback (also exit 1).
                expected = (BenchFailed, BlobStoreError, P2PError)
                found = exc.subgroup(expected) if isinstance(exc, ExceptionGroup) else exc
                if found is None:
                    raise
                print(f"FAILED: {_leaves(found)}", file=sys.stderr)
                return 1
        finally:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    if figures["fetched_bytes"] != size or not figures["export_sha256_ok"]:
        print(
            f"FAILED: fetched {figures['fetched_bytes']} of {size} bytes; export matches: "
            f"{bool(figures['export_sha256_ok'])}",
            file=sys.stderr,
        )
        return 1
    load_after = os.getloadavg()[0]
    mb_per_s = size / figures["fetch_s"] / 1e6
    raw = (figures["raw_before"] + figures["raw_after"]) / 2
    ratio = mb_per_s / raw
    print(
        f"put on the serving node: {ready['put_s']:.1f} s ({size / ready['put_s'] / 1e6:.0f} MB/s: hash + copy)"
    )
    print(f"raw yamux stream: {figures['raw_before']:.1f} MB/s before, {figures['raw_after']:.1f} MB/s after")
    print(
        f"blob fetch: {args.size_mib} MiB in {figures['fetch_s']:.2f} s = {mb_per_s:.1f} MB/s, "
        f"verified; ratio {ratio:.2f} (goal >= 0.7, >= 100 MB/s)"
    )
    print(
        "CPU seconds per GiB (fetching node / serving node): raw "
        f"{figures['raw_cpu_fetcher_s_per_gib']:.2f} / {figures['raw_cpu_server_s_per_gib']:.2f}, blob "
        f"{figures['fetch_cpu_fetcher_s_per_gib']:.2f} / {figures['fetch_cpu_server_s_per_gib']:.2f}; "
        f"the fetching node's trio thread alone: raw {figures['raw_cpu_loop_s_per_gib']:.2f}, "
        f"blob {figures['fetch_cpu_loop_s_per_gib']:.2f} (on a CPU {figures['raw_loop_busy']:.0%} / "
        f"{figures['blob_loop_busy']:.0%} of the time)"
    )
    print(f"fetching node RSS: {figures['rss_base']:.0f} MB before, peak {figures['rss_peak']:.0f} MB during")
    # The machine's load: figures measured beside other work are not comparable with a quiet run.
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")
    print(
        json.dumps(
            {
                "bench": "blob",
                "size_mib": args.size_mib,
                "dense": args.dense,
                "mb_per_s": round(mb_per_s, 1),
                "raw_mb_per_s": round(raw, 1),
                "ratio": round(ratio, 3),
                "raw_before_mb_per_s": round(figures["raw_before"], 1),
                "raw_after_mb_per_s": round(figures["raw_after"], 1),
                "fetch_s": round(figures["fetch_s"], 3),
                "put_s": round(ready["put_s"], 3),
                "rss_mb_base": round(figures["rss_base"], 1),
                "rss_mb_peak": round(figures["rss_peak"], 1),
                "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
                "cpu_s_per_gib": {
                    "raw_fetcher": round(figures["raw_cpu_fetcher_s_per_gib"], 2),
                    "raw_server": round(figures["raw_cpu_server_s_per_gib"], 2),
                    "blob_fetcher": round(figures["fetch_cpu_fetcher_s_per_gib"], 2),
                    "blob_server": round(figures["fetch_cpu_server_s_per_gib"], 2),
                    "raw_fetcher_loop": round(figures["raw_cpu_loop_s_per_gib"], 2),
                    "blob_fetcher_loop": round(figures["fetch_cpu_loop_s_per_gib"], 2),
                },
                "loop_busy": {
                    "raw": round(figures["raw_loop_busy"], 2),
                    "blob": round(figures["blob_loop_busy"], 2),
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
