"""Reading image archives for the image ID a job runs (no engine needed): ``podman save`` /
``docker save`` archives and OCI layouts written here, honest and tampered with; and the rewrite
the engine loads instead of the requester's archive: that image alone, no name, plain layers."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import trio
import trio.testing

from node.executor import engine, images
from node.executor.errors import ImageArchiveInvalid
from node.executor.images import (
    ArchiveImage,
    archive_images,
    id_reference,
    image_id_of,
    rewrite_archive,
    select_image,
)

CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()
CONFIG_ID = hashlib.sha256(CONFIG).hexdigest()


def _tar(path: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _docker_archive(path: Path, *, config: bytes = CONFIG, name: str | None = None, tags: list[str]) -> Path:
    config_name = name or f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": []}]
    return _tar(path, {config_name: config, "manifest.json": json.dumps(manifest).encode()})


def _oci_archive(
    path: Path, *, ref: str | None, config: bytes = CONFIG, annotations: dict[str, str] | None = None
) -> Path:
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"digest": f"sha256:{config_digest}", "size": len(config)},
            "layers": [],
        }
    ).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "annotations": {
                    **({"org.opencontainers.image.ref.name": ref} if ref is not None else {}),
                    **(annotations or {}),
                },
            }
        ],
    }
    return _tar(
        path,
        {
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps(index).encode(),
            f"blobs/sha256/{manifest_digest}": manifest,
            f"blobs/sha256/{config_digest}": config,
        },
    )


def test_the_image_id_is_the_sha256_of_the_config_in_either_archive_format(tmp_path: Path) -> None:
    docker = archive_images(_docker_archive(tmp_path / "d.tar", tags=["localhost/train:1"]))
    oci = archive_images(_oci_archive(tmp_path / "o.tar", ref="localhost/train:1"))
    assert docker == oci == [ArchiveImage(CONFIG_ID, frozenset({"localhost/train:1"}))]
    # The job's image is found by its tag (with or without podman's localhost/) or by its ID.
    for reference in ("localhost/train:1", "train:1", f"sha256:{CONFIG_ID}", CONFIG_ID):
        assert select_image(docker, reference).image_id == CONFIG_ID
    assert (
        id_reference(CONFIG_ID) == f"sha256:{CONFIG_ID}" and image_id_of(id_reference(CONFIG_ID)) == CONFIG_ID
    )
    assert image_id_of("localhost/train:1") is None and image_id_of(CONFIG_ID[:12]) is None


def test_an_archive_that_does_not_hold_the_named_image_is_refused(tmp_path: Path) -> None:
    found = archive_images(_docker_archive(tmp_path / "d.tar", tags=["localhost/other:1"]))
    for reference in ("localhost/train:1", f"sha256:{'0' * 64}"):
        with pytest.raises(ImageArchiveInvalid, match="localhost/other:1") as caught:
            select_image(found, reference)
        assert caught.value.code == 5321
    # Two images under one tag: which one would run is not for the archive to leave open.
    other = hashlib.sha256(b"another config").hexdigest()
    twice = [
        ArchiveImage(CONFIG_ID, frozenset({"localhost/t:1"})),
        ArchiveImage(other, frozenset({"localhost/t:1"})),
    ]
    with pytest.raises(ImageArchiveInvalid, match="several"):
        select_image(twice, "localhost/t:1")


def test_a_config_that_does_not_hash_to_its_claimed_digest_is_refused(tmp_path: Path) -> None:
    # docker-archive: the config's file name claims one digest, its bytes hash to another.
    lying = _docker_archive(
        tmp_path / "d.tar", config=CONFIG + b" ", name=f"{CONFIG_ID}.json", tags=["localhost/train:1"]
    )
    with pytest.raises(ImageArchiveInvalid, match="claims digest"):
        archive_images(lying)
    # OCI: a blob whose bytes are not its digest.
    oci = _oci_archive(tmp_path / "o.tar", ref="localhost/train:1")
    with tarfile.open(oci) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]
    files[f"blobs/sha256/{CONFIG_ID}"] = CONFIG + b" "
    with pytest.raises(ImageArchiveInvalid, match="does not hash"):
        archive_images(_tar(tmp_path / "o2.tar", files))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not an uncompressed tar"),
        ({"layer.tar": b""}, "neither manifest.json nor index.json"),
        ({"manifest.json": b"{not json"}, "not JSON"),
        ({"manifest.json": b"{}"}, "must list"),
        ({"manifest.json": b'[{"RepoTags": []}]'}, "without a Config"),
        ({"manifest.json": b'[{"Config": "c.json", "RepoTags": "x"}]', "c.json": b"{}"}, "RepoTags"),
        ({"manifest.json": b'[{"Config": "missing.json"}]'}, "no regular file"),
        ({"manifest.json": b"[]"}, "holds no image"),
        (
            {"index.json": b'{"manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json"}]}'},
            "nested",
        ),
        ({"index.json": b'{"manifests": [{"digest": "md5:00"}]}'}, "not a sha256 digest"),
    ],
)
def test_malformed_archives_are_refused_with_a_typed_error(
    tmp_path: Path, content: dict[str, bytes] | None, message: str
) -> None:
    path = tmp_path / "a.tar"
    if content is None:
        path.write_bytes(b"\x1f\x8b compressed or garbage")
    else:
        _tar(path, content)
    with pytest.raises(ImageArchiveInvalid, match=message):
        archive_images(path)


def test_archive_reading_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A document behind a symlink is refused (the engine would follow it, this reader does not).
    linked = _tar(tmp_path / "l.tar", {"real.json": b"[]"}, links={"manifest.json": "real.json"})
    with pytest.raises(ImageArchiveInvalid, match="not a regular file"):
        archive_images(linked)
    monkeypatch.setattr(images, "MAX_DOCUMENT_BYTES", 64)
    big = _docker_archive(tmp_path / "big.tar", tags=["x:1"])
    with pytest.raises(ImageArchiveInvalid, match="over 64 bytes"):
        archive_images(big)
    monkeypatch.setattr(images, "MAX_ARCHIVE_MEMBERS", 5)
    many = _tar(tmp_path / "many.tar", {f"f{i}": b"" for i in range(6)})
    with pytest.raises(ImageArchiveInvalid, match="more than 5 entries"):
        archive_images(many)


def _entries(*archives: Path) -> list[tuple[str, bytes]]:
    entries = []
    for archive in archives:
        with tarfile.open(archive) as tar:
            entries += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]  # type: ignore[union-attr]
    return entries


def _tar_of(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """A tar of ``entries`` in order, repeated paths included."""
    with tarfile.open(path, "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


OPERATOR = "localhost/dcent-job:latest"


def test_an_oci_archive_names_its_image_as_podman_does(tmp_path: Path) -> None:
    """podman names an OCI archive's image by buildkit's ``io.containerd.image.name`` before the
    OCI reference name: an archive showing a fresh reference name and the operator's image's name
    in the other annotation must be read as taking the operator's name. No annotation: no name
    (podman loads it by ID only)."""
    both = _oci_archive(
        tmp_path / "o.tar", ref="localhost/fresh:1", annotations={"io.containerd.image.name": OPERATOR}
    )
    assert archive_images(both) == [ArchiveImage(CONFIG_ID, frozenset({OPERATOR}))]
    assert archive_images(_oci_archive(tmp_path / "n.tar", ref=None)) == [
        ArchiveImage(CONFIG_ID, frozenset())
    ]


def test_an_archive_holding_both_layouts_is_read_as_both(tmp_path: Path) -> None:
    """podman loads an archive's OCI layout when it has one, else its docker manifest: a
    manifest.json naming a fresh tag must not hide an index.json naming the operator's image."""
    docker = _docker_archive(tmp_path / "d.tar", tags=["localhost/fresh:1"])
    oci = _oci_archive(tmp_path / "o.tar", ref=OPERATOR)
    both = archive_images(_tar_of(tmp_path / "both.tar", _entries(docker, oci)))
    assert both == [ArchiveImage(CONFIG_ID, frozenset({"localhost/fresh:1", OPERATOR}))]


def test_an_archive_the_engine_could_read_otherwise_is_refused(tmp_path: Path) -> None:
    # Two entries of one path: podman's docker-archive reader takes the first, its OCI reader
    # the last extracted; the first manifest here names the operator's image.
    hostile = _entries(_docker_archive(tmp_path / "h.tar", tags=[OPERATOR]))
    honest = _docker_archive(tmp_path / "d.tar", tags=["localhost/fresh:1"])
    honest_manifest = [(name, data) for name, data in _entries(honest) if name == "manifest.json"]
    dotted = [(f"./{name}" if name == "manifest.json" else name, data) for name, data in hostile]
    for entries in (hostile + honest_manifest, dotted + honest_manifest):
        with pytest.raises(ImageArchiveInvalid, match=r"two entries 'manifest\.json'"):
            archive_images(_tar_of(tmp_path / "twice.tar", entries))
    # An index.json the engine would follow to another entry, beside a regular manifest.json.
    linked = _tar(
        tmp_path / "l.tar",
        {**dict(_entries(honest)), "other.json": b"{}"},
        links={"index.json": "other.json"},
    )
    with pytest.raises(
        ImageArchiveInvalid, match=r"'index\.json' in the image archive is not a regular file"
    ):
        archive_images(linked)
    # More names than the bound.
    tags = [f"localhost/x:{i}" for i in range(images.MAX_ARCHIVE_NAMES + 1)]
    with pytest.raises(ImageArchiveInvalid, match="more than 64") as caught:
        archive_images(_docker_archive(tmp_path / "n.tar", tags=tags))
    assert caught.value.code == 5321


def _layer(marker: bytes) -> bytes:
    """An uncompressed layer: a tar holding one file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("marker")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    return buffer.getvalue()


def _image(layers: list[bytes], *, diff_ids: list[bytes] | None = None) -> tuple[bytes, str, list[str]]:
    """A config naming ``diff_ids`` (default: the layers' own digests): its bytes, its ID, the
    layers' digests."""
    digests = [hashlib.sha256(layer).hexdigest() for layer in layers]
    named = [hashlib.sha256(layer).hexdigest() for layer in diff_ids] if diff_ids is not None else digests
    config = json.dumps(
        {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in named]}}
    ).encode()
    return config, hashlib.sha256(config).hexdigest(), digests


def _layered_archive(
    path: Path, layers: list[bytes], tags: list[str], **kwargs: list[bytes]
) -> tuple[Path, str]:
    """A ``docker save`` archive of one image with ``layers`` (as ``<hex>/layer.tar``), tagged
    ``tags``, plus an entry of its own: its path and the image's ID."""
    config, image_id, digests = _image(layers, **kwargs)
    manifest = [
        {"Config": f"{image_id}.json", "RepoTags": tags, "Layers": [f"{d}/layer.tar" for d in digests]}
    ]
    files = {f"{d}/layer.tar": layer for d, layer in zip(digests, layers, strict=True)}
    files |= {
        f"{image_id}.json": config,
        "manifest.json": json.dumps(manifest).encode(),
        "repositories": b"{}",
    }
    return _tar(path, files), image_id


def _read_rewrite(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
        return members, {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]


def test_the_engine_loads_a_rewrite_holding_the_named_image_alone_and_no_name(tmp_path: Path) -> None:
    """The requester's archive holds two images and tags; the rewrite holds exactly the manifest
    (no name: RepoTags null), the named image's config and its layers, byte for byte, in plain
    USTAR entries (no PAX or GNU headers for another tar reader to read differently)."""
    base, top = _layer(b"base"), _layer(b"top")
    source, image_id = _layered_archive(tmp_path / "a.tar", [base, top], [OPERATOR, "localhost/x:1"])
    other, _other_id = _layered_archive(tmp_path / "b.tar", [_layer(b"other")], ["localhost/other:1"])
    both = _tar_of(tmp_path / "both.tar", _entries(source, other)[:-2])  # one manifest: source's
    for archive, reference in ((source, "localhost/x:1"), (both, f"sha256:{image_id}")):
        target = tmp_path / "rewrite.tar"
        assert rewrite_archive(archive, reference, target) == image_id
        members, files = _read_rewrite(target)
        config, _, digests = _image([base, top])
        assert [m.name for m in members] == [
            "manifest.json",
            f"{image_id}.json",
            *[f"{d}.tar" for d in digests],
        ]
        assert all(m.type == tarfile.REGTYPE and not m.pax_headers for m in members)
        assert json.loads(files["manifest.json"]) == [
            {"Config": f"{image_id}.json", "RepoTags": None, "Layers": [f"{d}.tar" for d in digests]}
        ]
        assert files[f"{image_id}.json"] == config
        assert files[f"{digests[0]}.tar"] == base and files[f"{digests[1]}.tar"] == top
    # An OCI layout, the same way.
    oci = _oci_archive(tmp_path / "o.tar", ref=OPERATOR)
    assert rewrite_archive(oci, OPERATOR, tmp_path / "o-rewrite.tar") == CONFIG_ID
    assert [m.name for m in _read_rewrite(tmp_path / "o-rewrite.tar")[0]] == [
        "manifest.json",
        f"{CONFIG_ID}.json",
    ]


def test_a_layer_the_config_does_not_name_or_a_compressed_one_is_refused(tmp_path: Path) -> None:
    """A layer whose SHA-256 is not its diff_id is refused before the engine sees it (the ID binds
    every layer), and so is a compressed layer, whatever its digests say: the engine would
    decompress it into its store without bound."""
    layer, swapped = _layer(b"honest"), _layer(b"swapped")
    archive, image_id = _layered_archive(tmp_path / "a.tar", [swapped], ["localhost/x:1"], diff_ids=[layer])
    target = tmp_path / "rewrite.tar"
    with pytest.raises(ImageArchiveInvalid, match="not to the diff_id") as caught:
        rewrite_archive(archive, f"sha256:{image_id}", target)
    assert caught.value.code == 5321 and not target.exists()
    for magic, kind in (
        (b"\x1f\x8b\x08", "gzip"),
        (b"BZh9", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
    ):
        bomb = magic + bytes(600)  # named honestly by its own digest
        archive, _ = _layered_archive(tmp_path / f"{kind}.tar", [bomb], ["localhost/x:1"])
        with pytest.raises(ImageArchiveInvalid, match=f"{kind}-compressed") as caught:
            rewrite_archive(archive, "localhost/x:1", target)
        assert caught.value.code == 5321 and not target.exists()
    # A config naming another count of layers than the manifest lists.
    config, config_id, digests = _image([layer, layer])
    manifest = [{"Config": f"{config_id}.json", "RepoTags": [], "Layers": [f"{digests[0]}/layer.tar"]}]
    short = _tar(
        tmp_path / "short.tar",
        {
            f"{digests[0]}/layer.tar": layer,
            f"{config_id}.json": config,
            "manifest.json": json.dumps(manifest).encode(),
        },
    )
    with pytest.raises(ImageArchiveInvalid, match="names 2 layers, its manifest lists 1"):
        rewrite_archive(short, config_id, target)


def test_a_layer_listed_twice_is_refused(tmp_path: Path) -> None:
    """Review 39 F2: the engine stores a copy of a layer per listing (one 4 MiB layer listed 100
    times took 401 MiB), so an image listing a layer again is refused before the engine sees it."""
    base = _layer(b"base")
    archive, image_id = _layered_archive(tmp_path / "a.tar", [base, _layer(b"top"), base], ["localhost/x:1"])
    target = tmp_path / "rewrite.tar"
    with pytest.raises(
        ImageArchiveInvalid, match="layer 3 of the image archive repeats an earlier one"
    ) as caught:
        rewrite_archive(archive, f"sha256:{image_id}", target)
    assert caught.value.code == 5321 and not target.exists()


def test_what_the_tar_and_json_readers_raise_on_hostile_input_is_a_typed_refusal(tmp_path: Path) -> None:
    """Review 39 F3: a manifest nested past the stack (RecursionError) and a PAX record the tar
    reader cannot parse (a bare ValueError) escaped as untyped errors, which would have ended the
    node with every tenant's job; both are ImageArchiveInvalid (5321), reading or rewriting."""
    deep = _tar(tmp_path / "deep.tar", {"manifest.json": b"[" * 100_000 + b"]" * 100_000})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.pax_headers = {"GNU.sparse.map": "x,y", "GNU.sparse.size": "1"}
        tar.addfile(info, io.BytesIO(b""))
    pax = tmp_path / "pax.tar"
    pax.write_bytes(buffer.getvalue())
    for archive in (deep, pax):
        with pytest.raises(ImageArchiveInvalid) as caught:
            archive_images(archive)
        assert caught.value.code == 5321
        with pytest.raises(ImageArchiveInvalid):
            rewrite_archive(archive, "localhost/x:1", tmp_path / "rewrite.tar")
        assert not (tmp_path / "rewrite.tar").exists()


def test_a_pax_header_shows_the_engine_nothing_the_reader_did_not_see(tmp_path: Path) -> None:
    """Review 38 (F2): a PAX global header renames every later entry for Python's tar reader and
    for Go's nothing, so the two saw different manifests. The engine now reads only the rewrite,
    written from what this reader read: no name at all, whatever either manifest says."""
    layer = _layer(b"evil")
    config, image_id, digests = _image([layer])

    def manifest(tags: list[str]) -> bytes:
        return json.dumps(
            [{"Config": f"{image_id}.json", "RepoTags": tags, "Layers": [f"{digests[0]}.tar"]}]
        ).encode()

    _pax_header = getattr(tarfile.TarInfo, "_create_pax_generic_header")  # noqa: B009
    archive = tmp_path / "pax.tar"
    with open(archive, "wb") as out:
        for python_name, name, data in (
            (None, f"{image_id}.json", config),
            (None, f"{digests[0]}.tar", layer),
            ("decoy", "manifest.json", manifest(["localhost/fresh:1", OPERATOR])),  # Go's manifest.json
            ("manifest.json", "benign", manifest(["localhost/fresh:1"])),  # Python's
        ):
            if python_name is not None:  # Python applies it to this entry and every later one
                out.write(_pax_header({"path": python_name}, tarfile.XGLTYPE, "utf-8"))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.write(info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512))
        out.write(bytes(1024))
    assert archive_images(archive) == [ArchiveImage(image_id, frozenset({"localhost/fresh:1"}))]
    assert rewrite_archive(archive, "localhost/fresh:1", tmp_path / "rewrite.tar") == image_id
    members, files = _read_rewrite(tmp_path / "rewrite.tar")
    assert [m.name for m in members] == ["manifest.json", f"{image_id}.json", f"{digests[0]}.tar"]
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None


def test_an_engine_error_tells_the_requester_no_path_of_the_provider() -> None:
    """Review 38 (F9): podman's load errors name the archive's path (the provider's blob store)
    and its temporary directories; what reaches the requester names neither."""
    stderr = (
        b"Error: payload does not match any of the supported image formats:\n"
        b" * oci-archive: loading index: open /var/tmp/oci1618169797/index.json: no such file\n"
        b" * docker-archive: loading tar component manifest.json: file does not exist in "
        b"docker-archive:/srv/dcent/blobs/objects/ab/.dcent-load-x.tar\n"
    )
    text = engine._load_failure(stderr)
    assert "/var/tmp" not in text and "/srv" not in text and ".dcent-load" not in text
    assert text.startswith("docker-archive: loading tar component manifest.json: file does not exist")


async def test_a_job_image_is_removed_when_the_last_job_counting_on_it_ends(tmp_path: Path) -> None:
    """Review 38 (F6, F14): images loaded for jobs are removed by ID when no job counts on them:
    a load for a job not started yet counts, and so does each job running it; the operator's
    pinned image and images this executor did not load are never removed."""
    calls = tmp_path / "calls"
    fake = tmp_path / "engine"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    loaded, other = "a" * 64, "b" * 64
    tracked = engine.JobImages()
    tracked.hold(other, False)  # present before any load of ours: not ours to remove
    tracked.hold(loaded, True)  # job A's load
    tracked.hold(loaded, False)  # job B's archive, the same image: present, and ours
    first, second = tracked.start(loaded), tracked.start(loaded)
    assert tracked.start(other) is None
    await tracked.end(str(fake), first, keep=())
    assert not calls.exists()  # B still runs
    await tracked.end(str(fake), second, keep=())
    assert calls.read_text() == f"rmi sha256:{loaded}\n"
    # The operator's pinned image, loaded from an archive too, stays.
    tracked.hold(other, True)
    await tracked.end(str(fake), tracked.start(other), keep=[other])
    assert calls.read_text() == f"rmi sha256:{loaded}\n"


async def test_a_load_queued_behind_the_store_lock_keeps_the_image_a_job_ending_meanwhile_held(
    tmp_path: Path,
) -> None:
    """Review 39 F7: job A's end dropped its count before waiting for the store's lock, so a load
    of the same image holding that lock (another tenant's job) found it present but uncounted,
    and A's end then removed it from under B. The count now drops under the lock."""
    calls = tmp_path / "calls"
    fake = tmp_path / "engine"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    image = "c" * 64
    tracked = engine.JobImages()
    tracked.hold(image, True)  # job A's load
    running = tracked.start(image)
    # B's load, under the lock, finds the image present while A's end waits for the lock.
    async with trio.open_nursery() as nursery, engine.store_lock(str(fake)):
        nursery.start_soon(functools.partial(tracked.end, str(fake), running, keep=()))
        await trio.testing.wait_all_tasks_blocked()
        tracked.hold(image, False)
    assert tracked.start(image) == image  # B's job counts on it
    assert not calls.exists()  # and nothing was removed


def _layer_of(members: list[tuple[tarfile.TarInfo, bytes]], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **pax: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.pax_headers = size, kind, dict(pax)
    return info


def test_a_layer_with_a_sparse_file_is_refused_and_an_ordinary_one_is_not(tmp_path: Path) -> None:
    """Review 39 F1: a sparse file in a layer unpacks to whatever size its header claims (a
    20 KiB archive made podman write 1 GiB), so a layer's headers are walked as it is copied and
    a sparse entry, PAX or GNU, refuses the archive. Without sparse entries a layer unpacks to no
    more than its own bytes. A layer of long names, links, directories and PAX records passes."""
    long_name = "deep/" * 40 + "file"
    link = _info("hard", kind=tarfile.LNKTYPE)
    link.linkname = long_name
    symlink = _info("soft", kind=tarfile.SYMTYPE)
    symlink.linkname = "/" + "x" * 200
    ordinary = _layer_of(
        [
            (_info("deep", kind=tarfile.DIRTYPE), b""),
            (_info(long_name, 5, **{"SCHILY.xattr.user.note": "n" * 300}), b"hello"),
            (link, b""),
            (symlink, b""),
        ]
    )
    archive, image_id = _layered_archive(tmp_path / "ok.tar", [ordinary], ["localhost/x:1"])
    assert rewrite_archive(archive, f"sha256:{image_id}", tmp_path / "ok-rewrite.tar") == image_id
    pax_sparse = _layer_of(
        [
            (
                _info(
                    "big",
                    0,
                    **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": str(2**40)},
                ),
                b"",
            )
        ]
    )
    gnu_sparse = _layer_of([(_info("big", 0, kind=tarfile.GNUTYPE_SPARSE), b"")], tarfile.GNU_FORMAT)
    truncated = ordinary[:1024]  # ends inside the second entry's header set
    for layer, message in (
        (pax_sparse, "a sparse file"),
        (gnu_sparse, "a sparse file"),
        (truncated, "ends inside an entry"),
    ):
        archive, image_id = _layered_archive(tmp_path / "bad.tar", [layer], ["localhost/x:1"])
        target = tmp_path / "rewrite.tar"
        with pytest.raises(ImageArchiveInvalid, match=message) as caught:
            rewrite_archive(archive, f"sha256:{image_id}", target)
        assert caught.value.code == 5321 and not target.exists()


def test_an_archive_with_a_huge_extended_header_is_refused_before_the_tar_reader_holds_it(
    tmp_path: Path,
) -> None:
    """Review 39 F4: Python's tar reader reads a GNU long name or a PAX header whole (a 300 MiB one
    took the node to 1.5 GiB); the archive's headers are walked first, seeking past data, and one
    over 64 KiB refuses it."""
    path = tmp_path / "long.tar"
    header = _info("././@LongLink", 8 * 2**20, kind=tarfile.GNUTYPE_LONGNAME)
    with open(path, "wb") as out:
        out.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        out.truncate(512 + 8 * 2**20 + 1024)  # the name (a hole) and the end-of-archive blocks
    for read in (archive_images, lambda p: rewrite_archive(p, "localhost/x:1", tmp_path / "r.tar")):
        with pytest.raises(ImageArchiveInvalid, match="an extended tar header of 8388608 bytes"):
            read(path)
