"""Executor errors: one class per failure, each with a stable numeric code (5300-5399).

Split by whose fault it is, so the market can decide who pays:

    5310-5349  :class:`JobInputError`: the job spec or its inputs are bad (the requester's fault).
               Raised before anything runs; nothing was created on disk.
    5350-5399  :class:`SandboxUnavailable`: we cannot provide the sandbox we advertised (ours):
               a missing tool, a refused configuration, a sandbox that failed to start.

A job that runs and fails (non-zero exit, a signal, a timeout) is not an error: it is recorded in
:class:`node.executor.model.ExecutionResult`.
"""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class ExecutorError(NodeError):
    """Root of every error ``node.executor`` raises."""

    code: ClassVar[int] = 5300


# --- the requester's fault ---------------------------------------------------------------------
class JobInputError(ExecutorError):
    """The job spec or one of its inputs is invalid: refused before anything ran."""

    code = 5310


class InvalidJobId(JobInputError):
    """A job id that is empty, too long, or has characters unsafe in a path or container name."""

    code = 5311


class InvalidArgv(JobInputError):
    """An empty command, an argument with a NUL byte, or a command line that is too long."""

    code = 5312


class InvalidEnvironment(JobInputError):
    """A bad variable name or value, or a variable the sandbox reserves (GPU selection)."""

    code = 5313


class UnsafeInputPath(JobInputError):
    """An input file path that is absolute, escapes with ``..``, or is not in normal form."""

    code = 5314


class InputPathConflict(JobInputError):
    """Two input paths that cannot both exist (``a`` as a file and ``a/b``), or one under ``out/``."""

    code = 5315


class InvalidLimits(JobInputError):
    """A timeout, grace period or output cap that is negative, zero where it must not be, or not finite."""

    code = 5316


class InvalidImage(JobInputError):
    """A container image reference that is malformed, missing where needed, or given where unsupported."""

    code = 5317


class ImageNotAvailable(JobInputError):
    """The job names a container image this provider does not have (images are never pulled at
    run time). Refused before anything runs; a provider checks this at quote time."""

    code = 5318


# --- our fault ---------------------------------------------------------------------------------
class InputUnavailable(JobInputError):
    """An input by reference (or the image archive) could not be had: no peer served its content
    id, the blob is not the size the spec declares, the URL did not answer. The requester's to
    serve: the job does not run and nothing is metered."""

    code = 5319


class InputHashMismatch(JobInputError):
    """A URL's content does not hash to the spec's ``sha256``: refused, the job does not run."""

    code = 5320


class ImageArchiveInvalid(JobInputError):
    """The image archive is malformed, does not hold the image the spec names, has a compressed
    layer or one whose digest is not the config's ``diff_id``, or does not load."""

    code = 5321


class ImageNameNotTrusted(JobInputError):
    """The job names its image only by a tag, and this provider runs images by ID: a tag in its
    store could be anyone's (``podman load`` moves tags). Send the image as an archive, or name it
    by ID (``sha256:<hex>``)."""

    code = 5322


# 5323 (ImageArchiveTakesName: an archive tagging an image with a name held on this provider) is
# retired: archives are loaded as a rewrite that carries no name, so none can be taken. Codes are
# stable: do not reuse it.


class SandboxUnavailable(ExecutorError):
    """We cannot run the job in the sandbox we advertised. The requester is not to blame."""

    code = 5350


class SandboxToolMissing(SandboxUnavailable):
    """The sandbox tool (bwrap, docker, podman) is not installed or does not answer."""

    code = 5351


class UnsandboxedNotAllowed(SandboxUnavailable):
    """The plain-subprocess executor was requested without the explicit development opt-in."""

    code = 5352


class UnknownExecutor(SandboxUnavailable):
    """An executor name that is not one of :data:`node.executor.select.EXECUTOR_NAMES`."""

    code = 5353


class SandboxStartFailed(SandboxUnavailable):
    """The sandbox could not be set up or its process could not be spawned."""

    code = 5354


class WorkspaceError(SandboxUnavailable):
    """The job's work directory could not be created or written."""

    code = 5355


class InvalidGpuBinding(SandboxUnavailable):
    """The GPUs handed to the sandbox are malformed, repeated, or their device nodes are missing."""

    code = 5356


class JobUnkillable(SandboxUnavailable):
    """A job's process did not exit even after SIGKILL (stuck in the kernel, e.g. in a GPU driver)."""

    code = 5357


class InvalidSandboxConfig(SandboxUnavailable):
    """The node's own executor settings are unusable (a relative or missing extra bind path)."""

    code = 5358


class LimitNotEnforceable(SandboxUnavailable):
    """The job asks for a resource limit this host cannot enforce: we must not have sold it."""

    code = 5359


class ConfinementFailed(SandboxUnavailable):
    """The job's cgroup or size-limited work directory could not be set up or torn down."""

    code = 5360


class GpuUnavailable(SandboxUnavailable):
    """The sold GPUs cannot be handed to this sandbox (no CDI spec names them, for podman)."""

    code = 5361


class SandboxBug(SandboxUnavailable):
    """Preparing or running a job failed in a way our code did not foresee (a bug, logged with its
    traceback): the job is the provider's error, and the node goes on serving its other jobs."""

    code = 5362
