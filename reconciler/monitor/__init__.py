"""Monitoring: the drift job on captured traffic, and retraining proposed through Git.

Rationale, data layouts and measurements: ``docs/monitor.md``.
"""
