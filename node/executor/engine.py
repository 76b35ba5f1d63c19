"""Talking to the container engine's client: one command at a time, bounded, in an environment
that carries how to reach the engine and nothing of any job's; and loading image archives so
that a job runs the image its archive's content names (:mod:`node.executor.images`).

The engine's names are a shared store: loads, and the lookups of names the node trusts (the
operator's ``container_image``, tags where ``allow_local_image_names``), take one lock per engine
in this process (:func:`store_lock`), so no lookup sees a name in the middle of a load, and two
loads cannot pass each other's check and then move each other's names. A load is checked before
it runs (:func:`~node.executor.images.name_conflict` against a listing of the store), and again
after, on the engine's own answer: a name it moved is put back, one it added that it may not
have is removed, and the archive is refused (:class:`ImageArchiveTakesName`) either way.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from node.executor.base import DEFAULT_PATH
from node.executor.errors import (
    ImageArchiveInvalid,
    ImageArchiveTakesName,
    ImageNotAvailable,
    SandboxStartFailed,
)
from node.executor.images import (
    archive_images,
    id_reference,
    image_id_of,
    name_conflict,
    names_taken,
    select_image,
)

log = logging.getLogger(__name__)

ENGINE_CALL_TIMEOUT_S = 20.0
#: Loading an image archive copies its layers into the engine's store.
ARCHIVE_LOAD_TIMEOUT_S = 600.0
#: The most names one check puts back or removes after a load.
MAX_NAMES_PUT_BACK = 256

_STORE_LOCKS: dict[str, trio.Lock] = {}


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


def store_lock(engine_path: str) -> trio.Lock:
    """The lock of the engine's image store in this process (see the module's docstring)."""
    return _STORE_LOCKS.setdefault(engine_path, trio.Lock())


async def image_names(engine_path: str) -> dict[str, str] | None:
    """Every name in the engine's store -> the ID (64 hex) it names, or None if the engine does
    not answer. One ``image ls`` line per name (podman and docker alike); untagged images and
    lines that are not ``sha256:<ID> <name>:<tag>`` are left out."""
    listing = await engine_call(
        engine_path, "image", "ls", "--all", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"
    )
    if listing is None:
        return None
    names: dict[str, str] = {}
    for line in listing.decode(errors="replace").splitlines():
        image_id, _, name = line.strip().partition(" ")
        hex_id = image_id_of(image_id)
        if hex_id is not None and name and "<none>" not in name:
            names[name] = hex_id
    return names


async def resolve_name(engine_path: str | None, reference: str) -> str | None:
    """:func:`engine_image_id`, a name (not an ID) never looked up in the middle of a load."""
    if engine_path is None:
        return None
    if image_id_of(reference) is not None:
        return await engine_image_id(engine_path, reference)
    async with store_lock(engine_path):
        return await engine_image_id(engine_path, reference)


async def pinned_image(engine_path: str | None, pinned: dict[str, str], name: str) -> str:
    """The ID (``sha256:<hex>``) the operator's image ``name`` runs as: the one ``name`` named
    when first found, kept in ``pinned`` (name -> ID) for good: a tag moved later, by whatever
    means, changes nothing that runs. Raises :class:`ImageNotAvailable` when ``name`` was never
    found, or the image it was pinned to is gone."""
    pinned_id = pinned.get(name)
    if pinned_id is None:
        found = await resolve_name(engine_path, name)
        if found is None:
            raise ImageNotAvailable(f"this provider has no image {name!r} (executor.container_image)")
        pinned_id = pinned.setdefault(name, found)
    elif engine_path is None or await engine_image_id(engine_path, id_reference(pinned_id)) != pinned_id:
        raise ImageNotAvailable(
            f"the image {name!r} named when the node started ({pinned_id[:12]}) is gone: restart the "
            "node to run what the name names now"
        )
    return id_reference(pinned_id)


async def load_image_archive(
    engine_path: str, archive: Path, image: str, *, reserved: Mapping[str, str | None] | None = None
) -> str:
    """Load an image archive (``podman save`` / ``docker save``, or an OCI layout) and return
    the ID of the image in it that ``image`` (a tag or an ID) names: computed from the archive's
    config before the load, and found in the engine's store after it. An image the engine
    already holds by that ID is not loaded again (same ID: same config, same layers), so none of
    the archive's names is applied then. ``reserved``: the operator's own image names -> the ID
    pinned for each (:func:`~node.executor.images.name_conflict`).

    Raises :class:`ImageArchiveInvalid` when the archive is malformed, does not hold ``image``,
    does not load, or loads as another ID; :class:`ImageArchiveTakesName` when it would take, or
    took, a name it may not; :class:`SandboxStartFailed` when the engine's names cannot be listed
    (then nothing is loaded)."""
    reserved = reserved or {}
    images = await trio.to_thread.run_sync(archive_images, archive)
    wanted = select_image(images, image)
    async with store_lock(engine_path):
        if await engine_image_id(engine_path, id_reference(wanted)) == wanted:
            return wanted
        before = await image_names(engine_path)
        if before is None:
            raise SandboxStartFailed(
                "the engine did not list its images, so the archive's tags cannot be checked"
            )
        refusal = name_conflict(images, before, reserved)
        if refusal is not None:
            raise ImageArchiveTakesName(refusal)
        done = None
        try:
            with trio.move_on_after(ARCHIVE_LOAD_TIMEOUT_S):
                done = await trio.run_process(
                    [engine_path, "load", "--input", str(archive)],
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=client_environment(),
                )
        finally:
            with trio.CancelScope(shield=True):
                after = await image_names(engine_path)
                taken = None if after is None else await _put_names_back(engine_path, before, after, reserved)
        if after is None:
            raise SandboxStartFailed(
                "the engine did not list its images after a load: its tags are unchecked"
            )
        if taken is not None:
            raise ImageArchiveTakesName(taken)
        if done is None:
            raise ImageArchiveInvalid(f"loading the image archive took over {ARCHIVE_LOAD_TIMEOUT_S:g} s")
        if done.returncode != 0:
            raise ImageArchiveInvalid(f"the image archive does not load: {_load_failure(done.stderr)}")
        if await engine_image_id(engine_path, id_reference(wanted)) != wanted:
            raise ImageArchiveInvalid(
                f"the image archive loaded, but not as the image its config names ({wanted[:12]})"
            )
        return wanted


async def _put_names_back(
    engine_path: str, before: Mapping[str, str], after: Mapping[str, str], reserved: Mapping[str, str | None]
) -> str | None:
    """After a load: put back each name it moved and remove each it added that it may not have
    (:func:`~node.executor.images.names_taken`); what was undone, or None when nothing was."""
    moved, added = names_taken(before, after, reserved)
    if not moved and not added:
        return None
    log.error("an image archive's load moved %s and added %s: undoing it", sorted(moved), added)
    for name, old_id in sorted(moved.items())[:MAX_NAMES_PUT_BACK]:
        await engine_call(engine_path, "tag", id_reference(old_id), name)
    for name in added[:MAX_NAMES_PUT_BACK]:
        await engine_call(engine_path, "rmi", name)
    return (
        f"loading the image archive took names it may not ({', '.join([*moved, *added])[:300]}): "
        "put back. Tag the image with a name of your own, or none, and name it by ID"
    )


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
