"""Property test: specs that violate a chosen rule in varied ways always make it fire.

Hypothesis picks a violating value (wrong type, out of range, near-miss strings) and
where it lives (base spec or the prod environment overlay); the spec is resolved with the
real overlay code and evaluated with the real shipped policies under regopy.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.repo import PROJECT

from reconciler.core.config import load_config
from reconciler.policy.encoding import input_error_path
from reconciler.policy.engine import PolicyEngine, violations
from reconciler.policy.library import load_library
from reconciler.spec.loader import load_spec
from reconciler.spec.model import Spec
from reconciler.spec.resolve import resolve

ORG = yaml.safe_load((PROJECT / "policies" / "organization.yaml").read_text())["organization"]
# deadline=None and no too_slow health check: a loaded machine must not fail a test
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def engine():
    pol = PROJECT / "policies"
    lib = load_library(pol, pol / "organization.yaml", PROJECT)
    with PolicyEngine(lib.usable, lib.data) as eng:
        yield eng


@pytest.fixture(scope="module")
def base_spec():
    return load_spec(PROJECT / "specs" / "fraud-detector.yaml", PROJECT)


def fires(
    engine, base_spec, path: str, value, in_overlay: bool, policy: str, extra=None, field=None
):
    """Put ``value`` at ``path`` (base or prod overlay), resolve for prod, evaluate.

    Returns the paths of ``policy``'s violations, or ``[field]`` when the engine refused
    the value as input (a NUL character, quote-wrapped text): an error at that field (the
    field at or under which the refusal counts: ``field``, by default ``path``), which
    blocks as a violation does."""
    data = copy.deepcopy(base_spec.data)
    keys = path.split(".")
    node = data["spec"]["environments"]["prod"] if in_overlay else data
    if in_overlay:
        keys = keys[1:]  # the overlay is rooted at spec
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    if not in_overlay:  # the prod overlay must not set the same value (it would win)
        over = data["spec"]["environments"]["prod"]
        for key in path.split(".")[1:-1]:
            over = over.get(key, {}) if isinstance(over, dict) else {}
        if isinstance(over, dict):
            over.pop(keys[-1], None)
    for p, v in (extra or {}).items():
        d = data
        for k in p.split(".")[:-1]:
            d = d.setdefault(k, {})
        d[p.split(".")[-1]] = v
    spec = Spec(base_spec.file, base_spec.path, data, base_spec.positions, base_spec.digest)
    dep, _ = resolve(spec, "prod", load_config(PROJECT))
    kind, out = engine.evaluate(dep.policy_input(), dep.key)[policy]
    refused = input_error_path(out) if kind == "error" else None
    if refused and refused.startswith(field or path):  # a value Rego cannot see faithfully (NUL,
        return [field or path]  # quote-wrapped) at or under the field: an error there
    assert kind == "ok", out
    items, cause = violations(out)
    assert cause is None, cause
    return [i["path"] for i in items]


anything = st.one_of(
    st.booleans(),
    st.integers(min_value=-5, max_value=500),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-5, max_value=500),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)


@SETTINGS
@given(
    value=anything.filter(lambda v: v is not False),
    overlay=st.booleans(),
    classification=st.sampled_from(ORG["sensitive_classifications"]),
)
def test_public_sensitive_endpoint_always_fires(engine, base_spec, value, overlay, classification):
    paths = fires(
        engine,
        base_spec,
        "spec.exposure.public",
        value,
        overlay,
        "MDL-001",
        {"spec.data.classification": classification},
    )
    assert paths == ["spec.exposure.public"]


not_enough_replicas = st.one_of(
    st.integers(max_value=ORG["min_production_replicas"] - 1),
    # |x| <= 1e12: a float near the double maximum breaks regopy itself (see
    # test_policy_engine.test_value_that_breaks_regopy_is_an_error_not_a_pass)
    st.floats(allow_nan=False, min_value=-1e12, max_value=ORG["min_production_replicas"] - 0.01),
    anything.filter(lambda v: isinstance(v, (str, list, dict, bool)) or v is None),
)


@SETTINGS
@given(value=not_enough_replicas, overlay=st.booleans())
def test_too_few_prod_replicas_always_fires(engine, base_spec, value, overlay):
    paths = fires(
        engine, base_spec, "spec.target.autoscaling.min_replicas", value, overlay, "MDL-010"
    )
    assert paths == ["spec.target.autoscaling.min_replicas"]


def _is_reference(value: str) -> bool:
    return any(re.search(p, value) for p in ORG["secret_reference_patterns"])


secret_values = st.one_of(
    st.text(max_size=40).filter(lambda v: not _is_reference(v)),
    st.sampled_from(
        [
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            "k8s:",
            "vault:path",
            "aws-secretsmanager:hunter2",
            " aws-ssm:/x",
            "k8s:Bad_Name/key",
        ]
    ),
    anything.filter(lambda v: not isinstance(v, str)),
)


@SETTINGS
@given(value=secret_values, overlay=st.booleans())
def test_secret_values_always_fire(engine, base_spec, value, overlay):
    secret = [{"name": "DB_PASSWORD", "from": value}]
    field = "spec.secrets.0.from"  # a value Rego cannot see there is an error there
    paths = fires(engine, base_spec, "spec.secrets", secret, overlay, "MDL-017", field=field)
    assert paths == ["spec.secrets.0.from"]


bad_retention = st.one_of(
    st.integers(max_value=ORG["capture_retention_days"]["min"] - 1),
    st.integers(min_value=ORG["capture_retention_days"]["max"] + 1),
    anything.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool)),
)


@SETTINGS
@given(value=bad_retention, overlay=st.booleans())
def test_bad_capture_retention_always_fires(engine, base_spec, value, overlay):
    paths = fires(
        engine, base_spec, "spec.monitoring.capture.retention_days", value, overlay, "MDL-015"
    )
    assert paths == ["spec.monitoring.capture.retention_days"]


@SETTINGS
@given(
    value=st.one_of(
        st.text(max_size=30).filter(
            lambda v: (
                not any(v.startswith(p) or v == p.rstrip("/") for p in ORG["allowed_registries"])
            )
        ),
        st.sampled_from(
            [
                "registry.example.com.evil.io/ml",
                "evil.io/registry.example.com/ml",
                "REGISTRY.EXAMPLE.COM/ml",
            ]
        ),
    ),
    overlay=st.booleans(),
)
def test_foreign_registry_always_fires(engine, base_spec, value, overlay):
    paths = fires(engine, base_spec, "spec.target.registry", value, overlay, "MDL-005")
    assert paths == ["spec.target.registry"]
