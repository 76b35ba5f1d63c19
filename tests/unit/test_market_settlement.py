"""The settlement tables (protocol/market/settlement.py) driven block by block on a real ledger:
each test applies real signed transactions with ``Chain`` and asks the tables, after every
block, what each side does. No network, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.ledger.events import (
    ESCROW_CLAIMED,
    ESCROW_FINALIZED,
    ESCROW_OPENED,
    ESCROW_REFUNDED,
    ESCROW_SETTLED,
    LedgerEvent,
)
from protocol.ledger.tx import EscrowDispute, EscrowFinalize, OpenEscrow, Refund
from protocol.market.settlement import (
    PAYER_ESCROW_RULES,
    PROVIDER_CLAIM_RULES,
    PROVIDER_ESCROW_RULES,
    REQUESTER_CLOSE_RULES,
    TABLES,
    Action,
    ContractOnChain,
    JobTerms,
    Step,
    decide,
    read_contract,
)

from .ledger_helpers import TEST_PARAMS, Chain, claim_msg, make_genesis, make_terms, settle_msg, sign_contract

DEADLINE = 10
TERMS = make_terms("alice", "bob", price=7, max_gpu_seconds=100, collateral=300, deadline=DEADLINE)
HASH = TERMS.contract_hash()
WINDOW = TEST_PARAMS.dispute_window_blocks
GRACE = 3


def requester_step(chain: Chain, *, countersigned_height: int = 0) -> Step:
    job = JobTerms(
        deadline_height=DEADLINE,
        countersigned=countersigned_height > 0,
        countersigned_height=countersigned_height,
        settle_grace_blocks=GRACE,
    )
    return decide(REQUESTER_CLOSE_RULES, read_contract(chain.state, HASH), job)


def escrowed_chain() -> Chain:
    chain = Chain(make_genesis())
    result = chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert result.events == (LedgerEvent(ESCROW_OPENED, HASH, price=7),)  # TERMS: 7 per GPU-second
    return chain


def test_a_requester_waits_for_the_delivery_then_refunds_in_the_block_after_the_deadline() -> None:
    chain = escrowed_chain()
    while chain.height <= DEADLINE:
        step = requester_step(chain)
        assert (step.action, step.wake_height) == (Action.WAIT, DEADLINE + 1), chain.height
        chain.block()
    assert requester_step(chain).action is Action.REFUND
    result = chain.block([chain.tx("alice", Refund(HASH))])
    assert result.events == (LedgerEvent(ESCROW_REFUNDED, HASH),)
    assert requester_step(chain).action is Action.CLOSED
    assert read_contract(chain.state, HASH).closed_as == "refunded"


def test_a_countersigned_requester_leaves_the_provider_the_grace_then_settles_itself() -> None:
    chain = escrowed_chain()
    chain.block()
    countersigned_at = chain.height
    while chain.height < countersigned_at + GRACE:
        step = requester_step(chain, countersigned_height=countersigned_at)
        assert (step.action, step.wake_height) == (Action.WAIT, countersigned_at + GRACE)
        chain.block()
    assert requester_step(chain, countersigned_height=countersigned_at).action is Action.SETTLE
    result = chain.block([chain.tx("alice", settle_msg(TERMS, 40))])
    assert result.events == (LedgerEvent(ESCROW_SETTLED, HASH),)
    assert requester_step(chain, countersigned_height=countersigned_at).action is Action.CLOSED


def test_a_claim_for_a_result_never_accepted_is_disputed_while_its_window_is_open() -> None:
    chain = escrowed_chain()
    result = chain.block([chain.tx("bob", claim_msg(TERMS, 55))])
    assert result.events == (LedgerEvent(ESCROW_CLAIMED, HASH),)
    assert requester_step(chain).action is Action.DISPUTE
    chain.block([chain.tx("alice", EscrowDispute(HASH))])
    on_chain = read_contract(chain.state, HASH)
    assert on_chain.closed_as == "disputed"
    assert requester_step(chain).action is Action.CLOSED


def test_a_claim_past_its_window_is_left_to_the_provider_and_the_provider_finalizes_exactly_then() -> None:
    chain = escrowed_chain()
    chain.block([chain.tx("bob", claim_msg(TERMS, 55))])
    claimed_at = chain.height
    provider = JobTerms(deadline_height=DEADLINE)
    # The provider waits until the block before the first height that accepts a finalize.
    while True:
        step = decide(PROVIDER_CLAIM_RULES, read_contract(chain.state, HASH), provider)
        if step.action is Action.FINALIZE:
            break
        assert (step.action, step.wake_height) == (Action.WAIT, claimed_at + WINDOW)
        assert requester_step(chain).action is Action.DISPUTE  # the requester could still contest
        chain.block()
    assert chain.height == claimed_at + WINDOW
    assert requester_step(chain) == Step(Action.WAIT, "a claim past its window: the provider finalizes")
    result = chain.block([chain.tx("bob", EscrowFinalize(HASH))])
    assert result.events == (LedgerEvent(ESCROW_FINALIZED, HASH),)
    assert decide(PROVIDER_CLAIM_RULES, read_contract(chain.state, HASH), provider).action is Action.CLOSED


def test_the_provider_runs_once_the_escrow_opens_and_gives_up_at_its_limit_otherwise() -> None:
    chain = Chain(make_genesis())
    job = JobTerms(deadline_height=DEADLINE, give_up_height=3)
    assert decide(PROVIDER_ESCROW_RULES, read_contract(chain.state, HASH), job) == Step(
        Action.WAIT, "wait for the escrow", 3
    )
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert decide(PROVIDER_ESCROW_RULES, read_contract(chain.state, HASH), job).action is Action.ESCROWED

    never = Chain(make_genesis())
    while never.height < 3:
        assert decide(PROVIDER_ESCROW_RULES, read_contract(never.state, HASH), job).action is Action.WAIT
        never.block()
    assert decide(PROVIDER_ESCROW_RULES, read_contract(never.state, HASH), job).action is Action.GIVE_UP


def test_a_requester_waiting_for_its_payer_stops_past_the_deadline() -> None:
    chain = Chain(make_genesis())
    job = JobTerms(deadline_height=2)
    assert decide(PAYER_ESCROW_RULES, read_contract(chain.state, HASH), job).wake_height == 3
    chain.advance_to(3)
    assert decide(PAYER_ESCROW_RULES, read_contract(chain.state, HASH), job).action is Action.NEVER_OPENED


def test_an_escrow_that_never_opens_fails_the_requester_after_the_deadline() -> None:
    chain = Chain(make_genesis())
    assert requester_step(chain) == Step(Action.WAIT, "not escrowed yet", DEADLINE + 1)
    chain.advance_to(DEADLINE + 1)
    assert requester_step(chain).action is Action.NEVER_OPENED


contracts = st.builds(
    lambda height, state, finalizable: ContractOnChain(
        height,
        escrowed=state in ("open", "claimed"),
        closed_as=state if state in ("settled", "refunded", "disputed") else "",
        claim_pending=state == "claimed",
        finalizable_from=finalizable if state == "claimed" else 0,
    ),
    st.integers(0, 1_000),
    st.sampled_from(["none", "open", "claimed", "settled", "refunded", "disputed"]),
    st.integers(1, 1_100),
)
jobs = st.builds(
    JobTerms,
    deadline_height=st.integers(0, 1_100),
    give_up_height=st.integers(0, 1_100),
    countersigned=st.booleans(),
    countersigned_height=st.integers(0, 1_000),
    settle_grace_blocks=st.integers(0, 20),
)


@given(contracts, jobs, st.sampled_from(sorted(TABLES)))
def test_every_table_answers_and_a_wait_never_wakes_in_the_past(
    chain: ContractOnChain, job: JobTerms, table: str
) -> None:
    """A wake height at or below the current one would wake the job at every block: polling again."""
    step = decide(TABLES[table], chain, job)
    if step.action is Action.WAIT:
        assert step.wake_height == 0 or step.wake_height > chain.height
    else:
        assert step.wake_height == 0
    if chain.closed_as and table in ("requester_close", "provider_claim"):
        assert step.action is Action.CLOSED
