"""``modelops validate`` through the console script's entry point: output, exit codes, no
tracebacks. One case runs it as a real process (``python -m reconciler``), the others in
this process (``support.cli.invoke``: the same ``main``, exit code as a shell sees it)."""

from __future__ import annotations

from support.cli import invoke, run_cli


def test_clean_examples_exit_0(spec_repo):
    proc = invoke(spec_repo, "validate")
    assert proc.returncode == 0, proc.stderr
    assert "3 spec(s), 6 deployment(s) checked: ok" in proc.stdout


def test_each_bad_input_is_one_line_with_file_line_field(spec_repo):
    specs = spec_repo / "specs"
    (specs / "broken-syntax.yaml").write_text("apiVersion: modelops/v1alpha1\nkind: [\n")
    (specs / "dup.yaml").write_text("apiVersion: a\napiVersion: b\n")
    proc = run_cli(spec_repo, "validate")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("specs/")]
    assert any(ln.startswith("specs/broken-syntax.yaml:3:1: YAML syntax error") for ln in lines)
    assert "specs/dup.yaml:2:1: apiVersion: duplicate key 'apiVersion'" in proc.stdout


def test_paths_and_names_select_specs(spec_repo):
    proc = invoke(spec_repo, "validate", "fraud-detector")
    assert proc.returncode == 0
    assert "1 spec(s), 2 deployment(s)" in proc.stdout
    proc = invoke(spec_repo, "validate", "no-such-spec")
    assert proc.returncode == 2
    assert "no spec file or spec named no-such-spec" in proc.stderr


def test_json_and_github_formats(spec_repo):
    (spec_repo / "specs" / "bad.yaml").write_text("kind: ModelDeployment\n")
    proc = invoke(spec_repo, "validate", "--format", "github", "specs/bad.yaml")
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error file=specs/bad.yaml,line=1,col=1")
    proc = invoke(spec_repo, "validate", "--format", "nope")
    assert proc.returncode == 2


def test_unknown_environment_is_a_usage_error(spec_repo):
    proc = invoke(spec_repo, "validate", "--env", "qa")
    assert proc.returncode == 2
    assert "unknown environment 'qa'" in proc.stderr


def test_missing_root_or_specs_directory_is_a_usage_error(tmp_path):
    proc = invoke(tmp_path / "nope", "validate")
    assert proc.returncode == 2
    assert "no such directory" in proc.stderr
    proc = invoke(tmp_path, "validate")
    assert proc.returncode == 2
    assert "no specs directory specs/" in proc.stderr
