"""Policies written by the tests (no tests here)."""

from __future__ import annotations

from reconciler.policy.library import parse_policy


def custom(pid: str, package: str, body: str):
    """A policy with complete metadata in package ``modelops.<package>`` (shared by the
    policy-reads tests)."""
    source = (
        "# METADATA\n"
        f"# title: Test policy {pid}\n"
        "# custom:\n"
        f"#   id: {pid}\n"
        "#   severity: high\n"
        "#   enforcement: mandatory\n"
        f"package modelops.{package}\n\n{body}\n"
    )
    policy = parse_policy(source, f"policies/{package.replace('.', '_')}.rego")
    assert not policy.problems, policy.problems
    return policy
