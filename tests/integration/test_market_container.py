"""A container job through the market on two real nodes: the image travels as a ``podman save``
archive by content id (no registry), the provider loads it with ``podman load`` and runs the job
in it under podman with the same limits, outcome classes and data by reference.

Skips only outside CI where podman is missing or cannot run; under CI=true either fails
(`make deps` installs podman and runc).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from node.cli.main import main
from node.daemon import Node
from node.executor.images import id_reference
from node.executor.settings import ExecutorSettings
from node.market.errors import OutputsAreBlobs
from node.market.records import JobState
from node.market.requester import OUTPUT_LISTING_FILE
from protocol.market.errors import ImageTagNotTrusted, NoOffersLeft
from protocol.market.jobspec import JobSpec
from tests.integration.executor_helpers import podman_executor_or_skip
from tests.integration.market_helpers import until_state
from tests.integration.node_helpers import LocalNet, wait_until
from tests.integration.test_executor_container import LIMITS, _archive_only, _image_id, _image_tar, _tagged

PROVIDER, REQUESTER = 0, 1


@pytest.fixture(scope="module")
def base_image() -> str:
    """A tiny image built here (``podman import`` of the host's dash and coreutils)."""
    podman_executor_or_skip(LIMITS)  # what the provider's self-test needs enforced
    tar = _image_tar()
    tag = f"localhost/dcent-test-base:{hashlib.sha256(tar).hexdigest()[:12]}"
    if subprocess.run(["podman", "image", "exists", tag], check=False, timeout=60).returncode != 0:
        subprocess.run(
            ["podman", "import", "-q", "-", tag], input=tar, check=True, capture_output=True, timeout=300
        )
    return tag


def _podman(*args: str) -> None:
    subprocess.run(["podman", *args], check=True, capture_output=True, timeout=300)


@asynccontextmanager
async def podman_market(tmp_path: Path, base_image: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two validators on real sockets: a podman provider whose own image is ``base_image`` and a
    requester, yielded once the provider passed its self-test and announced (cancelled after)."""
    market: dict[int, dict[str, object]] = {
        PROVIDER: {"executor": "podman", "allow_unsandboxed": False, "simulated_gpus": "1xH100-80GB"},
        REQUESTER: {"sell_gpus": False},
    }
    executor = {PROVIDER: ExecutorSettings(container_image=base_image)}
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path / "net", validators=2, market=market, executor=executor)
            provider = await net.start(PROVIDER)
            requester = await net.start(REQUESTER)
            key = provider.validator_key.public_key.raw
            await wait_until(
                lambda: key in {a.provider for a in requester.capacity.entries()},  # type: ignore[union-attr]
                what="the podman provider passed its self-test and announced",
                timeout=120,
            )
            yield provider, requester
            nursery.cancel_scope.cancel()


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``dcent ...`` through ``node.cli.main.main`` in a worker thread: the real command code and
    RPC client, talking to the in-process node."""
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, [*argv, "--output", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_a_job_runs_in_a_container_loaded_from_an_archive_by_content_id(
    tmp_path: Path, base_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The job's image exists only as an archive: an image of its own (imported, saved, then
    # removed here), so the provider has to load it from the blob store to run the job.
    job_image = f"localhost/dcent-market-job:{uuid.uuid4().hex[:12]}"
    archive = tmp_path / "image.tar"
    subprocess.run(
        ["podman", "import", "-q", "-", job_image],
        input=_image_tar(job_image.encode()),
        check=True,
        capture_output=True,
        timeout=300,
    )
    job_image_id = _image_id(job_image)
    _podman("save", "--quiet", "--output", str(archive), job_image)
    _podman("rmi", "--force", job_image_id)
    assert subprocess.run(["podman", "image", "exists", job_image_id], check=False).returncode != 0
    data = tmp_path / "in.txt"
    data.write_bytes(b"data by reference\n")
    try:
        async with podman_market(tmp_path, base_image) as (provider, requester):
            assert requester.market is not None
            # `dcent job submit` puts the local archive and input into the requester's store
            # and sends the spec with their content ids.
            spec_file = tmp_path / "job.toml"
            spec_file.write_text(
                f'name = "container-from-archive"\nimage = "{job_image}"\n'
                f'image_archive = {{ file = "{archive}" }}\n'
                'argv = ["sh", "-c", "cat data/in.txt > out/copy.txt; id -u; echo in-container"]\n'
                'max_runtime_s = "60s"\nmax_price_per_gpu_second = "0.01 DCT"\noutput_mode = "blobs"\n'
                'output_limit_bytes = "1 MiB"\n[resources]\ngpu_count = 1\n'
                '[limits]\ndisk = "64 MiB"\nmemory = "256 MiB"\nprocesses = 64\n'
                f'[data]\n"data/in.txt" = {{ file = "{data}" }}\n'
            )
            home = str(requester.paths.root)
            code, out, err = await _cli(capsys, "job", "submit", str(spec_file), "--home", home)
            assert code == 0, err
            submitted = requester.market.get(json.loads(out)["job_id"])
            assert submitted.spec.image_archive_id and submitted.spec.data[0].size == data.stat().st_size
            done = await until_state(
                requester,
                submitted.job_id,
                JobState.SETTLED,
                JobState.FAILED,
                JobState.DISPUTED,
                timeout=240,
            )
            assert done.state is JobState.SETTLED, (done.error_code, done.error_message)
            assert done.receipt is not None and done.receipt.outcome == "completed"
            stdout, _, _ = await requester.market.logs(done.job_id)
            assert b"in-container" in stdout
            listing = json.loads(
                (requester.market.ctx.job_dir(done.job_id) / OUTPUT_LISTING_FILE).read_text()
            )
            [(path, size, cid)] = listing
            assert (path, size) == ("copy.txt", len(b"data by reference\n"))
            out = tmp_path / "copy.txt"
            await requester.blobs.export(bytes.fromhex(cid), out)
            assert out.read_bytes() == b"data by reference\n"
            # `dcent job output` writes the outputs, fetching from the provider what this node
            # lacks (here: the copy removed from its store), verified against the content id.
            await requester.blobs.remove(bytes.fromhex(cid))
            code, out, err = await _cli(
                capsys, "job", "output", done.job_id, "--out", str(tmp_path / "outputs"), "--home", home
            )
            assert code == 0, err
            assert (tmp_path / "outputs" / "copy.txt").read_bytes() == b"data by reference\n"
            assert requester.blobs.store.get(bytes.fromhex(cid)) is not None
            # Run again: what is there with its listed size is kept, nothing fetched.
            code, out, err = await _cli(
                capsys, "job", "output", done.job_id, "--out", str(tmp_path / "outputs"), "--home", home
            )
            assert code == 0 and json.loads(out)["outputs"][0]["kept"] is True, err
            # `job result` carries inline outputs only and says where blob outputs are.
            code, out, err = await _cli(capsys, "job", "result", done.job_id, "--home", home)
            assert code == 1 and str(OutputsAreBlobs.code) in err and "job output" in err
            # The provider loaded the archive into its engine's store (no registry was asked) as
            # a rewrite with no name, ran it as the ID its config names, and removed it after.
            gone = subprocess.run(["podman", "image", "exists", job_image_id], check=False, timeout=60)
            assert gone.returncode != 0
            # Its inputs and outputs were held for the job only: released once it settled.
            assert provider.blobs is not None
            await wait_until(lambda: provider.blobs.store.holds() == {}, what="the job's holds released")

            # A tag is no reason to trust an image: a job naming one only by a tag is refused
            # when it asks for a quote (4049), so no contract is made. By ID: the job's image
            # is no longer there (5318, refused before anything ran), the provider's own runs.
            def by(image: str) -> JobSpec:
                return JobSpec.from_document(
                    {
                        "image": image,
                        "argv": ["sh", "-c", "echo by-reference"],
                        "max_runtime_s": "60s",
                        "max_price_per_gpu_second": "0.01 DCT",
                        "resources": {"gpu_count": 1},
                        "limits": {"disk": "64 MiB", "memory": "256 MiB", "processes": 64},
                    }
                )

            ended = (JobState.SETTLED, JobState.FAILED, JobState.DISPUTED)
            by_tag = await until_state(
                requester, (await requester.market.submit(by(job_image))).job_id, *ended, timeout=240
            )
            assert (by_tag.state, by_tag.contract) == (JobState.FAILED, None)
            assert f"{ImageTagNotTrusted.code} " in by_tag.error_message
            by_gone = await until_state(
                requester,
                (await requester.market.submit(by(f"sha256:{job_image_id}"))).job_id,
                *ended,
                JobState.REFUNDED,
                timeout=240,
            )
            _, stderr, _ = await requester.market.logs(by_gone.job_id)
            assert b"the sandbox refused the job 5318: " in stderr, (by_gone.state, stderr)
            by_id = await until_state(
                requester,
                (await requester.market.submit(by(id_reference(_image_id(base_image))))).job_id,
                *ended,
                timeout=240,
            )
            assert by_id.receipt is not None and by_id.receipt.outcome == "completed", by_id.error_message
            stdout, _, _ = await requester.market.logs(by_id.job_id)
            assert stdout == b"by-reference\n"
    finally:
        subprocess.run(
            ["podman", "rmi", "--force", job_image_id], check=False, capture_output=True, timeout=60
        )


async def test_a_job_naming_its_image_only_by_a_tag_is_refused_before_any_quote_or_escrow(
    tmp_path: Path, base_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15's gap: a provider that runs images only by content used to quote and sign such a
    job, and the requester escrowed it, before the executor refused it at start (5322). Now the
    request for quote is refused (4049): `dcent job submit --wait` says why, no contract or escrow
    exists, and the provider recorded no job. The same image named by its ID is quoted and runs."""
    # The provider's store holds base_image by this tag (its own container_image): named by the
    # job, the tag is still refused, since any job's archive could have moved it.
    spec_file = tmp_path / "job.toml"
    spec_file.write_text(
        f'image = "{base_image}"\nargv = ["sh", "-c", "echo ran"]\nmax_runtime_s = "60s"\n'
        'max_price_per_gpu_second = "0.01 DCT"\n[resources]\ngpu_count = 1\n'
        '[limits]\ndisk = "64 MiB"\nmemory = "256 MiB"\nprocesses = 64\n'
    )
    async with podman_market(tmp_path, base_image) as (provider, requester):
        assert requester.market is not None and provider.market is not None
        home = str(requester.paths.root)
        capsys.readouterr()
        code = await trio.to_thread.run_sync(
            main, ["job", "submit", str(spec_file), "--wait", "--max-attempts", "1", "--home", home]
        )
        err = capsys.readouterr().err
        assert code == 1
        assert f"error {NoOffersLeft.code}: no provider agreed: {ImageTagNotTrusted.code} " in err, err
        assert "only by a tag" in err and "image_archive" in err and "sha256:" in err
        [refused] = requester.market.book.jobs.values()
        assert (refused.state, refused.error_code, refused.contract) == (
            JobState.FAILED,
            NoOffersLeft.code,
            None,
        )
        assert [state for state, _ in refused.history] == ["matching", "negotiating", "failed"]
        assert provider.market.book.jobs == {}  # nothing agreed, nothing to run
        assert requester.app is not None and len(requester.app.state.escrows) == 0  # none opened
        by_id = JobSpec.from_document(
            {**refused.spec.to_document(), "image": f"sha256:{_image_id(base_image)}"}
        )
        done = await until_state(
            requester,
            (await requester.market.submit(by_id)).job_id,
            JobState.SETTLED,
            JobState.FAILED,
            JobState.DISPUTED,
            timeout=240,
        )
        assert done.receipt is not None and done.receipt.outcome == "completed", done.error_message
        stdout, _, _ = await requester.market.logs(done.job_id)
        assert stdout == b"ran\n"


async def test_a_jobs_archive_tagged_as_the_providers_own_image_runs_by_id_and_moves_no_tag(
    tmp_path: Path, base_image: str
) -> None:
    """The attack (review of issue 15) through the market: a requester's archive whose manifest
    tags its image with the provider's ``container_image``. ``podman load`` of it would have moved
    the tag, and the provider's next self-test (or restart) would run the requester's image as its
    own. The provider loads a rewrite carrying no name: the job runs the requester's image by its
    ID, the provider's tag still names the provider's image, which passes its self-test, and the
    requester's image is gone once the job has ended."""
    hostile_id, saved, _oci = _archive_only(b"market-hostile", "dcent-market-hostile", tmp_path)
    archive = _tagged(saved, tmp_path / "hostile.tar", [base_image])
    base_id = _image_id(base_image)
    spec_file = tmp_path / "job.toml"
    spec_file.write_text(
        f'image = "{base_image}"\nimage_archive = {{ file = "{archive}" }}\n'
        'argv = ["sh", "-c", "cat /etc/dcent-marker"]\nmax_runtime_s = "60s"\n'
        'max_price_per_gpu_second = "0.01 DCT"\n'
        '[resources]\ngpu_count = 1\n[limits]\ndisk = "64 MiB"\nmemory = "256 MiB"\nprocesses = 64\n'
    )
    try:
        async with podman_market(tmp_path, base_image) as (provider, requester):
            assert requester.market is not None and provider.selftest is not None
            code = await trio.to_thread.run_sync(
                main, ["job", "submit", str(spec_file), "--home", str(requester.paths.root)]
            )
            assert code == 0
            [submitted] = requester.market.book.jobs.values()
            done = await until_state(
                requester,
                submitted.job_id,
                JobState.SETTLED,
                JobState.FAILED,
                JobState.DISPUTED,
                JobState.REFUNDED,
                timeout=240,
            )
            stdout, stderr, _ = await requester.market.logs(done.job_id)
            assert done.state is JobState.SETTLED and stdout == b"market-hostile", (done.state, stderr)
            assert _image_id(base_image) == base_id  # the provider's tag did not move
            gone = subprocess.run(["podman", "image", "exists", hostile_id], check=False, timeout=60)
            assert gone.returncode != 0  # removed after its job
            report = await provider.selftest.check()
            assert report.ok, report.summary()
    finally:
        subprocess.run(["podman", "rmi", "--force", hostile_id], check=False, capture_output=True, timeout=60)
