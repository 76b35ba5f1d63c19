"""Blob transfer over loopback next to raw yamux stream throughput, measured in the same run.

Two real nodes, each its own OS process (as two dcent nodes would be): a serving node (this
script with ``--serve``, a child process) puts the generated inputs into its blob store and
serves ``/dcent/blob/1.0.0``; the fetching node (this process) connects to it over libp2p
(TCP + Noise + yamux on 127.0.0.1). The ``--size-mib`` of input (default 2048) is split into
rounds of at most ``--round-mib`` (default 256), one blob each, and the run alternates:

    raw, fetch blob 1, raw, fetch blob 2, ..., fetch blob N, raw

- a *raw* phase reads ``--raw-mib`` of raw bytes on one yamux stream from the serving node (the
  child writes a 1 MiB buffer in a loop; we read and discard): the ceiling any protocol on a
  stream can reach. One stream serves every raw phase, warmed up first, so the reference never
  pays for a stream's window growing;
- a *fetch* gets a blob by content id into the fetching node's store: have, leaf list, chunks
  pipelined on one stream, each chunk verified against the Merkle root and written to disk. Each
  fetch is a whole fetch (a stream of its own, the leaf list, the final fsync), so rounds only
  add fixed costs to the blob side.

Why rounds: on this VM the same code's raw throughput moves by a third from one half-minute to
the next (222-297 MB/s, and the loop's CPU per GiB with it). One long fetch bracketed by two raw
runs compared whatever the CPU did during each; phases of a second or two, interleaved, see the
same machine. ``ratio`` is the fetches' bytes per second over the raw phases' (all phases
summed); ``round_ratios`` gives each fetch over the raw phases on either side of it.

After the last phase every fetched blob is exported and its SHA-256 checked against its input's.
A fetch that fails or stalls, a blob that does not verify or an export that differs exits 1.

The fetching process's RSS (VmRSS) is sampled every 20 ms during the fetches: the store streams
chunks to disk, so it stays near its idle size however large the blob.

The inputs are real bytes: by default one seeded random 4 KiB block in every MiB and zeros
elsewhere ("sparse-friendly": the store keeps zero 64 KiB blocks as holes, so each copy of 2 GiB
costs 128 MiB of disk), or ``--dense`` (every byte random: each node's disk then writes all of
it, which on a small VM is the bottleneck). The bytes on the wire, hashed and verified, are the
same either way.

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
import dataclasses
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


class PhaseProfiles:
    """cProfile this thread (the fetching node's trio thread) over every phase of a kind into
    ``<--profile>/<kind>.prof``; nothing without ``--profile``. Worker threads are not profiled."""

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._profiles: dict[str, cProfile.Profile] = {}

    @contextlib.contextmanager
    def phase(self, kind: str) -> Iterator[None]:
        if self._directory is None:
            yield
            return
        profiler = self._profiles.setdefault(kind, cProfile.Profile())
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    def dump(self) -> None:
        if self._directory is None:
            return
        Path(self._directory).mkdir(parents=True, exist_ok=True)
        for kind, profiler in self._profiles.items():
            profiler.dump_stats(Path(self._directory) / f"{kind}.prof")


def settings_of(args: argparse.Namespace) -> BlobSettings:
    return BlobSettings(**json.loads(args.settings))


def host_config(label: str) -> HostConfig:
    return HostConfig(node_key_seed=PrivateKey.from_label(label).seed(), listen_addr="/ip4/127.0.0.1/tcp/0")


# --------------------------------------------------------------------------------------------
# The serving node (child process)
# --------------------------------------------------------------------------------------------


async def serve_raw(stream: Stream) -> None:
    """For each 8-byte request, write that many raw bytes straight onto the yamux stream."""
    raw = stream._raw  # below our framing: libp2p's yamux stream as is
    buffer = random.Random(7).randbytes(MIB)
    while True:
        try:
            (count,) = struct.unpack(">Q", await stream.receive_frame(8))
        except P2PError:  # the fetching node is done with the stream
            return
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
        cids = []
        for path in args.input:
            info, _ = await blobs.put(Path(path), pin=True)
            cids.append(format_content_id(info.cid))
        put_s = time.perf_counter() - started
        print(json.dumps({"addr": host.listen_addrs[0], "cids": cids, "put_s": put_s}))
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


@dataclasses.dataclass
class PhaseTotals:
    """What the phases of one kind (raw or fetch) moved, in how long, for how much CPU."""

    bytes: int = 0
    seconds: float = 0.0
    cpu_fetcher: float = 0.0
    cpu_server: float = 0.0
    cpu_loop: float = 0.0
    rates: list[float] = dataclasses.field(default_factory=list)  # MB/s of each phase

    def add(self, count: int, seconds: float, cpu: tuple[float, float, float]) -> None:
        self.bytes += count
        self.seconds += seconds
        self.cpu_fetcher += cpu[0]
        self.cpu_server += cpu[1]
        self.cpu_loop += cpu[2]
        self.rates.append(count / seconds / 1e6)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    def per_gib(self, cpu_s: float) -> float:
        return cpu_s * (1 << 30) / self.bytes


class RawReader:
    """The raw reference: one yamux stream to the serving node, reused by every raw phase."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def read(self, count: int) -> float:
        """Ask for ``count`` raw bytes, read and drop them; the seconds it took."""
        await self._stream.send_frame(struct.pack(">Q", count))
        raw = self._stream._raw
        got = 0
        started = time.perf_counter()
        while got < count:
            data = await raw.read(MIB)
            if not data:
                raise BenchFailed(f"raw stream ended after {got} of {count} bytes")
            got += len(data)
        return time.perf_counter() - started


async def fetch_side(
    args: argparse.Namespace, addr: str, cids: list[bytes], root: Path, child_pid: int
) -> dict[str, object]:
    host = P2PHost(host_config("bench-blob-fetcher"))
    blobs = BlobService(host=host, root=root / "blobs", settings=settings_of(args))
    profiles = PhaseProfiles(args.profile)
    raw_totals, fetch_totals = PhaseTotals(), PhaseTotals()
    raw_count = args.raw_mib * MIB
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(blobs.run)
        peer = await host.connect(addr)
        raw = RawReader(await host.open_stream(peer, RAW_PROTOCOL_ID))
        await raw.read(64 * MIB)  # warm-up: the stream's yamux window grows, code paths load

        async def raw_phase() -> None:
            meter = CpuMeter(child_pid)
            with profiles.phase("raw"):
                seconds = await raw.read(raw_count)
            raw_totals.add(raw_count, seconds, meter.stop())

        rss = RssProbe()
        rss_base = rss.mb()
        peak = rss_base
        sampling = False

        async def sample() -> None:
            nonlocal peak
            while True:
                if sampling:
                    peak = max(peak, rss.mb())
                await trio.sleep(RSS_SAMPLE_S)

        nursery.start_soon(sample)
        await raw_phase()
        for number, cid in enumerate(cids, 1):
            print(f"round {number}/{len(cids)}: fetching blob {format_content_id(cid)} ...", flush=True)
            sampling = True
            meter = CpuMeter(child_pid)
            started = time.perf_counter()
            # A fetch that stalls is a fetch that gave up: exit 1 instead of waiting forever.
            with profiles.phase("fetch"), trio.move_on_after(args.timeout_s) as deadline:
                progress = await blobs.fetch(cid, peers=[peer])
            if deadline.cancelled_caught:
                raise BenchFailed(f"fetch {number} did not finish within {args.timeout_s:g} s")
            if progress.fetched_bytes != args.round_bytes[number - 1]:
                raise BenchFailed(
                    f"fetch {number} moved {progress.fetched_bytes} of {args.round_bytes[number - 1]} bytes"
                )
            fetch_totals.add(progress.fetched_bytes, time.perf_counter() - started, meter.stop())
            sampling = False
            await raw_phase()
        rss.close()
        profiles.dump()
        exports_ok = []
        for index, cid in enumerate(cids):
            exported = root / f"exported-{index}"
            await blobs.export(cid, exported)
            digest = await trio.to_thread.run_sync(file_sha256, exported)
            exports_ok.append(digest == args.expected_sha256[index])
            exported.unlink()
        nursery.cancel_scope.cancel()
    return {
        "raw": raw_totals,
        "fetch": fetch_totals,
        "rss_base": rss_base,
        "rss_peak": peak,
        "exports_ok": exports_ok,
    }


class BenchFailed(Exception):
    """The run gave up or lost data: reported, and the script exits 1."""


def _leaves(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_leaves(inner) for inner in exc.exceptions)
    return repr(exc)


def round_sizes(total_mib: int, round_mib: int) -> list[int]:
    """The blob sizes (bytes) of the rounds: ``total_mib`` split into as few rounds of at most
    ``round_mib`` as it takes, as even as whole MiB allow."""
    rounds = max(1, -(-total_mib // max(1, round_mib)))
    base, extra = divmod(total_mib, rounds)
    return [(base + (1 if index < extra else 0)) * MIB for index in range(rounds)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="bytes fetched in all (default 2048)")
    parser.add_argument(
        "--round-mib",
        type=int,
        default=256,
        help="at most this much per fetch, one blob a round (default 256)",
    )
    parser.add_argument(
        "--raw-mib", type=int, default=256, help="raw stream bytes per raw phase (default 256)"
    )
    parser.add_argument("--dense", action="store_true", help="every byte random (disk-heavy)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="give up (exit 1) if a fetch takes longer (default: 120 s + 1 s per 5 MiB of the round)",
    )
    parser.add_argument(
        "--settings", default="{}", help="BlobSettings overrides as JSON, e.g. '{\"window_chunks\": 32}'"
    )
    parser.add_argument(
        "--profile", help="cProfile the fetching node's raw phases and fetches into DIR/{raw,fetch}.prof"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--input", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args)
        return 0
    if args.size_mib < 1 or args.raw_mib < 1:
        parser.error("--size-mib and --raw-mib must be at least 1")
    args.round_bytes = round_sizes(args.size_mib, args.round_mib)
    if args.timeout_s is None:
        args.timeout_s = 120 + max(args.round_bytes) / MIB / 5

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dcent-bench-blob-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        inputs = [root / f"input-{index}" for index in range(len(args.round_bytes))]
        args.expected_sha256 = [
            generate_input(path, size, dense=args.dense, seed=args.seed + index)
            for index, (path, size) in enumerate(zip(inputs, args.round_bytes, strict=True))
        ]
        print(
            f"input: {args.size_mib} MiB ({'dense' if args.dense else 'sparse-friendly'}) in "
            f"{len(inputs)} blobs, generated in {time.perf_counter() - started:.1f} s"
        )
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--home", str(root / "server"), "--input"]
            + [str(path) for path in inputs]
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
                    [parse_content_id(cid) for cid in ready["cids"]],
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
    exports_ok = figures["exports_ok"]
    assert isinstance(exports_ok, list)
    if not all(exports_ok):
        bad = [index + 1 for index, ok in enumerate(exports_ok) if not ok]
        print(f"FAILED: the exports of blobs {bad} differ from their inputs", file=sys.stderr)
        return 1
    report(args, ready, figures, load_before)
    return 0


def report(
    args: argparse.Namespace, ready: dict[str, object], figures: dict[str, object], load_before: float
) -> None:
    raw, fetch = figures["raw"], figures["fetch"]
    assert isinstance(raw, PhaseTotals) and isinstance(fetch, PhaseTotals)
    rss_base, rss_peak = float(figures["rss_base"]), float(figures["rss_peak"])  # type: ignore[arg-type]
    put_s = float(ready["put_s"])  # type: ignore[arg-type]
    load_after = os.getloadavg()[0]
    ratio = fetch.mb_per_s / raw.mb_per_s
    # Each fetch against the raw phases either side of it: the spread the machine gave the run.
    round_ratios = [
        rate / ((raw.rates[index] + raw.rates[index + 1]) / 2) for index, rate in enumerate(fetch.rates)
    ]
    loop_busy = {"raw": raw.cpu_loop / raw.seconds, "blob": fetch.cpu_loop / fetch.seconds}
    size = fetch.bytes
    print(f"put on the serving node: {put_s:.1f} s ({size / put_s / 1e6:.0f} MB/s: hash + copy)")
    print(
        f"raw yamux stream: {raw.mb_per_s:.1f} MB/s over {len(raw.rates)} phases of {args.raw_mib} MiB "
        f"({min(raw.rates):.0f}-{max(raw.rates):.0f})"
    )
    print(
        f"blob fetch: {size // MIB} MiB in {len(fetch.rates)} fetches, {fetch.seconds:.2f} s = "
        f"{fetch.mb_per_s:.1f} MB/s, verified; ratio {ratio:.2f} (goal >= 0.7, >= 100 MB/s); "
        f"each fetch against the raw phases beside it: {min(round_ratios):.2f}-{max(round_ratios):.2f}"
    )
    print(
        "CPU seconds per GiB (fetching node / serving node): raw "
        f"{raw.per_gib(raw.cpu_fetcher):.2f} / {raw.per_gib(raw.cpu_server):.2f}, blob "
        f"{fetch.per_gib(fetch.cpu_fetcher):.2f} / {fetch.per_gib(fetch.cpu_server):.2f}; "
        f"the fetching node's trio thread alone: raw {raw.per_gib(raw.cpu_loop):.2f}, "
        f"blob {fetch.per_gib(fetch.cpu_loop):.2f} (on a CPU {loop_busy['raw']:.0%} / "
        f"{loop_busy['blob']:.0%} of the time)"
    )
    print(f"fetching node RSS: {rss_base:.0f} MB before, peak {rss_peak:.0f} MB during the fetches")
    # The machine's load: figures measured beside other work are not comparable with a quiet run.
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")
    print(
        json.dumps(
            {
                "bench": "blob",
                "size_mib": args.size_mib,
                "rounds": len(fetch.rates),
                "dense": args.dense,
                "mb_per_s": round(fetch.mb_per_s, 1),
                "raw_mb_per_s": round(raw.mb_per_s, 1),
                "ratio": round(ratio, 3),
                "round_ratios": [round(value, 3) for value in round_ratios],
                "raw_phase_mb_per_s": [round(value, 1) for value in raw.rates],
                "fetch_s": round(fetch.seconds, 3),
                "put_s": round(put_s, 3),
                "rss_mb_base": round(rss_base, 1),
                "rss_mb_peak": round(rss_peak, 1),
                "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
                "cpu_s_per_gib": {
                    "raw_fetcher": round(raw.per_gib(raw.cpu_fetcher), 2),
                    "raw_server": round(raw.per_gib(raw.cpu_server), 2),
                    "blob_fetcher": round(fetch.per_gib(fetch.cpu_fetcher), 2),
                    "blob_server": round(fetch.per_gib(fetch.cpu_server), 2),
                    "raw_fetcher_loop": round(raw.per_gib(raw.cpu_loop), 2),
                    "blob_fetcher_loop": round(fetch.per_gib(fetch.cpu_loop), 2),
                },
                "loop_busy": {kind: round(value, 2) for kind, value in loop_busy.items()},
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
