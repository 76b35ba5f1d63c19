"""End-to-end functional tests: real node processes of a local testnet, driven over JSON-RPC."""
