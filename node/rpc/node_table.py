"""The node's one method table: its schema, and the binding of that schema to a running node.

:data:`NODE_SCHEMA` is every method a node serves, as data (names, params, docs, errors,
results); ``python -m node.rpc.reference`` renders it into ``docs/rpc.md`` without any node.
:func:`build_node_table` binds each namespace's specs to its handlers, each handler class given
only the narrow view it reads (:mod:`node.rpc.views`) of the node's running services.
"""

from __future__ import annotations

from collections.abc import Callable

from node.rpc.blob_methods import BLOB_METHODS, BlobMethods  # i15blob
from node.rpc.economics_methods import ECONOMICS_METHODS, EconomicsMethods  # i16view
from node.rpc.grant_methods import GRANT_METHODS, GrantMethods  # i15grants
from node.rpc.job_methods import JOB_METHODS, JobMethods
from node.rpc.liquidity_methods import LIQUIDITY_METHODS, LiquidityMethods  # i17
from node.rpc.methods import BUILTIN_METHODS, MethodSpec, MethodTable, register_builtin_methods
from node.rpc.node_methods import NODE_METHODS, NodeMethods
from node.rpc.offer_methods import OFFER_METHODS, OfferMethods  # i17
from node.rpc.staking_methods import STAKING_METHODS, StakingMethods  # i12ledger
from node.services.wiring import NodeServices

#: Every method a node serves.
NODE_SCHEMA: tuple[MethodSpec, ...] = (
    *BUILTIN_METHODS,
    *NODE_METHODS,
    *JOB_METHODS,
    *BLOB_METHODS,
    *ECONOMICS_METHODS,
    *STAKING_METHODS,
    *GRANT_METHODS,
    *LIQUIDITY_METHODS,
    *OFFER_METHODS,
)


def node_schema() -> tuple[MethodSpec, ...]:
    """What ``python -m node.rpc.reference`` renders into ``docs/rpc.md`` by default."""
    return NODE_SCHEMA


def build_node_table(services: NodeServices, rpc_url: Callable[[], str]) -> MethodTable:
    """The table a running node serves: :data:`NODE_SCHEMA`, each namespace bound to handlers
    over what they read of ``services``. ``rpc_url`` says where the RPC server listens once it
    has started (``node_info`` reports it)."""
    table = MethodTable()
    register_builtin_methods(table)
    table.bind(NODE_METHODS, NodeMethods(services, rpc_url))
    table.bind(JOB_METHODS, JobMethods(services.market, services.identity.key.public_key))
    table.bind(BLOB_METHODS, BlobMethods(services.blobs))
    table.bind(ECONOMICS_METHODS, EconomicsMethods(services))
    table.bind(STAKING_METHODS, StakingMethods(services))
    table.bind(GRANT_METHODS, GrantMethods(services))
    table.bind(LIQUIDITY_METHODS, LiquidityMethods(services))
    table.bind(OFFER_METHODS, OfferMethods(services))
    return table
