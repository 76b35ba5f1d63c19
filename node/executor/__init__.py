"""Sandboxes that run jobs: bubblewrap (default), docker/podman, and a dev-only plain subprocess.

Four executors behind one protocol (``available()``, ``capabilities()``,
``async run(SandboxJob, on_output=...) -> ExecutionResult``): **bubblewrap** (default), **podman**
(and docker, same builder), and the development-only **subprocess**, refused unless
``market.allow_unsandboxed = true``. They share one lifecycle (``base.py``): limits checked against
what the host enforces, a fresh workspace on a filesystem of the job's disk limit, the job's
cgroup, the executor's launch, outputs collected, cgroup killed and removed, workspace unmounted
and removed. ``run_to_outcome`` raises only for the requester's bad input; every failure of ours
is a ``provider_error`` result. One probe of a sandbox tool (``probe_tool``: not installed, could not
run, or refused, with its words) and one check that the job entered its cgroup
(``check_confined``) serve every executor (``tests/unit/test_executor_probe.py``).

**Process lifetime** (``process.py``). A job lives until it exits, its timeout passes (then SIGTERM
to the whole job, a grace period, SIGKILL of the tree) or the node stops. Issue 13 found bubblewrap
jobs SIGKILLed about 10 s in: ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, which fires when the
parent *thread* exits, and ``trio.lowlevel.open_process`` spawned from a worker thread that trio
retires after 10 s idle. The job is now spawned from the trio thread itself and its exit awaited
on a pidfd. stdout/stderr are capped but drained past the cap; lines stream live to ``on_output``
through a bounded buffer (1,024 lines), and a stalled consumer loses counted lines, never stalls
the job.

**Outcome and metering** (``model.py``). Every run ends in one ``Outcome``: ``completed``, ``job_failed``,
``timed_out``, ``limit_exceeded`` (naming the limit) or ``provider_error`` (our error code, and whether
the job's process ever started). A limit the kernel enforced (OOM kill, fork refused at the pids
limit, full workspace, ``SIGXFSZ``) classifies the run whatever its exit status. Metering is integer
GPU-milliseconds on a monotonic clock, ``wall_ms`` rounded up and at least 1, so no run that held a
GPU is free; the receipt signs the outcome and ``gpu_ms``, and settlement pays by outcome (the
"Who pays for what" table under Escrow).

**Limits**, the job spec's ``[limits]`` (defaults: memory 4 GiB, 2 CPU cores, 1,024 processes,
4 GiB disk), are enforced by the kernel, never by watching:

- a **cgroup per job** (``cgroups.py``) under the node's own, ``<own>/dcent-jobs/<owner>/<job>-<rand>``
  (the operator's limits on the node bind its jobs; two nodes never touch each other's jobs):
  memory without swap (an OOM kills the whole job), ``pids.max``, the CFS quota (throttles, not a
  failure). v2 where a controller is on the unified hierarchy, v1 where it is on a v1 one (hybrid
  hosts, this project's machine among them). Under v2's no-internal-processes rule the node moves
  into a ``dcent-node`` leaf when alone in its cgroup, else reports memory and pids unenforceable;
- **disk**: the whole workspace (``/work``, ``/tmp``, ``/dev/shm``, ``out/``) is a loop-mounted ext4 image
  of exactly ``disk_bytes`` (``volume.py``: sparse, ``nosuid,nodev``, about 20 ms to make), or a tmpfs
  charged to the job's memory where there are no loop devices; ``RLIMIT_FSIZE`` stops any one file,
  sparse ones included, at the limit.

The job's first process is a wrapper run by the node's Python (``confine.py``): it joins the
cgroups, sets ``RLIMIT_FSIZE`` and ``PR_SET_PDEATHSIG``, restores default SIGPIPE/SIGXFSZ, reports
success on a close-on-exec pipe, then executes the sandbox. A host that cannot enforce a limit
says so: ``capabilities()`` lists the kinds enforced, why not the others (with the fix), and whether
jobs are sandboxed at all; a job asking for more is refused before anything runs
(``LimitNotEnforceable`` 5359). The **self-test** (``selftest.py``) runs a real tiny job under those
limits and names the cause of a failure: bubblewrap missing, a chroot (no user namespaces there),
``user.max_user_namespaces = 0``, ``kernel.unprivileged_userns_clone = 0``,
``kernel.apparmor_restrict_unprivileged_userns = 1``, podman's runtime refusing the host.

**bubblewrap**: ``--unshare-all`` (only a loopback of its own), ``--new-session``, always a user
namespace with ``--cap-drop ALL`` as uid 1000 (a root-run bwrap would leave the job real root, able
to remount the read-only binds), a read-only root assembled from ``/usr``, the ``/bin`` and ``/lib*``
links and a few ``/etc`` files with a synthesised passwd (never ``--ro-bind / /``, which shows the
node's home, keys, cookie and other jobs). Writable: the workspace's ``/work`` (cwd and HOME), ``/tmp``
and ``/dev/shm``, disk-backed on the job's volume. Only the sold GPUs' ``/dev/nvidiaN`` (plus
``nvidiactl``, ``nvidia-uvm``) are bound and ``CUDA_VISIBLE_DEVICES`` is theirs. Every option, the
environment included, reaches bwrap in a memfd (``--args FD``, then ``--clearenv``), so any
``/proc/<pid>/cmdline`` shows only ``bwrap --args 5 -- <argv>``.

**podman**: ``--pull never`` (a missing image is ``ImageNotAvailable`` 5318 before anything runs),
``--network none``, read-only root without unbounded tmpfs, ``--cap-drop ALL``, ``no-new-privileges``,
``--init``, the node's uid, the workspace volume at ``/work`` and ``/tmp``; rootful with cgroupfs, the
container runs under ``--cgroup-parent`` set to our limited cgroup, so the kernel's own counters
classify the run (podman's ``OOMKilled`` stayed false on cgroup v1), elsewhere the engine's flags;
``--ulimit fsize/nofile/nproc`` explicit, ``--runtime runc`` (crun refuses hybrid cgroup hosts); the
environment in a 0600 ``--env-file``; GPUs by CDI name ``nvidia.com/gpu=UUID`` (docker:
``--gpus "device=UUID"``); stopped through the engine by container name.

**Container images by ID** (``node/executor/images.py``, ``engine.py``). Attack (issue 15): `podman
load` moves a tag to whatever image the archive carries under it, so any requester could ship an
archive tagged ``localhost/train:1`` and a later job naming that tag would run its image, on the
victim's data, with the result signed as the victim's. So a job never runs by tag:

- **From an archive** (bound by content id in the contract): the provider reads the archive
  first (``podman save``/``docker save`` manifest, or an OCI layout). The image ID is the SHA-256 of
  the config, which lists every layer's digest (checked as the archive is rewritten), so it binds the
  whole image. The manifest must name the spec's ``image``; a config claiming another digest is
  refused; after the load the engine must hold exactly that ID, and the job runs ``sha256:<ID>``.
- **By ID** (``image = "sha256:<64 hex>"``): run if present, else ``ImageNotAvailable`` 5318.
- **By tag only**: refused unless ``[executor] allow_local_image_names``, then resolved to its ID
  once, at start. Refused when the provider is asked for a quote (``ImageTagNotTrusted`` 4049: no
  contract, no escrow), and by the executor at start should one reach it (``ImageNameNotTrusted``
  5322, the requester's: nothing metered); one rule for both,
  ``protocol.market.image_trust.image_refusal``, the setting passed to the quote's
  ``ProviderPolicy``.
- **None** (the operator's own ``container_image``): trusted by its tag, and **pinned**: resolved
  to its ID the first time the executor finds it (the self-test at start), and that ID is what
  every later self-test and job naming no image runs, whatever the tag names by then. An operator
  who moves the tag restarts the node; a pinned image that is gone is ``ImageNotAvailable``.

**An archive never names anything** (``images.rewrite_archive``). Attack (review of issue 15):
``podman load`` applies whatever tags an archive carries, so a job's archive tagged
``localhost/dcent-job:latest``, the operator's ``container_image``, moved that tag to its own image:
the next self-test, restart, or job naming no image ran the requester's image with other
requesters' data, signed as the provider's work. A first defence (compare the archive's names with
the store's before the load, undo what moved after) was broken by review 38: short-name aliases
(F1), tar headers Python and Go read differently (F2: PAX global headers, PAX path beside a GNU long
name, ``/index.json``), a capped undo (F3), the window while a load runs (F4), a remote engine
finishing a load after our timeout (F5), quadratic ``image ls`` listings (F6), squatted names
(F8), names leaked in errors (F9), a legitimate retag reverted and blamed (F10). Jobs run by ID, so
no archive name is needed: the provider parses the archive (bounded, as before), takes the one
image the spec names, and writes a new tar itself (plain USTAR entries: ``manifest.json`` with
``RepoTags: null``, the config as ``<ID>.json``, each layer as ``<diff_id>.tar``, copied byte for
byte, 16 KiB at a time), beside the archive, and the engine loads that, then it is deleted. The
engine never reads the requester's tar, so F2's tricks show it nothing; the load adds no name, so
nothing can move (F1, F3-F5, F10 gone), nothing is listed or undone (F6's listing, F8, the 5323
refusals and their leaks gone; ``ImageArchiveTakesName`` 5323 is retired). Layers must be
uncompressed tars (gzip, bzip2, xz, zstd magic refused, 5321: F7's decompression bomb; the store
grows by at most the archive's size, which the provider's transfer cap bounds) whose SHA-256 is the
config's ``diff_id`` (checked while copying: the ID binds every layer before the engine sees one).
``podman save``'s docker-archive qualifies; its ``oci-archive`` needs ``--uncompressed``. An image a
job's archive loaded is removed by ID (``rmi``) when the jobs counting on it end (``JobImages``:
one count per load, one per running job; never the operator's pinned image, never one the
executor did not load; a failed ``rmi`` is logged), so images no longer pile up (F6, F7) and a
requester's image is reachable by ID only while its job needs it (F14 narrowed). Loads, removals
and trusted-name lookups share one lock per engine in the process. Engine error texts reach the
requester with paths replaced (F9). What stays open: a short-ID ``container_image`` can be made
ambiguous by a loaded image (F12: configs should name a full ID or a name); the store is still the
host's, shared by every tenant while their jobs run (F14); a job naming by ID an image another
job's archive loaded, running wholly between that load and that job's start, takes its count and
the image is removed before the other job runs (it then fails 5318); an image whose job never
starts after its load (or a remote engine finishing a load after our timeout) stays until removed
by hand; ``docker save`` archives whose layers are links to another image's are refused (5321).

Archives are read with bounds (uncompressed tar, 10,000 entries, 64 images, 64 names, 256 layers,
documents of 4 MiB, regular files only); a failure is ``ImageArchiveInvalid`` 5321. Tests:
``tests/integration/test_executor_images.py`` (no engine: archive reading; the rewrite holds exactly
manifest, config and layers, no name, plain entries; a layer off its ``diff_id`` or compressed
refused; a PAX-header archive rewritten as this reader read it), ``test_executor_container.py``
(real podman: a tag moved after the load does not change what runs; tampered layers and configs
refused; archives tagged as the operator's image in four spellings load with no name, the
operator's tag unmoved, the job's image removed after its job; compressed layers refused with
nothing loaded; a PAX-header archive moves no name; racing archives under one tag both load
untagged), ``test_market_container.py`` (the attack through the market: the job runs the
requester's image by ID, the provider's tag and self-test unchanged, the image removed after).

| mechanism | attack or failure it answers |
|---|---|
| spawn from the trio thread; pidfd | honest long jobs killed by a retired worker thread |
| timeout, then SIGTERM/grace/SIGKILL of the whole tree or cgroup | a job that never exits, traps SIGTERM, or forks away |
| memory cgroup, no swap, OOM group | a job taking the host's memory (issue 13: 3.3 GiB) |
| pids limit | a fork bomb (issue 13: 1,494 processes) |
| workspace filesystem + ``RLIMIT_FSIZE`` | a job filling the provider's disk (issue 13: 1.75 GiB past a 1 MiB cap) |
| CFS quota | a job spinning every core |
| cgroup joined by the wrapper before exec | a fork escaping before the job is placed |
| close-on-exec success pipe | a job forging "the sandbox failed" to refund its requester and slash the provider |
| memfd ``--args``, ``--env-file`` | a requester's token read by any local user from ``/proc/*/cmdline`` |
| new pid namespace, assembled root | the job reading the node's home, keys or command line |
| capped, drained output; bounded live buffer | a job flooding stdout; a stalled log consumer |
| whole cgroup killed at the end; sweep of a dead node's mounts, cgroups, labelled containers | daemons left behind; leftovers of a ``kill -9``ed node |
| ``capabilities()``, ``LimitNotEnforceable``, self-test | a provider selling limits or a sandbox it cannot deliver |
| outputs: regular files only, whole, in path order, under the cap | symlinks to host secrets, FIFOs that block, truncated files |
| images run by ID; archives loaded as a rewrite with no name, plain layers bound to the config; job images removed after; operator's image pinned | a job's archive moving or shadowing a tag (the operator's ``container_image`` above all), a decompression bomb, images piling up |

``output_hash`` is sha256 over the listing of (path, size, sha256) of the outputs, which the usage
receipt signs. Errors: 5310-5349 the requester's (bad spec, inputs, image: refused before anything
ran), 5350-5399 ours (tool missing, sandbox failed to start, limit not enforceable, confinement
failed, GPU unavailable). Real-sandbox tests: ``tests/integration/test_executor_lifetime.py`` (a 20 s
job completes while the loop serves; no secret in any ``/proc/*/cmdline``), ``test_executor_limits.py``
(memory hog, fork bomb, disk filler, sparse file, CPU quota), ``test_executor_live.py``,
``test_executor_container.py``, ``test_executor_selftest.py``. ``make deps`` installs bubblewrap and
e2fsprogs.

The market uses all of it: the provider runs each job under its spec's ``[limits]``
(``ResourceLimits.from_spec``), sells only while the self-test passes, and offers the limits it
can enforce (see "Selling only through a sandbox that works" under the market).

Tests follow the host's sandbox: in-process test nodes (``tests/integration/node_helpers.py``) use
bubblewrap where its self-test passes, else the unsandboxed executor, as `testnet up --executor
auto`` does; ``test_node_rpc` pins bubblewrap and expects the node's own verdict either way. The
provider's policy follows the self-test, so a contract resumed after a restart runs under what the
node sells now.
"""
