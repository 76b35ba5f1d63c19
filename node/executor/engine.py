"""Talking to the container engine's client: one command at a time, bounded, in an environment
that carries how to reach the engine and nothing of any job's; and loading image archives so
that a job runs the image its archive's content names (:mod:`node.executor.images`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import trio

from node.executor.base import DEFAULT_PATH
from node.executor.errors import ImageArchiveInvalid
from node.executor.images import archive_images, id_reference, image_id_of, select_image

ENGINE_CALL_TIMEOUT_S = 20.0
#: Loading an image archive copies its layers into the engine's store.
ARCHIVE_LOAD_TIMEOUT_S = 600.0


async def engine_call(engine_path: str, *args: str) -> bytes | None:
    """Run one engine command; its stdout, or None if it failed (often expected: already gone)."""
    with trio.move_on_after(ENGINE_CALL_TIMEOUT_S):
        try:
            done = await trio.run_process(
                [engine_path, *args],
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=client_environment(),
            )
        except OSError:
            return None
        return done.stdout if done.returncode == 0 else None
    return None


async def engine_image_id(engine_path: str, reference: str) -> str | None:
    """The ID (64 hex) of the image ``reference`` (a name or ``sha256:<id>``) names in the
    engine's store now, or None when it has none."""
    found = await engine_call(engine_path, "image", "inspect", "--format", "{{.Id}}", reference)
    return image_id_of(found.decode(errors="replace").strip()) if found else None


async def load_image_archive(engine_path: str, archive: Path, image: str) -> str:
    """Load an image archive (``podman save`` / ``docker save``, or an OCI layout) and return
    the ID of the image in it that ``image`` (a tag or an ID) names: computed from the archive's
    config before the load, and found in the engine's store after it. An image the engine
    already holds by that ID is not loaded again (same ID: same config, same layers).

    Raises :class:`ImageArchiveInvalid` when the archive is malformed, does not hold ``image``,
    does not load, or loads as another ID."""
    images = await trio.to_thread.run_sync(archive_images, archive)
    wanted = select_image(images, image)
    if await engine_image_id(engine_path, id_reference(wanted)) == wanted:
        return wanted
    with trio.move_on_after(ARCHIVE_LOAD_TIMEOUT_S):
        done = await trio.run_process(
            [engine_path, "load", "--input", str(archive)],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=client_environment(),
        )
        if done.returncode != 0:
            raise ImageArchiveInvalid(f"the image archive does not load: {_load_failure(done.stderr)}")
        if await engine_image_id(engine_path, id_reference(wanted)) != wanted:
            raise ImageArchiveInvalid(
                f"the image archive loaded, but not as the image its config names ({wanted[:12]})"
            )
        return wanted
    raise ImageArchiveInvalid(f"loading the image archive took over {ARCHIVE_LOAD_TIMEOUT_S:g} s")


def _load_failure(stderr: bytes) -> str:
    """The reason in ``load``'s error: podman tries every archive format and lists each one's
    failure; the tar formats' lines are the ones that say what is wrong with a tar."""
    lines = [line.strip(" *") for line in stderr.decode(errors="replace").strip().splitlines()]
    relevant = [line for line in lines if line.startswith(("docker-archive:", "oci-archive:"))]
    return "; ".join(relevant or lines[-1:] or ["no reason"])[:500]


def client_environment() -> dict[str, str]:
    """The engine client's environment: how to reach the engine, nothing of the job's."""
    env = {"PATH": DEFAULT_PATH}
    passthrough: Sequence[str] = (
        "HOME",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_CONTEXT",
        "CONTAINER_HOST",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
    )
    for name in passthrough:
        if name in os.environ:
            env[name] = os.environ[name]
    return env
