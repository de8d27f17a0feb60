"""``modelops policy check | report`` through the real console entry point."""

from __future__ import annotations

import json

from support.cli import invoke, run_cli
from support.repo import replace_in_file


def test_examples_pass_exit_0_and_sarif_file(spec_repo):
    proc = invoke(spec_repo, "policy", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 deployment(s)" in proc.stdout and ": passed" in proc.stdout
    out = spec_repo / "policy.sarif"
    proc = invoke(spec_repo, "policy", "check", "--env", "prod", "-f", "sarif", "-o", str(out))
    assert proc.returncode == 0
    assert json.loads(out.read_text())["runs"][0]["results"] == []


def test_blocking_finding_exits_1_with_annotation(spec_repo):
    path = spec_repo / "specs" / "diabetes-progression.yaml"
    path.write_text(
        path.read_text().replace("    prod: {}\n", "    prod:\n      exposure: {public: true}\n")
    )
    proc = invoke(spec_repo, "policy", "check", "diabetes-progression", "-f", "github")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "MDL-001" in ln)
    lineno = path.read_text().splitlines().index("      exposure: {public: true}") + 1
    assert line.startswith(f"::error file=specs/diabetes-progression.yaml,line={lineno},")
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(spec_repo):
    proc = run_cli(spec_repo, "policy", "check", "-f", "yaml")
    assert proc.returncode == 2 and "valid formats" in proc.stderr
    proc = invoke(spec_repo, "policy", "check", "--env", "moon")
    assert proc.returncode == 2 and "unknown environment" in proc.stderr
    proc = invoke(spec_repo, "policy", "check", "no-such-spec")
    assert proc.returncode == 2


def test_invalid_spec_and_broken_policy_block(spec_repo):
    (spec_repo / "specs" / "bad.yaml").write_text("apiVersion: modelops/v1alpha1\nkind: [\n")
    (spec_repo / "policies" / "broken.rego").write_text("package modelops.broken\n")
    proc = invoke(spec_repo, "policy", "check", "-f", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["spec_problems"][0]["file"] == "specs/bad.yaml"
    assert any("no `# METADATA` block" in p["message"] for p in doc["library_problems"])


def test_report_matrix_and_expiring_waivers(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(
        path.read_text().replace(
            "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}",
            "rollout: {strategy: rolling}",
        )
    )
    import datetime as dt

    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)).isoformat()
    (spec_repo / "policies" / "waivers.yaml").write_text(
        "waivers:\n  - policy: MDL-011\n    deployment: fraud-detector\n    environment: prod\n"
        "    reason: canary controller next sprint\n    approver: sec@example.com\n"
        f"    ticket: SEC-9\n    expires: {soon}\n"
    )
    proc = invoke(spec_repo, "policy", "report", "--env", "prod")
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MDL-011"))
    assert "WAIVED" in row and "pass" in row
    assert "Waivers expiring within 30 days" in proc.stdout
    assert f"MDL-011 on fraud-detector (prod): expires {soon}" in proc.stdout
    md = invoke(spec_repo, "policy", "report", "--env", "prod", "-f", "markdown").stdout
    assert "| `MDL-011` Progressive rollout in production | low | " in md
    assert invoke(spec_repo, "policy", "report", "-f", "sarif").returncode == 2


def test_report_lists_specs_it_could_not_check_apart_from_library_problems(spec_repo):
    replace_in_file(
        spec_repo / "specs" / "fraud-detector.yaml", "cost-center: cc-1234", "cost-center: 1234"
    )
    proc = invoke(spec_repo, "policy", "report", "--env", "prod")
    out = proc.stdout
    assert "Specs that could not be checked (not in the matrix): 1" in out, out
    assert "specs/fraud-detector.yaml" in out.split("could not be checked")[1]
    assert "Problems with the policy library or waivers" not in out


def test_a_policy_that_does_not_compile_is_one_line_not_one_per_deployment(spec_repo):
    """Text and GitHub output show an engine error that is the same on every deployment
    once ("... and N more"); JSON keeps one result per deployment, and the counts too."""
    rego = spec_repo / "policies" / "public_tls.rego"
    rego.write_text(rego.read_text().replace("tls != true", "tls != = true"))
    text = invoke(spec_repo, "policy", "check", "--env", "prod").stdout
    lines = [ln for ln in text.splitlines() if "[MDL-023]" in ln and "does not compile" in ln]
    assert len(lines) == 2, text  # the policy file, and the deployments once
    assert any("and 2 more)" in ln for ln in lines), lines
    assert "4 error(s)" in text.splitlines()[-1]  # the library problem + 3 deployments
    github = invoke(spec_repo, "policy", "check", "--env", "prod", "-f", "github").stdout
    assert sum("MDL-023" in ln and "does not compile" in ln for ln in github.splitlines()) == 2
    doc = json.loads(invoke(spec_repo, "policy", "check", "--env", "prod", "-f", "json").stdout)
    errors = [r for r in doc["results"] if r["policy"] == "MDL-023" and r["status"] == "error"]
    assert len(errors) == 3
