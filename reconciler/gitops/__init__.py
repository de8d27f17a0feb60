"""Git-facing state: change detection between revisions, the ledger, the lock."""
