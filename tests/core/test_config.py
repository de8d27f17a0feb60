"""``modelops.yaml``: defaults, overrides, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELOPS_STATE_DIR", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    (tmp_path / ".git").mkdir()
    config = load_config(tmp_path)
    assert config.root == tmp_path.resolve()
    assert config.specs_dir == tmp_path.resolve() / "specs"
    assert config.state_dir == tmp_path.resolve() / ".modelops"
    assert config.environments == ["dev", "staging", "prod"]
    assert config.protected_environments == ["prod"]
    assert config.pulumi_backend == f"file://{tmp_path.resolve() / '.modelops' / 'pulumi'}"


def test_file_and_overrides(tmp_path, monkeypatch):
    (tmp_path / "modelops.yaml").write_text(
        "specs: deploy\nenvironments: [dev, prod]\nstate_dir: state\npulumi_backend: s3://b\n"
    )
    monkeypatch.setenv("MODELOPS_STATE_DIR", "/tmp/elsewhere")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    config = load_config(tmp_path)
    assert config.specs_dir.name == "deploy"
    assert config.environments == ["dev", "prod"]
    assert str(config.state_dir) == "/tmp/elsewhere"
    assert config.pulumi_backend == "s3://b"
    assert load_config(tmp_path, state_dir="x").state_dir == tmp_path.resolve() / "x"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "https://api.pulumi.com")
    assert load_config(tmp_path).pulumi_backend == "https://api.pulumi.com"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("specz: x\n", "modelops.yaml:1:1: unknown setting(s) specz; valid settings:"),
        ("specs: x\nzz: 1\nspecz: x\n", "modelops.yaml:2:1: unknown setting(s) zz, specz"),
        ("specs: x\nenvironments: prod\n", "modelops.yaml:2:1: environments: expected a list"),
        ("- a\n", "expected a mapping"),
        ("a: [\n", "YAML syntax error"),
        # a guard setting that compares wrongly must not loosen the guard
        ("max_delete_share: x\n", "modelops.yaml:1:1: max_delete_share: expected a share from 0"),
        ("max_delete_share: 7\n", "max_delete_share: expected a share from 0 to 1"),
        ("max_delete_share: -1\n", "max_delete_share: expected a share from 0 to 1"),
        ("max_delete_share: .nan\n", "max_delete_share: expected a share from 0 to 1"),
        ("max_delete_share: true\n", "max_delete_share: expected a share from 0 to 1"),
        ("stalled_after: x\n", "stalled_after: expected a whole number"),
        ("stalled_after: -2\n", "stalled_after: expected a whole number"),
        ("stalled_after: 2.5\n", "stalled_after: expected a whole number"),
        ("guard_reviewers: alice\n", "guard_reviewers: expected a list of GitHub logins"),
        ("guard_reviewers: ['al ice']\n", "guard_reviewers: expected a list of GitHub logins"),
        ("specs: x\nstate_dir: 5\n", "modelops.yaml:2:1: state_dir: expected a non-empty path"),
        ("state_dir: ''\n", "state_dir: expected a non-empty path"),
        ("organization: {bogus: 1}\n", "organization: expected a non-empty path"),
        ("policies: 5\n", "policies: expected a non-empty path"),
        ("specs: [a]\n", "specs: expected a non-empty path"),
    ],
)
def test_bad_config(tmp_path, text, needle):
    (tmp_path / "modelops.yaml").write_text(text)
    with pytest.raises(ModelopsError) as info:
        load_config(tmp_path)
    assert needle in info.value.message
    assert info.value.exit_code == 2


def test_repo_path_refuses_escapes(tmp_path):
    (tmp_path / ".git").mkdir()
    config = load_config(tmp_path)
    assert config.repo_path("examples/a.joblib") == tmp_path.resolve() / "examples/a.joblib"
    assert config.repo_path("../outside") is None
    assert config.repo_path("/etc/passwd") is None


@pytest.mark.parametrize("names", ["[dev, Prod Env]", "[dev, prod_eu]", "[dev, -x]"])
def test_an_environment_name_must_be_a_dns_label(tmp_path, names):
    (tmp_path / "modelops.yaml").write_text(f"environments: {names}\n")
    with pytest.raises(ModelopsError, match="modelops.yaml:1:.*DNS-1123 label"):
        load_config(tmp_path)
