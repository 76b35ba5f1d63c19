"""Reading image archives for the image ID a job runs (no engine needed): ``podman save`` /
``docker save`` archives and OCI layouts written here, honest and tampered with."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from node.executor import images
from node.executor.errors import ImageArchiveInvalid
from node.executor.images import (
    ArchiveImage,
    archive_images,
    id_reference,
    image_id_of,
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


def _oci_archive(path: Path, *, ref: str, config: bytes = CONFIG) -> Path:
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
                "annotations": {"org.opencontainers.image.ref.name": ref},
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
        assert select_image(docker, reference) == CONFIG_ID
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
    # A document behind a symlink is not read (it could point the reader anywhere in the tar).
    linked = _tar(tmp_path / "l.tar", {"real.json": b"[]"}, links={"manifest.json": "real.json"})
    with pytest.raises(ImageArchiveInvalid, match="neither"):
        archive_images(linked)
    monkeypatch.setattr(images, "MAX_DOCUMENT_BYTES", 64)
    big = _docker_archive(tmp_path / "big.tar", tags=["x:1"])
    with pytest.raises(ImageArchiveInvalid, match="over 64 bytes"):
        archive_images(big)
    monkeypatch.setattr(images, "MAX_ARCHIVE_MEMBERS", 5)
    many = _tar(tmp_path / "many.tar", {f"f{i}": b"" for i in range(6)})
    with pytest.raises(ImageArchiveInvalid, match="more than 5 entries"):
        archive_images(many)
