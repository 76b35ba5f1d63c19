"""What each side of a job does about its contract at a committed height: the settlement rules as
tables, pure, driven block by block.

The node's market follows a contract from the countersignature to its close. At every height
that matters (a block carrying an event for the contract, or a height a rule waits for) it reads
:class:`ContractOnChain` from the ledger and asks the table of the step it is in what to do. A
table is an ordered list of :class:`Rule` rows; the first row whose condition holds gives the
action and, for a wait, the height at which the answer changes by itself if no event comes first.
So the rules can be read, and tested, as data: ``tests/unit/test_market_settlement.py`` drives
them with a real ledger block by block, with no network and no clock.

The four steps and the attacks each table answers:

- :data:`PROVIDER_ESCROW_RULES` (the provider waits for the escrow before running anything): a
  requester that never escrows ties up the GPUs only until ``escrow_wait_blocks`` (and never past
  the deadline).
- :data:`PAYER_ESCROW_RULES` (the requester waits for a wallet to escrow its job itself).
- :data:`REQUESTER_CLOSE_RULES` (the requester watches an open escrow): a provider that never
  delivers is refunded past the deadline (slashing its collateral); a claim for a result this
  node never accepted is disputed inside the window; a countersigned receipt that the provider
  does not settle is settled by the requester after a grace, so the requester's deposit never
  waits on the provider.
- :data:`PROVIDER_CLAIM_RULES` (the provider holds a claim because the requester never
  countersigned): finalize once the window is over, as judged at every height (governance may
  move the window), so a requester cannot hold the pay hostage by silence.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from protocol.ledger.escrow import claim_status
from protocol.ledger.state import LedgerState

#: The escrow closed: how (``settled``, ``refunded``, ``disputed``); empty while it is open.
CLOSED_AS = ("settled", "refunded", "disputed")


@dataclass(frozen=True, slots=True)
class ContractOnChain:
    """One contract as the ledger has it after the block at ``height``."""

    height: int
    escrowed: bool
    closed_as: str = ""
    claim_pending: bool = False
    #: The first height whose block accepts ``escrow_finalize`` of the pending claim (0: none).
    finalizable_from: int = 0

    def __post_init__(self) -> None:
        if self.closed_as not in ("", *CLOSED_AS):
            raise ValueError(f"closed_as: {self.closed_as!r}")
        if self.closed_as and self.escrowed:
            raise ValueError("a closed contract has no open escrow")
        if self.claim_pending and not self.escrowed:
            raise ValueError("a claim is pending only on an open escrow")

    @property
    def claim_window_over(self) -> bool:
        """Would a finalize in the next block apply?"""
        return self.claim_pending and self.height + 1 >= self.finalizable_from


def read_contract(state: LedgerState, contract_hash: bytes) -> ContractOnChain:
    """The contract as ``state`` has it (the state after its last committed block)."""
    closed_as = state.closed_contracts.get(contract_hash) or ""
    if closed_as:
        return ContractOnChain(state.height, escrowed=False, closed_as=closed_as)
    if contract_hash not in state.escrows:
        return ContractOnChain(state.height, escrowed=False)
    status = claim_status(state, contract_hash, state.height + 1)
    if status is None:
        return ContractOnChain(state.height, escrowed=True)
    return ContractOnChain(
        state.height, escrowed=True, claim_pending=True, finalizable_from=status.finalizable_from
    )


@dataclass(frozen=True, slots=True)
class JobTerms:
    """What one side knows of its job that the rules read."""

    deadline_height: int
    #: Provider: the height past which it stops waiting for the escrow.
    give_up_height: int = 0
    #: Requester: it countersigned the provider's receipt (and may settle with it).
    countersigned: bool = False
    #: Requester: the height at which it countersigned (its grace runs from there).
    countersigned_height: int = 0
    #: Requester: blocks it leaves the provider to settle a countersigned receipt.
    settle_grace_blocks: int = 0


class Action(enum.Enum):
    WAIT = "wait"
    #: The escrow is open: the provider runs the job; the requester's job is escrowed.
    ESCROWED = "escrowed"
    #: The provider stops waiting for an escrow that did not open in time.
    GIVE_UP = "give_up"
    #: The deadline passed and no escrow ever opened.
    NEVER_OPENED = "never_opened"
    SETTLE = "settle"
    DISPUTE = "dispute"
    REFUND = "refund"
    FINALIZE = "finalize"
    #: The claim is no longer pending and the escrow is not closed: nothing left to finalize.
    CLAIM_GONE = "claim_gone"
    #: The escrow closed (see ``ContractOnChain.closed_as``).
    CLOSED = "closed"


Condition = Callable[[ContractOnChain, JobTerms], bool]
WakeAt = Callable[[ContractOnChain, JobTerms], int]


@dataclass(frozen=True, slots=True)
class Rule:
    """``when`` holds -> ``action``; a :data:`Action.WAIT` row names the height (``wake``) at which
    its answer may change without any event for the contract (0: only an event changes it)."""

    name: str
    when: Condition
    action: Action
    wake: WakeAt | None = None


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    rule: str
    #: For a wait: the first height at which to decide again without an event (0: none).
    wake_height: int = 0


def decide(rules: tuple[Rule, ...], chain: ContractOnChain, job: JobTerms) -> Step:
    """The first rule that holds. Every table ends with a row that always holds."""
    for rule in rules:
        if rule.when(chain, job):
            wake = rule.wake(chain, job) if rule.wake is not None else 0
            return Step(rule.action, rule.name, wake)
    raise AssertionError("a settlement table must end with a row that always holds")


def _always(chain: ContractOnChain, job: JobTerms) -> bool:
    return True


def _closed(chain: ContractOnChain, job: JobTerms) -> bool:
    return bool(chain.closed_as)


def _after_deadline(chain: ContractOnChain, job: JobTerms) -> int:
    return job.deadline_height + 1


def _settle_due(chain: ContractOnChain, job: JobTerms) -> int:
    return job.countersigned_height + job.settle_grace_blocks


PROVIDER_ESCROW_RULES: tuple[Rule, ...] = (
    Rule("escrow open: run the job", lambda c, j: c.escrowed, Action.ESCROWED),
    Rule(
        "closed or out of time: release the GPUs",
        lambda c, j: bool(c.closed_as) or c.height >= j.give_up_height,
        Action.GIVE_UP,
    ),
    Rule("wait for the escrow", _always, Action.WAIT, lambda c, j: j.give_up_height),
)

PAYER_ESCROW_RULES: tuple[Rule, ...] = (
    Rule("the payer escrowed", lambda c, j: c.escrowed, Action.ESCROWED),
    Rule(
        "closed, or past the deadline without an escrow",
        lambda c, j: bool(c.closed_as) or c.height > j.deadline_height,
        Action.NEVER_OPENED,
    ),
    Rule("wait for the payer", _always, Action.WAIT, _after_deadline),
)

REQUESTER_CLOSE_RULES: tuple[Rule, ...] = (
    Rule("closed", _closed, Action.CLOSED),
    Rule(
        "never escrowed by the deadline",
        lambda c, j: not c.escrowed and c.height > j.deadline_height,
        Action.NEVER_OPENED,
    ),
    Rule("not escrowed yet", lambda c, j: not c.escrowed, Action.WAIT, _after_deadline),
    Rule(
        "countersigned, and the provider did not settle within the grace: settle ourselves",
        lambda c, j: j.countersigned and c.height >= j.countersigned_height + j.settle_grace_blocks,
        Action.SETTLE,
    ),
    Rule(
        "countersigned: leave the provider the grace", lambda c, j: j.countersigned, Action.WAIT, _settle_due
    ),
    Rule(
        "a claim for a result we never accepted, window open: dispute",
        lambda c, j: c.claim_pending and not c.claim_window_over,
        Action.DISPUTE,
    ),
    Rule("a claim past its window: the provider finalizes", lambda c, j: c.claim_pending, Action.WAIT),
    Rule("no delivery by the deadline: refund", lambda c, j: c.height > j.deadline_height, Action.REFUND),
    Rule("wait for the delivery", _always, Action.WAIT, _after_deadline),
)

PROVIDER_CLAIM_RULES: tuple[Rule, ...] = (
    Rule("closed", _closed, Action.CLOSED),
    Rule("the claim is gone", lambda c, j: not c.claim_pending, Action.CLAIM_GONE),
    Rule("the window is over: finalize", lambda c, j: c.claim_window_over, Action.FINALIZE),
    Rule(
        "wait out the dispute window",
        _always,
        Action.WAIT,
        lambda c, j: c.finalizable_from - 1,
    ),
)

TABLES: dict[str, tuple[Rule, ...]] = {
    "provider_escrow": PROVIDER_ESCROW_RULES,
    "payer_escrow": PAYER_ESCROW_RULES,
    "requester_close": REQUESTER_CLOSE_RULES,
    "provider_claim": PROVIDER_CLAIM_RULES,
}
