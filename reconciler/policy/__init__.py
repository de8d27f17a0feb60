"""Policies: Rego evaluation (regopy) in a worker, metadata, waivers, policy tests."""
