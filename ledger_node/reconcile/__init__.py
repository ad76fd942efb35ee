"""Reconciliation: two platforms' logs verified against the chain and matched."""
