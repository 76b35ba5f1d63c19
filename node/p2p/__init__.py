"""dcent's peer-to-peer layer: the host interface, its libp2p and in-memory implementations."""
