"""A secret value pasted into ``spec.secrets[].from`` never reaches render output: not the
Kubernetes ``modelops.dev/secret-sources`` annotation, not container environment variables
(SageMaker, serverless), not IAM policies, not the files ``modelops render --out`` writes.

Renders run under Pulumi's own mocks (``reconciler.engine.render``, no cloud), as in
tests/test_render.py; specs are real copies of the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.cli import invoke
from support.repo import PROJECT
from support.repo import replace_in_file as _edit

from reconciler.core.config import load_config
from reconciler.engine.render import RenderError, render
from reconciler.spec.repo import load_all
from stacks.common import (
    NOT_A_SECRET_REFERENCE,
    SECRET_REFERENCE_PATTERNS,
    is_secret_reference,
    secret_source,
)

LEAK = "sk_live_51Hx9TOPSECRETvalue"
FRAUD_REF = (
    "aws-secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:feature-store-token"
)


def _add_secrets(path: Path, before: str, entries: list[tuple[str, str]]) -> None:
    block = "  secrets:\n" + "".join(
        f"    - name: {name}\n      from: {json.dumps(src)}\n" for name, src in entries
    )
    _edit(path, before, block + before)


def _deployment(root: Path, name: str, env: str = "prod"):
    config = load_config(root)
    result = load_all(config, [name], env)
    assert not result.errors, [str(d) for d in result.errors]
    return result.deployments[0], config


def test_patterns_are_the_organisation_defaults():
    org = yaml.safe_load((PROJECT / "policies" / "organization.yaml").read_text())
    assert list(SECRET_REFERENCE_PATTERNS) == org["organization"]["secret_reference_patterns"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (FRAUD_REF, True),
        ("aws-ssm:/ml/fraud/token", True),
        ("k8s:db-credentials/password", True),
        ("vault:secret/data/ml#token", True),
        (LEAK, False),
        ("aws-ssm:/ml/token\n", False),  # `$` must not match before a trailing newline
        ("k8s:Bad_Name/key", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_secret_source_keeps_references_only(value, ok):
    assert is_secret_reference(value) is ok
    assert secret_source(value) == (value if ok else NOT_A_SECRET_REFERENCE)


def test_kubernetes_annotation_and_files_never_carry_a_literal_secret(spec_repo, tmp_path):
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(spec, f"from: {FRAUD_REF}", f"from: {LEAK}")
    dep, config = _deployment(spec_repo, "fraud-detector")
    state = render(dep, None, config, cache=False)
    assert LEAK not in json.dumps(state.to_dict())
    (deployment,) = [r for r in state.resources if r.kind == "Deployment"]
    annotations = deployment.inputs["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations["modelops.dev/secret-sources"]) == {
        "FEATURE_STORE_TOKEN": NOT_A_SECRET_REFERENCE
    }
    # the container still reads the variable from the operator-filled Secret, by name
    env = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "FEATURE_STORE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "fraud-detector-secrets",
        "key": "FEATURE_STORE_TOKEN",
    }

    out = tmp_path / "rendered"
    result = invoke(spec_repo, "render", "--env", "prod", "--out", str(out))
    assert result.returncode == 0, result.output
    assert LEAK not in result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if LEAK in p.read_text()]
    assert any(NOT_A_SECRET_REFERENCE in p.read_text() for p in files)


def test_kubernetes_annotation_keeps_real_references(spec_repo):
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(
        spec,
        "  environments:\n",
        "    - name: DB_PASSWORD\n      from: k8s:db-credentials/password\n  environments:\n",
    )
    dep, config = _deployment(spec_repo, "fraud-detector")
    state = render(dep, None, config, cache=False)
    (deployment,) = [r for r in state.resources if r.kind == "Deployment"]
    annotations = deployment.inputs["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations["modelops.dev/secret-sources"]) == {
        "DB_PASSWORD": "k8s:db-credentials/password",
        "FEATURE_STORE_TOKEN": FRAUD_REF,
    }


def test_malformed_k8s_reference_is_refused_without_echoing_it(spec_repo):
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(spec, f"from: {FRAUD_REF}", f"from: k8s:{LEAK}")
    dep, config = _deployment(spec_repo, "fraud-detector")
    with pytest.raises(RenderError) as info:
        render(dep, None, config, cache=False)
    (diag,) = info.value.diagnostics
    assert diag.field == "spec.secrets.0.from"
    assert "must be k8s:<secret>/<key>" in diag.message
    assert LEAK not in str(info.value) and LEAK not in diag.message


@pytest.mark.parametrize(
    ("name", "before"),
    [
        ("diabetes-progression", "  environments:\n"),
        ("fraud-scorer-serverless", "  environments:\n"),
    ],
)
def test_aws_stacks_never_write_a_literal_secret(spec_repo, name, before):
    spec = spec_repo / "specs" / f"{name}.yaml"
    _add_secrets(spec, before, [("API_TOKEN", LEAK), ("DB_PASSWORD", "aws-ssm:/ml/db/password")])
    dep, config = _deployment(spec_repo, name)
    state = render(dep, None, config, cache=False)
    text = json.dumps(state.to_dict())
    assert LEAK not in text
    # the reference is still passed to the container, the literal only as the marker
    envs = [
        r.inputs.get("primaryContainer", {}).get("environment", {})
        for r in state.resources
        if r.type == "aws:sagemaker/model:Model"
    ]
    assert envs and all(
        e["MODELOPS_SECRET_API_TOKEN"] == NOT_A_SECRET_REFERENCE
        and e["MODELOPS_SECRET_DB_PASSWORD"] == "aws-ssm:/ml/db/password"
        for e in envs
    )
