"""Inputs and outputs by reference in the job spec, the receipt's blob listing, and the quote's
accounting for the transfer: bounded, validated, refused with typed errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocol.contracts import UsageReceipt
from protocol.market.delivery import (
    OutputBlob,
    OutputFile,
    ResultDelivery,
    blob_listing_hash,
    check_delivery,
    decode_delivery,
)
from protocol.market.errors import (
    InputsTooLarge,
    JobSpecError,
    MalformedMessage,
    OutputHashMismatch,
    OutputModeMismatch,
    PriceBelowAsk,
    ReceiptOverLimit,
)
from protocol.market.jobspec import (
    MAX_BLOB_OUTPUT_LIMIT_BYTES,
    MAX_DATA_INPUTS,
    MAX_OUTPUT_LIMIT_BYTES,
    OUTPUT_BLOBS,
    SOURCE_BLOB,
    SOURCE_URL,
    JobSpec,
)
from protocol.market.messages import Quote, QuoteRequest
from protocol.market.negotiation import ProviderNegotiation, transfer_surcharge
from tests.unit.market_builders import (
    CHAIN_ID,
    PROVIDER_PRICE,
    good_exchange,
    key,
    make_spec,
    new_requester,
    provider_answer,
    provider_policy,
)

CID = bytes(range(32))
SHA = bytes(range(32, 64))
GIB = 2**30


def blob_entry(size: object = "200 MiB", cid: bytes = CID) -> dict[str, object]:
    return {"cid": cid.hex(), "size": size}


def url_entry(url: str = "https://data.example/train.bin", size: object = 1000) -> dict[str, object]:
    return {"url": url, "sha256": SHA.hex(), "size": size}


def test_inputs_by_reference_parse_sort_and_survive_the_document_and_the_wire() -> None:
    spec = make_spec(
        data={"data/z.bin": blob_entry(), "data/a.bin": url_entry()},
        inputs={"config.txt": "x"},
        image="localhost/train:1",
        image_archive={"cid": CID.hex(), "size": "10 MiB"},
        output_mode="blobs",
        output_limit_bytes="500 MiB",
        limits={"disk": "1 GiB"},
    )
    assert [(item.path, item.source) for item in spec.data] == [
        ("data/a.bin", SOURCE_URL),
        ("data/z.bin", SOURCE_BLOB),
    ]
    assert spec.data[1].content_id == CID and spec.data[1].size == 200 * 2**20
    assert spec.data[0].sha256 == SHA and spec.data[0].url == "https://data.example/train.bin"
    assert spec.transfer_bytes == 200 * 2**20 + 1000 + 10 * 2**20
    assert JobSpec.from_document(spec.to_document()) == spec
    assert JobSpec.decode(spec.encode()) == spec
    # The references are part of what the contract's job hash names.
    other = dataclasses.replace(spec, data=(dataclasses.replace(spec.data[0], size=1001), spec.data[1]))
    assert other.job_hash() != spec.job_hash()


def test_data_inputs_do_not_count_against_the_disk_limit_they_are_mounted() -> None:
    spec = make_spec(data={"big.bin": blob_entry(size="10 GiB")}, limits={"disk": "64 MiB"})
    assert spec.limits.disk_bytes < spec.transfer_bytes


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"data": {"d.bin": url_entry(url="http://plain.example/x")}}, "url"),
        ({"data": {"d.bin": url_entry(url="https://user:pw@host.example/x")}}, "credentials"),
        ({"data": {"d.bin": url_entry(url="https:///no-host")}}, "host"),
        ({"data": {"d.bin": url_entry(url="https://h.example/a b")}}, "spaces"),
        ({"data": {"d.bin": {"cid": "ab", "size": 1}}}, "cid"),
        ({"data": {"d.bin": {"cid": CID.hex()}}}, "size"),
        ({"data": {"d.bin": {"cid": CID.hex(), "size": 1, "url": "https://x.example/"}}}, "expected"),
        ({"data": {"d.bin": {"file": "/etc/passwd"}}}, "job submit"),
        ({"data": {"../d.bin": blob_entry()}}, ".."),
        ({"data": {"out/d.bin": blob_entry()}}, "out/"),
        ({"data": {"d.bin": blob_entry()}, "inputs": {"d.bin": "x"}}, "inline"),
        ({"data": {"d": blob_entry(), "d/e.bin": blob_entry()}}, "not a directory"),
        ({"data": {"d": blob_entry()}, "inputs": {"d/e.txt": "x"}}, "not a directory"),
        ({"data": {f"f{i}": blob_entry(size=1) for i in range(MAX_DATA_INPUTS + 1)}}, "at most"),
        ({"data": {"a": blob_entry(size=2**40), "b": blob_entry(size=1)}}, "at most"),
        ({"image_archive": {"cid": CID.hex(), "size": 5}}, "set image"),
        ({"image_archive": {"file": "/tmp/image.tar"}}, "job submit"),
        ({"output_mode": "s3"}, "output_mode"),
        ({"output_limit_bytes": MAX_OUTPUT_LIMIT_BYTES + 1}, "output_limit_bytes"),
        ({"output_mode": "blobs", "output_limit_bytes": MAX_BLOB_OUTPUT_LIMIT_BYTES + 1}, "output_limit"),
    ],
)
def test_a_bad_reference_is_refused_naming_the_field(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        make_spec(**fields)
    assert where in caught.value.message


def test_large_blob_outputs_need_a_disk_limit_that_holds_them() -> None:
    with pytest.raises(JobSpecError, match=r"limits\.disk"):
        make_spec(output_mode=OUTPUT_BLOBS, output_limit_bytes="8 GiB")
    spec = make_spec(output_mode=OUTPUT_BLOBS, output_limit_bytes="8 GiB", limits={"disk": "9 GiB"})
    assert spec.output_limit_bytes == 8 * GIB


# --- outputs by reference in the delivery ------------------------------------------------------


def _signed_delivery(blobs: tuple[OutputBlob, ...], *, signed: tuple[OutputBlob, ...] | None = None) -> Any:
    terms_spec = new_requester().spec
    provider_key = key("bob")
    terms = good_exchange().contract.terms  # one real contract
    receipt = UsageReceipt(
        chain_id=CHAIN_ID,
        contract_hash=terms.contract_hash(),
        outcome="completed",
        gpu_ms=1000,
        exit_status=0,
        output_hash=blob_listing_hash(signed if signed is not None else blobs),
    )
    delivery = ResultDelivery(
        receipt=receipt,
        provider_sig=receipt.sign(provider_key),
        files=(),
        stdout=b"",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        outputs_truncated=False,
        timed_out=False,
        blobs=blobs,
    )
    return terms, delivery, terms_spec


def test_a_blob_listing_that_hashes_to_the_signed_root_is_accepted() -> None:
    blobs = (OutputBlob("a.bin", 500 * 2**20, CID), OutputBlob("b/c.txt", 3, SHA))
    terms, delivery, _ = _signed_delivery(blobs)
    check_delivery(terms, delivery, output_limit_bytes=GIB, blobs=True)
    assert decode_delivery(delivery.encode()) == delivery
    # The same delivery for a job whose outputs come inline is refused, and vice versa.
    with pytest.raises(OutputModeMismatch):
        check_delivery(terms, delivery, output_limit_bytes=GIB, blobs=False)


def test_a_listing_other_than_the_signed_one_or_over_the_limit_is_refused() -> None:
    honest = (OutputBlob("a.bin", 10, CID),)
    terms, delivery, _ = _signed_delivery((OutputBlob("a.bin", 10, SHA),), signed=honest)
    with pytest.raises(OutputHashMismatch):
        check_delivery(terms, delivery, output_limit_bytes=GIB, blobs=True)
    terms, delivery, _ = _signed_delivery((OutputBlob("a.bin", GIB + 1, CID),))
    with pytest.raises(ReceiptOverLimit):
        check_delivery(terms, delivery, output_limit_bytes=GIB, blobs=True)


def test_a_delivery_with_files_and_blobs_or_unsorted_blobs_does_not_decode() -> None:
    _, delivery, _ = _signed_delivery((OutputBlob("a.bin", 1, CID),))
    with pytest.raises(MalformedMessage):
        dataclasses.replace(delivery, files=(OutputFile("x", b"1"),))
    with pytest.raises(MalformedMessage):
        dataclasses.replace(delivery, blobs=(OutputBlob("b", 1, CID), OutputBlob("a", 1, CID)))
    with pytest.raises(MalformedMessage):
        OutputBlob("../escape", 1, CID)


def test_the_blob_listing_hash_binds_path_size_and_content_id() -> None:
    base = blob_listing_hash((OutputBlob("a", 1, CID),))
    assert base != blob_listing_hash((OutputBlob("b", 1, CID),))
    assert base != blob_listing_hash((OutputBlob("a", 2, CID),))
    assert base != blob_listing_hash((OutputBlob("a", 1, SHA),))


# --- the quote accounts for the transfer ----------------------------------------------------


def _answer(spec: JobSpec, **policy: Any) -> Any:
    requester = new_requester(spec)
    request = requester.start(1_700_000_000_000)
    assert isinstance(request, QuoteRequest)
    provider = ProviderNegotiation(provider_policy(**policy))
    return provider_answer(provider, request)


def test_a_provider_refuses_inputs_over_its_transfer_limit_with_a_typed_refusal() -> None:
    spec = make_spec(data={"d.bin": blob_entry(size="2 GiB")}, max_price_per_gpu_second=PROVIDER_PRICE * 2)
    refusal = _answer(spec, max_transfer_bytes=GIB)
    assert refusal.code == InputsTooLarge.code and "at most" in refusal.message
    assert isinstance(_answer(spec, max_transfer_bytes=2 * GIB), Quote)


def test_the_quote_adds_the_transfer_to_the_price_and_refuses_a_job_that_cannot_pay_it() -> None:
    spec = make_spec(
        data={"d.bin": blob_entry(size="3 GiB")}, max_runtime_s=600, max_price_per_gpu_second=2_000
    )
    # 3 GiB at 100_000 per GiB over 600 GPU-seconds: 500 base units per GPU-second more.
    assert transfer_surcharge(spec, 100_000) == 500
    quote = _answer(spec, transfer_price_per_gib=100_000)
    assert isinstance(quote, Quote) and quote.terms.price_per_gpu_second == PROVIDER_PRICE + 500
    refusal = _answer(spec, transfer_price_per_gib=10**6)
    assert refusal.code == PriceBelowAsk.code and "transfer" in refusal.message
    # A job without inputs by reference pays the plain ask.
    assert transfer_surcharge(make_spec(), 10**6) == 0


def test_job_submit_finds_local_files_and_validates_the_spec_before_putting_them(tmp_path: Any) -> None:
    from node.cli.job import load_spec_document

    data = tmp_path / "train.bin"
    data.write_bytes(b"x" * 1000)
    spec_file = tmp_path / "job.toml"
    spec_file.write_text(
        'argv = ["true"]\nmax_runtime_s = "1m"\nmax_price_per_gpu_second = 1\n'
        f'[resources]\ngpu_count = 1\n[data]\n"data/train.bin" = {{ file = "{data}" }}\n'
    )
    doc, files = load_spec_document(str(spec_file))
    assert [(key, path) for _, key, path in files] == [("data/train.bin", data)]
    assert doc["data"]["data/train.bin"] == {"file": str(data)}  # replaced only once put
    spec_file.write_text(spec_file.read_text().replace("data/train.bin", "../escape"))
    with pytest.raises(JobSpecError, match=r"\.\."):
        load_spec_document(str(spec_file))


def test_job_records_stored_before_references_still_load_and_output_pins_persist() -> None:
    from node.market.records import PROVIDER, JobRecord
    from protocol.encoding import decode, encode

    spec = make_spec()
    old_wire = spec.to_wire()
    for name in ("data", "image_archive_id", "image_archive_size", "output_mode"):
        del old_wire[name]
    record = JobRecord(job_id="p-1", role=PROVIDER, spec=spec, created_ms=1, output_cids=[CID])
    assert JobRecord.from_stored(record.to_stored()).output_cids == [CID]
    stored = decode(record.to_stored())
    assert isinstance(stored, dict)
    stored["spec"] = encode(old_wire)
    del stored["output_cids"]
    old = JobRecord.from_stored(encode(stored))
    assert old.spec == spec and old.output_cids == []


def test_a_blob_delivery_is_small_and_the_largest_listing_fits_its_limit() -> None:
    from protocol.market.delivery import MAX_LOG_BYTES, MAX_OUTPUT_FILES, blob_delivery_limit

    _, delivery, _ = _signed_delivery(
        tuple(OutputBlob(f"{i:04d}" + "p" * 1020, 2**40, CID) for i in range(MAX_OUTPUT_FILES))
    )
    biggest = dataclasses.replace(delivery, stdout=b"o" * MAX_LOG_BYTES, stderr=b"e" * MAX_LOG_BYTES)
    assert len(biggest.encode()) <= blob_delivery_limit() < 16 * 2**20
