"""Fuzz every decoder of network input: any bytes give a value or the typed rejection, never a
crash, and what decodes re-encodes to the same bytes (targets and inputs: tests/fuzz_targets.py).

Hypothesis writes the tape each input is built from, and shrinks it when a check fails. The
``ci`` profile runs a hundred inputs per target; ``bench/fuzz.py`` runs hundreds of thousands.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_targets import TARGETS, Tape, Target, check, generate

IDS = [target.name.split(" (")[0] for target in TARGETS]


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
@given(tape=st.binary(max_size=256))
def test_decoder_returns_a_value_or_its_typed_rejection(target: Target, tape: bytes) -> None:
    check(target, generate(target, Tape(tape)))


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_every_seed_decodes_and_passes_the_nodes_first_check(target: Target) -> None:
    # The mutations start from valid messages; if a seed were refused, the fuzzer would mostly
    # test the refusal of that seed's defect instead of each mutated field.
    assert {check(target, seed) for seed in target.seeds()} == {"accepted"}
