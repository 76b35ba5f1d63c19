"""Content-addressed blobs on the node: the store, the server, the fetcher, and the CLI's service.

Datasets, models and results move as **blobs** named by their content: a node fetches one by
content id from whichever peers have it, verifies every byte, and resumes a broken fetch where it
stopped. The market uses them for job inputs and outputs by reference ("Job data by reference");
small outputs still travel inline in the delivery frame.

**Content id** (``protocol/blobs/merkle.py``, pure). The blob is cut into ``chunk_size`` chunks (a
power of two, 64 KiB to 4 MiB; ``put`` uses 1 MiB), the leaves of an RFC 6962 Merkle tree
(``leaf = sha256(0x00 || chunk)``, ``node = sha256(0x01 || left || right)``); the id is the sha256 of
the manifest ``msgpack(["dcent/blob/v1", {chunk_size, root, size}])``, 64 hex digits. Every chunk is
checked against its leaf, the leaf list against the root, root and size against the id. The size
is inside the id, so whoever holds only an id knows how much is coming, and can refuse or price
it, before a byte arrives. RFC 9162 inclusion proofs check one chunk against a root (for receipts
that will sign an output's root).

**Protocol** ``/dcent/blob/1.0.0`` (``wire.py``): pipelined requests on one stream, answered in
order: ``have`` (the manifest), ``leaves`` (at most 8,192: a 256 KiB page), ``chunks`` (at most 16).
Each frame's maximum is named before it is read and body lengths come from the manifest, so
neither side buffers more than one chunk per stream. A refusal carries its 1340s code and the
client raises the same class.

**Fetcher**: asks ``have`` of the hinted peers (for a job input, the requester's node), then of
connected peers, at most 32, at once; takes the leaf list from one provider, folded into a root as
it arrives; then chunks from up to ``max_fetch_peers`` (4) providers at once, one pipelined stream
each, fed by a shared scheduler so a fast peer serves more. A chunk is verified before a byte of
it is written and its bit in the fetch's bitmap set only after the write; a checkpoint fsyncs the
data before the bitmap, so a crash loses at most a second of chunks and never claims one the disk
lacks. The finished file is fsynced and renamed into ``objects/``.

**Store** (``<home>/data/blobs``): an SQLite index and one file per blob plus its leaf list, in
``objects/`` only once complete and verified (an open drops files without rows and rows without
files); zero 64 KiB blocks stay holes. Over the size cap, before each put or fetch and on a
timer, blobs neither pinned nor held are evicted least recently used first; if even that
cannot make room, nothing is evicted and the new blob is ``StoreFull`` (6012).

**Holds.** The pin is the operator's; a job *holds* its blobs instead (a row of the ``holds``
table: job id, ``input`` while the job may run or ``output`` until its contract closes, cid). A held
blob is never evicted, whatever its pin. Bug (issue 15): the market pinned with the operator's
flag and remembered it in memory, so a provider stopped mid-job left inputs pinned forever, and a
job's unpin undid the operator's pin. Holds survive a restart; outputs are held in the step that
stores them; at most ``MAX_HOLDS`` (65,536), else ``TooManyHolds`` 6022. At start
``JobData.release_stale`` drops the holds of jobs no longer live. Outputs delivered before holds
existed stay pinned until ``dcent blob pin CID --unpin``. Tests: ``test_blob_store.py``,
``test_market_holds.py``, ``test_market_data.py``.

| mechanism | bound | attack or failure it answers |
|---|---|---|
| chunk, leaf list, root and size checked up to the id; 0x00 / 0x01 domain prefixes | SHA-256 | a peer poisoning a dataset or model with one altered byte; an inner node passed off as a leaf |
| size inside the id; manifest limits | 1 TiB, 2^20 chunks (leaf list at most 32 MiB) | a peer lying about the size to make us allocate a terabyte, or to truncate |
| a peer whose data does not verify is banned, its chunks in flight reassigned | ``ban_s`` 1 h, every fetch | a lying peer: nothing it sent is written |
| a stream that delivers nothing (a reply, or 16 KiB of a chunk), or resets, is a failure | ``stall_timeout_s`` 30 s, ``peer_retries`` 3 | a slow or vanishing peer (dropped from the fetch, not banned); an honest slow link is not dropped in the middle of a 4 MiB chunk |
| windows of chunks requested and not yet written | ``window_chunks`` 16, ``peer_window_chunks`` 8 | memory: a 2 GiB blob moves through about 16 MiB |
| concurrent fetches; RPC peer hints | ``max_concurrent_fetches`` 4 (``TooManyFetches``); 16 validated hints | a caller making the node hold unbounded windows |
| server stream caps | ``max_streams_per_peer`` 4, ``max_streams`` 64 (``BlobBusy``) | streams opened to pin our memory or descriptors |
| idle streams are dropped | ``idle_timeout_s`` 30 s | slowloris: no request, or no frame taken |
| frame limits named before each read | request and manifest 256 B | oversized or garbage frames (the stream is reset) |
| "use" for LRU is our own put, fetch or export; only those reserve space | ``max_bytes`` 50 GiB | peers steering which blob is evicted, or making us evict a pinned one |
| ``ProtectedPath`` (6021); exports never overwrite and re-verify | the node's keys, cookie, config | a put of the node key (anyone with the id could fetch it); an export over a file |
| ``LocalDiskError`` (6020) fails the fetch | | a full or failing disk taking down the node |

Errors: 1300-1399 for what peers send (1301-1319 malformed, 1320-1339 does not verify, 1340-1359
refusals, carried on the wire); 6000-6099 for the node (6010-6049 ours or the operator's,
6050-6099 the network's: ``NoProviders`` 6051, ``FetchFailed`` 6052, after which a new fetch resumes
from the verified chunks). Served as RPC ``blob_put/fetch/status/export/list/pin/remove/gc``
(fetches run in the background; ``blob_status`` follows them) and ``dcent blob ...``; the bounds are
``[blobs]`` in ``config.toml``. ``tests/integration/test_blob_transfer.py``: 2 GiB in bounded memory,
kill and resume, a broken connection, a lying peer, several providers. ``bench/blob.py``: fetches
between two node processes against raw yamux in the same run, interleaved in rounds (raw, fetch,
raw, ..., 256 MiB blobs; goal: ratio >= 0.7, >= 100 MB/s); it exits 1 on data loss (short bytes,
an export whose SHA-256 differs) and on a fetch past ``--timeout-s`` (default 120 s + 1 s per
5 MiB of a round), printing ``FAILED: ...`` and no JSON line.

The data path: fewer copies, one write per chunk, batched verification
----------------------------------------------------------------------

**Serving a chunk.** The server reads each chunk straight into the buffer it sends
(``BlobReader.read_chunk_frame``: four bytes of room for the frame's length prefix, then the chunk),
and sends it with ``Stream.send_frame_buffer``: one write to yamux, so one run of yamux frames and
Noise messages. Before, the body followed the prefix as a second write: an extra yamux frame, Noise
message and socket write for every chunk. The read only reads the file's data extents
(``read_sparse_into``: ``SEEK_DATA``/``SEEK_HOLE``, then ``preadv`` into the buffer); holes stay as the
buffer's zeros. Reading a hole makes the kernel allocate and zero a page per 4 KiB, which cost
about as much as the network per byte on sparse blobs. Exports read chunks the same way. The
bounds are unchanged: at most two chunks per stream in memory (one on the wire, one read ahead),
and a client that stops reading is dropped after ``idle_timeout_s``.

**Receiving a chunk.** ``Stream.receive_frame_pieces`` is ``receive_frame`` for bulk data: the body
comes back as the pieces the transport read it in, and the writer's worker thread joins each chunk
just before verifying it (a large ``bytes.join`` runs without the GIL). The fetching node's event
loop is the bottleneck of a fetch on loopback, and assembling each 1 MiB chunk there cost it a
zeroed allocation and a copy (~0.05-0.1 CPU-s per GiB of ~6, measured over a fake transport).
The length is checked against the limit before a byte of the body is read, as before. On inbound streams the body is still reserved from the frame
budget before it is read and must still arrive by its deadline.

**Verifying and writing in batches.** The fetcher's writer task takes every chunk that has
arrived (the channel holds at most ``peer_window_chunks`` of them) and passes the batch to the worker
thread in one call (``PartialBlob.verify_and_write_many``). So there is one thread hop per batch,
not one per chunk. The rules hold inside a batch. Each chunk is hashed against its leaf before any
of its bytes is written. The batch stops at the first chunk that fails. The chunks before that one
were verified and written, so they are marked (and checkpointed), and none is fetched again. The
failing chunk and the ones after it are not written, and they go back to the scheduler. A chunk
that does not verify bans the peer, and its chunks are fetched from other providers, as before. A
disk error stops the fetch without blaming the peer, and the chunks written before the error stay.
The memory bound does not change: a chunk counts against ``window_chunks`` from its request until
its write, and the channel and the batch hold only such chunks. The integration test
``test_chunks_requested_and_not_yet_written_never_exceed_the_window`` checks this under batching.
*Attacks:* a peer that hides one bad chunk among good ones in a run gets only the good ones before
it written, and is banned. It cannot get an unverified byte written, cannot make us lose or
re-fetch chunks that verified, and cannot make us hold more than the window.

**Requests carry runs.** A chunk request costs a request frame, a reply frame and a task group
on the server. The fetcher used to ask as soon as one unit of the peer window came back, and the
window came back one chunk at a time as chunks arrived, so in steady state every request was for
one chunk: 124 requests for 128 chunks. Now it waits for room for a whole run on that peer: the
run is ``min(request_chunks, peer_window_chunks // 2)``, 4 by default. That room comes back as the
peer's requested chunks arrive, so the wait is bounded. Half the peer window also means the next
request is always queued at the server while it serves the current one. From the fetch's shared
window the fetcher takes one unit, waiting if it must, and then as many more as are free at once,
so peers never deadlock by each holding part of the window. The windows are the same bounds as
before. ``test_requests_carry_runs_of_chunks_not_one_each`` checks this: 58 requests for 64 chunks
before the change, 16 now.

Where a fetch's time goes (loopback, two CPUs)
----------------------------------------------

The fetching node's event loop is the bottleneck (on a CPU ~90% of a fetch). Its CPU per GiB is
~1.0 s above the raw stream's (about 5.4 against 4.4). Experiments on the bench, one run each:

- The worker thread doing nothing (no hash, no write; not a fetch, a measurement): ~0.5 s above
  raw, ratio 0.89. So about half of the gap is the loop's own per-chunk work (framing, the
  channel, the writer task, a thread hop per batch), and half comes from the verifying work
  running beside it.
- The same work in a separate process, fed through shared memory (no GIL shared at all): the loop
  still ~1.0 s above raw, ratio 0.78. So that half is not GIL contention. It is the two CPUs
  being full (server ~3.6-4.2 s/GiB, the loop, hashing ~1 s/GiB), which slows every thread.
  A verifier process would cost a process per fetch and buy nothing here, so there is none.
- Hashing on the loop instead: ratio 0.65 (the loop is the bottleneck).

The server's chunk reads are not the cost: reading 1 GiB of chunk frames from a sparse blob
takes ~0.05 CPU-s whether or not the buffers are reused.
"""
