"""CLI command groups. Each module adds its commands to :data:`reconciler.cli.app` on import."""
