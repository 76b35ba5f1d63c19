"""Job specs: the example files parse and run, every bad field is named, the hash is canonical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.encoding import DecodeError, encode
from protocol.market.errors import JobSpecError
from protocol.market.jobspec import (
    COMMAND_EXECUTORS,
    IMAGE_EXECUTORS,
    MAX_INPUT_BYTES,
    EnvVar,
    InputFile,
    JobSpec,
    format_of,
)
from tests.unit.market_builders import make_spec, spec_document

JOBS_DIR = Path(__file__).resolve().parents[2] / "configs" / "jobs"
EXAMPLES = ("hello-gpu.toml", "python-train.toml", "container.toml")


def load_example(name: str) -> JobSpec:
    path = JOBS_DIR / name
    return JobSpec.from_text(path.read_text(encoding="utf-8"), format_of(path.name))


# --- the examples -------------------------------------------------------------------------------


def test_every_example_in_configs_jobs_is_covered_and_parses() -> None:
    found = sorted(path.name for path in JOBS_DIR.iterdir() if path.suffix in (".toml", ".json"))
    assert found == sorted(EXAMPLES)
    for name in found:
        spec = load_example(name)
        assert spec.name
        assert len(spec.job_hash()) == 32


def test_hello_gpu_example() -> None:
    spec = load_example("hello-gpu.toml")
    assert spec.argv[:2] == ("sh", "-c")
    assert "nvidia-smi -L" in spec.argv[2]
    assert spec.image == ""
    assert spec.executors == COMMAND_EXECUTORS
    assert spec.resources.gpu_count == 1
    assert spec.max_price_per_gpu_second == 2_000_000  # "0.002 DCT"
    assert spec.max_runtime_s == 60
    assert spec.output_limit_bytes == 2**20


def test_python_train_example_has_its_inputs_and_really_trains(tmp_path: Path) -> None:
    spec = load_example("python-train.toml")
    inputs = spec.input_map()
    assert set(inputs) == {"data/points.csv", "data/README"}
    assert inputs["data/README"] == b"points on the line y = 2x + 1, with noise\n"  # from base64
    assert spec.resources.min_memory_bytes == 4 * 2**30
    assert spec.resources.min_compute_capability == (7, 0)
    assert spec.max_runtime_s == 600

    # Run it as a sandbox would: the inputs in a fresh work dir, only the job's environment.
    for relative, content in inputs.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    env = {**spec.env_map(), "PATH": os.environ.get("PATH", os.defpath)}
    argv = [sys.executable if spec.argv[0] == "python3" else spec.argv[0], *spec.argv[1:]]
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    model = json.loads((tmp_path / "out" / "model.json").read_text())
    assert model["epochs"] == 2000
    assert abs(model["slope"] - 2.0) < 0.1
    assert abs(model["intercept"] - 1.0) < 0.3


def test_container_example() -> None:
    spec = load_example("container.toml")
    assert spec.image.startswith("docker.io/pytorch/pytorch:")
    assert spec.executors == IMAGE_EXECUTORS
    resources = spec.resources
    assert resources.gpu_count == 2
    assert resources.min_memory_bytes == 40 * 2**30
    assert resources.model_pattern == "*H100*"
    assert resources.min_compute_capability == (9, 0)
    assert resources.min_cuda_version == 12010
    assert spec.max_gpu_seconds == 2 * 900
    assert spec.max_cost == 2 * 900 * 5_000_000


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_round_trip_through_json_and_the_wire(name: str) -> None:
    spec = load_example(name)
    as_json = json.dumps(spec.to_document())
    again = JobSpec.from_text(as_json, "json")
    assert again == spec
    assert again.job_hash() == spec.job_hash()
    assert JobSpec.decode(spec.encode()) == spec


# --- inputs, env and canonical form ---------------------------------------------------------------


def test_inputs_text_and_base64_and_binary_round_trip() -> None:
    spec = JobSpec.from_text(
        """
        argv = ["cat", "a.txt"]
        max_runtime_s = 5
        max_price_per_gpu_second = 1
        [inputs]
        "a.txt" = "héllo"
        "bin/blob" = { base64 = "AP8Q" }
        [resources]
        gpu_count = 1
        """,
        "toml",
    )
    assert spec.input_map() == {"a.txt": "héllo".encode(), "bin/blob": b"\x00\xff\x10"}
    document = spec.to_document()
    assert document["inputs"] == {"a.txt": "héllo", "bin/blob": {"base64": "AP8Q"}}
    assert JobSpec.from_document(document) == spec


def test_env_order_in_the_file_does_not_change_the_hash() -> None:
    first = make_spec(env={"B": "2", "A": "1"})
    second = make_spec(env={"A": "1", "B": "2"})
    assert [var.name for var in first.env] == ["A", "B"]
    assert first.job_hash() == second.job_hash()


def test_any_field_change_changes_the_hash() -> None:
    base = make_spec()
    variants = [
        make_spec(name="other"),
        make_spec(argv=["python3", "-c", "print('bye')"]),
        make_spec(env={"X": "1"}),
        make_spec(inputs={"x": "1"}),
        make_spec(resources={"gpu_count": 2}),
        make_spec(max_runtime_s=601),
        make_spec(max_price_per_gpu_second=2_001),
        make_spec(output_limit_bytes=1),
    ]
    hashes = {spec.job_hash() for spec in variants}
    assert base.job_hash() not in hashes
    assert len(hashes) == len(variants)


def test_units_in_files() -> None:
    spec = make_spec(
        max_runtime_s="2h",
        output_limit_bytes="1.5 KiB",
        max_price_per_gpu_second="1500base",
        resources={"min_memory_bytes": "16 GB", "min_cuda_version": "12.4", "min_compute_capability": "8.6"},
    )
    assert spec.max_runtime_s == 7200
    assert spec.output_limit_bytes == 1536
    assert spec.max_price_per_gpu_second == 1500
    assert spec.resources.min_memory_bytes == 16 * 10**9
    assert spec.resources.min_cuda_version == 12040
    assert spec.resources.min_compute_capability == (8, 6)
    assert make_spec(resources={"min_cuda_version": 12040}).resources.min_cuda_version == 12040


def test_an_image_job_needs_no_argv_and_a_command_job_no_image() -> None:
    image_only = make_spec(argv=[], image="ghcr.io/acme/trainer:1.2@sha256:abcd")
    assert image_only.argv == ()
    assert image_only.executors == IMAGE_EXECUTORS
    assert make_spec().executors == COMMAND_EXECUTORS


def test_a_peer_cannot_send_a_non_canonical_spec() -> None:
    """Unsorted env on the wire is refused: two encodings of one job would have two hashes."""
    wire = make_spec(env={"A": "1", "B": "2"}).to_wire()
    wire["env"] = list(reversed(wire["env"]))  # type: ignore[call-overload]
    with pytest.raises(DecodeError, match=r"env\.A: variables must be in ascending name order"):
        JobSpec.decode(encode(wire))


# --- every bad field is named -------------------------------------------------------------------

BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("gpu_count zero", {"resources": {"gpu_count": 0}}, "resources.gpu_count: must be between 1 and 64"),
    ("gpu_count too many", {"resources": {"gpu_count": 65}}, "resources.gpu_count: must be between 1 and 64"),
    ("gpu_count text", {"resources": {"gpu_count": "two"}}, "resources.gpu_count: must be an integer"),
    ("gpu_count bool", {"resources": {"gpu_count": True}}, "resources.gpu_count: must be an integer"),
    ("gpu_count float", {"resources": {"gpu_count": 1.5}}, "resources.gpu_count: must be an integer"),
    ("resources typo", {"resources": {"gpu_cout": 1}}, "resources.gpu_cout: unknown field"),
    ("top-level typo", {"max_runtime": 5}, "max_runtime: unknown field"),
    (
        "memory unit",
        {"resources": {"min_memory_bytes": "16 gigs"}},
        "resources.min_memory_bytes: unknown unit",
    ),
    (
        "memory negative",
        {"resources": {"min_memory_bytes": -1}},
        "resources.min_memory_bytes: must be between",
    ),
    (
        "memory fraction",
        {"resources": {"min_memory_bytes": "1.5 B"}},
        "resources.min_memory_bytes: '1.5 B' is not",
    ),
    (
        "memory below precision",
        {"resources": {"min_memory_bytes": "1." + "0" * 30 + "1 GB"}},
        "resources.min_memory_bytes: '1.0000",
    ),
    ("memory digits", {"resources": {"min_memory_bytes": "9" * 41}}, "resources.min_memory_bytes: '999"),
    (
        "memory too large",
        {"resources": {"min_memory_bytes": "9000000 TiB"}},
        "resources.min_memory_bytes: '9000",
    ),
    ("pattern type", {"resources": {"model_pattern": 100}}, "resources.model_pattern: must be a string"),
    ("pattern control", {"resources": {"model_pattern": "H100\n"}}, "resources.model_pattern: at most 128"),
    ("cc text", {"resources": {"min_compute_capability": "nine"}}, "resources.min_compute_capability: not a"),
    ("cc number", {"resources": {"min_compute_capability": 9}}, "resources.min_compute_capability: must be"),
    (
        "cc range",
        {"resources": {"min_compute_capability": "999.0"}},
        "resources.min_compute_capability: must",
    ),
    (
        "cuda text",
        {"resources": {"min_cuda_version": "12"}},
        "resources.min_cuda_version: not a CUDA version",
    ),
    ("cuda range", {"resources": {"min_cuda_version": 10**7}}, "resources.min_cuda_version: must be between"),
    ("no command", {"argv": []}, "argv: a job needs a command (argv) or a container image"),
    ("argv type", {"argv": "python3 -c 1"}, "argv: must be a list of strings"),
    ("argv item", {"argv": ["ls", 3]}, "argv: must be a list of strings"),
    ("argv empty command", {"argv": ["", "x"]}, "argv[0]: the command must not be empty"),
    ("argv NUL", {"argv": ["ls", "a\x00b"]}, "argv[1]: must not contain a NUL byte"),
    ("argv too large", {"argv": ["x" * 70_000, "y" * 70_000]}, "argv: at most 131072 bytes"),
    ("image option", {"image": "--privileged"}, "image: not a container image reference"),
    ("image type", {"image": 5}, "image: must be a string"),
    ("name type", {"name": 5}, "name: must be a string"),
    ("name control", {"name": "a\nb"}, "name: at most 128 printable"),
    ("env table", {"env": ["A=1"]}, "env: must be a table"),
    ("env value", {"env": {"EPOCHS": 200}}, "env.EPOCHS: must be a string"),
    ("env name", {"env": {"1BAD": "x"}}, "env['1BAD']: not a valid variable name"),
    (
        "env reserved",
        {"env": {"CUDA_VISIBLE_DEVICES": "0"}},
        "env.CUDA_VISIBLE_DEVICES: is set by the provider",
    ),
    ("env NUL", {"env": {"A": "x\x00"}}, "env.A: must not contain a NUL byte"),
    ("env too large", {"env": {f"V{i}": "x" * 1000 for i in range(70)}}, "env: at most 65536 bytes"),
    ("input absolute", {"inputs": {"/etc/passwd": "x"}}, "inputs['/etc/passwd']: a path must be relative"),
    ("input escape", {"inputs": {"../x": "x"}}, "inputs['../x']: a path must not contain"),
    ("input dot", {"inputs": {"a/./b": "x"}}, "inputs['a/./b']: a path must not contain"),
    ("input empty part", {"inputs": {"a//b": "x"}}, "inputs['a//b']: a path must not contain"),
    ("input outputs", {"inputs": {"out/x": "x"}}, "inputs['out/x']: out/ is reserved"),
    ("input conflict", {"inputs": {"a": "1", "a/b": "2"}}, "inputs['a/b']: 'a' is a file, not a directory"),
    ("input content", {"inputs": {"a": 5}}, "inputs['a']: content is a string"),
    ("input base64", {"inputs": {"a": {"base64": "!!"}}}, "inputs['a']: base64 content is not valid"),
    ("input extra key", {"inputs": {"a": {"base64": "", "x": 1}}}, "inputs['a']: content is a string"),
    ("inputs too big", {"inputs": {"a": "x" * MAX_INPUT_BYTES, "b": "y"}}, "inputs: at most 1048576 bytes"),
    ("runtime zero", {"max_runtime_s": 0}, "max_runtime_s: must be between 1 and"),
    ("runtime unit", {"max_runtime_s": "10 parsecs"}, "max_runtime_s: unknown unit"),
    ("runtime float", {"max_runtime_s": 1.5}, "max_runtime_s: must be an integer or a string"),
    ("runtime long", {"max_runtime_s": "31d"}, "max_runtime_s: must be between 1 and 2592000"),
    (
        "price decimals",
        {"max_price_per_gpu_second": "0.0000000001 DCT"},
        "max_price_per_gpu_second: more than 9",
    ),
    ("price negative", {"max_price_per_gpu_second": -1}, "max_price_per_gpu_second: must be between 0"),
    ("price type", {"max_price_per_gpu_second": 0.5}, "max_price_per_gpu_second: an integer of base units"),
    (
        "price overflow",
        {"max_price_per_gpu_second": 2**62},
        "max_price_per_gpu_second: the job's maximum cost",
    ),
    ("output limit", {"output_limit_bytes": "2 GiB"}, "output_limit_bytes: must be between 0 and 1073741824"),
]


@pytest.mark.parametrize(("case", "overrides", "message"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_a_bad_field_is_refused_with_its_path(case: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        make_spec(**overrides)
    assert type(caught.value) is JobSpecError
    assert caught.value.code == 4010
    assert caught.value.message.startswith(message), caught.value.message


@pytest.mark.parametrize("missing", ["resources", "max_runtime_s", "max_price_per_gpu_second"])
def test_a_missing_required_field_is_named(missing: str) -> None:
    doc = spec_document()
    del doc[missing]
    with pytest.raises(JobSpecError, match=f"^{missing}: is required"):
        JobSpec.from_document(doc)


def test_missing_gpu_count_is_named() -> None:
    doc = spec_document()
    doc["resources"] = {"min_memory_bytes": 1}
    with pytest.raises(JobSpecError, match=r"^resources\.gpu_count: is required"):
        JobSpec.from_document(doc)


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("argv = [", "toml", "(toml): not valid TOML"),
        ("{", "json", "(json): not valid JSON"),
        ('{"argv": [], "argv": ["ls"]}', "json", "(json): key 'argv' appears twice"),
        ("[" * 100_000 + "]" * 100_000, "json", "(json): nested too deeply"),
        ("[]", "json", "(document): a job spec is a table"),
        ("argv = []", "yaml", "(format): one of toml, json"),
    ],
)
def test_unreadable_files_are_refused(text: str, fmt: str, message: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_text(text, fmt)
    assert caught.value.message.startswith(message), caught.value.message


def test_a_lone_surrogate_from_json_is_refused_with_its_path() -> None:
    doc = json.dumps(spec_document(argv=["ls", "\ud800"]))
    with pytest.raises(JobSpecError, match=r"^argv\[1\]: contains characters that are not valid UTF-8"):
        JobSpec.from_text(doc, "json")


def test_records_validate_when_built_directly() -> None:
    with pytest.raises(JobSpecError, match=r"^env\.CUDA_VISIBLE_DEVICES"):
        EnvVar("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(JobSpecError, match=r"^inputs\['/x'\]"):
        InputFile("/x", b"")


def test_format_of() -> None:
    assert format_of("jobs/a.TOML") == "toml"
    assert format_of("a.json") == "json"
    with pytest.raises(JobSpecError, match=r"^\(format\)"):
        format_of("job.yaml")


# --- arbitrary documents never crash the parser -----------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_field_values = st.fixed_dictionaries(
    {},
    optional={
        "name": _json_values,
        "argv": st.lists(st.text(max_size=8), max_size=3) | _json_values,
        "image": st.sampled_from(["", "alpine:3", "-x"]) | _json_values,
        "env": st.dictionaries(st.text(max_size=8), st.text(max_size=8) | _json_values, max_size=3),
        "inputs": st.dictionaries(st.text(max_size=8), st.text(max_size=8) | _json_values, max_size=3),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "gpu_count": st.integers(-2, 70) | _json_values,
                "min_memory_bytes": st.sampled_from(["1 GiB", "x"]) | _json_values,
                "min_compute_capability": st.sampled_from(["8.0", "", "x.y"]) | _json_values,
                "min_cuda_version": st.sampled_from(["12.4", 12040]) | _json_values,
                "model_pattern": _json_values,
            },
        )
        | _json_values,
        "max_runtime_s": st.integers(-5, 10**7) | st.sampled_from(["1h", "5x"]) | _json_values,
        "max_price_per_gpu_second": st.integers(-5, 2**64) | st.sampled_from(["0.1 DCT", "x"]) | _json_values,
        "output_limit_bytes": _json_values,
    },
)


@given(doc=_field_values)
def test_arbitrary_documents_give_a_spec_or_a_job_spec_error(doc: dict[str, Any]) -> None:
    try:
        spec = JobSpec.from_document(doc)
    except JobSpecError as exc:
        assert exc.code == 4010
        assert ": " in exc.message
    else:
        assert JobSpec.decode(spec.encode()) == spec
        assert JobSpec.from_document(spec.to_document()) == spec


@given(text=st.text(max_size=200), fmt=st.sampled_from(["toml", "json"]))
def test_arbitrary_text_gives_a_spec_or_a_job_spec_error(text: str, fmt: str) -> None:
    try:
        JobSpec.from_text(text, fmt)
    except JobSpecError as exc:
        assert exc.code == 4010
