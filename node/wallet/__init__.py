"""Wallet: encrypted keystore files for Ed25519 account keys."""
