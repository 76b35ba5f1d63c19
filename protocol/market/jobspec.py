"""Job specs: what a requester wants run, on which GPUs, for how long and at what price.

A :class:`JobSpec` is a :class:`~protocol.encoding.Record`, so it travels inside a request for
quote in canonical form, and :meth:`JobSpec.job_hash` (``sha256`` of that form) is what a
contract's ``job_hash`` names. It validates itself when built; every problem is a
:class:`~protocol.market.errors.JobSpecError` whose message starts with the path of the field,
e.g. ``resources.gpu_count: must be between 1 and 64``.

Spec files are TOML or JSON holding the same document (:meth:`JobSpec.from_text`)::

    name = "python-train"                  # optional label for people
    argv = ["python3", "-c", "..."]         # the command, run as is (no shell) in the work dir
    image = ""                              # a container image; then argv is optional
    max_runtime_s = "15m"                   # seconds, or "90s" / "15m" / "2h" / "1d"
    max_price_per_gpu_second = "0.002 DCT"  # base units as an integer, or an amount string
    output_limit_bytes = "16 MiB"           # bytes the job may write under out/ (default 64 MiB)

    [env]                                   # environment variables: strings only
    EPOCHS = "200"

    [inputs]                                # files placed in the work dir before the job starts
    "data/points.csv" = "x,y\\n1,2\\n"        # a string is stored as its UTF-8 bytes
    "data/blob.bin" = { base64 = "AAEC" }   # a table with the one key base64: binary content

    [data]                                  # large inputs by reference, mounted read-only
    "data/train.bin" = { cid = "<64 hex>", size = "200 MiB" }     # a blob: fetched by content id
    "data/weights.bin" = { url = "https://...", sha256 = "<64 hex>", size = "1 GiB" }
    # { file = "/abs/path" } is resolved by `dcent job submit` (put into the requester's blob store)

    [resources]
    gpu_count = 1                           # 1 to 64; a MIG unit counts as one GPU
    min_memory_bytes = "16 GiB"             # per GPU (default 0)
    model_pattern = "*H100*"                # case-insensitive glob on the GPU's name (default any)
    min_compute_capability = "8.0"          # default: any
    min_cuda_version = "12.4"               # or NVML's integer 12040 (default: any)

    [limits]                                # what the job's processes may use (defaults below)
    memory = "4 GiB"                        # RAM of all its processes together (cgroup memory)
    cpu_cores = "2"                         # CPU time, in cores: "0.5", 2, "1.25" (CFS quota)
    processes = 1024                        # processes and threads together (cgroup pids)
    disk = "4 GiB"                          # work dir, /tmp and outputs together

Inputs by reference (``[data]``) are fetched by the provider after the escrow is final: a content
id from the network (the requester's node first), verified chunk by chunk against it; a URL
(``https://`` only) verified against its SHA-256 before the job starts, refused on a mismatch.
Each is mounted read-only at its path; they do not count against ``limits.disk``. Their sizes are
declared (a content id binds its size, so a provider refuses a blob of another size before it
downloads it) and bounded: at most :data:`MAX_DATA_INPUTS` inputs, :data:`MAX_DATA_BYTES` in
all. ``image_archive`` names a ``podman save`` archive by content id; the provider loads it
(``podman load``, no registry) and runs ``image`` from it. ``output_mode = "blobs"`` returns the
outputs as blobs by content id (the receipt signs their listing: path, size, content id), which
the requester fetches and verifies before it countersigns; ``output_limit_bytes`` may then be up
to :data:`MAX_BLOB_OUTPUT_LIMIT_BYTES`, enforced by the disk limit.

The limits are enforced by the provider's kernel (see :class:`Limits`); a job that reaches one is
stopped and its outcome says which. ``disk`` must hold the inputs and ``output_limit_bytes``.

Input paths are relative, without ``.`` or ``..`` components, outside ``out/`` (where outputs
go), and at most 1 MiB in all. ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` are set by
the provider's sandbox from the GPUs sold, never by the job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from protocol.encoding import Record
from protocol.market.job_parts import (
    COMMAND_EXECUTORS as COMMAND_EXECUTORS,
)

# The parts, and the names callers have always imported from here.
from protocol.market.job_parts import (
    CONTENT_ID_LEN,
    DEFAULT_CPU_MILLICORES,
    DEFAULT_DISK_BYTES,
    DEFAULT_LIMIT_MEMORY_BYTES,
    DEFAULT_OUTPUT_LIMIT_BYTES,
    DEFAULT_PROCESSES,
    FORMATS,
    IMAGE_NAME,
    MAX_ARGV_BYTES,
    MAX_ARGV_ITEMS,
    MAX_DATA_BYTES,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    MAX_INPUT_FILES,
    MAX_NAME_LEN,
    MAX_RUNTIME_S,
    MAX_SPEC_TEXT_BYTES,
    OUTPUT_INLINE,
    OUTPUT_MODES,
    check_range,
    utf8_len,
)
from protocol.market.job_parts import (
    DEFAULT_LIMITS as DEFAULT_LIMITS,
)
from protocol.market.job_parts import (
    IMAGE_EXECUTORS as IMAGE_EXECUTORS,
)
from protocol.market.job_parts import (
    MAX_BLOB_OUTPUT_LIMIT_BYTES as MAX_BLOB_OUTPUT_LIMIT_BYTES,
)
from protocol.market.job_parts import (
    MAX_CPU_MILLICORES as MAX_CPU_MILLICORES,
)
from protocol.market.job_parts import (
    MAX_DATA_INPUTS as MAX_DATA_INPUTS,
)
from protocol.market.job_parts import (
    MAX_GPUS as MAX_GPUS,
)
from protocol.market.job_parts import (
    MAX_INPUT_BYTES as MAX_INPUT_BYTES,
)
from protocol.market.job_parts import (
    MAX_OUTPUT_LIMIT_BYTES as MAX_OUTPUT_LIMIT_BYTES,
)
from protocol.market.job_parts import (
    MAX_PROCESSES as MAX_PROCESSES,
)
from protocol.market.job_parts import (
    OUTPUT_BLOBS as OUTPUT_BLOBS,
)
from protocol.market.job_parts import (
    SOURCE_BLOB as SOURCE_BLOB,
)
from protocol.market.job_parts import (
    SOURCE_URL as SOURCE_URL,
)
from protocol.market.job_parts import (
    DataInput as DataInput,
)
from protocol.market.job_parts import (
    EnvVar as EnvVar,
)
from protocol.market.job_parts import (
    InputFile as InputFile,
)
from protocol.market.job_parts import (
    Limits as Limits,
)
from protocol.market.job_parts import (
    Resources as Resources,
)
from protocol.market.quantities import (
    INT63_MAX,
    fail,
    parse_compute_capability,
    parse_cuda_version,
    parse_duration,
    parse_size,
    plain_int,
)
from protocol.units import AmountError, parse_amount


@dataclass(frozen=True, slots=True)
class JobSpec(Record):
    """One job, validated when built. ``env`` and ``inputs`` are in ascending key order, so
    equal specs have equal canonical bytes and the same :meth:`job_hash`."""

    name: str
    argv: tuple[str, ...]
    image: str
    env: tuple[EnvVar, ...]
    inputs: tuple[InputFile, ...]
    resources: Resources
    max_runtime_s: int
    #: Base units per GPU-second.
    max_price_per_gpu_second: int
    output_limit_bytes: int
    limits: Limits = DEFAULT_LIMITS
    #: Inputs by reference, in ascending path order.
    data: tuple[DataInput, ...] = ()
    #: Content id of a ``podman save`` archive holding ``image`` (empty: the provider has it).
    image_archive_id: bytes = b""
    image_archive_size: int = 0
    #: :data:`OUTPUT_INLINE` or :data:`OUTPUT_BLOBS`.
    output_mode: str = OUTPUT_INLINE

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME_LEN or not self.name.isprintable():
            raise fail("name", f"at most {MAX_NAME_LEN} printable characters")
        utf8_len("name", self.name)
        self._check_command()
        self._check_env()
        self._check_inputs()
        check_range("max_runtime_s", self.max_runtime_s, 1, MAX_RUNTIME_S)
        check_range("max_price_per_gpu_second", self.max_price_per_gpu_second, 0, INT63_MAX)
        if self.max_price_per_gpu_second * self.max_gpu_seconds > INT63_MAX:
            raise fail(
                "max_price_per_gpu_second",
                "the job's maximum cost (price x gpu_count x max_runtime_s) exceeds 2^63-1 base units",
            )
        if self.output_mode not in OUTPUT_MODES:
            raise fail("output_mode", f"one of {', '.join(OUTPUT_MODES)}, not {self.output_mode[:40]!r}")
        most = MAX_BLOB_OUTPUT_LIMIT_BYTES if self.output_mode == OUTPUT_BLOBS else MAX_OUTPUT_LIMIT_BYTES
        check_range("output_limit_bytes", self.output_limit_bytes, 0, most)
        self._check_data()
        needed = self.output_limit_bytes + sum(len(item.content) for item in self.inputs)
        if self.limits.disk_bytes < needed:
            raise fail(
                "limits.disk",
                f"{self.limits.disk_bytes} bytes cannot hold the inputs and output_limit_bytes ({needed} bytes)",
            )

    def _check_command(self) -> None:
        if self.image and IMAGE_NAME.fullmatch(self.image) is None:
            raise fail("image", f"not a container image reference: {self.image!r:.80}")
        if not self.argv and not self.image:
            raise fail("argv", "a job needs a command (argv) or a container image")
        if len(self.argv) > MAX_ARGV_ITEMS:
            raise fail("argv", f"at most {MAX_ARGV_ITEMS} items, got {len(self.argv)}")
        total = 0
        for position, item in enumerate(self.argv):
            if "\x00" in item:
                raise fail(f"argv[{position}]", "must not contain a NUL byte")
            total += utf8_len(f"argv[{position}]", item) + 1
        if self.argv and not self.argv[0]:
            raise fail("argv[0]", "the command must not be empty")
        if total > MAX_ARGV_BYTES:
            raise fail("argv", f"at most {MAX_ARGV_BYTES} bytes in all, got {total}")

    def _check_env(self) -> None:
        if len(self.env) > MAX_ENV_VARS:
            raise fail("env", f"at most {MAX_ENV_VARS} variables, got {len(self.env)}")
        total = 0
        previous = ""
        for var in self.env:
            if previous and var.name <= previous:
                raise fail(f"env.{var.name}", "variables must be in ascending name order, each once")
            previous = var.name
            total += len(var.name) + len(var.value.encode("utf-8"))
        if total > MAX_ENV_BYTES:
            raise fail("env", f"at most {MAX_ENV_BYTES} bytes of names and values, got {total}")

    def _check_inputs(self) -> None:
        if len(self.inputs) > MAX_INPUT_FILES:
            raise fail("inputs", f"at most {MAX_INPUT_FILES} files, got {len(self.inputs)}")
        total = 0
        previous: str | None = None
        for item in self.inputs:
            # Byte order of the UTF-8 form equals code-point order of the str.
            if previous is not None and item.path <= previous:
                raise fail(f"inputs[{item.path!r}]", "files must be in ascending path order, each once")
            previous = item.path
            total += len(item.content)
        if total > MAX_INPUT_BYTES:
            raise fail("inputs", f"at most {MAX_INPUT_BYTES} bytes in all, got {total}")
        paths = {item.path for item in self.inputs}
        for item in self.inputs:
            for parent in PurePosixPath(item.path).parents:
                if str(parent) in paths:
                    raise fail(f"inputs[{item.path!r}]", f"{str(parent)!r} is a file, not a directory")

    def _check_data(self) -> None:
        if len(self.data) > MAX_DATA_INPUTS:
            raise fail("data", f"at most {MAX_DATA_INPUTS} inputs by reference, got {len(self.data)}")
        previous: str | None = None
        for item in self.data:
            if previous is not None and item.path <= previous:
                raise fail(f"data[{item.path!r}]", "inputs must be in ascending path order, each once")
            previous = item.path
        # Inline and referenced inputs share one tree: no path twice, none under another file.
        paths = {item.path for item in self.inputs}
        for item in self.data:
            if item.path in paths:
                raise fail(f"data[{item.path!r}]", "is also an inline input")
        paths |= {item.path for item in self.data}
        for item in self.data:
            for parent in PurePosixPath(item.path).parents:
                if str(parent) in paths:
                    raise fail(f"data[{item.path!r}]", f"{str(parent)!r} is a file, not a directory")
        for inline in self.inputs:
            for parent in PurePosixPath(inline.path).parents:
                if str(parent) in paths:
                    raise fail(f"inputs[{inline.path!r}]", f"{str(parent)!r} is a file, not a directory")
        if self.image_archive_id:
            if len(self.image_archive_id) != CONTENT_ID_LEN:
                raise fail("image_archive", "a content id is 32 bytes")
            if not self.image:
                raise fail("image_archive", "names the image to run from it: set image too")
        elif self.image_archive_size:
            raise fail("image_archive", "a size without a content id")
        check_range("image_archive.size", self.image_archive_size, 0, MAX_DATA_BYTES)
        if self.transfer_bytes > MAX_DATA_BYTES:
            raise fail(
                "data", f"at most {MAX_DATA_BYTES} bytes by reference in all, got {self.transfer_bytes}"
            )

    # --- derived values ----------------------------------------------------------------------
    @property
    def max_gpu_seconds(self) -> int:
        """The most GPU-seconds the job can use: what a contract for it caps."""
        return self.resources.gpu_count * self.max_runtime_s

    @property
    def max_cost(self) -> int:
        """Base units the requester locks in escrow at the maximum price."""
        return self.max_gpu_seconds * self.max_price_per_gpu_second

    @property
    def executors(self) -> frozenset[str]:
        """The executors that can run this job: container engines for an image, sandboxes otherwise."""
        return IMAGE_EXECUTORS if self.image else COMMAND_EXECUTORS

    @property
    def transfer_bytes(self) -> int:
        """Bytes the provider fetches before the job starts: inputs by reference, image archive."""
        return sum(item.size for item in self.data) + self.image_archive_size

    def env_map(self) -> dict[str, str]:
        return {var.name: var.value for var in self.env}

    def input_map(self) -> dict[str, bytes]:
        return {item.path: item.content for item in self.inputs}

    def job_hash(self) -> bytes:
        """``sha256`` of the canonical encoding: the ``job_hash`` of a contract for this job."""
        return hashlib.sha256(self.encode()).digest()

    # --- documents ---------------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, fmt: str) -> JobSpec:
        """Parse a TOML or JSON spec file's text. Raises :class:`JobSpecError` naming the field."""
        if fmt not in FORMATS:
            raise fail("(format)", f"one of {', '.join(FORMATS)}, not {fmt!r}")
        if len(text) > MAX_SPEC_TEXT_BYTES:
            raise fail(f"({fmt})", f"a spec file is at most {MAX_SPEC_TEXT_BYTES} bytes")
        try:
            doc = tomllib.loads(text) if fmt == "toml" else json.loads(text, object_pairs_hook=_unique_keys)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise fail(f"({fmt})", f"not valid {fmt.upper()}: {exc}") from None
        except RecursionError:
            raise fail(f"({fmt})", "nested too deeply") from None
        return cls.from_document(doc)

    @classmethod
    def from_document(cls, doc: object) -> JobSpec:
        """Build from a parsed TOML table or JSON object (an RPC's ``params``, say)."""
        if not isinstance(doc, Mapping):
            raise fail("(document)", "a job spec is a table / JSON object")
        _reject_unknown(doc, _TOP_LEVEL_KEYS, "")
        argv = doc.get("argv", [])
        if not isinstance(argv, list) or not all(isinstance(item, str) for item in argv):
            raise fail("argv", "must be a list of strings")
        image = doc.get("image", "")
        if not isinstance(image, str):
            raise fail("image", "must be a string")
        name = doc.get("name", "")
        if not isinstance(name, str):
            raise fail("name", "must be a string")
        output_mode = doc.get("output_mode", OUTPUT_INLINE)
        if not isinstance(output_mode, str):
            raise fail("output_mode", f"one of {', '.join(OUTPUT_MODES)}")
        archive_id, archive_size = _archive_from(doc.get("image_archive"))
        for required in ("resources", "max_runtime_s", "max_price_per_gpu_second"):
            if required not in doc:
                raise fail(required, "is required")
        return cls(
            name=name,
            argv=tuple(argv),
            image=image,
            env=_env_from(doc.get("env", {})),
            inputs=_inputs_from(doc.get("inputs", {})),
            resources=_resources_from(doc["resources"]),
            max_runtime_s=parse_duration(doc["max_runtime_s"], "max_runtime_s"),
            max_price_per_gpu_second=_price_from(doc["max_price_per_gpu_second"]),
            output_limit_bytes=parse_size(
                doc.get("output_limit_bytes", DEFAULT_OUTPUT_LIMIT_BYTES), "output_limit_bytes"
            ),
            limits=_limits_from(doc.get("limits", {})),
            data=_data_from(doc.get("data", {})),
            image_archive_id=archive_id,
            image_archive_size=archive_size,
            output_mode=output_mode,
        )

    def to_document(self) -> dict[str, object]:
        """A JSON-ready document that :meth:`from_document` reads back to an equal spec."""
        inputs: dict[str, object] = {}
        for item in self.inputs:
            try:
                inputs[item.path] = item.content.decode("utf-8")
            except UnicodeDecodeError:
                inputs[item.path] = {"base64": base64.b64encode(item.content).decode("ascii")}
        resources = self.resources
        major, minor = resources.min_compute_capability
        return {
            "name": self.name,
            "argv": list(self.argv),
            "image": self.image,
            "env": self.env_map(),
            "inputs": inputs,
            "resources": {
                "gpu_count": resources.gpu_count,
                "min_memory_bytes": resources.min_memory_bytes,
                "model_pattern": resources.model_pattern,
                "min_compute_capability": f"{major}.{minor}" if (major, minor) != (0, 0) else "",
                "min_cuda_version": resources.min_cuda_version,
            },
            "max_runtime_s": self.max_runtime_s,
            "max_price_per_gpu_second": self.max_price_per_gpu_second,
            "output_limit_bytes": self.output_limit_bytes,
            "limits": {
                "memory": self.limits.memory_bytes,
                "cpu_cores": format_cpu_cores(self.limits.cpu_millicores),
                "processes": self.limits.processes,
                "disk": self.limits.disk_bytes,
            },
            "data": {item.path: _data_document(item) for item in self.data},
            "image_archive": (
                {"cid": self.image_archive_id.hex(), "size": self.image_archive_size}
                if self.image_archive_id
                else {}
            ),
            "output_mode": self.output_mode,
        }


def _data_document(item: DataInput) -> dict[str, object]:
    if item.source == SOURCE_BLOB:
        return {"cid": item.content_id.hex(), "size": item.size}
    return {"url": item.url, "sha256": item.sha256.hex(), "size": item.size}


def format_of(filename: str) -> str:
    """The spec format a file name implies: ``"toml"`` or ``"json"``. Raises :class:`JobSpecError`."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise fail("(format)", f"a job spec file ends in .toml or .json: {filename!r}")


# --- document parsing ------------------------------------------------------------------------
_TOP_LEVEL_KEYS = (
    "name",
    "argv",
    "image",
    "env",
    "inputs",
    "resources",
    "max_runtime_s",
    "max_price_per_gpu_second",
    "output_limit_bytes",
    "limits",
    "data",
    "image_archive",
    "output_mode",
)
_LIMIT_KEYS = ("memory", "cpu_cores", "processes", "disk")
_RESOURCE_KEYS = (
    "gpu_count",
    "min_memory_bytes",
    "model_pattern",
    "min_compute_capability",
    "min_cuda_version",
)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """JSON objects with a repeated key are refused (json.loads would keep the last silently)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise fail("(json)", f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _reject_unknown(doc: Mapping[object, object], known: tuple[str, ...], prefix: str) -> None:
    for key in doc:
        if key not in known:
            raise fail(f"{prefix}{key}", f"unknown field; expected one of {', '.join(known)}")


def _env_from(value: object) -> tuple[EnvVar, ...]:
    if not isinstance(value, Mapping):
        raise fail("env", 'must be a table of NAME = "value" strings')
    variables = []
    for name in sorted(value, key=str):
        text = value[name]
        if not isinstance(text, str):
            raise fail(f"env.{name}", 'must be a string (quote numbers: "42")')
        variables.append(EnvVar(str(name), text))
    return tuple(variables)


def _inputs_from(value: object) -> tuple[InputFile, ...]:
    if not isinstance(value, Mapping):
        raise fail("inputs", 'must be a table of "path" = content')
    files = []
    for path in sorted(value, key=str):
        where = f"inputs[{path!r}]"
        content = value[path]
        if isinstance(content, str):
            utf8_len(where, content)
            data = content.encode("utf-8")
        elif (
            isinstance(content, Mapping) and set(content) == {"base64"} and isinstance(content["base64"], str)
        ):
            try:
                data = base64.b64decode(content["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise fail(where, "base64 content is not valid base64") from None
        else:
            raise fail(where, 'content is a string (UTF-8 text) or { base64 = "..." }')
        files.append(InputFile(str(path), data))
    return tuple(files)


#: A ``file`` entry names a path on the requester's machine: ``dcent job submit`` puts the file
#: into the requester's blob store and replaces the entry with its content id and size.
LOCAL_FILE_KEY = "file"


def _hex32(value: object, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise fail(where, "64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise fail(where, "64 hex digits") from None


def _data_from(value: object) -> tuple[DataInput, ...]:
    if not isinstance(value, Mapping):
        raise fail("data", 'must be a table of "path" = { cid = ..., size = ... } or { url, sha256, size }')
    items = []
    for path in sorted(value, key=str):
        where = f"data[{path!r}]"
        entry = value[path]
        if not isinstance(entry, Mapping):
            raise fail(where, "a table: { cid, size }, { url, sha256, size } or { file }")
        keys = set(entry)
        if keys == {LOCAL_FILE_KEY}:
            raise fail(
                where, "a local file is put into the blob store by `dcent job submit`, not sent as a path"
            )
        if "size" not in entry:
            raise fail(f"{where}.size", "is required")
        size = parse_size(entry["size"], f"{where}.size")
        if keys == {"cid", "size"}:
            items.append(
                DataInput(str(path), SOURCE_BLOB, _hex32(entry["cid"], f"{where}.cid"), "", b"", size)
            )
        elif keys == {"url", "sha256", "size"}:
            url = entry["url"]
            if not isinstance(url, str):
                raise fail(f"{where}.url", "must be a string")
            items.append(
                DataInput(str(path), SOURCE_URL, b"", url, _hex32(entry["sha256"], f"{where}.sha256"), size)
            )
        else:
            raise fail(where, "expected { cid, size }, { url, sha256, size } or { file }")
    return tuple(items)


def _archive_from(value: object) -> tuple[bytes, int]:
    if value is None or value == {}:
        return b"", 0
    if not isinstance(value, Mapping) or set(value) != {"cid", "size"}:
        if isinstance(value, Mapping) and set(value) == {LOCAL_FILE_KEY}:
            raise fail("image_archive", "a local file is put into the blob store by `dcent job submit`")
        raise fail("image_archive", "a table { cid, size } naming a `podman save` archive")
    return _hex32(value["cid"], "image_archive.cid"), parse_size(value["size"], "image_archive.size")


def _resources_from(value: object) -> Resources:
    if not isinstance(value, Mapping):
        raise fail("resources", "must be a table with at least gpu_count")
    _reject_unknown(value, _RESOURCE_KEYS, "resources.")
    if "gpu_count" not in value:
        raise fail("resources.gpu_count", "is required")
    pattern = value.get("model_pattern", "")
    if not isinstance(pattern, str):
        raise fail("resources.model_pattern", 'must be a string such as "*H100*"')
    major, minor = parse_compute_capability(
        value.get("min_compute_capability", ""), "resources.min_compute_capability"
    )
    return Resources(
        gpu_count=plain_int(value["gpu_count"], "resources.gpu_count"),
        min_memory_bytes=parse_size(value.get("min_memory_bytes", 0), "resources.min_memory_bytes"),
        model_pattern=pattern,
        min_compute_capability_major=major,
        min_compute_capability_minor=minor,
        min_cuda_version=parse_cuda_version(value.get("min_cuda_version", 0), "resources.min_cuda_version"),
    )


def _limits_from(value: object) -> Limits:
    if not isinstance(value, Mapping):
        raise fail("limits", 'must be a table such as { memory = "4 GiB", cpu_cores = 2 }')
    _reject_unknown(value, _LIMIT_KEYS, "limits.")
    return Limits(
        memory_bytes=parse_size(value.get("memory", DEFAULT_LIMIT_MEMORY_BYTES), "limits.memory"),
        cpu_millicores=(
            parse_cpu_cores(value["cpu_cores"], "limits.cpu_cores")
            if "cpu_cores" in value
            else DEFAULT_CPU_MILLICORES
        ),
        processes=plain_int(value.get("processes", DEFAULT_PROCESSES), "limits.processes"),
        disk_bytes=parse_size(value.get("disk", DEFAULT_DISK_BYTES), "limits.disk"),
    )


_CORES = re.compile(r"\s*(?P<whole>[0-9]{1,7})(?:\.(?P<fraction>[0-9]{1,3}))?\s*")


def parse_cpu_cores(value: object, path: str) -> int:
    """Millicores from an integer number of cores or a decimal string (``"1.5"``, at most 3
    decimals). Raises :class:`JobSpecError`."""
    if type(value) is int:
        if not 0 <= value <= MAX_CPU_MILLICORES // 1000:
            raise fail(path, f"must be between 0.01 and {MAX_CPU_MILLICORES // 1000} cores, got {value}")
        return value * 1000
    if type(value) is not str:
        raise fail(path, 'an integer number of cores or a string such as "1.5"')
    match = _CORES.fullmatch(value)
    if match is None:
        raise fail(path, f'not a number of cores: {value[:40]!r} (expected e.g. "1.5", at most 3 decimals)')
    fraction = (match["fraction"] or "").ljust(3, "0")
    return int(match["whole"]) * 1000 + int(fraction)


def format_cpu_cores(millicores: int) -> str:
    """``1500`` -> ``"1.5"``; what :func:`parse_cpu_cores` reads back to the same value."""
    whole, fraction = divmod(millicores, 1000)
    return f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") if fraction else str(whole)


def _price_from(value: object) -> int:
    if type(value) is int:
        return value
    if type(value) is not str:
        raise fail(
            "max_price_per_gpu_second",
            'an integer of base units or an amount such as "0.002 DCT"',
        )
    try:
        return parse_amount(value)
    except AmountError as exc:
        raise fail("max_price_per_gpu_second", exc.message) from None
