"""Grants over RPC: ``account_grants`` (what an account granted) and ``account_grantsReceived``
(what this node, or any account, may spend of others').

Grants are made and revoked by transactions the wallet signs locally (``dcent wallet grant`` /
``revoke``, submitted with ``tx_submit``); these methods only read the committed state. Amounts
are decimal strings of base units. A granter holds at most ``MAX_GRANTS_PER_GRANTER`` grants, so
``account_grants`` is small by construction; ``account_grantsReceived`` scans the granters, at
most :data:`MAX_SCANNED_GRANTERS` of them (the ledger bounds what each granter holds, not how
many granters there are).
"""

from __future__ import annotations

from node.rpc.methods import MethodSpec
from node.rpc.params import AddressParam, Param
from node.rpc.views import LedgerReads
from protocol.crypto import Address
from protocol.ledger.authz import grants_of
from protocol.ledger.state import GrantInfo, LedgerState

MAX_SCANNED_GRANTERS = 100_000

GRANT_SHAPE = (
    "`granter`, `grantee`, `spend_limit`, `spent`, `remaining`, `expiry_height`, `expired` (at the "
    "next block), `kinds`"
)


def grant_json(state: LedgerState, granter: bytes, info: GrantInfo) -> dict[str, object]:
    return {
        "granter": str(Address(granter)),
        "grantee": str(Address(info.grantee)),
        "spend_limit": str(info.spend_limit),
        "spent": str(info.spent),
        "remaining": str(info.remaining),
        "expiry_height": info.expiry_height,
        "expired": info.expired_at(state.height + 1),
        "kinds": list(info.kinds),
    }


_ADDRESS = Param("address", AddressParam(), "the account, dct1...")

GRANT_METHODS = (
    MethodSpec(
        "account_grants",
        "The grants an account (a wallet) gave, expired ones included until it grants again.",
        (_ADDRESS,),
        returns=f"array, by grantee, of the grants the account gave: {GRANT_SHAPE}",
    ),
    MethodSpec(
        "account_grantsReceived",
        "The grants that let an account (a node) open escrows on others' accounts.",
        (_ADDRESS,),
        returns=f"array, by granter, of the grants the account may spend under: {GRANT_SHAPE}",
    ),
)


class GrantMethods:
    """The handlers of :data:`GRANT_METHODS`."""

    def __init__(self, reads: LedgerReads) -> None:
        self._reads = reads

    async def account_grants(self, address: Address) -> list[dict[str, object]]:
        state = self._reads.app.state
        return [grant_json(state, address.raw, info) for info in grants_of(state, address.raw)]

    async def account_grants_received(self, address: Address) -> list[dict[str, object]]:
        state = self._reads.app.state
        found = []
        for granter, grants in state.grants.sorted_items()[:MAX_SCANNED_GRANTERS]:
            found += [grant_json(state, granter, info) for info in grants if info.grantee == address.raw]
        return found
