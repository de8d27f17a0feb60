"""Specs: loading YAML with positions, JSON Schema and semantic validation, overlays."""
