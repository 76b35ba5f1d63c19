"""Which container images a provider runs: images bound by content, never a tag anyone can move.

A tag is a name in the provider's image store, and ``podman load`` moves a tag to whatever image
the loaded archive carries under it (issue 15; :mod:`node.executor.images`): any requester could
make ``localhost/train:1`` mean its own image, for every later job that names that tag. So a
container job's image must be one of:

* **bound to an archive** by content id in the spec (``image_archive``), which the contract's
  ``job_hash`` binds: the provider runs the ID it reads from that archive, whatever ``image``
  names in it;
* **an image ID** in ``image``: ``sha256:<64 hex>``, or the bare 64 hex (both engines' IDs);
* **none at all**: the operator's own ``container_image`` runs it, trusted by its tag because the
  operator chose it (the self-test's job: the market sends a container engine only specs with an
  ``image``, :attr:`~protocol.market.jobspec.JobSpec.executors`);
* **a tag only** where the operator trusts its store's tags (``[executor]
  allow_local_image_names``).

:func:`image_refusal` is that rule, pure. The provider applies it when it is asked for a quote
(:class:`~protocol.market.errors.ImageTagNotTrusted` 4049, before any quote is signed, so no
requester waits for a contract and an escrow that could never run), and its container executor
applies it again when the job starts (``ImageNameNotTrusted`` 5322: a contract resumed under a
changed config), so the two cannot disagree.
"""

from __future__ import annotations

import re

#: An image ID: the SHA-256 of the image's config, with or without its ``sha256:`` prefix.
IMAGE_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def image_id_of(reference: str) -> str | None:
    """The 64-hex image ID ``reference`` names (``sha256:<hex>`` or the bare hex), else None."""
    match = IMAGE_ID.fullmatch(reference)
    return match.group(1) if match else None


def image_refusal(image: str, *, archive_bound: bool, allow_local_names: bool) -> str | None:
    """Why a provider must not run a container job whose spec names ``image`` (empty: none, so
    the operator's own), or None when it may. ``archive_bound``: the spec names an image archive
    by content id; ``allow_local_names``: the operator trusts its store's tags."""
    if not image or archive_bound or allow_local_names or image_id_of(image) is not None:
        return None
    return (
        f"the job names its image {image!r:.80} only by a tag, which this provider does not trust "
        "(any image archive can move a tag): send it as image_archive, or name it by ID "
        "(sha256:<hex>)"
    )
