"""Grants: a wallet lets a node's account spend from the wallet's balance, within bounds (Cosmos
``authz``/``feegrant``).

A person's money lives in a wallet whose key stays on their machine; the node that negotiates
and watches their jobs runs elsewhere, unattended, with its own key. A grant bridges the two
without handing the node the wallet's key:

- ``grant`` (signed by the wallet, the *granter*): the *grantee* (a node's account) may open
  escrows for its own contracts that name the granter as payer, locking at most ``spend_limit``
  base units of the granter's balance in total, at heights up to ``expiry_height``, for the
  message kinds listed (today only ``escrow_open``). A new grant to the same grantee replaces the
  old one and starts counting from 0 again.
- ``grant_revoke`` (signed by the granter): the grant ends; escrows it opened stay open, and what
  they return goes back to the granter (the escrow's payer), never to the grantee.

Every escrow a grant opens adds its ``max_cost`` and the transaction's fee (which the payer pays,
:func:`fee_payer`: the node's own balance is untouched) to the grant's ``spent``. Money returned when
the escrow closes (a refund, the unused part of the maximum cost) goes back to the payer's
balance but not back into the grant: the cap bounds what the node may ever lock on the wallet's
behalf, so a node that opens and refunds contracts in a loop cannot use the cap twice.

Attacks this is designed against, and the rule that stops each:

- a node spending more than it was allowed, or after it was told to stop: ``spent`` never
  exceeds ``spend_limit`` (checked before the debit), expiry and revocation are checked at the
  block that applies the escrow, not when the node decided to send it;
- a node paying itself or a third party with the wallet's money: a grant only authorizes
  ``escrow_open``, whose funds go nowhere but the escrow, and whose refunds go to the payer;
- anyone else spending the wallet's money: only the contract's requester, holding a grant from
  the payer, or the payer itself, may open an escrow that names the payer;
- an account bloating every replica's state: at most :data:`MAX_GRANTS_PER_GRANTER` live grants
  per granter (expired ones are dropped when it grants again), each with a bounded expiry, and
  each ``grant`` costs a fee.

How an escrow naming a payer is opened
--------------------------------------

payer may ask for the refund itself. An escrow naming a payer is opened in one of two ways:

- **Under a grant** (Cosmos ``authz``/``feegrant``): the wallet signs `grant {grantee, spend_limit,
  expiry_height, kinds}`` (kinds: only ``escrow_open` today); the node then opens the escrow, and the
  deposit *and the transaction's fee* come from the wallet and count against the grant
  (``authz.spend``: live at the applying height, kind covered, ``spent + max_cost + fee <= limit``,
  the last check before money moves, so a refused escrow never counts). ``authz.fee_payer(tx)`` is
  decided from the transaction alone, so the ante, the mempool's spend rule and the block agree.
- **Signed by the wallet itself**: the node negotiates and waits (``job_get``: ``awaiting_payer``,
  the signed ``contract``); the CLI checks it is the job it submitted, paid by this wallet, within
  the spec's maximum price, and signs ``escrow_open`` with the wallet's key.


State: ``grants: granter -> GrantInfo(grantee, spend_limit, spent, expiry_height, kinds)`` sorted by
grantee, in the state hash and snapshots (whose version rose with it: an older snapshot is refused
and the node replays from genesis); escrows carry ``payer``. A grant
holds no money, so the supply equation is unchanged. A new grant to the same grantee replaces the
old one and resets ``spent``; returned money goes to the payer's balance but not back into the grant.
Errors 2070-2075 (``InvalidGrant``, ``NoGrant``, ``GrantExpired``, ``GrantExhausted``,
``GrantKindNotAllowed``, ``TooManyGrants``).

| attack | mechanism |
|---|---|
| the node overspends, or spends after being told to stop | ``spent`` checked before the debit; expiry and revocation checked at the block that applies the escrow |
| the node pays itself or a third party with the wallet's money | only ``escrow_open`` is grantable, its funds go only to the escrow, every return goes to the payer |
| open-and-refund loops reusing the cap | returns never refill the grant |
| a stranger names your wallet as payer | without your grant it cannot open (2071; anyone else but the payer: 2024), nor refund to itself |
| state bloat | 16 live grants per granter, expiry at most 10,000,000 blocks ahead, a fee per grant; the RPC's ``account_grantsReceived`` scans at most 100,000 granters |
| pending escrows promising the wallet's balance twice | the mempool charges a grant-paid escrow to the payer; two escrows in one block cannot both use the last of a grant |
| the wallet signing someone else's contract | the CLI signs only a contract for its own job hash, naming itself, within the spec's price, signed by node and provider |

Tests: ``tests/unit/test_ledger_grants.py`` (every refusal with unchanged state, a property that the
node never locks more than the cap nor spends its own balance), ``test_ledger_properties.py`` (random
blocks with grants and payers), ``test_market_payer.py``, ``tests/unit/wallet/test_grant_commands.py``,
``tests/unit/test_sim_model_grants.py`` (the simulator's model agrees),
``tests/integration/test_market_grants.py`` (real nodes: a grant-paid job leaves the node's balance
untouched; exhausted, missing and expired grants refused at ``job_submit``; a wallet-signed escrow).
"""

from __future__ import annotations

import dataclasses

from protocol.ledger.errors import (
    GrantExhausted,
    GrantExpired,
    GrantKindNotAllowed,
    InvalidGrant,
    NoGrant,
    TooManyGrants,
)
from protocol.ledger.state import GrantInfo, LedgerState
from protocol.ledger.tx import MAX_GRANT_BLOCKS, Grant, GrantRevoke, OpenEscrow, Tx
from protocol.units import format_amount

#: Live grants one granter may hold at once.
MAX_GRANTS_PER_GRANTER = 16


def fee_payer(tx: Tx) -> bytes:
    """Whose balance pays ``tx``'s fee: the payer of a contract whose requester opens its escrow
    under the payer's grant (the fee counts against the grant too, as a Cosmos ``feegrant``
    would), else the sender. Decided from the transaction alone, so the mempool and the ledger
    agree; a transaction the grant does not cover fails whole, fee included."""
    msg = tx.msg
    if isinstance(msg, OpenEscrow):
        terms = msg.contract.terms
        if terms.payer and tx.sender == terms.requester_address:
            return terms.payer
    return tx.sender


def grants_of(state: LedgerState, granter: bytes) -> tuple[GrantInfo, ...]:
    """The granter's grants (expired ones included until it grants again), sorted by grantee."""
    return state.grants.get(granter) or ()


def find_grant(state: LedgerState, granter: bytes, grantee: bytes) -> GrantInfo | None:
    for info in grants_of(state, granter):
        if info.grantee == grantee:
            return info
    return None


def grant(state: LedgerState, tx: Tx, msg: Grant, height: int) -> None:
    """Record (or replace) the sender's grant to ``msg.grantee``.

    Raises InvalidGrant, TooManyGrants."""
    if msg.grantee == tx.sender:
        raise InvalidGrant("a grant to oneself authorizes nothing")
    if msg.expiry_height <= height:
        raise InvalidGrant(f"grant.expiry_height {msg.expiry_height} is not after height {height}")
    if msg.expiry_height - height > MAX_GRANT_BLOCKS:
        raise InvalidGrant(
            f"grant.expiry_height {msg.expiry_height} is more than {MAX_GRANT_BLOCKS} blocks after {height}"
        )
    # Expired grants and the one being replaced make room; the rest stay in grantee order.
    kept = [g for g in grants_of(state, tx.sender) if g.grantee != msg.grantee and not g.expired_at(height)]
    if len(kept) >= MAX_GRANTS_PER_GRANTER:
        raise TooManyGrants(
            f"{len(kept)} live grants already (at most {MAX_GRANTS_PER_GRANTER}): revoke one first"
        )
    kept.append(GrantInfo(msg.grantee, msg.spend_limit, 0, msg.expiry_height, msg.kinds))
    kept.sort(key=lambda g: g.grantee)
    state.grants.set(tx.sender, tuple(kept))


def revoke(state: LedgerState, tx: Tx, msg: GrantRevoke) -> None:
    """End the sender's grant to ``msg.grantee``. Raises NoGrant."""
    grants = grants_of(state, tx.sender)
    kept = tuple(g for g in grants if g.grantee != msg.grantee)
    if len(kept) == len(grants):
        raise NoGrant("there is no grant to this grantee to revoke")
    if kept:
        state.grants.set(tx.sender, kept)
    else:
        state.grants.delete(tx.sender)


def check_spend(
    state: LedgerState, *, granter: bytes, grantee: bytes, kind: str, amount: int, height: int
) -> GrantInfo:
    """The grant that lets ``grantee`` spend ``amount`` of ``granter``'s balance through a message
    of ``kind`` at ``height``; changes nothing (a node asks this before it negotiates a job).

    Raises NoGrant, GrantExpired, GrantKindNotAllowed, GrantExhausted."""
    info = find_grant(state, granter, grantee)
    if info is None:
        raise NoGrant("the payer has not granted this account any spending: `dcent wallet grant` first")
    if info.expired_at(height):
        raise GrantExpired(f"the payer's grant expired at height {info.expiry_height}, now {height}")
    if kind not in info.kinds:
        raise GrantKindNotAllowed(f"the payer's grant covers {', '.join(info.kinds)}, not {kind}")
    if amount > info.remaining:
        raise GrantExhausted(
            f"the payer's grant has {format_amount(info.remaining)} left of {format_amount(info.spend_limit)}; "
            f"this escrow needs {format_amount(amount)} with its fee"
        )
    return info


def spend(state: LedgerState, *, granter: bytes, grantee: bytes, kind: str, amount: int, height: int) -> None:
    """Count ``amount`` against the granter's grant to ``grantee`` for a message of ``kind`` applied
    at ``height``. The caller then moves the money.

    Raises NoGrant, GrantExpired, GrantKindNotAllowed, GrantExhausted (the state unchanged)."""
    info = check_spend(state, granter=granter, grantee=grantee, kind=kind, amount=amount, height=height)
    updated = dataclasses.replace(info, spent=info.spent + amount)
    state.grants.set(
        granter, tuple(updated if g.grantee == grantee else g for g in grants_of(state, granter))
    )
