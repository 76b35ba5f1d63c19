"""The parts of a job spec (:mod:`protocol.market.jobspec`): its bounds and defaults, and the
records it is built from (environment variables, input files, inputs by reference, the GPUs it
needs, the limits it runs under), each validated when built."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath

from protocol.encoding import Record
from protocol.market.quantities import (
    fail,
)

MAX_GPUS = 64
MAX_NAME_LEN = 128
MAX_ARGV_ITEMS = 4096
MAX_ARGV_BYTES = 128 * 1024
MAX_ENV_VARS = 256
MAX_ENV_BYTES = 64 * 1024
MAX_INPUT_FILES = 256
MAX_INPUT_BYTES = 1024 * 1024
MAX_PATH_BYTES = 1024
MAX_PATTERN_LEN = 128
MAX_MEMORY_BYTES = 2**50
MAX_CUDA_VERSION = 999_990
MAX_RUNTIME_S = 30 * 86400
MAX_OUTPUT_LIMIT_BYTES = 2**30
#: Outputs returned as blobs may be far larger than inline ones: the disk limit bounds them.
MAX_BLOB_OUTPUT_LIMIT_BYTES = 2**40
#: Inputs by reference: how many, and how large all together (each is one blob, at most 1 TiB).
MAX_DATA_INPUTS = 64
MAX_DATA_BYTES = 2**40
MAX_URL_BYTES = 2048
CONTENT_ID_LEN = 32
SHA256_LEN = 32
#: Where an input by reference comes from.
SOURCE_BLOB = "blob"
SOURCE_URL = "url"
#: How outputs come back: inline in the delivery (small), or as blobs by content id.
OUTPUT_INLINE = "inline"
OUTPUT_BLOBS = "blobs"
OUTPUT_MODES = (OUTPUT_INLINE, OUTPUT_BLOBS)
DEFAULT_OUTPUT_LIMIT_BYTES = 64 * 2**20
# Resource limits: ranges and the defaults a spec without a [limits] table gets.
MIN_LIMIT_MEMORY_BYTES = 16 * 2**20
MAX_LIMIT_MEMORY_BYTES = 2**50
MIN_CPU_MILLICORES = 10
MAX_CPU_MILLICORES = 1024 * 1000
MIN_PROCESSES = 8
MAX_PROCESSES = 4 * 2**20
MIN_DISK_BYTES = 16 * 2**20
MAX_DISK_BYTES = 2**50
DEFAULT_LIMIT_MEMORY_BYTES = 4 * 2**30
DEFAULT_CPU_MILLICORES = 2000
DEFAULT_PROCESSES = 1024
DEFAULT_DISK_BYTES = 4 * 2**30
#: A spec file larger than this is refused before parsing (base64 inputs inflate by 4/3).
MAX_SPEC_TEXT_BYTES = 4 * 1024 * 1024

#: Executors that run a bare command, and those that run a container image.
COMMAND_EXECUTORS = frozenset({"bubblewrap", "subprocess"})
IMAGE_EXECUTORS = frozenset({"docker", "podman"})
#: Set by the sandbox from the GPUs sold; a job may not choose its own.
RESERVED_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})
#: The work-dir folder whose files come back as the job's outputs.
OUTPUT_DIR = "out"
FORMATS = ("toml", "json")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
# A registry reference: [host[:port]/]name[:tag][@digest]; never starts with '-', so it cannot be
# read as an option by a container engine's command line.
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")


def utf8_len(path: str, text: str) -> int:
    """Byte length of ``text`` in UTF-8; a lone surrogate (JSON can carry one) is an error."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise fail(path, "contains characters that are not valid UTF-8") from None


def check_range(path: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise fail(path, f"must be between {low} and {high}, got {value}")


def check_input_path(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that stays inside the work dir; raises :class:`JobSpecError`."""
    where = f"inputs[{path!r}]"
    if not path:
        raise fail(where, "a path must not be empty")
    if "\x00" in path or utf8_len(where, path) > MAX_PATH_BYTES:
        raise fail(where, f"a path must have no NUL byte and at most {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise fail(where, "a path must be relative to the work directory")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise fail(where, "a path must not contain empty, '.' or '..' components")
    if parts[0] == OUTPUT_DIR:
        raise fail(where, f"{OUTPUT_DIR}/ is reserved for the job's outputs")
    return PurePosixPath(path)


@dataclass(frozen=True, slots=True)
class EnvVar(Record):
    name: str
    value: str

    def __post_init__(self) -> None:
        if _ENV_NAME.fullmatch(self.name) is None:
            raise fail(f"env[{self.name!r}]", "not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if self.name in RESERVED_ENV:
            raise fail(f"env.{self.name}", "is set by the provider's sandbox from the GPUs sold")
        if "\x00" in self.value:
            raise fail(f"env.{self.name}", "must not contain a NUL byte")
        utf8_len(f"env.{self.name}", self.value)


@dataclass(frozen=True, slots=True)
class InputFile(Record):
    path: str
    content: bytes

    def __post_init__(self) -> None:
        check_input_path(self.path)


def _check_url(where: str, url: str) -> None:
    """An ``https://`` URL of printable ASCII with a host; no credentials in it."""
    if len(url) > MAX_URL_BYTES or not url.isascii() or not url.isprintable() or " " in url:
        raise fail(where, f"a URL is at most {MAX_URL_BYTES} printable ASCII characters without spaces")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise fail(where, f"not a URL: {url[:80]!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise fail(where, "only https:// URLs with a host are fetched")
    if parts.username is not None or parts.password is not None:
        raise fail(where, "a URL must not carry credentials (the provider would see them)")


@dataclass(frozen=True, slots=True)
class DataInput(Record):
    """One input by reference, mounted read-only at ``path`` in the work directory.

    ``source`` is ``"blob"`` (``content_id`` set, fetched from the network and verified chunk by
    chunk) or ``"url"`` (``url`` and ``sha256`` set, fetched by the provider and verified whole).
    ``size`` is declared so that a provider can price or refuse the transfer before it starts; a
    blob's content id binds its size, a URL's download stops at it.
    """

    path: str
    source: str
    content_id: bytes
    url: str
    sha256: bytes
    size: int

    def __post_init__(self) -> None:
        check_input_path(self.path)
        where = f"data[{self.path!r}]"
        check_range(f"{where}.size", self.size, 0, MAX_DATA_BYTES)
        if self.source == SOURCE_BLOB:
            if len(self.content_id) != CONTENT_ID_LEN or self.url or self.sha256:
                raise fail(where, "a blob input has a 32-byte content id and no url or sha256")
        elif self.source == SOURCE_URL:
            if self.content_id or len(self.sha256) != SHA256_LEN:
                raise fail(where, "a URL input has a 32-byte sha256 and no content id")
            _check_url(f"{where}.url", self.url)
        else:
            raise fail(f"{where}.source", f"{SOURCE_BLOB!r} or {SOURCE_URL!r}, not {self.source[:40]!r}")


@dataclass(frozen=True, slots=True)
class Resources(Record):
    """What each of the job's GPUs must offer. Zero (or ``""``) means "no requirement"."""

    gpu_count: int
    #: Free memory per GPU, in bytes.
    min_memory_bytes: int
    #: Case-insensitive glob (``fnmatch``) on the GPU's product name, e.g. ``"*H100*"``.
    model_pattern: str
    min_compute_capability_major: int
    min_compute_capability_minor: int
    #: NVML's form: 12040 is CUDA 12.4.
    min_cuda_version: int

    def __post_init__(self) -> None:
        check_range("resources.gpu_count", self.gpu_count, 1, MAX_GPUS)
        check_range("resources.min_memory_bytes", self.min_memory_bytes, 0, MAX_MEMORY_BYTES)
        if len(self.model_pattern) > MAX_PATTERN_LEN or not self.model_pattern.isprintable():
            raise fail("resources.model_pattern", f"at most {MAX_PATTERN_LEN} printable characters")
        utf8_len("resources.model_pattern", self.model_pattern)
        check_range("resources.min_compute_capability", self.min_compute_capability_major, 0, 255)
        check_range("resources.min_compute_capability", self.min_compute_capability_minor, 0, 255)
        check_range("resources.min_cuda_version", self.min_cuda_version, 0, MAX_CUDA_VERSION)

    @property
    def min_compute_capability(self) -> tuple[int, int]:
        return (self.min_compute_capability_major, self.min_compute_capability_minor)


@dataclass(frozen=True, slots=True)
class Limits(Record):
    """What the job's processes may use on the provider, all together; enforced by its kernel.

    ``memory_bytes``: resident memory (cgroup memory limit, no swap). ``cpu_millicores``: CPU
    time, 1000 = one core (CFS quota; reaching it slows the job down, nothing more).
    ``processes``: processes and threads (cgroup pids limit). ``disk_bytes``: the work
    directory, ``/tmp`` and ``out/`` together (a filesystem of that size).
    """

    memory_bytes: int = DEFAULT_LIMIT_MEMORY_BYTES
    cpu_millicores: int = DEFAULT_CPU_MILLICORES
    processes: int = DEFAULT_PROCESSES
    disk_bytes: int = DEFAULT_DISK_BYTES

    def __post_init__(self) -> None:
        check_range("limits.memory", self.memory_bytes, MIN_LIMIT_MEMORY_BYTES, MAX_LIMIT_MEMORY_BYTES)
        check_range("limits.cpu_cores", self.cpu_millicores, MIN_CPU_MILLICORES, MAX_CPU_MILLICORES)
        check_range("limits.processes", self.processes, MIN_PROCESSES, MAX_PROCESSES)
        check_range("limits.disk", self.disk_bytes, MIN_DISK_BYTES, MAX_DISK_BYTES)


DEFAULT_LIMITS = Limits()
