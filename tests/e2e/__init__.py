"""End-to-end tests: real node processes driven over RPC."""
