"""Guards found by a new-user trial: protected environments, bad paths and revisions.

The Git error runs as a real process; the others call the same entry point in this
process (``support.cli.invoke``)."""

from __future__ import annotations

import subprocess

from support.cli import invoke, run_cli

from reconciler.core.config import load_config
from reconciler.state.ledger import Ledger


def test_destroy_in_a_protected_environment_needs_the_flag(spec_repo):
    proc = invoke(spec_repo, "destroy", "--env", "prod", "fraud-detector")
    assert proc.returncode == 2
    assert "prod is a protected environment" in proc.stderr
    assert "--allow-destroy-protected" in proc.stderr
    proc = invoke(spec_repo, "destroy", "--env", "prdo", "fraud-detector")
    assert proc.returncode == 2 and "unknown environment 'prdo'" in proc.stderr


def test_bad_paths_and_formats_are_usage_errors(spec_repo):
    (spec_repo / "afile").write_text("x")
    proc = invoke(spec_repo, "render", "--env", "prod", "--out", str(spec_repo / "afile"))
    assert proc.returncode == 2
    assert "error: Not a directory" in proc.stderr and "internal error" not in proc.stderr
    proc = invoke(spec_repo, "status", "--format", "xml")
    assert proc.returncode == 2 and "unknown format 'xml'" in proc.stderr


def test_unknown_commit_is_a_clean_git_error(spec_repo):
    git = ["git", "-C", str(spec_repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "specs"], check=True)
    proc = run_cli(spec_repo, "plan", "--env", "prod", "--base", "0" * 40)
    assert proc.returncode == 2
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert "0000000000" in proc.stderr


TEXT_OR_JSON_COMMANDS = [
    ("status",),
    ("history", "fraud-detector", "--env", "staging"),
    ("apply", "--env", "staging"),
    ("build", "--env", "staging"),
    ("batch", "fraud-detector", "--env", "staging"),
    ("smoke", "fraud-detector", "--env", "staging"),
    ("monitor", "run", "fraud-detector", "--env", "staging"),
    ("retrain", "fraud-detector", "--env", "staging"),
    ("policy", "test"),
]


def test_every_text_or_json_command_refuses_another_format_before_any_work(spec_repo):
    """One option (``commands.options.TextOrJson``) checks them all: apply, history and
    batch used to print text for ``--format xml`` and exit 0."""
    for args in TEXT_OR_JSON_COMMANDS:
        proc = invoke(spec_repo, *args, "--format", "xml")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "unknown format 'xml'; valid formats: text, json" in proc.stderr, args
    assert not (spec_repo / ".modelops" / "ledger").exists()  # nothing ran


def test_apply_of_a_spec_file_outside_the_specs_directory_is_refused(spec_repo):
    # applied, it would be orphaned at once: no spec in the tree declares it
    (spec_repo / "drafts").mkdir()
    draft = spec_repo / "drafts/fraud.yaml"
    draft.write_text((spec_repo / "specs/fraud-detector.yaml").read_text())
    code, out, err = invoke(spec_repo, "apply", "--env", "staging", "drafts/fraud.yaml")
    assert code == 2, out + err
    assert "drafts/fraud.yaml is outside it" in err and "nothing was applied" in err
    assert Ledger(load_config(spec_repo).state_dir).all() == []
