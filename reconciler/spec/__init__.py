"""Specs: loading YAML with positions, JSON Schema and semantic validation, overlays."""

from reconciler.spec.loader import load_spec, load_yaml
from reconciler.spec.model import Deployment, Spec

__all__ = ["Deployment", "Spec", "load_spec", "load_yaml"]
