"""Talking to the container engine's client: one command at a time, bounded, in an environment
that carries how to reach the engine and nothing of any job's; and loading image archives so
that a job runs the image its archive's content names (:mod:`node.executor.images`).

The engine never loads a requester's archive as it came: :func:`load_image_archive` loads a
rewrite of it that carries no name (:func:`~node.executor.images.rewrite_archive`), so a load
cannot move or add a name in the store. Loads, removals of job images, and the lookups of names
the node trusts (the operator's ``container_image``, tags where ``allow_local_image_names``)
take one lock per engine in this process (:func:`store_lock`), so a job image is never removed
between another job's finding it present and counting it as in use.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import trio

from node.executor.base import DEFAULT_PATH
from node.executor.errors import ImageArchiveInvalid, ImageNotAvailable
from node.executor.images import archive_images, id_reference, image_id_of, rewrite_archive, select_image

log = logging.getLogger(__name__)

ENGINE_CALL_TIMEOUT_S = 20.0
#: Loading an image archive copies its layers into the engine's store.
ARCHIVE_LOAD_TIMEOUT_S = 600.0

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
    engine_path: str, archive: Path, image: str, *, held: Callable[[str, bool], None] | None = None
) -> str:
    """Load the image ``image`` (a tag or an ID) of an image archive (``podman save`` /
    ``docker save``, or an OCI layout) and return its ID: computed from the archive's config, and
    found in the engine's store after the load. The engine loads a rewrite of the archive
    (:func:`~node.executor.images.rewrite_archive`, written beside it and removed after), which
    holds that image alone and no name, so the store gains no name. An image the engine already
    holds by that ID is not loaded again (same ID: same config, same layers). ``held(id,
    loaded)``: called under the store's lock once the image is there (``loaded``: by this call),
    so a caller counts it in use before any removal can run.

    Raises :class:`ImageArchiveInvalid` when the archive is malformed, does not hold ``image``,
    has a compressed layer or one its config does not name, does not load, or loads as another
    ID."""
    wanted = select_image(await trio.to_thread.run_sync(archive_images, archive), image).image_id
    async with store_lock(engine_path):
        if await engine_image_id(engine_path, id_reference(wanted)) == wanted:
            if held is not None:
                held(wanted, False)
            return wanted
    handle, name = await trio.to_thread.run_sync(
        lambda: tempfile.mkstemp(prefix=".dcent-load-", suffix=".tar", dir=archive.parent)
    )
    os.close(handle)
    rewrite = Path(name)
    try:
        rewritten = await trio.to_thread.run_sync(rewrite_archive, archive, image, rewrite)
        if rewritten != wanted:
            raise ImageArchiveInvalid("the image archive changed while it was read")
        async with store_lock(engine_path):
            loaded = await engine_image_id(engine_path, id_reference(wanted)) != wanted
            if loaded:
                await _load(engine_path, rewrite, wanted)
            if held is not None:
                held(wanted, loaded)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: rewrite.unlink(missing_ok=True))
    return wanted


async def _load(engine_path: str, rewrite: Path, wanted: str) -> None:
    done = None
    with trio.move_on_after(ARCHIVE_LOAD_TIMEOUT_S):
        done = await trio.run_process(
            [engine_path, "load", "--input", str(rewrite)],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=client_environment(),
        )
    if done is None:
        raise ImageArchiveInvalid(f"loading the image archive took over {ARCHIVE_LOAD_TIMEOUT_S:g} s")
    if done.returncode != 0:
        raise ImageArchiveInvalid(f"the image archive does not load: {_load_failure(done.stderr)}")
    if await engine_image_id(engine_path, id_reference(wanted)) != wanted:
        raise ImageArchiveInvalid(
            f"the image archive loaded, but not as the image its config names ({wanted[:12]})"
        )


class JobImages:
    """The images an executor loaded from jobs' archives, each removed by ID once no job counts on
    it: one count per load for a job not started yet (:meth:`hold`, taken under the store's lock
    so no removal runs between the engine's finding it present and the count), one per job
    running it (:meth:`start`); a job's end (:meth:`end`) drops its own and one pending load's.
    Only images this executor loaded are ever removed, never one in ``keep`` (the operator's)."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}  # ID -> [loads for jobs not started, jobs running]

    def hold(self, image_id: str, loaded: bool) -> None:
        """A load for a job returned ``image_id`` (``loaded``: by that load; else counted only if
        an earlier load of this executor brought it and it is still here)."""
        if loaded or image_id in self._counts:
            self._counts.setdefault(image_id, [0, 0])[0] += 1

    def start(self, image_id: str | None) -> str | None:
        """A job runs ``image_id``: the ID to pass to :meth:`end`, None when it is not counted."""
        if image_id is None or image_id not in self._counts:
            return None
        self._counts[image_id][1] += 1
        return image_id

    async def end(self, engine_path: str | None, image_id: str | None, *, keep: Iterable[str]) -> None:
        """A job ended whose :meth:`start` returned ``image_id``: at no count left, ``rmi <ID>``
        under the store's lock. A failed removal is logged, not raised."""
        if image_id is None or engine_path is None or image_id not in self._counts:
            return
        # The count drops under the store's lock, as loads take theirs: dropped before it, a load
        # of the same image queued behind the lock found it present but no longer counted, and
        # the removal then took it from under that load's job (review 39 F7).
        async with store_lock(engine_path):
            counts = self._counts.get(image_id)
            if counts is None:
                return
            counts[0], counts[1] = max(0, counts[0] - 1), counts[1] - 1
            if counts != [0, 0]:
                return
            del self._counts[image_id]
            if image_id in set(keep):
                return
            if await engine_call(engine_path, "rmi", id_reference(image_id)) is None:
                log.warning("could not remove the job image %s from the engine's store", image_id[:12])


#: An absolute path in an engine's message (the provider's own: not the requester's business).
_PATH = re.compile(r"(?<![\w.])/[^\s:;,'\"]*")


def _load_failure(stderr: bytes) -> str:
    """The reason in ``load``'s error, the provider's paths left out: podman tries every archive
    format and lists each one's failure; the docker-archive line is about the tar it was given."""
    lines = [line.strip(" *") for line in stderr.decode(errors="replace").strip().splitlines()]
    relevant = [line for line in lines if line.startswith("docker-archive:")]
    return _PATH.sub("<path>", "; ".join(relevant or lines[-1:] or ["no reason"]))[:500]


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
