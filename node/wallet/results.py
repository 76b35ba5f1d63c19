"""A job's result as a node returns it: checked, then written under an output directory.

``job_result`` answers ``{"output_hash", "files": {path: base64}, "exit_status", "gpu_seconds"}``.
Before anything is written the wallet checks, for every file, that its path stays inside the
output directory (relative, no ``.``/``..``/empty components, no symlink inside the directory
leading out), and that the files hash to the reported ``output_hash`` by the listing hash the
executor and the receipt use (:func:`protocol.market.delivery.output_listing_hash`). One bad file
refuses the whole result: nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from node.wallet.errors import BadNodeAnswer, OutputWriteError, ResultFilesMismatch, UnsafeOutputPath
from node.wallet.values import answer_int, answer_object, answer_str
from protocol.market.delivery import output_listing_hash

MAX_OUTPUT_PATH_BYTES = 1024


@dataclass(frozen=True, slots=True)
class JobResult:
    job_id: str
    output_hash: str
    exit_status: int
    gpu_seconds: int
    files: Mapping[str, bytes]
    #: How the run ended (``completed``, ``job_failed``, ...); "" from a node that does not say.
    outcome: str = ""

    def listing(self) -> list[dict[str, object]]:
        """Each file's path, size and sha256, in path order."""
        return [
            {
                "path": path,
                "size": len(self.files[path]),
                "sha256": hashlib.sha256(self.files[path]).hexdigest(),
            }
            for path in sorted(self.files)
        ]

    def describe(self, written_to: Path | None) -> dict[str, object]:
        """The JSON form ``job result`` prints (file contents are not repeated)."""
        return {
            "job_id": self.job_id,
            "output_hash": self.output_hash,
            "outcome": self.outcome or None,
            "exit_status": self.exit_status,
            "gpu_seconds": self.gpu_seconds,
            "files": self.listing(),
            "written_to": None if written_to is None else str(written_to),
        }


def check_output_path(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that cannot leave the directory it is joined to.

    Raises UnsafeOutputPath for an absolute path, a ``.``, ``..`` or empty component, a NUL
    byte, or more than 1024 bytes.
    """
    if not path or "\x00" in path or len(path.encode("utf-8", "surrogatepass")) > MAX_OUTPUT_PATH_BYTES:
        raise UnsafeOutputPath(f"output path {path[:64]!r} is empty, has a NUL byte or is too long")
    if path.startswith("/"):
        raise UnsafeOutputPath(f"output path {path!r} is absolute")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UnsafeOutputPath(f"output path {path!r} has a '', '.' or '..' component")
    return PurePosixPath(path)


def decode_result(job_id: str, answer: object) -> JobResult:
    """Check a ``job_result`` answer: shape, paths, then the output hash.

    Raises BadNodeAnswer (malformed), UnsafeOutputPath, ResultFilesMismatch.
    """
    doc = answer_object(answer, "job_result")
    reported = answer_str(doc, "output_hash", "job_result").lower()
    encoded = answer_object(doc.get("files"), "job_result.files")
    files: dict[str, bytes] = {}
    for path in sorted(encoded):
        check_output_path(path)
        content = encoded[path]
        if not isinstance(content, str):
            raise BadNodeAnswer(f"job_result.files[{path!r}] is not a base64 string")
        try:
            files[path] = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadNodeAnswer(f"job_result.files[{path!r}] is not valid base64") from None
    for path in files:
        parents = PurePosixPath(path).parents
        clash = next((str(parent) for parent in parents if str(parent) in files), None)
        if clash is not None:
            raise UnsafeOutputPath(f"output {path!r} lies under {clash!r}, which is a file")
    recomputed = output_listing_hash(files).hex()
    if recomputed != reported:
        raise ResultFilesMismatch(
            f"job {job_id}: the node reports output hash {reported}, the files hash to {recomputed}"
        )
    return JobResult(
        job_id=job_id,
        output_hash=reported,
        exit_status=answer_int(doc, "exit_status", "job_result"),
        gpu_seconds=answer_int(doc, "gpu_seconds", "job_result"),
        files=files,
        outcome=doc["outcome"] if isinstance(doc.get("outcome"), str) else "",
    )


def _targets(files: Mapping[str, bytes], root: Path) -> dict[Path, bytes]:
    """Where each file goes under ``root``; refuses any that would resolve outside it."""
    targets: dict[Path, bytes] = {}
    for path in sorted(files):
        target = root.joinpath(*check_output_path(path).parts)
        # realpath follows symlinks already inside the directory: a planted `out -> /etc` must
        # not carry a write outside.
        if not Path(os.path.realpath(target)).is_relative_to(root):
            raise UnsafeOutputPath(f"output path {path!r} resolves outside {root}")
        targets[target] = files[path]
    return targets


def write_files(result: JobResult, out_dir: Path) -> list[Path]:
    """Write the result's files under ``out_dir`` (created if needed); the paths written.

    Every path is checked before the first write. Existing regular files are replaced; a
    symlink at a file's own path is refused by the kernel (``O_NOFOLLOW``). Raises
    UnsafeOutputPath, OutputWriteError.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        root = Path(os.path.realpath(out_dir))
    except OSError as exc:
        raise OutputWriteError(f"cannot create {out_dir}: {exc.strerror}") from exc
    targets = _targets(result.files, root)
    written = []
    for target, content in targets.items():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            try:
                remaining = memoryview(content)
                while remaining:
                    remaining = remaining[os.write(fd, remaining) :]
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputWriteError(f"cannot write {target}: {exc.strerror}") from exc
        written.append(target)
    return written
