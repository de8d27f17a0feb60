"""Scheduled jobs that run where they are rendered (issue 14 item 4): the Kubernetes
CronJobs for monitoring, retraining and batch carry a checkout of the spec repository at
the applied revision, the shared state URL, credentials by reference only, limits, no
overlap and a deadline; the manifests pass the same strict validation as the others.

No cluster here: the manifests are checked with kubernetes-validate (strict), and the
init container's checkout script is run for real with ``sh`` and ``git`` against a real
bare repository (``file://``), as the init container would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import git
from support.cli import invoke
from support.crds import assert_valid_manifest
from support.repo import make_repo, two_commit_remote

from reconciler.core.config import load_config
from reconciler.engine.render import render
from reconciler.spec.repo import load_all
from reconciler.state import applied
from reconciler.state.ledger import Ledger, LedgerRecord
from stacks.kubernetes import CHECKOUT_SCRIPT, JOB_DEADLINE_S

STATE_URL = "s3://team-state/modelops"
ROLE = "arn:aws:iam::123456789012:role/fraud-jobs"


def _repo(tmp_path: Path, jobs: str) -> tuple[Path, git.Repo]:
    """The example fraud-detector spec (prod on Kubernetes, with an IRSA role), committed,
    with ``modelops.yaml`` holding ``jobs`` and the shared state URL."""

    def edit(text: str) -> str:
        return text.replace(
            "    namespace: ml\n",
            f"    namespace: ml\n    service_account: {{role_arn: '{ROLE}'}}\n",
            1,
        )

    root = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=edit).root
    (root / "modelops.yaml").write_text(f"state_url: {STATE_URL}\njobs:\n{jobs}")
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add(A=True)
    repo.git.commit(m="specs", author="t <t@example.com>")
    return root, repo


def _cronjobs(root: Path) -> dict[str, dict]:
    config = load_config(root)
    result = load_all(config, ["fraud-detector"], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    (dep,) = result.deployments
    state = render(dep, None, config, cache=False)
    for manifest in state.manifests():
        assert_valid_manifest(manifest)  # every manifest, strictly, as today
    return {m["metadata"]["name"]: m for m in state.manifests() if m["kind"] == "CronJob"}


def test_cronjobs_check_out_the_applied_revision_and_record_in_the_shared_state(tmp_path):
    jobs = (
        "  repository: https://github.com/payments/ml-specs.git\n"
        "  credentials: k8s:ml-specs-git/token\n"
    )
    root, repo = _repo(tmp_path, jobs)
    cronjobs = _cronjobs(root)
    assert sorted(cronjobs) == ["fraud-detector-monitor", "fraud-detector-retrain"]
    for name, cron in cronjobs.items():
        spec = cron["spec"]
        assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
        job = spec["jobTemplate"]["spec"]
        deadline = 600 if name.endswith("retrain") else JOB_DEADLINE_S  # retraining.timeout_s
        assert job["activeDeadlineSeconds"] == deadline
        pod = job["template"]["spec"]
        assert pod["serviceAccountName"] == "fraud-detector"
        revision, init = pod["initContainers"]
        (main,) = pod["containers"]
        # first the applied revision, from the ledger in the shared state (model image)
        assert revision["command"] == [
            "python",
            "-m",
            "reconciler.state.applied",
            "fraud-detector",
            "prod",
            "/workspace/REVISION",
        ]
        assert revision["image"] == main["image"]
        assert {"name": "MODELOPS_STATE_URL", "value": STATE_URL} in revision["env"]
        # then the checkout of exactly that revision
        init_env = {e["name"]: e for e in init["env"]}
        assert init["command"] == ["sh", "-c", CHECKOUT_SCRIPT]
        assert init_env["MODELOPS_SPEC_REPOSITORY"]["value"] == (
            "https://github.com/payments/ml-specs.git"
        )
        # the token by reference only
        assert init_env["MODELOPS_GIT_TOKEN"] == {
            "name": "MODELOPS_GIT_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "ml-specs-git", "key": "token"}},
        }
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["MODELOPS_STATE_URL"] == STATE_URL
        # read-only root filesystem kept; the checkout is writable only for the init
        # containers and read-only for the job, which runs in it
        for container in (revision, init, main):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["limits"]["memory"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["workspace"] and "emptyDir" in volumes["tmp"]
        assert {"name": "workspace", "mountPath": "/workspace"} in init["volumeMounts"]
        retrain = name.endswith("retrain")
        # retraining commits and pushes its proposal: its checkout is writable, and it
        # gets the checkout's token (by reference) for git and the forge API; monitoring
        # only reads, with no token
        assert {"name": "workspace", "mountPath": "/workspace", "readOnly": not retrain} in main[
            "volumeMounts"
        ]
        main_env = {e["name"]: e for e in main["env"]}
        if retrain:
            assert (
                main_env["GITHUB_TOKEN"]["valueFrom"] == init_env["MODELOPS_GIT_TOKEN"]["valueFrom"]
            )
            assert main_env["GIT_CONFIG_KEY_0"]["value"] == "credential.helper"
            assert "$GITHUB_TOKEN" in main_env["GIT_CONFIG_VALUE_0"]["value"]
        else:
            assert "GITHUB_TOKEN" not in main_env and "GIT_CONFIG_COUNT" not in main_env
        assert main["workingDir"] == "/workspace/repo"
    # AWS credentials through the service account (IRSA), never as values
    text = json.dumps(cronjobs)
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    # a later commit that does not touch the deployment leaves its manifests alone
    (root / "README.md").write_text("unrelated\n")
    repo.git.add(A=True)
    repo.git.commit(m="docs", author="t <t@example.com>")
    assert _cronjobs(root) == cronjobs


def test_an_ssh_repository_gets_the_deploy_key_mounted_read_only(tmp_path):
    jobs = (
        "  repository: git@github.com:payments/ml-specs.git\n"
        "  credentials: k8s:ml-specs-git/ssh-privatekey\n"
    )
    root, _ = _repo(tmp_path, jobs)
    pod = _cronjobs(root)["fraud-detector-monitor"]["spec"]["jobTemplate"]["spec"]["template"]
    _, init = pod["spec"]["initContainers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret = volumes["git-credentials"]["secret"]
    assert secret["secretName"] == "ml-specs-git" and secret["defaultMode"] == 0o400
    assert {i["key"] for i in secret["items"]} == {"ssh-privatekey", "known_hosts"}
    env = {e["name"]: e.get("value", "") for e in init["env"]}
    assert "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"] and "MODELOPS_GIT_TOKEN" not in env
    assert {"name": "git-credentials", "mountPath": "/etc/modelops-git", "readOnly": True} in init[
        "volumeMounts"
    ]
    # the retraining job pushes its proposal with the same deploy key
    retrain = _cronjobs(root)["fraud-detector-retrain"]["spec"]["jobTemplate"]["spec"]
    (main,) = retrain["template"]["spec"]["containers"]
    main_env = {e["name"]: e.get("value", "") for e in main["env"]}
    assert main_env["GIT_SSH_COMMAND"] == env["GIT_SSH_COMMAND"] and "GITHUB_TOKEN" not in main_env
    assert {"name": "git-credentials", "mountPath": "/etc/modelops-git", "readOnly": True} in main[
        "volumeMounts"
    ]


def test_the_checkout_script_fetches_exactly_the_applied_revision_shallow(tmp_path):
    # a real bare "remote" with two commits; the job must get the first, not the head
    bare, applied = two_commit_remote(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    # what the applied-revision init container wrote from the ledger
    (workspace / "REVISION").write_text(applied + "\n")
    env = {
        "PATH": os.environ["PATH"],
        "MODELOPS_WORKSPACE": str(workspace),
        "MODELOPS_SPEC_REPOSITORY": f"file://{bare}",
    }
    subprocess.run(["sh", "-c", CHECKOUT_SCRIPT], env=env, check=True, timeout=120)
    checkout = git.Repo(workspace / "repo")
    assert checkout.head.commit.hexsha == applied
    assert (workspace / "repo/spec.yaml").read_text() == "v: 1\n"
    assert checkout.git.rev_parse("--is-shallow-repository") == "true"
    assert not (workspace / ".home").exists()  # nothing left but the checkout


def test_the_applied_revision_comes_from_the_ledger(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    ledger = Ledger(tmp_path / "state")
    out = tmp_path / "REVISION"
    assert applied.main(["fraud-detector", "prod", str(out)]) == 2  # never applied
    assert "no applied revision" in capsys.readouterr().err and not out.exists()
    record = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    record.record_success("a" * 40 + "-dirty", "digest")
    ledger.put(record)
    assert applied.main(["fraud-detector", "prod", str(out)]) == 0
    assert out.read_text() == "a" * 40 + "\n"


def test_validate_refuses_a_repository_path_sink_on_kubernetes(tmp_path):
    # the example spec captures to a repository path for staging (local) and to S3 in
    # prod (kubernetes); a prod overlay without the S3 sink cannot work in the cluster
    root = make_repo(tmp_path / "repo", specs=["fraud-detector"]).root
    spec = root / "specs/fraud-detector.yaml"
    text = spec.read_text()
    s3_sink = "      monitoring:\n        capture: {sink: s3://payments-capture/fraud-detector}\n"
    assert s3_sink in text
    assert invoke(root, "validate", "--env", "prod").returncode == 0
    spec.write_text(text.replace(s3_sink, ""))
    code, out, err = invoke(root, "validate", "--env", "prod")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "sink: .modelops/capture" in t)
    assert code == 1
    assert f"specs/fraud-detector.yaml:{line}:" in out + err
    assert "spec.monitoring.capture.sink" in out + err and "use s3://" in out + err
    assert invoke(root, "validate", "--env", "staging").returncode == 0  # local: fine


def test_the_retraining_jobs_git_credential_helper_answers_with_the_token(tmp_path):
    # the env the CronJob gives the retraining container, with the secret's value as
    # Kubernetes would resolve it: real git asks the helper for the push's credentials
    from stacks.kubernetes import GIT_TOKEN_HELPER

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_TERMINAL_PROMPT": "0",
        "GITHUB_TOKEN": "tok-123",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": GIT_TOKEN_HELPER,
    }
    done = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=github.com\n\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "username=x-access-token\n" in done.stdout and "password=tok-123\n" in done.stdout
