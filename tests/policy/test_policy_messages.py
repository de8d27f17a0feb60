"""Policy messages that list organisation settings read as plain text in every output
format of ``modelops policy check`` (no JSON quoting of the list, no escaped quotes)."""

from __future__ import annotations

import json

import pytest
from support.cli import invoke
from support.repo import replace_in_file as _edit

ALLOWED_REGISTRIES = (
    "registry.example.com/, 123456789012.dkr.ecr.eu-west-1.amazonaws.com/, "
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
)
EU_REGIONS = "eu-west-1, eu-west-3, eu-central-1, eu-north-1"


CASES = [
    (
        "fraud-detector",
        "registry: registry.example.com/ml",
        "registry: docker.io/someone",
        "MDL-005",
        "registry docker.io/someone is not from an allowed registry; allowed: "
        + ALLOWED_REGISTRIES,
    ),
    (
        "fraud-scorer-serverless",
        "region: eu-west-1",
        "region: us-east-1",
        "MDL-004",
        f"region us-east-1 is not allowed for eu data residency; allowed: {EU_REGIONS}",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "pid", "message"), CASES)
def test_listed_settings_are_plain_text_in_text_json_and_markdown(
    spec_repo, name, old, new, pid, message
):
    _edit(spec_repo / "specs" / f"{name}.yaml", old, new)
    code, text, _ = invoke(spec_repo, "policy", "check", name, "--env", "prod")
    assert code == 1
    line = next(ln for ln in text.splitlines() if f"[{pid}]" in ln)
    assert message in line, line
    assert '"' not in line and "\\" not in line

    code, out, _ = invoke(spec_repo, "policy", "check", name, "--env", "prod", "-f", "json")
    assert code == 1
    messages = [f["message"] for f in json.loads(out)["findings"] if f["code"] == pid]
    assert messages == [message]

    code, md, _ = invoke(spec_repo, "policy", "check", name, "--env", "prod", "-f", "markdown")
    assert code == 1
    row = next(ln for ln in md.splitlines() if f"`{pid}`" in ln and "fail" in ln)
    assert message in row, row
    assert '\\"' not in row and "\\[" not in row
