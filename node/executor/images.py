"""Container images by ID: a job runs the image its archive's content names, never a tag.

A tag is a name the provider's image store maps to an image, and ``podman load`` moves a tag to
whatever image the loaded archive carries under it: any requester can make ``localhost/train:1``
mean its own image on a provider, for its own job and for every job after it that names the same
tag. So a container job never runs by name:

* **From an archive** (``image_archive``, a blob the contract binds by content id): the image ID
  is read from the archive itself before it is loaded. The ID podman and docker give an image is
  the SHA-256 of its config document, and the config names every layer's digest (``diff_ids``,
  which the engine checks while it loads), so the ID binds the whole image. The archive's
  manifest (``manifest.json`` of ``podman save`` / ``docker save``, or an OCI layout's
  ``index.json`` and manifest) must name the job's ``image`` (a tag, or the ID itself); the ID is
  computed from the config's bytes (a config whose file name or descriptor claims another digest
  is refused), the archive is loaded, and the engine must then hold exactly that ID. The job runs
  ``<engine> run ... <ID>``: a tag moved by a later load cannot change what it runs.
* **By ID** (``image = "sha256:<64 hex>"`` in the spec): content-addressed already; the provider
  has it or refuses the job (:class:`ImageNotAvailable`).
* **By name only**: refused (:class:`ImageNameNotTrusted`) unless the operator allows local
  names (``[executor] allow_local_image_names``), and then resolved to the ID it names when the
  job starts, so the check and the run see the same image. The rule is
  :func:`protocol.market.image_trust.image_refusal`, which the provider also applies when it is
  asked for a quote (``ImageTagNotTrusted`` 4049): such a job is never contracted.
* **No image**: the operator's own ``container_image`` (for such jobs, and the self-test), trusted
  by its tag and pinned to the ID it named when the executor first found it
  (:func:`node.executor.engine.pinned_image`).

An archive may not take a name (:func:`name_conflict`, :class:`ImageArchiveTakesName`): a name it
gives an image is refused when its :func:`name_key` (last path component and tag) is held in the
store by another image, or is the operator's image's, so no spelling of a tag
(``localhost/``, ``docker.io/library/``, none) moves it and no new name shadows it in a short-name
lookup. Names are read as podman reads them: OCI entries by ``io.containerd.image.name`` before
``org.opencontainers.image.ref.name``, an archive with both an OCI layout and a docker manifest by
both, and an archive two readers could read differently (two entries of one path, a document
that is a link) is refused.

Archives are read with bounds: uncompressed tar only (what ``podman save`` writes; a compressed
tar could not be read at random), at most :data:`MAX_ARCHIVE_MEMBERS` entries and
:data:`MAX_ARCHIVE_NAMES` names, manifests and configs of at most :data:`MAX_DOCUMENT_BYTES` each,
and documents that are regular files (a symlink or hard link cannot point the reader at another
entry).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node.executor.errors import ImageArchiveInvalid
from protocol.market.image_trust import image_id_of as image_id_of  # re-exported: one ID syntax

#: The most entries an image archive may hold (a layer is one or two; a tar bomb of tiny entries
#: would otherwise grow the reader's member list without bound).
MAX_ARCHIVE_MEMBERS = 10_000
#: The most bytes of one manifest, index or config document read into memory.
MAX_DOCUMENT_BYTES = 4 * 2**20
#: The most images one archive may hold.
MAX_ARCHIVE_IMAGES = 64
#: The most names (tags) the images of one archive may carry between them.
MAX_ARCHIVE_NAMES = 64

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
#: The annotations an OCI index entry names its image by, in podman's order: the first one set is
#: the name the image gets (buildkit's containerd name before the OCI reference name).
_OCI_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
#: The documents an engine reads to find an archive's images and names.
_DOCUMENTS = frozenset({"manifest.json", "index.json", "oci-layout", "repositories"})
_OCI_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def id_reference(image_id: str) -> str:
    """What ``<engine> run`` is given for an image ID: ``sha256:<hex>`` is unambiguous for both
    engines (a bare 64-hex string could also be read as a name by some versions)."""
    return f"sha256:{image_id}"


def name_matches(wanted: str, names: Iterable[str]) -> bool:
    """Whether a tag the archive carries is ``wanted``, with or without podman's ``localhost/``."""
    candidates = set(names)
    return wanted in candidates or f"localhost/{wanted}" in candidates


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image an archive holds: its ID (SHA-256 of its config, hex) and the tags it carries."""

    image_id: str
    names: frozenset[str]


def archive_images(path: Path) -> list[ArchiveImage]:
    """The images the archive at ``path`` holds, each ID computed from its config's bytes.

    Reads ``podman save`` / ``docker save`` archives (``manifest.json``) and OCI layouts
    (``index.json``). Raises :class:`ImageArchiveInvalid` for anything else, anything over the
    bounds, or a document whose content does not hash to the digest that names it.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            members = _regular_members(tar)
            # podman tries the OCI layout first and the docker manifest if that fails: an archive
            # holding both is read as both, so no image or name either reader finds goes unchecked.
            images = []
            if "index.json" in members:
                images += _oci_images(tar, members)
            if "manifest.json" in members:
                images += _docker_archive_images(tar, members)
            if "index.json" not in members and "manifest.json" not in members:
                raise ImageArchiveInvalid("the image archive has neither manifest.json nor index.json")
    except tarfile.ReadError as exc:
        raise ImageArchiveInvalid(f"the image archive is not an uncompressed tar: {exc}") from None
    except OSError as exc:
        raise ImageArchiveInvalid(f"the image archive cannot be read: {exc.strerror or exc}") from None
    by_id: dict[str, set[str]] = {}
    for image in images:
        by_id.setdefault(image.image_id, set()).update(image.names)
    images = [ArchiveImage(image_id, frozenset(names)) for image_id, names in sorted(by_id.items())]
    if not images:
        raise ImageArchiveInvalid("the image archive holds no image")
    if len(images) > MAX_ARCHIVE_IMAGES:
        raise ImageArchiveInvalid(
            f"the image archive holds {len(images)} images, more than {MAX_ARCHIVE_IMAGES}"
        )
    names = [name for image in images for name in image.names]
    if len(names) > MAX_ARCHIVE_NAMES:
        raise ImageArchiveInvalid(
            f"the image archive tags its images {len(names)} times, more than {MAX_ARCHIVE_NAMES}"
        )
    for name in names:
        if name_key(name) is None:
            raise ImageArchiveInvalid(
                f"the image archive tags an image {name!r:.120}, which is not a name[:tag]"
            )
    return images


def select_image(images: list[ArchiveImage], reference: str) -> str:
    """The ID of the one image in ``images`` that ``reference`` (a tag or an ID) names.
    Raises :class:`ImageArchiveInvalid` when none does, or several do."""
    wanted_id = image_id_of(reference)
    if wanted_id is not None:
        found = sorted({image.image_id for image in images if image.image_id == wanted_id})
    else:
        found = sorted({image.image_id for image in images if name_matches(reference, image.names)})
    if len(found) == 1:
        return found[0]
    if found:
        raise ImageArchiveInvalid(f"the image archive holds several images named {reference!r:.80}")
    held = ", ".join(sorted(name for image in images for name in image.names))[:300]
    ids = ", ".join(image.image_id[:12] for image in images)[:200]
    raise ImageArchiveInvalid(
        f"the image archive holds {held or 'no named image'} (IDs {ids}), not {reference!r:.80}"
    )


# The reference grammar of containers/image's docker/reference (name, then ":tag"; no digest).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_NAME = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>\w[\w.-]{{0,127}}))?", re.ASCII
)
#: The longest image name (without its tag) the engines accept.
MAX_NAME_LENGTH = 255


def name_key(name: str) -> tuple[str, str] | None:
    """What a lookup of ``name`` matches on, whatever its registry: the last path component and
    the tag (``latest`` when none), lower-cased; None when ``name`` is not ``name[:tag]``.

    podman finds a short name such as ``train:1`` as ``localhost/train:1``, under each search
    registry, as ``docker.io/library/train:1``, and finally as any stored name ending in
    ``/train`` with tag ``1``; docker as ``docker.io/library/train:1``. Every name any of those
    lookups can find shares this key with it, whatever prefix or normalisation the engine
    applies, so names are compared on keys, never as strings."""
    match = _NAME.fullmatch(name)
    if match is None or len(match.group("name")) > MAX_NAME_LENGTH:
        return None
    return match.group("name").rsplit("/", 1)[-1].lower(), (match.group("tag") or "latest").lower()


def name_conflict(
    images: Iterable[ArchiveImage], store: Mapping[str, str], reserved: Mapping[str, str | None]
) -> str | None:
    """Why loading an archive holding ``images`` would take a name from another image, or None.

    ``store``: each name in the engine's store -> the ID (hex) it names now; ``reserved``: the
    operator's own images (``container_image``) -> the ID each was pinned to (None: not found
    yet, so no archive may take its name). A name the archive gives an image is refused when it
    shares its :func:`name_key` with a name that names another image: the same name (``podman
    load`` would move it), or one a short-name lookup could find instead (it would shadow it),
    or the operator's own image's name, present or not. Two images of the archive sharing a
    key are refused too. Names of the very image being loaded are no conflict."""
    held: dict[tuple[str, str], list[tuple[str, str | None, bool]]] = {}  # the operator's first
    for name, pinned in reserved.items():
        key = name_key(name) if image_id_of(name) is None else None
        if key is not None:
            held.setdefault(key, []).append((name, pinned, True))
    for name, image_id in store.items():
        key = name_key(name)
        if key is not None:
            held.setdefault(key, []).append((name, image_id, False))
    claimed: dict[tuple[str, str], tuple[str, str]] = {}
    for image in sorted(images, key=lambda image: image.image_id):
        for name in sorted(image.names):
            key = name_key(name)
            if key is None:
                return f"the image archive tags an image {name!r:.120}, which is not a name[:tag]"
            for holder, holder_id, operators in held.get(key, ()):
                if holder_id == image.image_id:
                    continue
                whose = (
                    "this provider's own image (executor.container_image)"
                    if operators
                    else f"another image ({holder_id[:12] if holder_id else '?'}) on this provider"
                )
                return (
                    f"the image archive tags its image {image.image_id[:12]} {name!r:.120}, which "
                    f"collides with {holder!r:.120}, the name of {whose}: loading it would move that "
                    "tag, or shadow it in a short-name lookup. Tag the image with a name of your "
                    "own, or none, and name it by ID"
                )
            first = claimed.setdefault(key, (name, image.image_id))
            if first[1] != image.image_id:
                return (
                    f"the image archive tags two images alike ({first[0]!r:.120} and {name!r:.120}): "
                    "a lookup of one name could find either"
                )
    return None


def names_taken(
    before: Mapping[str, str], after: Mapping[str, str], reserved: Mapping[str, str | None]
) -> tuple[dict[str, str], list[str]]:
    """What happened to names between two listings of the engine's store (name -> ID) that
    :func:`name_conflict` forbids: the names that named another image before (-> that ID), and
    the names added that conflict with those there before or with ``reserved``. Judged on the
    engine's own answers, so a name the archive reader did not foresee is caught all the same."""
    moved = {name: old for name, old in before.items() if after.get(name, old) != old}
    added = [
        name
        for name, image_id in sorted(after.items())
        if name not in before
        and (
            name_key(name) is None
            or name_conflict([ArchiveImage(image_id, frozenset({name}))], before, reserved) is not None
        )
    ]
    return moved, added


def _clean(name: str) -> str:
    """A member's path as the engine compares it (Go's ``path.Clean``)."""
    cleaned = posixpath.normpath(name)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def _regular_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The archive's regular files by cleaned path. Refuses an archive in which two entries have
    one path (podman's docker-archive reader takes the first, its OCI reader the last extracted,
    this one would take the last) or a document the engine reads is a link or anything but a
    regular file (the engine follows links this reader does not)."""
    members: dict[str, tarfile.TarInfo] = {}
    seen: dict[str, bool] = {}  # path -> whether a directory
    for count, member in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise ImageArchiveInvalid(f"the image archive has more than {MAX_ARCHIVE_MEMBERS} entries")
        name = _clean(member.name)
        if name in seen and not (member.isdir() and seen[name]):
            raise ImageArchiveInvalid(f"the image archive has two entries {name!r:.120}")
        seen[name] = member.isdir()
        if member.isreg():
            members[name] = member
        elif name in _DOCUMENTS or (name.startswith("blobs") and (member.issym() or member.islnk())):
            raise ImageArchiveInvalid(f"{name!r:.120} in the image archive is not a regular file")
    return members


def _document(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(_clean(name))
    if member is None:
        raise ImageArchiveInvalid(f"the image archive has no regular file {name!r:.120}")
    if member.size > MAX_DOCUMENT_BYTES:
        raise ImageArchiveInvalid(f"{name!r:.120} in the image archive is over {MAX_DOCUMENT_BYTES} bytes")
    handle = tar.extractfile(member)
    if handle is None:
        raise ImageArchiveInvalid(f"{name!r:.120} in the image archive cannot be read")
    with handle:
        return handle.read(MAX_DOCUMENT_BYTES + 1)


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ImageArchiveInvalid(f"{what} in the image archive is not JSON") from None


def _config_id(config: bytes, claimed: str | None, what: str) -> str:
    """The image ID of a config document; ``claimed``: the digest its name or descriptor gives."""
    image_id = hashlib.sha256(config).hexdigest()
    if claimed is not None and claimed != image_id:
        raise ImageArchiveInvalid(
            f"{what} claims digest {claimed[:12]} but its content hashes to {image_id[:12]}"
        )
    return image_id


def _docker_archive_images(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> list[ArchiveImage]:
    manifest = _json(_document(tar, members, "manifest.json"), "manifest.json")
    if not isinstance(manifest, list) or len(manifest) > MAX_ARCHIVE_IMAGES:
        raise ImageArchiveInvalid(f"manifest.json must list at most {MAX_ARCHIVE_IMAGES} images")
    images = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ImageArchiveInvalid("manifest.json: an entry without a Config")
        config_name: str = entry["Config"]
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ImageArchiveInvalid("manifest.json: RepoTags must be a list of names")
        # docker-archive names the config "<hex>.json"; newer docker "blobs/sha256/<hex>".
        stem = config_name.rsplit("/", 1)[-1].removesuffix(".json")
        claimed = stem if re.fullmatch(r"[0-9a-f]{64}", stem) else None
        config = _document(tar, members, config_name)
        image_id = _config_id(config, claimed, f"config {config_name!r:.120}")
        images.append(ArchiveImage(image_id, frozenset(tags)))
    return images


def _blob(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], digest: object, what: str) -> bytes:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ImageArchiveInvalid(f"{what}: not a sha256 digest: {digest!r:.100}")
    data = _document(tar, members, f"blobs/sha256/{match.group(1)}")
    if hashlib.sha256(data).hexdigest() != match.group(1):
        raise ImageArchiveInvalid(f"{what}: blob {match.group(1)[:12]} does not hash to its digest")
    return data


def _oci_images(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> list[ArchiveImage]:
    index = _json(_document(tar, members, "index.json"), "index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) > MAX_ARCHIVE_IMAGES:
        raise ImageArchiveInvalid(f"index.json must list at most {MAX_ARCHIVE_IMAGES} manifests")
    by_id: dict[str, set[str]] = {}
    for descriptor in manifests:
        if (
            not isinstance(descriptor, dict)
            or descriptor.get("mediaType", _OCI_MANIFEST_TYPES[0]) not in _OCI_MANIFEST_TYPES
        ):
            raise ImageArchiveInvalid("index.json: only image manifests are read (no nested index)")
        manifest = _json(_blob(tar, members, descriptor.get("digest"), "index.json"), "a manifest")
        config = manifest.get("config") if isinstance(manifest, dict) else None
        if not isinstance(config, dict):
            raise ImageArchiveInvalid("a manifest in the image archive has no config")
        data = _blob(tar, members, config.get("digest"), "a manifest's config")
        image_id = _config_id(data, None, "a config")
        by_id.setdefault(image_id, set()).update(_oci_names(descriptor.get("annotations")))
    return [ArchiveImage(image_id, frozenset(names)) for image_id, names in sorted(by_id.items())]


def _oci_names(annotations: object) -> list[str]:
    """The name podman gives an OCI index entry's image (``libimage.nameFromAnnotations``); a
    value that is not a string, or an unknown one, is refused rather than guessed at."""
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        raise ImageArchiveInvalid("index.json: annotations must be a table")
    for key in _OCI_NAME_ANNOTATIONS:
        value = annotations.get(key)
        if value is not None and not isinstance(value, str):
            raise ImageArchiveInvalid(f"index.json: {key} must be a string")
        if value:
            return [value]
    return []
