"""Schema errors inside an environment overlay are all reported, as at the top level."""

from __future__ import annotations

from reconciler.core.config import load_config
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all

BAD = '      serving: {workers: 0, access_log: "no", batching: {max_batch_size: 0}}\n'


def test_every_error_of_an_overlay_is_reported_with_its_position(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    text = path.read_text()
    assert "    staging:\n" in text
    path.write_text(text.replace("    staging:\n", "    staging:\n" + BAD, 1))
    line = path.read_text().splitlines().index(BAD.rstrip("\n")) + 1

    errors = load_all(load_config(spec_repo)).errors

    got = {d.field: d for d in errors}
    prefix = "spec.environments.staging.serving."
    assert set(got) == {
        prefix + "workers",
        prefix + "access_log",
        prefix + "batching.max_batch_size",
    }
    assert "must be at least 1" in got[prefix + "workers"].message
    assert "expected boolean, got str 'no'" in got[prefix + "access_log"].message
    for d in errors:
        assert (d.position.file, d.position.line) == ("specs/fraud-detector.yaml", line)


def test_a_float_where_an_integer_is_expected_is_an_error(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(path.read_text().replace("workers: 2", "workers: 2.0", 1))
    errors = load_all(load_config(spec_repo)).errors
    (diag,) = [d for d in errors if d.field == "spec.serving.workers"]
    assert "expected integer, got float 2.0" in diag.message


def test_more_workers_than_cpus_is_a_warning_not_an_error(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(path.read_text().replace("workers: 2", "workers: 8", 1))
    result = load_all(load_config(spec_repo))
    warnings = [d for d in result.diagnostics if d.field == "spec.serving.workers"]
    assert warnings and all(d.severity == "warning" for d in warnings)
    assert "8 workers for a CPU limit of 2: at most 2 can run at once" in warnings[0].message
    assert ": warning: spec.serving.workers: 8 workers" in render_diagnostics("text", warnings)
    assert not [d for d in result.errors if d.field == "spec.serving.workers"]
    assert any(d.name == "fraud-detector" for d in result.deployments)  # not blocked
