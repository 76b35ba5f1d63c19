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
  the config, which lists every layer's digest (checked by the engine as it loads), so it binds the
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

**An archive may not take a name** (``ImageArchiveTakesName`` 5323, the requester's). Attack (review
of issue 15): ``podman load`` applies whatever tags the archive carries, so a job's archive tagged
``localhost/dcent-job:latest``, the operator's ``container_image``, moved that tag to its own image:
the next self-test, restart, or job naming no image ran the requester's image with other
requesters' data, signed as the provider's work; the same for any tag an operator relies on
(``allow_local_image_names``, or the host's own podman use). Before a load the engine's names are
listed and each name the archive gives an image is compared with them on a key, not a string: its
last path component and tag (``images.name_key``), which every spelling an engine reads as one name
shares (``localhost/``, ``docker.io/library/``, none, upper-case registry) and every name a
short-name lookup could find instead (``train:1`` finds ``localhost/train:1``, then the search
registries', then any ``*/train:1``). A key held by another image, or by the operator's image
(present or not yet found), refuses the archive, nothing loaded. Names are read as the engine reads
them: OCI entries by buildkit's ``io.containerd.image.name`` before the OCI reference name, an
archive holding both an OCI layout and a docker manifest by both (podman loads the OCI layout
first); archives with two entries of one path (podman's two readers take different ones), a
document that is a link, a name that is not ``name[:tag]``, or over 64 names are
``ImageArchiveInvalid``. An OCI archive without names loads by ID only. Loads, and lookups of
trusted names, take one lock per engine in the process, so two jobs' loads cannot both pass the
check and then move each other's tags, and a pin never sees a load's middle. After the load the
store is listed again and judged on the engine's answer: a name it moved is put back, one it added
that it may not have is removed, and the archive is refused, so a name the reader did not foresee
is undone too. The cost: a requester resending a rebuilt image under a tag an earlier job left on
this provider must tag it anew, or not at all. What stays open: another process sharing the
engine's store can race a load (the second listing catches what it moved); a job trusting a tag
absent from the store is served by whoever's archive brings it first (the
``allow_local_image_names`` risk).

Archives are read with bounds (uncompressed tar, 10,000 entries, 64 images, 64 names, documents of
4 MiB, regular files only); a failure is ``ImageArchiveInvalid`` 5321. Tests:
``tests/integration/test_executor_images.py`` (no engine: archive reading, the name rule, a stand-in
engine whose load moves a name unforeseen), ``test_executor_container.py`` (a tag moved after the
load does not change what runs; tampered layers and configs refused; archives taking the operator's
name refused in four spellings while its pinned image runs; racing loads),
``test_market_container.py`` (the attack through the market: 5323 told to the requester).

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
| images run by ID; archive names checked on keys before and after a load; operator's image pinned | a job's archive moving or shadowing a tag, the operator's ``container_image`` above all |

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
