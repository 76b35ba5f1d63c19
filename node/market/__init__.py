"""The node side of the compute market: negotiation, escrow, execution, delivery, settlement."""
