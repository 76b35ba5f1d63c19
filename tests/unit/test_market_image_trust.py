"""A provider refuses at quote time the container jobs its executor would refuse at start: an image
named only by a tag (issue 15: any image archive can move a tag), unless its operator trusts local
tags. An image named by ID, or bound to an archive by content id, is quoted. The quote's rule and
the executor's are one function (``protocol.market.image_trust``), checked here to agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.executor.container import ContainerExecutor
from node.executor.errors import ImageNameNotTrusted
from node.executor.model import SandboxJob
from node.executor.settings import ExecutorSettings
from protocol.market.errors import ImageTagNotTrusted
from protocol.market.jobspec import JobSpec
from protocol.market.matching import match
from protocol.market.messages import Quote, QuoteRequest, Refusal, decode_message, encode_message
from protocol.market.negotiation import (
    NegotiationPlan,
    ProviderNegotiation,
    ProviderState,
    RequesterState,
)
from tests.unit.market_builders import (
    CHAIN_ID,
    DEADLINE_HEIGHT,
    NOW_MS,
    PROVIDER_COLLATERAL,
    PROVIDER_GPUS,
    REQUESTER,
    announce,
    key,
    make_spec,
    provider_answer,
    provider_policy,
    pub,
)

IMAGE_ID = "4f" * 32
ARCHIVE_CID = "ab" * 32
TAG = "localhost/train:1"


def container_spec(image: str, *, archive: bool = False) -> JobSpec:
    extra: dict[str, Any] = {"image_archive": {"cid": ARCHIVE_CID, "size": "10 MiB"}} if archive else {}
    return make_spec(image=image, argv=["sh", "-c", "true"], **extra)


def answer(spec: JobSpec, **policy: Any) -> tuple[Quote | Refusal, ProviderNegotiation]:
    """A podman provider's answer to a request for ``spec``, and its negotiation."""
    request = QuoteRequest(CHAIN_ID, spec, pub(REQUESTER), b"n" * 16, DEADLINE_HEIGHT)
    provider = ProviderNegotiation(provider_policy(executors=frozenset({"podman"}), **policy))
    return provider_answer(provider, request), provider


def wire(message: Any) -> Any:
    return decode_message(encode_message(message))


def test_only_an_image_named_by_a_tag_alone_is_refused_before_any_quote() -> None:
    refusal, provider = answer(container_spec(TAG))
    assert isinstance(refusal, Refusal) and refusal.code == ImageTagNotTrusted.code == 4049
    assert "only by a tag" in refusal.message and "image_archive" in refusal.message
    assert provider.state is ProviderState.FAILED
    assert provider.quote is None and provider.reserved_gpu_uuids == ()  # nothing signed or held
    assert provider.failure is not None and provider.failure.code == 4049
    quoted = {
        "by ID": container_spec(f"sha256:{IMAGE_ID}"),
        "by bare ID": container_spec(IMAGE_ID),
        "a tag bound to an archive by content id": container_spec(TAG, archive=True),
    }
    for case, spec in quoted.items():
        quote, provider = answer(spec)
        assert isinstance(quote, Quote), (case, quote)
        assert provider.state is ProviderState.QUOTED
    # An operator who trusts its store's tags (`[executor] allow_local_image_names`) quotes it.
    quote, _ = answer(container_spec(TAG), allow_local_image_names=True)
    assert isinstance(quote, Quote)


def test_the_requester_fails_with_the_refusal_and_the_plan_moves_on_to_a_provider_trusting_tags() -> None:
    spec = container_spec(TAG)
    offers = match(
        spec,
        [
            announce(label, PROVIDER_GPUS, price=price, collateral=PROVIDER_COLLATERAL, executors=("podman",))
            for label, price in (("bob", 100), ("carol", 200))
        ],
        now_ms=NOW_MS,
        min_provider_stake=1,
    )
    plan = NegotiationPlan(
        key=key(REQUESTER),
        chain_id=CHAIN_ID,
        spec=spec,
        offers=offers,
        deadline_height=DEADLINE_HEIGHT,
        seed=b"0123456789abcdef",
    )
    assert [offer.provider for offer in offers] == [pub("bob"), pub("carol")]
    podman = frozenset({"podman"})
    providers = {
        pub("bob"): ProviderNegotiation(provider_policy("bob", executors=podman, price_per_gpu_second=100)),
        pub("carol"): ProviderNegotiation(
            provider_policy("carol", executors=podman, price_per_gpu_second=200, allow_local_image_names=True)
        ),
    }
    while (negotiation := plan.next_negotiation()) is not None:
        provider = providers[negotiation.offer.provider]
        reply = provider_answer(provider, wire(negotiation.start(NOW_MS)))
        proposal = negotiation.receive(wire(reply), NOW_MS)
        if proposal is not None:
            negotiation.receive(wire(provider.receive_contract(wire(proposal), NOW_MS)), NOW_MS)
    [(refused_by, failure)] = plan.failures
    assert (refused_by.provider, failure.code) == (pub("bob"), ImageTagNotTrusted.code)
    assert "only by a tag" in failure.message
    assert providers[pub("bob")].contract is None
    assert plan.contract is not None and plan.contract.terms.provider == pub("carol")
    assert plan.current is not None and plan.current.state is RequesterState.AGREED


IMAGES = (
    TAG,
    "train",
    f"sha256:{IMAGE_ID}",
    IMAGE_ID,
    f"SHA256:{IMAGE_ID.upper()}",
    f"train@sha256:{IMAGE_ID}",
    f"sha256:{IMAGE_ID[:12]}",
)


async def test_the_quote_refuses_exactly_what_the_executor_refuses_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image shape, with and without an archive, with and without trusted tags: the provider
    quotes a job iff its podman executor (the same operator setting) would start it. The executor
    gets what the node hands it (``JobData.image_for``): an archive's ID, else the spec's image."""

    async def in_store(reference: str) -> str:
        return IMAGE_ID  # every image is in the engine's store: only trust decides

    for allow in (False, True):
        executor = ContainerExecutor(
            "podman",
            engine_path="/nonexistent/podman",
            settings=ExecutorSettings(allow_local_image_names=allow),
        )
        monkeypatch.setattr(executor, "image_id", in_store)
        refused_at_start = []
        for image in IMAGES:
            for archive in (False, True):
                reply, _ = answer(container_spec(image, archive=archive), allow_local_image_names=allow)
                refused_at_quote = isinstance(reply, Refusal)
                if isinstance(reply, Refusal):
                    assert reply.code == ImageTagNotTrusted.code, reply
                job = SandboxJob(
                    job_id="trust",
                    argv=("true",),
                    work_root=tmp_path,
                    image=f"sha256:{IMAGE_ID}" if archive else image,
                )
                try:
                    await executor._image_to_run(job)
                    refused = False
                except ImageNameNotTrusted:
                    refused = True
                assert refused_at_quote == refused, (image, archive, allow)
                refused_at_start.append(refused)
        # Refused: the five shapes that are no ID, without an archive, unless tags are trusted.
        assert sum(refused_at_start) == (0 if allow else len(IMAGES) - 2)
