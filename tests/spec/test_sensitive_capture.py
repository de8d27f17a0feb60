"""Sensitive features in capture: ``spec.data.sensitive_fields`` must name signature
features (``modelops validate``), and redacting sensitive data with an empty list is a
policy violation (MDL-016). Real specs, real validation, real Rego."""

from __future__ import annotations

from pathlib import Path

from support.cli import invoke
from support.repo import replace_in_file as _edit

from reconciler.core.config import load_config
from reconciler.policy.check import check_policies
from reconciler.spec.repo import load_all

FRAUD_FIELDS = "    sensitive_fields: [worst_radius, worst_texture, worst_area]\n"


def _mdl016(root: Path, name: str, env: str = "prod"):
    config = load_config(root)
    loaded = load_all(config, [name], env)
    assert not loaded.errors, [str(d) for d in loaded.errors]
    report = check_policies(config, loaded.deployments)
    return [r for r in report.results if r.policy_id == "MDL-016"]


def test_fraud_example_names_its_sensitive_features(spec_repo):
    config = load_config(spec_repo)
    (dep,) = load_all(config, ["fraud-detector"], "prod").deployments
    names = dep.get("spec.model.signature.inputs.names")
    fields = dep.get("spec.data.sensitive_fields")
    assert 2 <= len(fields) <= 3 and set(fields) <= set(names)
    assert [r.status for r in _mdl016(spec_repo, "fraud-detector")] == ["pass"]


def test_sensitive_field_that_is_no_feature_is_an_error_at_the_entry(spec_repo):
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(spec, FRAUD_FIELDS, "    sensitive_fields: [worst_radius, card_number]\n")
    result = load_all(load_config(spec_repo), ["fraud-detector"], None)
    assert result.deployments == []
    (diag,) = {(str(d.position), d.field, d.message) for d in result.diagnostics}
    line = spec.read_text().splitlines().index("    sensitive_fields: [worst_radius, card_number]")
    col = len("    sensitive_fields: [worst_radius, ") + 1
    position, field, message = diag
    assert position == f"specs/fraud-detector.yaml:{line + 1}:{col}"
    assert field == "spec.data.sensitive_fields.1"
    assert "'card_number' is not a feature of spec.model.signature.inputs.names" in message
    assert "valid names: mean_radius, mean_texture," in message
    assert "worst_fractal_dimension" in message


def test_sensitive_field_check_through_the_cli(spec_repo):
    _edit(
        spec_repo / "specs" / "fraud-detector.yaml",
        FRAUD_FIELDS,
        "    sensitive_fields:\n      - worst_area\n      - card_number\n",
    )
    proc = invoke(spec_repo, "validate", "fraud-detector")
    assert proc.returncode == 1
    lines = spec_repo.joinpath("specs", "fraud-detector.yaml").read_text().splitlines()
    line = lines.index("      - card_number") + 1
    assert f"specs/fraud-detector.yaml:{line}:9: spec.data.sensitive_fields.1: 'card_number'" in (
        proc.output
    )


def test_without_signature_names_sensitive_fields_are_not_matched(spec_repo):
    # positional features (no names): nothing to match the entries against
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    text = spec.read_text()
    start = text.index("        names: [")
    end = text.index("\n", start) + 1
    spec.write_text(text[:start] + text[end:])
    _edit(spec, FRAUD_FIELDS, "    sensitive_fields: [card_number]\n")
    result = load_all(load_config(spec_repo), ["fraud-detector"], None)
    # (the reference data's columns no longer match the positional signature: that is
    # validate's data-columns error, not a sensitive-fields one)
    assert [str(d) for d in result.diagnostics if d.code != "data-columns"] == []


def test_hashed_capture_of_pii_without_sensitive_fields_violates_mdl016(spec_repo):
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(spec, FRAUD_FIELDS, "")
    (result,) = _mdl016(spec_repo, "fraud-detector")
    assert result.status == "fail" and result.path == "spec.data.sensitive_fields"
    assert (
        "redact applies to spec.data.sensitive_fields, which is empty: every feature is "
        "captured as sent; list the sensitive features, or turn capture off"
    ) in result.message
    # an empty list is the same as none; capture off needs none
    _edit(spec, "    residency: eu\n", "    residency: eu\n    sensitive_fields: []\n")
    assert [r.status for r in _mdl016(spec_repo, "fraud-detector")] == ["fail"]
    _edit(spec, "capture: {enabled: true,", "capture: {enabled: false,")
    assert [r.status for r in _mdl016(spec_repo, "fraud-detector")] == ["pass"]
