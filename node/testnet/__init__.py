"""The local multi-node testnet: layout (homes, genesis, ports), node processes, readiness."""
