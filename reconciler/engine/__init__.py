"""Engines: the offline renderer (Pulumi mocks), the Pulumi Automation API engine, the local engine."""
