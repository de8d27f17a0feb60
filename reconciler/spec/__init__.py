"""Specs: loading YAML with positions, JSON Schema and semantic validation, overlays."""

from reconciler.core.yaml import load_yaml
from reconciler.spec.loader import load_spec
from reconciler.spec.model import Deployment, Spec

__all__ = ["Deployment", "Spec", "load_spec", "load_yaml"]
