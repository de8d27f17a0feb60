"""The base layer: diagnostics and exit codes, configuration, the YAML reader, digests, URIs,
Git and process helpers. Imports nothing else from the package."""
