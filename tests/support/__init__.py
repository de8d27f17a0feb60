"""Helpers shared by the tests (importable as ``support``; ``pythonpath = tests`` in pyproject)."""
