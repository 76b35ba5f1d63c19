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
  job starts, so the check and the run see the same image. The operator's own
  ``container_image`` (for jobs that name none, and the self-test) is resolved the same way.
  The rule is :func:`protocol.market.image_trust.image_refusal`, which the provider also applies
  when it is asked for a quote (``ImageTagNotTrusted`` 4049): such a job is never contracted.

Archives are read with bounds: uncompressed tar only (what ``podman save`` writes; a compressed
tar could not be read at random), at most :data:`MAX_ARCHIVE_MEMBERS` entries, manifests and
configs of at most :data:`MAX_DOCUMENT_BYTES` each, and documents that are regular files (a
symlink or hard link cannot point the reader at another entry).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterable
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

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_OCI_REF_NAME = "org.opencontainers.image.ref.name"
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
            if "manifest.json" in members:
                images = _docker_archive_images(tar, members)
            elif "index.json" in members:
                images = _oci_images(tar, members)
            else:
                raise ImageArchiveInvalid("the image archive has neither manifest.json nor index.json")
    except tarfile.ReadError as exc:
        raise ImageArchiveInvalid(f"the image archive is not an uncompressed tar: {exc}") from None
    except OSError as exc:
        raise ImageArchiveInvalid(f"the image archive cannot be read: {exc.strerror or exc}") from None
    if not images:
        raise ImageArchiveInvalid("the image archive holds no image")
    if len(images) > MAX_ARCHIVE_IMAGES:
        raise ImageArchiveInvalid(
            f"the image archive holds {len(images)} images, more than {MAX_ARCHIVE_IMAGES}"
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


def _regular_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise ImageArchiveInvalid(f"the image archive has more than {MAX_ARCHIVE_MEMBERS} entries")
        if member.isreg():
            members[member.name.removeprefix("./")] = member
    return members


def _document(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name.removeprefix("./"))
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
        annotations = descriptor.get("annotations")
        name = annotations.get(_OCI_REF_NAME) if isinstance(annotations, dict) else None
        by_id.setdefault(image_id, set()).update([name] if isinstance(name, str) else [])
    return [ArchiveImage(image_id, frozenset(names)) for image_id, names in sorted(by_id.items())]
