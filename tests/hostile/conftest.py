"""Prints the hostile corpus's counts in the terminal summary (also under xdist)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "hostile_summary":
                    terminalreporter.write_line(value)
