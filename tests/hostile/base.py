"""The texts hostile cases start from: the example specs and side files (no tests here).

Cases edit these texts (one change each) and write them over the corpus repository,
which holds the ``fraud-detector`` (Kubernetes in prod, local in staging) and
``diabetes-progression`` (SageMaker in prod: EventBridge schedules) specs, the policy
library and ``modelops.yaml``.
"""

from __future__ import annotations

from support.repo import PROJECT

FRAUD = "specs/fraud-detector.yaml"
DIABETES = "specs/diabetes-progression.yaml"
WAIVERS = "policies/waivers.yaml"
ORGANIZATION = "policies/organization.yaml"
CONFIG = "modelops.yaml"
CONFIG_TEXT = "state_dir: .modelops\n"

VALIDATE_FRAUD = ("validate", FRAUD)
VALIDATE_DIABETES = ("validate", DIABETES)
POLICY_PROD = ("policy", "check", "--env", "prod")


def text(rel: str) -> str:
    """The project's copy of a repository file."""
    return (PROJECT / rel).read_text(encoding="utf-8")


def edit(rel: str, old: str, new: str) -> str:
    """``rel``'s text with the first ``old`` replaced by ``new`` (``old`` must be there)."""
    body = text(rel)
    if old not in body:
        raise AssertionError(f"{old!r} not in {rel}: the corpus needs updating")
    return body.replace(old, new, 1)


def bomb(depth: int = 9, width: int = 6, indent: str = "") -> str:
    """A few hundred bytes of nested aliases that would expand to width**depth nodes."""
    lines = [f'{indent}a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, depth):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"{indent}a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"
