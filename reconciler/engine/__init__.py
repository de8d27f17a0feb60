"""Engines: the offline renderer (Pulumi mocks), the Pulumi Automation API, the local engine."""
