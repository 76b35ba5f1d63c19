"""The journal that makes every update atomic, the state hash, replicas, and the invariant check."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.ledger.errors import InvariantError
from protocol.ledger.genesis import genesis_state
from protocol.ledger.journal import JMap, Journal
from protocol.ledger.state import Account, LedgerState, ValidatorInfo
from protocol.ledger.tx import Transfer

from .ledger_helpers import ACTOR_LABELS, GENESIS_BALANCE, TEST_PARAMS, Chain, addr, make_genesis


class Boom(Exception):
    pass


def test_journal_rolls_back_every_write_of_a_failed_scope() -> None:
    journal = Journal()
    table: JMap[str, int] = JMap(journal, {"kept": 1, "deleted": 2})
    with pytest.raises(Boom), journal.atomic():
        table.set("kept", 10)
        table.set("new", 3)
        table.delete("deleted")
        table.set("kept", 11)
        raise Boom
    assert table.sorted_items() == [("deleted", 2), ("kept", 1)]
    assert not journal.active


def test_nested_scopes_unwind_only_their_own_writes() -> None:
    journal = Journal()
    table: JMap[str, int] = JMap(journal)
    with journal.atomic():
        table.set("outer", 1)
        with pytest.raises(Boom), journal.atomic():
            table.set("inner", 2)
            table.set("outer", 99)
            raise Boom
        assert table.sorted_items() == [("outer", 1)]
        table.set("after", 3)
    assert table.sorted_items() == [("after", 3), ("outer", 1)]


def test_a_failing_outer_scope_also_undoes_its_committed_inner_scopes() -> None:
    journal = Journal()
    table: JMap[str, int] = JMap(journal, {"a": 0})
    with pytest.raises(Boom), journal.atomic():
        with journal.atomic():
            table.set("a", 1)
        raise Boom
    assert table.get("a") == 0


def test_writes_outside_a_scope_are_not_journaled() -> None:
    journal = Journal()
    table: JMap[str, int] = JMap(journal)
    table.set("a", 1)
    with pytest.raises(Boom), journal.atomic():
        raise Boom
    assert table.get("a") == 1


def test_state_hash_does_not_depend_on_insertion_order() -> None:
    forward = genesis_state(make_genesis())
    backward = genesis_state(
        make_genesis(balances=[(label, GENESIS_BALANCE) for label in reversed(ACTOR_LABELS)])
    )
    assert forward.state_hash() == backward.state_hash()


def test_state_hash_covers_balances_nonces_params_and_chain_id() -> None:
    base = genesis_state(make_genesis())
    seen = {base.state_hash()}
    changes: list[Callable[[LedgerState], object]] = [
        lambda s: s.accounts.set(addr("alice"), Account(GENESIS_BALANCE - 1, 0)),
        lambda s: s.accounts.set(addr("alice"), Account(GENESIS_BALANCE, 1)),
        lambda s: s.set_params(TEST_PARAMS.with_value("min_fee", 11)),
        lambda s: s.vars.set("height", 1),
        lambda s: s.validators.set(
            addr("val-0"), ValidatorInfo(s.validators[addr("val-0")].public_key, 1, True)
        ),
        lambda s: setattr(s, "chain_id", "another-chain"),
    ]
    for change in changes:
        replica = base.copy()
        change(replica)
        seen.add(replica.state_hash())
    assert len(seen) == len(changes) + 1


def test_a_copy_is_an_independent_replica() -> None:
    chain = Chain()
    replica = chain.state.copy()
    before = replica.state_hash()
    chain.block([chain.tx("alice", Transfer(addr("bob"), 5))])
    assert replica.state_hash() == before
    assert replica.balance(addr("bob")) == GENESIS_BALANCE


def test_copy_refuses_a_state_in_the_middle_of_an_update() -> None:
    state = genesis_state(make_genesis())
    with pytest.raises(RuntimeError), state.journal.atomic():
        state.copy()


def test_invariant_check_catches_a_drifting_total() -> None:
    state = genesis_state(make_genesis())
    state.add("total_bonded", 1)
    with pytest.raises(InvariantError) as caught:
        state.check_invariants()
    assert caught.value.code == 2099
    assert "total_bonded" in caught.value.message


def test_invariant_check_catches_money_from_nowhere() -> None:
    state = genesis_state(make_genesis())
    state.credit(addr("alice"), 1)
    with pytest.raises(InvariantError, match="supply mismatch"):
        state.check_invariants()


def test_invariant_check_catches_a_negative_balance() -> None:
    state = genesis_state(make_genesis())
    state.accounts.set(addr("alice"), Account(-1, 0))
    state.credit(addr("bob"), GENESIS_BALANCE + 1)  # the sum still matches: the sign check must catch it
    with pytest.raises(InvariantError, match="negative"):
        state.check_invariants()
