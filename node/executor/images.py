"""Container images by ID: a job runs the image its archive's content names, never a tag.

A tag is a name the provider's image store maps to an image, and ``podman load`` moves a tag to
whatever image the loaded archive carries under it: any requester can make ``localhost/train:1``
mean its own image on a provider, for its own job and for every job after it that names the same
tag. So a container job never runs by name:

* **From an archive** (``image_archive``, a blob the contract binds by content id): the image ID
  is read from the archive itself before it is loaded. The ID podman and docker give an image is
  the SHA-256 of its config document, and the config names every layer's digest (``diff_ids``,
  checked as the archive is rewritten), so the ID binds the whole image. The archive's
  manifest (``manifest.json`` of ``podman save`` / ``docker save``, or an OCI layout's
  ``index.json`` and manifest) must name the job's ``image`` (a tag, or the ID itself); the ID is
  computed from the config's bytes (a config whose file name or descriptor claims another digest
  is refused), a rewrite of the archive is loaded, and the engine must then hold exactly that
  ID. The job runs ``<engine> run ... <ID>``: a tag moved by a later load cannot change what it
  runs.
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

The archive is never loaded as the requester wrote it (:func:`rewrite_archive`): the provider
writes a new, minimal docker-archive of the one image the spec names (``manifest.json`` with
``RepoTags: null``, the config, the layers copied byte for byte, plain USTAR entries written
here) and the engine loads that. So no name an archive carries is ever applied to the store (a
job runs by ID, and needs none), and how the engine would have read the requester's tar (PAX
headers, GNU long names, a second layout beside the first) no longer matters: the engine sees
only a tar this module wrote from bytes it read and checked itself. Layers must be uncompressed
tars (a gzip, bzip2, xz or zstd layer is refused), so the engine's store grows by at most the
archive's own size, and each layer's SHA-256 must be the ``diff_id`` the config gives it, so the
ID binds every layer before the engine sees one.

Archives are read with bounds: uncompressed tar only (what ``podman save`` writes; a compressed
tar could not be read at random), at most :data:`MAX_ARCHIVE_MEMBERS` entries,
:data:`MAX_ARCHIVE_NAMES` names and :data:`MAX_IMAGE_LAYERS` layers an image, manifests and
configs of at most :data:`MAX_DOCUMENT_BYTES` each, and documents and layers that are regular
files (a symlink or hard link cannot point the reader at another entry).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from node.executor.errors import ImageArchiveInvalid
from node.executor.tar_scan import TarHeaderScanner, scan_file
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
#: The most layers one image may have (overlay stores stack at most ~128).
MAX_IMAGE_LAYERS = 256
#: What a compressed layer starts with: gzip, bzip2, xz, zstd. The engine would decompress it
#: into its store without bound (a few KiB of bzip2 make GiB); only plain tars are loaded.
_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}

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
    """One image an archive holds: its ID (SHA-256 of its config, hex), the tags it carries (only
    to find the image a spec names by tag: none is ever applied), and where its config and layers
    are in the archive (cleaned member paths, layers in the config's order)."""

    image_id: str
    names: frozenset[str]
    config: str = field(default="", compare=False)
    layers: tuple[str, ...] = field(default=(), compare=False)


def archive_images(path: Path) -> list[ArchiveImage]:
    """The images the archive at ``path`` holds, each ID computed from its config's bytes.

    Reads ``podman save`` / ``docker save`` archives (``manifest.json``) and OCI layouts
    (``index.json``). Raises :class:`ImageArchiveInvalid` for anything else, anything over the
    bounds, or a document whose content does not hash to the digest that names it.
    """
    try:
        scan_file(path, "the image archive")  # before tarfile reads a header whole (review 39 F4)
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
    except _MALFORMED_TAR as exc:
        raise ImageArchiveInvalid(f"the image archive is not an uncompressed tar: {_reason(exc)}") from None
    except OSError as exc:
        raise ImageArchiveInvalid(f"the image archive cannot be read: {exc.strerror or exc}") from None
    images = _merged(images)
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
    return images


def _merged(images: Iterable[ArchiveImage]) -> list[ArchiveImage]:
    """One entry per ID, by ID: the names of all, the blobs of the first one read."""
    by_id: dict[str, ArchiveImage] = {}
    for image in images:
        first = by_id.setdefault(image.image_id, image)
        by_id[image.image_id] = ArchiveImage(
            image.image_id, first.names | image.names, first.config, first.layers
        )
    return [by_id[image_id] for image_id in sorted(by_id)]


def select_image(images: list[ArchiveImage], reference: str) -> ArchiveImage:
    """The one image in ``images`` that ``reference`` (a tag or an ID) names.
    Raises :class:`ImageArchiveInvalid` when none does, or several do."""
    wanted_id = image_id_of(reference)
    if wanted_id is not None:
        found = [image for image in images if image.image_id == wanted_id]
    else:
        found = [image for image in images if name_matches(reference, image.names)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ImageArchiveInvalid(f"the image archive holds several images named {reference!r:.80}")
    held = ", ".join(sorted(name for image in images for name in image.names))[:300]
    ids = ", ".join(image.image_id[:12] for image in images)[:200]
    raise ImageArchiveInvalid(
        f"the image archive holds {held or 'no named image'} (IDs {ids}), not {reference!r:.80}"
    )


def rewrite_archive(source: Path, reference: str, target: Path) -> str:
    """Write to ``target`` a docker-archive of the one image in the archive at ``source`` that
    ``reference`` (a tag or an ID) names, carrying no name: ``manifest.json`` (``RepoTags``
    null), the config as ``<ID>.json``, each layer as ``<diff_id>.tar``, plain USTAR entries and
    nothing else. Layers are streamed, a bounded buffer at a time, and hashed on the way: each
    must be an uncompressed tar whose SHA-256 is the ``diff_id`` the config gives it. Returns
    the image ID (hex). Raises :class:`ImageArchiveInvalid` (then ``target`` is removed)."""
    try:
        scan_file(source, "the image archive")
        with tarfile.open(source, "r:") as tar:
            members = _regular_members(tar)
            images: list[ArchiveImage] = []
            if "index.json" in members:
                images += _oci_images(tar, members)
            if "manifest.json" in members:
                images += _docker_archive_images(tar, members)
            image = select_image(_merged(images), reference)
            config = _document(tar, members, image.config)
            if hashlib.sha256(config).hexdigest() != image.image_id:  # read again: must not change
                raise ImageArchiveInvalid("the image archive's config changed while it was read")
            diff_ids = _diff_ids(config, len(image.layers))
            try:
                _write_rewrite(tar, members, image, config, diff_ids, target)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
    except _MALFORMED_TAR as exc:
        raise ImageArchiveInvalid(f"the image archive is not an uncompressed tar: {_reason(exc)}") from None
    except OSError as exc:
        raise ImageArchiveInvalid(f"the image archive cannot be read: {exc.strerror or exc}") from None
    return image.image_id


def _diff_ids(config: bytes, layers: int) -> list[str]:
    """The config's ``rootfs.diff_ids`` (hex), one per layer the manifest lists."""
    document = _json(config, "the config")
    rootfs = document.get("rootfs") if isinstance(document, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ImageArchiveInvalid("the image's config has no rootfs.diff_ids")
    found = [_DIGEST.fullmatch(value) if isinstance(value, str) else None for value in diff_ids]
    if any(match is None for match in found):
        raise ImageArchiveInvalid("the image's config: a diff_id is not a sha256 digest")
    if len(found) != layers:
        raise ImageArchiveInvalid(
            f"the image's config names {len(found)} layers, its manifest lists {layers}"
        )
    return [match.group(1) for match in found if match is not None]


def _write_rewrite(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    image: ArchiveImage,
    config: bytes,
    diff_ids: list[str],
    target: Path,
) -> None:
    manifest = [
        {"Config": f"{image.image_id}.json", "RepoTags": None, "Layers": [f"{d}.tar" for d in diff_ids]}
    ]
    # tarfile copies each layer 16 KiB at a time: memory stays bounded whatever the layer's size.
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as out:
        document = json.dumps(manifest).encode()
        out.addfile(_entry("manifest.json", len(document)), io.BytesIO(document))
        out.addfile(_entry(f"{image.image_id}.json", len(config)), io.BytesIO(config))
        written: set[str] = set()
        for number, (path, diff_id) in enumerate(zip(image.layers, diff_ids, strict=True), start=1):
            if diff_id in written:
                # podman stores a copy per listing: one 4 MiB layer listed 100 times took 401 MiB
                # (review 39 F2), and its layer bound would allow 256 copies of anything.
                raise ImageArchiveInvalid(
                    f"layer {number} of the image archive repeats an earlier one (diff_id {diff_id[:12]}): "
                    "an image lists each layer once"
                )
            member = members.get(path)
            if member is None:
                raise ImageArchiveInvalid(f"the image archive has no layer {path!r:.120}")
            handle = tar.extractfile(member)
            if handle is None:
                raise ImageArchiveInvalid(f"layer {number} of the image archive cannot be read")
            with handle:
                kind = _compression(handle.read(8))
                if kind is not None:
                    raise ImageArchiveInvalid(
                        f"layer {number} of the image archive is {kind}-compressed: only "
                        "uncompressed layers are loaded (`podman save`, or with `--format oci-archive "
                        "--uncompressed`)"
                    )
                handle.seek(0)
                # The engine unpacks the layer: a sparse file in it would unpack to whatever size
                # its header claims (review 39 F1), so each header is checked as it passes.
                scanner = TarHeaderScanner(f"layer {number} of the image archive")
                hashed = _Hashing(handle, scanner)
                try:
                    out.addfile(_entry(f"{diff_id}.tar", member.size), hashed)
                except ValueError as exc:  # over USTAR's 8 GiB entry
                    raise ImageArchiveInvalid(f"layer {number} of the image archive: {exc}") from None
                scanner.finish()
            if hashed.digest.hexdigest() != diff_id:
                raise ImageArchiveInvalid(
                    f"layer {number} of the image archive hashes to {hashed.digest.hexdigest()[:12]}, "
                    f"not to the diff_id its config gives it ({diff_id[:12]})"
                )
            written.add(diff_id)


def _entry(name: str, size: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode, entry.type = size, 0o644, tarfile.REGTYPE
    return entry


def _compression(head: bytes) -> str | None:
    return next((kind for magic, kind in _COMPRESSED_MAGIC.items() if head.startswith(magic)), None)


class _Hashing:
    """A reader that hashes what is read through it, and walks its tar headers (a layer's)."""

    def __init__(self, handle: IO[bytes], scanner: TarHeaderScanner) -> None:
        self._handle = handle
        self._scanner = scanner
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        self._scanner.feed(data)
        return data


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
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting past the stack (review 39 F3)
        raise ImageArchiveInvalid(f"{what} in the image archive is not JSON") from None


#: What Python's tar reader raises for a malformed archive besides ``tarfile.TarError``: a PAX
#: record it cannot parse is a bare ``ValueError`` (review 39 F3: uncaught, it would have ended the
#: node), a header field out of range an ``OverflowError``, a truncated member an ``EOFError``.
_MALFORMED_TAR = (tarfile.TarError, ValueError, OverflowError, EOFError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:120]}"


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
        layers = entry.get("Layers")
        if (
            not isinstance(layers, list)
            or len(layers) > MAX_IMAGE_LAYERS
            or not all(isinstance(layer, str) for layer in layers)
        ):
            raise ImageArchiveInvalid(f"manifest.json: Layers must list at most {MAX_IMAGE_LAYERS} paths")
        images.append(
            ArchiveImage(image_id, frozenset(tags), _clean(config_name), tuple(_clean(x) for x in layers))
        )
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
    images = []
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
        layers = manifest.get("layers") if isinstance(manifest, dict) else None
        if not isinstance(layers, list) or len(layers) > MAX_IMAGE_LAYERS:
            raise ImageArchiveInvalid(f"a manifest must list at most {MAX_IMAGE_LAYERS} layers")
        paths = tuple(f"blobs/sha256/{_digest_hex(layer, 'a layer')}" for layer in layers)
        names = frozenset(_oci_names(descriptor.get("annotations")))
        images.append(ArchiveImage(image_id, names, f"blobs/sha256/{image_id}", paths))
    return images


def _digest_hex(descriptor: object, what: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ImageArchiveInvalid(f"{what}: not a sha256 digest: {digest!r:.100}")
    return match.group(1)


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
