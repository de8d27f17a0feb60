"""The CLI commands, one module per group of verbs; :mod:`reconciler.cli` registers them."""
