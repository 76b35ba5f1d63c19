"""Reading image archives for the image ID a job runs (no engine needed): ``podman save`` /
``docker save`` archives and OCI layouts written here, honest and tampered with; and the rule
that keeps an archive from taking a name in the provider's store (the engine's answers given)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from node.executor import images
from node.executor.engine import load_image_archive
from node.executor.errors import ImageArchiveInvalid, ImageArchiveTakesName, SandboxStartFailed
from node.executor.images import (
    ArchiveImage,
    archive_images,
    id_reference,
    image_id_of,
    name_conflict,
    name_key,
    names_taken,
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
    # Names that are not name[:tag] (a digest, upper case), and more names than the bound.
    for tags, message in (
        ([f"localhost/x@sha256:{'0' * 64}"], "not a name"),
        (["localhost/Dcent-Job:1"], "not a name"),
        ([f"localhost/x:{i}" for i in range(images.MAX_ARCHIVE_NAMES + 1)], "more than 64"),
    ):
        with pytest.raises(ImageArchiveInvalid, match=message) as caught:
            archive_images(_docker_archive(tmp_path / "n.tar", tags=tags))
        assert caught.value.code == 5321


def test_names_are_compared_as_an_engine_looks_them_up() -> None:
    key = name_key("localhost/train:1")
    for alias in (
        "train:1",
        "docker.io/library/train:1",
        "quay.io/someone/train:1",
        "Localhost/train:1",
        "localhost:5000/train:1",
    ):
        assert name_key(alias) == key, alias
    assert name_key("train") == name_key("docker.io/library/train:latest") == ("train", "latest")
    assert name_key("train:2") != key and name_key("trains:1") != key
    for not_a_name in (f"train@sha256:{'0' * 64}", "Train:1", "train:", " train", "/train", "x" * 256):
        assert name_key(not_a_name) is None, not_a_name


def test_an_archive_may_not_move_or_shadow_a_name_least_of_all_the_operators() -> None:
    ours, operators = CONFIG_ID, hashlib.sha256(b"the operator's config").hexdigest()
    store = {OPERATOR: operators, "localhost/mine:1": ours}

    def conflict(
        *names: str,
        image_id: str = ours,
        store: dict[str, str] = store,
        reserved: dict[str, str | None] | None = None,
    ) -> str | None:
        return name_conflict(
            [ArchiveImage(image_id, frozenset(names))],
            store,
            {OPERATOR: operators} if reserved is None else reserved,
        )

    # The operator's image's name in every spelling an engine reads as it, or finds for it in a
    # short-name lookup; alone or beside a fresh tag; in the store, or reserved while absent.
    spellings = (
        OPERATOR,
        "dcent-job",
        "dcent-job:latest",
        "docker.io/library/dcent-job",
        "quay.io/x/dcent-job",
    )
    for name in spellings:
        for names in ((name,), ("localhost/fresh:1", name)):
            for store_now in (store, {}):
                refusal = conflict(*names, store=store_now)
                assert refusal is not None and OPERATOR in refusal and "name it by ID" in refusal, names
        assert conflict(name, store={}, reserved={"dcent-job": None}) is not None  # never found yet
        assert conflict(name, image_id=operators) is None  # the operator's own image, re-sent
    # Any other image's name is no more the archive's to take.
    assert conflict("mine:1", image_id=operators, reserved={}) is not None
    # Fresh names, the image's own names, an archive without names, an operator's image by ID.
    assert conflict("localhost/fresh:1") is None and conflict("localhost/mine:1") is None
    assert conflict() is None and conflict("dcent-job:2") is None
    assert conflict("dcent-job", store={}, reserved={f"sha256:{operators}": operators}) is None
    # Two images of one archive named alike: a lookup of either name could find the other.
    twice = [
        ArchiveImage(ours, frozenset({"localhost/t:1"})),
        ArchiveImage(operators, frozenset({"quay.io/t:1"})),
    ]
    assert "alike" in (name_conflict(twice, {}, {}) or "")


def test_what_a_load_did_to_names_is_judged_on_the_engines_listings() -> None:
    old, new = CONFIG_ID, hashlib.sha256(b"loaded").hexdigest()
    before = {OPERATOR: old, "localhost/other:1": old}
    after = {
        OPERATOR: new,  # moved
        "localhost/other:1": old,
        "localhost/fresh:1": new,  # added, no conflict
        "quay.io/x/other:1": new,  # added, shadows localhost/other:1
    }
    assert names_taken(before, after, {}) == ({OPERATOR: old}, ["quay.io/x/other:1"])
    assert names_taken(before, {**before, "localhost/x:2": new}, {}) == ({}, [])
    # The operator's name, absent before, taken by the load.
    assert names_taken({}, {OPERATOR: new}, {OPERATOR: None}) == ({}, [OPERATOR])


FAKE_ENGINE = """#!{python}
import json, sys
path = {state!r}
state = json.load(open(path))
args = sys.argv[1:]
state["calls"].append(args[0] if args[0] != "image" else " ".join(args[:2]))
names = state["names"]
if args[:2] == ["image", "inspect"]:
    found = names.get(args[-1]) or (args[-1][7:] if args[-1][7:] in state["ids"] else None)
    print(found or "", end="")
    code = 0 if found else 1
elif args[:2] == ["image", "ls"]:
    print("".join(f"sha256:{{i}} {{n}}\\n" for n, i in names.items()), end="")
    code = 0 if state["lists"] else 1
elif args[0] == "load":
    names.update(state["on_load"])
    state["ids"] += list(state["on_load"].values())
    code = 0
elif args[0] == "tag":
    names[args[2]] = args[1][7:]
    code = 0
elif args[0] == "rmi":
    code = 0 if names.pop(args[1], None) else 1
json.dump(state, open(path, "w"))
sys.exit(code)
"""


def _fake_engine(tmp_path: Path, **state: object) -> tuple[str, Path]:
    """A stand-in for podman that keeps its store's names in a JSON file: what a load does to
    them is whatever the test says (a name the archive did not show, as an engine might)."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"calls": [], "ids": [], "lists": True, **state}))
    engine = tmp_path / "engine"
    engine.write_text(FAKE_ENGINE.format(python=sys.executable, state=str(path)))
    engine.chmod(0o755)
    return str(engine), path


async def test_names_a_load_took_that_the_check_did_not_foresee_are_put_back(tmp_path: Path) -> None:
    """Defence in depth: the archive shows only a fresh tag, the engine's load also moves the
    operator's name and adds one shadowing it. Judged on the engine's listings after the load,
    the name is put back, the other removed, and the archive refused (5323)."""
    old = hashlib.sha256(b"the operator's config").hexdigest()
    archive = _docker_archive(tmp_path / "d.tar", tags=["localhost/fresh:1"])
    on_load = {"localhost/fresh:1": CONFIG_ID, OPERATOR: CONFIG_ID, "quay.io/x/dcent-job:latest": CONFIG_ID}
    engine, state = _fake_engine(tmp_path, names={OPERATOR: old}, ids=[old], on_load=on_load)
    with pytest.raises(ImageArchiveTakesName) as caught:
        await load_image_archive(engine, archive, "localhost/fresh:1", reserved={OPERATOR: old})
    assert caught.value.code == 5323 and OPERATOR in caught.value.message
    after = json.loads(state.read_text())
    assert after["names"] == {OPERATOR: old, "localhost/fresh:1": CONFIG_ID}
    assert after["calls"].count("load") == 1 and "tag" in after["calls"] and "rmi" in after["calls"]
    # An engine that does not list its names: nothing is loaded unchecked (ours, not the job's).
    engine, state = _fake_engine(tmp_path, names={}, on_load=on_load, lists=False)
    with pytest.raises(SandboxStartFailed):
        await load_image_archive(engine, archive, "localhost/fresh:1")
    assert "load" not in json.loads(state.read_text())["calls"]
