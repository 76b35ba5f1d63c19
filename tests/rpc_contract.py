"""The RPC contract's method names (issue 6 and docs/rpc.md), for the tests that check them."""

#: Every method of the RPC contract (docs/rpc.md), builtins and job methods included.
CONTRACT_METHODS = frozenset(
    {
        "node_health",
        "node_info",
        "net_peers",
        "gpu_list",
        "market_capacity",
        "chain_head",
        "chain_getBlock",
        "account_get",
        "account_history",
        "tx_submit",
        "tx_get",
        "validator_list",
        "gov_proposals",
        "gov_get",
        "economics_params",
        "job_submit",
        "job_get",
        "job_list",
        "job_logs",
        "job_result",
        "job_cancel",
    }
)
