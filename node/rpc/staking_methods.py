"""Validators and delegations over RPC: ``validator_get``, ``validator_all``, ``account_delegations``
and ``validator_keyProof`` (what ``dcent validator create`` asks this node for).

Every answer reads the committed state; amounts are decimal strings of base units, ratios decimal
strings scaled by 10^18, as ``economics_params`` answers. ``validator_all`` lists every registered
validator (jailed and tombstoned ones too); the registry only grows by ``validator_create``, each
costing at least ``min_validator_stake``, and one call lists at most :data:`MAX_LISTED`.

``validator_keyProof`` signs, with this node's key, that it will vote for the operator named: it
is what makes a validator's consensus key provably the node's. The RPC is authenticated (the
cookie file), so only this node's operator can ask for it.
"""

from __future__ import annotations

from node.rpc.methods import MethodSpec
from node.rpc.params import AddressParam, Param
from node.rpc.views import SigningLedgerReads
from protocol.crypto import Address, address_of
from protocol.ledger import staking
from protocol.ledger.errors import UnknownValidator
from protocol.ledger.slashing import max_missed
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import prove_consensus_key

MAX_LISTED = 10_000


def validator_json(state: LedgerState, operator: bytes) -> dict[str, object]:
    """One registered validator as the RPC answers it. Raises UnknownValidator."""
    info = staking.validator(state, operator)
    signing = state.signing.get(operator)
    params = state.params
    return {
        "address": str(Address(operator)),
        "consensus_address": str(Address(address_of(info.consensus_key))),
        "public_key": info.consensus_key.hex(),
        "moniker": info.moniker,
        "bonded": str(info.tokens),
        "shares": str(info.shares),
        "self_bonded": str(staking.delegation_value(state, operator, operator)),
        "commission": str(info.commission),
        "max_commission": str(info.max_commission),
        "max_commission_change": str(info.max_commission_change),
        "pending_rewards": str(info.rewards),
        "jailed": info.jailed,
        "jailed_until": info.jailed_until if info.jailed else None,
        "tombstoned": info.tombstoned,
        "missed": len(signing.missed) if signing is not None else 0,
        "missed_limit": max_missed(params.signed_blocks_window, params.min_signed_per_window),
    }


_ADDRESS = Param("address", AddressParam(), "bech32m operator or account address")
_SHAPE = (
    "`address` (operator), `consensus_address`, `public_key` (consensus key), `moniker`, "
    "`bonded`, `shares`, `self_bonded`, `commission`, `max_commission`, `max_commission_change`, "
    "`pending_rewards`, `jailed`, `jailed_until`, `tombstoned`, `missed` (heights missed in the "
    "signing window), `missed_limit` (more is jailed)"
)

STAKING_METHODS = (
    MethodSpec(
        "validator_get",
        "One registered validator, by its operator's address.",
        (_ADDRESS,),
        errors=(UnknownValidator,),
        returns=f"object: {_SHAPE}",
    ),
    MethodSpec(
        "validator_all",
        "Every registered validator, jailed and tombstoned ones included.",
        returns=f"array of every registered validator by operator address (at most {MAX_LISTED}), each: {_SHAPE}",
    ),
    MethodSpec(
        "account_delegations",
        "An account's delegations and what each is worth now.",
        (_ADDRESS,),
        returns="array of `{validator, shares, value}` (`value`: what undelegating it all would take "
        "out now, its share of pending rewards included), by validator",
    ),
    MethodSpec(
        "validator_keyProof",
        "This node's consensus key and its proof for ``operator`` (``dcent validator create``).",
        (Param("operator", AddressParam(), "the operator account the node will vote for"),),
        returns="object: `consensus_key` (this node's public key, hex), `key_proof` (its signature "
        "binding the operator, hex): the two fields `validator_create` needs",
    ),
)


class StakingMethods:
    """The handlers of :data:`STAKING_METHODS`."""

    def __init__(self, reads: SigningLedgerReads) -> None:
        self._reads = reads

    def _state(self) -> LedgerState:
        return self._reads.app.state

    async def validator_get(self, address: Address) -> dict[str, object]:
        return validator_json(self._state(), address.raw)

    async def validator_all(self) -> list[dict[str, object]]:
        state = self._state()
        operators = [operator for operator, _ in state.validators.sorted_items()][:MAX_LISTED]
        return [validator_json(state, operator) for operator in operators]

    async def account_delegations(self, address: Address) -> list[dict[str, object]]:
        state = self._state()
        return [
            {
                "validator": str(Address(operator)),
                "shares": str(state.delegations.get((address.raw, operator)) or 0),
                "value": str(staking.delegation_value(state, address.raw, operator)),
            }
            for operator in state.delegated_to.get(address.raw) or ()
        ]

    async def validator_key_proof(self, operator: Address) -> dict[str, object]:
        identity = self._reads.identity
        return {
            "consensus_key": identity.key.public_key.raw.hex(),
            "key_proof": prove_consensus_key(identity.key, identity.chain_id, operator.raw).hex(),
        }
