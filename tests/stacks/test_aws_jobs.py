"""Scheduled jobs on AWS that run where they are rendered (issue 14 item 4): the
EventBridge-scheduled SageMaker Processing jobs check the spec repository out at the
applied revision, with the Git token read from a Secrets Manager reference, and record in
the shared state.

No AWS here: the stack runs under Pulumi's mocks (the offline renderer); the job's
checkout (``reconciler/state/checkout.py``) runs for real with ``git`` against a real bare
repository (``file://``), the ledger and the secret in moto's server (a fake S3 and
Secrets Manager).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from support.repo import PROJECT, make_repo, two_commit_remote

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.render import render
from reconciler.spec.repo import load_all
from reconciler.state import checkout
from reconciler.state.backend import S3Backend
from reconciler.state.ledger import Ledger, LedgerRecord
from stacks.aws_common import CHECKOUT_ENTRYPOINT

STATE_URL = "s3://team-state/modelops"
REPOSITORY = "https://github.com/acme/ml-specs.git"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ml-specs-git-AbCdEf"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/diabetes-progression:abc"
#: CreateProcessingJob: each ContainerEntrypoint item and Environment value is at most
#: 256 characters (the API reference), which is why the checkout is a module, not a script.
API_LIMIT = 256


def _jobs(root: Path, jobs: str) -> dict:
    (root / "modelops.yaml").write_text(f"state_url: {STATE_URL}\njobs:\n{jobs}")
    config = load_config(root)
    result = load_all(config, ["diabetes-progression"], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    artifact = Artifact("diabetes-progression:abc", "a" * 64, IMAGE, image_built=True)
    state = render(result.deployments[0], artifact, config, cache=False)
    schedules = {r.name: json.loads(r.inputs["target"]["input"]) for r in state.of_kind("Schedule")}
    policies = {r.name: json.loads(r.inputs["policy"]) for r in state.of_kind("RolePolicy")}
    return {"schedules": schedules, "policies": policies}


def test_scheduled_jobs_check_out_the_applied_revision_with_a_token_reference(tmp_path):
    root = make_repo(tmp_path / "repo", specs=["diabetes-progression"]).root
    jobs = f"  repository: {REPOSITORY}\n  aws_credentials: aws-secretsmanager:{SECRET_ARN}\n"
    out = _jobs(root, jobs)
    assert sorted(out["schedules"]) == [
        "diabetes-progression-prod-monitor",
        "diabetes-progression-prod-retrain",
    ]
    for name, job in out["schedules"].items():
        kind = name.rsplit("-", 1)[1]
        argv = ["modelops", "monitor", "run"] if kind == "monitor" else ["modelops", "retrain"]
        entry = job["AppSpecification"]["ContainerEntrypoint"]
        assert entry == [*CHECKOUT_ENTRYPOINT, *argv, "diabetes-progression", "--env", "prod"]
        assert job["Environment"] == {
            "MODELOPS_DEPLOYMENT": "diabetes-progression",
            "MODELOPS_ENVIRONMENT": "prod",
            "MODELOPS_STATE_URL": STATE_URL,
            "MODELOPS_SPEC_REPOSITORY": REPOSITORY,
            "MODELOPS_GIT_TOKEN_SECRET": f"aws-secretsmanager:{SECRET_ARN}",  # a reference
        }
        assert all(len(v) <= API_LIMIT for v in [*entry, *job["Environment"].values()])
    # the execution role may read exactly that secret
    (token,) = [p for n, p in out["policies"].items() if n.endswith("-git-token")]
    assert token["Statement"] == [
        {
            "Sid": "GitTokenRead",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [SECRET_ARN],
        }
    ]
    # a public repository: the checkout without a token, and no secret to read
    out = _jobs(root, f"  repository: {REPOSITORY}\n")
    for job in out["schedules"].values():
        assert job["AppSpecification"]["ContainerEntrypoint"][:3] == CHECKOUT_ENTRYPOINT
        assert "MODELOPS_GIT_TOKEN_SECRET" not in job["Environment"]
    assert not [n for n in out["policies"] if n.endswith("-git-token")]


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ("  aws_credentials: ghp_0123456789abcdef\n", "expected a Secrets Manager reference"),
        (
            f"  repository: git@github.com:acme/ml-specs.git\n"
            f"  aws_credentials: aws-secretsmanager:{SECRET_ARN}\n",
            "is an SSH URL",
        ),
    ],
)
def test_the_token_setting_is_a_secrets_manager_reference_for_an_https_url(tmp_path, jobs, message):
    (tmp_path / "modelops.yaml").write_text(f"jobs:\n{jobs}")
    with pytest.raises(ModelopsError, match=message) as err:
        load_config(tmp_path)
    assert "ghp_" not in err.value.message  # never echoes what may be a token


def test_the_job_runs_in_a_checkout_of_the_applied_revision(tmp_path, fake_s3):
    """The ledger record and the token secret in moto (a fake S3 and Secrets Manager)."""
    import boto3  # heavy (botocore's service models): only this test's fake secret

    bare, applied = two_commit_remote(tmp_path)
    fake_s3.create_bucket(Bucket="team-state")
    record = LedgerRecord("diabetes-progression", "prod", platform="aws-sagemaker")
    record.record_success(applied, "digest")
    Ledger(tmp_path / "state", S3Backend(STATE_URL, fake_s3)).put(record)
    secrets = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = secrets.create_secret(Name="ml-specs-git", SecretString="tok-123")["ARN"]
    env = {
        **os.environ,
        "MODELOPS_SPEC_REPOSITORY": f"file://{bare}",
        "MODELOPS_DEPLOYMENT": "diabetes-progression",
        "MODELOPS_ENVIRONMENT": "prod",
        "MODELOPS_STATE_URL": STATE_URL,
        "MODELOPS_GIT_TOKEN_SECRET": f"aws-secretsmanager:{arn}",
        "MODELOPS_WORKSPACE": str(tmp_path / "workspace"),
        "PYTHONPATH": str(PROJECT),
    }
    assert checkout.read_token(env["MODELOPS_GIT_TOKEN_SECRET"]) == "tok-123"
    # the job's argv runs in the checkout, which holds exactly the applied revision
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.state.checkout", "git", "rev-parse", "HEAD"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == applied and "tok-123" not in proc.stdout + proc.stderr
    repo = tmp_path / "workspace/repo"
    assert (repo / "spec.yaml").read_text() == "v: 1\n"
    # the job (a retraining run pushes its proposal, opens its pull request) gets the
    # token as GITHUB_TOKEN and git's Authorization header; what it runs in the checkout
    # says so without printing the token
    probe = (
        "import base64, os, subprocess\n"
        "header = subprocess.run(['git', 'config', '--get', 'http.extraHeader'],\n"
        "    capture_output=True, text=True).stdout.strip()\n"
        "basic = base64.b64decode(header.removeprefix('Authorization: Basic ')).decode()\n"
        "print(os.environ['GITHUB_TOKEN'] == 'tok-123', basic == 'x-access-token:tok-123')\n"
    )
    env["MODELOPS_WORKSPACE"] = str(tmp_path / "workspace2")
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.state.checkout", sys.executable, "-c", probe],
        env={k: v for k, v in env.items() if k != "GITHUB_TOKEN"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
    assert git.Repo(repo).git.rev_parse("--is-shallow-repository") == "true"
    assert not (tmp_path / "workspace/.home").exists()  # nothing left but the checkout
    # a secret that cannot be read stops the job before anything runs, naming the ARN
    missing = arn.replace("ml-specs-git", "no-such-secret")
    job = checkout.JobCheckout.from_env(
        {**env, "MODELOPS_GIT_TOKEN_SECRET": f"aws-secretsmanager:{missing}"}
    )
    with pytest.raises(ModelopsError, match=f"the Git token secret {missing} cannot be read"):
        checkout.check_out(job, env)
    # a record never applied: nothing to check out
    job = checkout.JobCheckout.from_env({**env, "MODELOPS_DEPLOYMENT": "never"})
    with pytest.raises(ModelopsError, match="never-prod has no applied revision"):
        checkout.check_out(job, env)
    # no repository: a usage error, exit 2
    bare_env = {k: v for k, v in env.items() if k != "MODELOPS_SPEC_REPOSITORY"}
    with pytest.raises(ModelopsError, match="MODELOPS_SPEC_REPOSITORY is not set"):
        checkout.JobCheckout.from_env(bare_env)
