"""The ledger and the state lock: what is applied, per deployment × environment."""
