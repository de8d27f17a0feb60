"""Schema and semantic validation of the example specs and of broken copies of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import run_cli

from reconciler.core.config import load_config
from reconciler.spec.repo import load_all
from reconciler.spec.resolve import deep_merge


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_examples_are_valid_and_resolve_every_environment(spec_repo):
    result = load_all(load_config(spec_repo))
    assert result.diagnostics == []
    keys = sorted(d.key for d in result.deployments)
    assert keys == [
        "diabetes-progression-prod",
        "diabetes-progression-staging",
        "fraud-detector-prod",
        "fraud-detector-staging",
        "fraud-scorer-serverless-dev",
        "fraud-scorer-serverless-prod",
    ]
    platforms = {d.platform for d in result.deployments}
    assert platforms == {"local", "kubernetes", "aws-sagemaker", "aws-serverless"}


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("name: fraud-detector", "name: Fraud_Detector", "metadata.name", "DNS-1123"),
        (
            "max_batch_size: 64",
            "max_batch_size: fast",
            "spec.serving.batching.max_batch_size",
            "expected integer, got str",
        ),
        ("access_log: false", 'access_log: "no"', "spec.serving.access_log", "boolean"),
        ("workers: 2", "workers: 0", "spec.serving.workers", "at least 1"),
        ("max_error_rate: 0.01", "max_error_rate: 5", "spec.serving.slo.max_error_rate", "1"),
        (
            "min_throughput_rps: 1",
            "min_throughput_rps: 0",
            "spec.serving.slo.min_throughput_rps",
            "0",
        ),
        ("  serving:\n", "  servng: {}\n  serving:\n", "spec.servng", "unknown field 'servng'"),
        ("cpu: 500m", "cpu: 2 cores", "spec.target.resources.requests.cpu", "CPU quantity"),
        ("memory: 2Gi", "memory: -1Gi", "spec.target.resources.limits.memory", "memory quantity"),
        ("platform: kubernetes", "platform: openshift", "spec.target.platform", "expected one of"),
        ("public: false", 'public: "yes"', "spec.exposure.public", "expected boolean"),
        (
            "min_replicas: 2, max_replicas: 10",
            "min_replicas: 2, max_replicas: 0",
            "spec.target.autoscaling.max_replicas",
            "at least 1",
        ),
        (
            "cost-center: cc-1234",
            "cost-center: " + "c" * 70,
            "metadata.labels.cost-center",
            "is too long (70 characters); at most 63 characters are allowed",
        ),
        (
            "cost-center: cc-1234",
            "cost center!: cc-1234",
            "metadata.labels.cost center!",
            "invalid key: 'cost center!' is not valid: a Kubernetes label key",
        ),
    ],
)
def test_schema_errors_name_file_line_and_field(spec_repo, old, new, field, needle):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, old, new)
    result = load_all(load_config(spec_repo))
    errors = [d for d in result.errors if d.field == field]
    assert errors, [str(d) for d in result.diagnostics]
    diag = errors[0]
    assert needle in diag.message
    assert diag.position.file == "specs/fraud-detector.yaml"
    assert diag.position.line == _line_of(path, new.strip().split("\n")[0].split(",")[0].strip())
    assert re.match(r"^specs/fraud-detector\.yaml:\d+:\d+: " + re.escape(field) + ": ", str(diag))
    assert not [d for d in result.deployments if d.name == "fraud-detector"]


def test_every_unknown_field_of_a_mapping_is_reported_at_its_own_line(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, "  serving:\n", "  serving:\n    foo: 1\n    bar: 2\n")
    result = load_all(load_config(spec_repo))
    unknown = {d.field: d for d in result.errors if "unknown field" in d.message}
    assert set(unknown) == {"spec.serving.foo", "spec.serving.bar"}, [str(d) for d in result.errors]
    assert unknown["spec.serving.foo"].position.line == _line_of(path, "foo: 1")
    assert unknown["spec.serving.bar"].position.line == _line_of(path, "bar: 2")


def test_reference_data_without_the_signature_columns_fails_validate(spec_repo):
    # every scheduled monitoring run would fail on it: known from the repository
    path = spec_repo / "specs" / "fraud-detector.yaml"
    lines = [ln for ln in path.read_text().splitlines(keepends=True) if "names: [" not in ln]
    path.write_text("".join(lines))
    result = load_all(load_config(spec_repo))
    (diag,) = [d for d in result.errors if d.code == "data-columns" and "fraud-detector" in str(d)][
        :1
    ]
    assert diag.field == "spec.monitoring.reference"
    assert diag.position.line == _line_of(path, "reference:")
    assert "lacks 30 feature column(s)" in diag.message and "f0, f1" in diag.message
    assert "mean_radius" in diag.message  # what the file has: the fix


def test_missing_model_file(spec_repo):
    (spec_repo / "examples" / "diabetes" / "model.joblib").unlink()
    result = load_all(load_config(spec_repo))
    diags = [d for d in result.errors if d.code == "model-missing"]
    assert {d.position.file for d in diags} == {"specs/diabetes-progression.yaml"}
    assert "model file 'examples/diabetes/model.joblib' not found" in diags[0].message
    assert diags[0].field == "spec.model.uri"


def test_digest_mismatch(spec_repo):
    model = spec_repo / "examples" / "fraud" / "model.joblib"
    model.write_bytes(model.read_bytes() + b"tampered")
    result = load_all(load_config(spec_repo))
    files = {d.position.file for d in result.errors if d.code == "model-digest"}
    assert files == {"specs/fraud-detector.yaml", "specs/fraud-scorer-serverless.yaml"}
    assert result.deployments and all(d.name == "diabetes-progression" for d in result.deployments)


def test_unknown_environment_in_overlay(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, "    staging:\n", "    stagging:\n")
    result = load_all(load_config(spec_repo))
    [diag] = [d for d in result.errors if d.code == "environment"]
    assert diag.field == "spec.environments.stagging"
    assert diag.position.line == _line_of(path, "stagging:")
    assert "known environments: dev, staging, prod" in diag.message


def test_duplicate_names_across_files(spec_repo):
    specs = spec_repo / "specs"
    text = (specs / "fraud-detector.yaml").read_text()
    (specs / "zz-copy.yaml").write_text(text)
    result = load_all(load_config(spec_repo))
    [diag] = [d for d in result.errors if d.code == "duplicate-name"]
    assert diag.position.file == "specs/zz-copy.yaml"
    assert "already used by specs/fraud-detector.yaml" in diag.message


def test_overlay_values_are_validated_and_located_in_the_overlay(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, "autoscaling: {min_replicas: 3}", "autoscaling: {min_replicas: 30}")
    result = load_all(load_config(spec_repo))
    [diag] = [d for d in result.errors if d.field == "spec.target.autoscaling.min_replicas"]
    assert "min_replicas 30 is above max_replicas 10" in diag.message
    assert "[env prod]" in diag.message
    assert diag.position.line == _line_of(path, "min_replicas: 30")
    # the staging deployment of the same spec is still valid
    assert any(d.key == "fraud-detector-staging" for d in result.deployments)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ('schedule: "0 * * * *"', 'schedule: "every hour"', "spec.monitoring.schedule", "cron"),
        ("steps: [10, 50, 100]", "steps: [50, 10, 100]", "spec.target.rollout.steps", "ascending"),
        (
            "uri: examples/fraud/model.joblib",
            "uri: ../../etc/passwd",
            "spec.model.uri",
            "leaves the repository",
        ),
        (
            "request: examples/fraud/request.json",
            "request: examples/fraud/nope.json",
            "spec.serving.smoke.request",
            "not found",
        ),
        ("cpu: 500m", "cpu: '4'", "spec.target.resources.requests.cpu", "above limit"),
        (
            "sink: .modelops/capture",
            "sink: s3://My_Bucket/capture",
            "spec.monitoring.capture.sink",
            "is not a valid S3 URI",
        ),
    ],
)
def test_semantic_errors(spec_repo, old, new, field, needle):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, old, new)
    result = load_all(load_config(spec_repo))
    diags = [d for d in result.errors if d.field == field]
    assert diags and needle in diags[0].message, [str(d) for d in result.diagnostics]


def test_sagemaker_instance_type_checked(spec_repo):
    path = spec_repo / "specs" / "diabetes-progression.yaml"
    _edit(path, "instance_type: ml.m5.large", "instance_type: ml.m5.huge")
    result = load_all(load_config(spec_repo))
    [diag] = [d for d in result.errors if d.field == "spec.target.instance_type"]
    assert "not a SageMaker real-time instance type" in diag.message


def test_deep_merge_merges_mappings_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    over = {"a": {"y": [3]}, "c": 2}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


def test_resolved_overlay_wins_and_origin_is_tracked(spec_repo):
    result = load_all(load_config(spec_repo), env="prod")
    dep = next(d for d in result.deployments if d.name == "fraud-detector")
    assert dep.get("spec.target.autoscaling") == {
        "min_replicas": 3,
        "max_replicas": 10,
        "target_cpu_utilization": 70,
    }
    assert dep.origin("spec.target.autoscaling.min_replicas") == "overlay"
    assert dep.origin("spec.target.autoscaling.max_replicas") == "base"
    assert "environments" not in dep.data["spec"]
    assert dep.policy_input()["environment"] == "prod"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_errors(spec_repo, value):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(
        path, "drift: {threshold: 0.3, method: psi}", f"drift: {{threshold: {value}, method: psi}}"
    )
    result = load_all(load_config(spec_repo))
    diags = [d for d in result.errors if d.field == "spec.monitoring.drift.threshold"]
    assert any("not a number a deployment can use" in d.message for d in diags)
    assert not [d for d in result.deployments if d.name == "fraud-detector"]


# -- smoke request files: what `modelops smoke` would send must be sendable ---------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"instances": [[1.0, 2.0,', "is not valid JSON: line 1 column 26: Expecting value"),
        ("", "is not valid JSON: line 1 column 1: Expecting value"),
        ('{"rows": [[1.0]]}', 'has no "instances" (keys: rows); expected a JSON object'),
        ("[[1.0, 2.0]]", "is a list; expected a JSON object"),
        ('{"instances": []}', '"instances" is an empty list, so the case cannot expect HTTP 200'),
    ],
)
def test_smoke_request_file_must_be_json_with_instances(spec_repo, content, needle):
    (spec_repo / "examples" / "fraud" / "request.json").write_text(content)
    result = load_all(load_config(spec_repo))
    path = spec_repo / "specs" / "fraud-detector.yaml"
    diags = [
        d
        for d in result.errors
        if d.code == "smoke-request" and d.position.file == "specs/fraud-detector.yaml"
    ]
    [diag] = diags  # one finding for both environments of the spec
    assert diag.message.endswith("[env staging, prod]")
    assert diag.field == "spec.serving.smoke.request"
    assert diag.position.line == _line_of(path, "request: examples/fraud/request.json")
    assert diag.message.startswith("smoke request file examples/fraud/request.json")
    assert needle in diag.message, diag.message
    assert not [d for d in result.deployments if d.name == "fraud-detector"]


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ("[[1.0, 2.0]]", "instances[0]: expected 30 values (shape [-1, 30]), got 2"),
        ('[{"mean_radius": 1.0}]', "instances[0]: missing feature(s) mean_texture"),
        ('[[1.0, "x"' + ", 1.0" * 28 + "]]", "instances[0][1] (mean_texture): expected a number"),
    ],
)
def test_smoke_request_the_service_would_refuse_is_an_error(spec_repo, rows, needle):
    """The service's own parser checks a 2xx case's body: rows as arrays or objects."""
    (spec_repo / "examples" / "fraud" / "request.json").write_text(f'{{"instances": {rows}}}')
    result = load_all(load_config(spec_repo), ["fraud-detector"])
    [diag] = [d for d in result.errors if d.code == "smoke-request"]
    assert diag.field == "spec.serving.smoke.request"
    assert "the service would refuse it (HTTP 400)" in diag.message
    assert needle in diag.message, diag.message


def test_smoke_request_with_rows_keyed_by_feature_name_is_valid(spec_repo):
    doc = json.loads((spec_repo / "examples" / "fraud" / "request.json").read_text())
    names = (
        load_all(load_config(spec_repo), ["fraud-detector"])
        .deployments[0]
        .get("spec.model.signature.inputs.names")
    )
    keyed = [dict(zip(names, row, strict=True)) for row in doc["instances"]]
    (spec_repo / "examples" / "fraud" / "request.json").write_text(json.dumps({"instances": keyed}))
    result = load_all(load_config(spec_repo), ["fraud-detector"])
    assert not [d for d in result.errors if d.code == "smoke-request"]


def test_smoke_case_expecting_a_refusal_may_send_an_empty_batch(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    (spec_repo / "examples" / "fraud" / "empty.json").write_text('{"instances": []}')
    _edit(
        path,
        "      request: examples/fraud/request.json\n",
        "      requests:\n"
        "        - request: examples/fraud/request.json\n"
        "        - request: examples/fraud/empty.json\n"
        "          expect: {status: 400}\n"
        "        - request: examples/fraud/empty.json\n",
    )
    result = load_all(load_config(spec_repo), ["fraud-detector"])
    diags = [d for d in result.errors if d.code == "smoke-request"]
    assert {d.field for d in diags} == {"spec.serving.smoke.requests.2.request"}
    lines = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if "empty.json" in ln]
    assert {d.position.line for d in diags} == {lines[1]}


def test_cli_validate_names_the_spec_line_and_the_bad_smoke_file(spec_repo):
    (spec_repo / "examples" / "fraud" / "request.json").write_text('{"instances": [[1.0,}')
    proc = run_cli(spec_repo, "validate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    line = _line_of(spec_repo / "specs" / "fraud-detector.yaml", "request: examples/fraud/")
    want = (
        f"specs/fraud-detector.yaml:{line}:7: spec.serving.smoke.request: smoke request file "
        "examples/fraud/request.json is not valid JSON: line 1 column 21: Expecting value"
    )
    assert want in proc.stdout, proc.stdout


def test_text_the_policy_engine_cannot_see_as_written(spec_repo):
    """A NUL character is an error; a value wrapped in double quotes a warning: the
    policy engine (rego-cpp) would cut the one short and read the other without quotes."""
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, "registry: registry.example.com/ml", 'registry: "registry.example.com/ml\\0x"')
    _edit(path, "owner: payments-risk@example.com", "owner: '\"payments-risk@example.com\"'")
    result = load_all(load_config(spec_repo))
    text = [d for d in result.diagnostics if d.code == "text"]
    assert [(d.field, d.severity) for d in text] == [
        ("metadata.owner", "warning"),
        ("spec.target.registry", "error"),
    ]
    assert text[1].position.line == _line_of(path, "registry.example.com/ml\\0x")
    assert "NUL" in text[1].message and "double quotes" in text[0].message


@pytest.mark.parametrize("name", ["7fraud", "0-scorer", "-fraud", "fraud-", "a" * 64, "fraud.det"])
def test_deployment_name_must_be_a_service_name(spec_repo, name):
    # the name becomes a Kubernetes Service name: an RFC 1035 label (starts with a letter)
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, "name: fraud-detector", f"name: {name}")
    result = load_all(load_config(spec_repo))
    diags = [d for d in result.errors if d.field == "metadata.name"]
    assert diags and diags[0].position.line == 5, [str(d) for d in result.diagnostics]


def test_slo_alert_targets_in_batch_mode_are_a_warning(spec_repo):
    path = spec_repo / "specs/fraud-detector.yaml"
    _edit(path, "mode: realtime", "mode: batch\n    batch: {schedule: '0 2 * * *'}")
    result = load_all(load_config(spec_repo), ["fraud-detector"], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    (warning,) = [d for d in result.diagnostics if d.code == "slo-unused"]
    assert warning.severity == "warning" and warning.field == "spec.serving.slo.max_error_rate"
    assert "max_error_rate, min_throughput_rps" in warning.message
    assert warning.position.line == _line_of(path, "max_error_rate")


@pytest.mark.parametrize(
    ("spec", "old", "new", "field", "needle", "envs"),
    [
        # an AWS target captures to S3 only (the diabetes spec: SageMaker in prod)
        (
            "diabetes-progression",
            "sink: s3://clinical-ml-capture/diabetes",
            "sink: .modelops/capture",
            "spec.monitoring.capture.sink",
            "aws-sagemaker captures to s3://",
            {"prod"},
        ),
        (
            "fraud-detector",
            "uri: examples/fraud/model.joblib",
            "uri: ftp://models.example.com/fraud.joblib",
            "spec.model.uri",
            "ftp: is not a scheme the build can fetch",
            {"prod", "staging"},
        ),
        (
            "fraud-detector",
            "framework: sklearn",
            "framework: xgboost",
            "spec.retraining",
            "supports framework sklearn only, not 'xgboost'",
            {"prod", "staging"},
        ),
    ],
)
def test_what_build_apply_or_retrain_refuse_fails_validate(
    spec_repo, spec, old, new, field, needle, envs
):
    _edit(spec_repo / "specs" / f"{spec}.yaml", old, new)
    result = load_all(load_config(spec_repo), [spec])
    diags = [d for d in result.errors if d.field == field and needle in d.message]
    # the same finding in several environments is one diagnostic naming them all
    found = {e for d in diags for e in d.message.rsplit("[env ", 1)[1].rstrip("]").split(", ")}
    assert found == envs, [str(d) for d in result.diagnostics]
    assert all(d.position.line > 0 for d in diags)
