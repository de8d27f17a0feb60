"""Start a scheduled job on AWS in a checkout of the spec repository at the applied revision.

EventBridge starts the monitoring, retraining and batch jobs of an AWS deployment as
SageMaker Processing jobs in the model image (``stacks/aws_common.py``). A Processing job
is one container (no init containers, as the Kubernetes CronJobs have), and its
entrypoint items and environment values are limited to 256 characters each, so the
checkout is this module rather than a shell script in the entrypoint:

``python -m reconciler.state.checkout modelops monitor run NAME --env ENV``

1. reads the deployment's applied revision from the shared state
   (``MODELOPS_STATE_URL``; :func:`reconciler.state.applied.applied_revision`), or takes
   the remote's default branch without shared state;
2. reads the Git token from Secrets Manager when ``MODELOPS_GIT_TOKEN_SECRET`` holds an
   ``aws-secretsmanager:<secret ARN>`` reference (the execution role may read exactly
   that secret); the value never reaches an argv, a file or a log: Git gets it as an
   HTTP Authorization header through ``GIT_CONFIG_*`` environment variables (GitHub's
   ``x-access-token`` Basic form);
3. fetches exactly that revision at depth 1 into ``$MODELOPS_WORKSPACE/repo``
   (``git clone --depth 1`` of a commit: init, fetch ``--depth 1 origin <sha>``, detached
   checkout; every git call is an argv list);
4. replaces itself with the job's argv, run in the checkout, with the token as the
   job's ``GITHUB_TOKEN`` and git's Authorization header (a retraining job pushes its
   proposal and opens the pull request with it; the retraining command gets neither).

Environment: ``MODELOPS_SPEC_REPOSITORY`` (required), ``MODELOPS_DEPLOYMENT`` and
``MODELOPS_ENVIRONMENT`` (the ledger record), ``MODELOPS_STATE_URL``,
``MODELOPS_GIT_TOKEN_SECRET``, ``MODELOPS_WORKSPACE`` (default
:data:`DEFAULT_WORKSPACE`). Exit 2 with a message naming the repository, the record or
the secret (never the token) when a step fails; the job's own exit code otherwise.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3  # the job reads its Git token from Secrets Manager

from reconciler.core.config import AWS_SECRET
from reconciler.core.diagnostics import ModelopsError
from reconciler.state.applied import applied_revision
from reconciler.state.backend import S3Backend
from reconciler.state.ledger import Ledger

DEFAULT_WORKSPACE = "/tmp/modelops-workspace"
#: Seconds one git command may take (a fetch of one shallow revision).
GIT_TIMEOUT_S = 300


@dataclass(frozen=True)
class JobCheckout:
    """What a job's checkout needs, read from its environment (:meth:`from_env`)."""

    repository: str
    workspace: Path
    deployment: str = ""
    environment: str = ""
    state_url: str = ""
    token_secret: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> JobCheckout:
        """Read the job's settings from ``env`` (see the module doc).

        Raises:
            ModelopsError: (exit 2) no repository; a token secret that is not an
                ``aws-secretsmanager:`` ARN reference; shared state without the record's
                name and environment.
        """
        repository = env.get("MODELOPS_SPEC_REPOSITORY", "").strip()
        if not repository:
            raise ModelopsError(
                "MODELOPS_SPEC_REPOSITORY is not set: the job cannot check out the spec "
                "repository (set jobs.repository in modelops.yaml and apply again)"
            )
        secret = env.get("MODELOPS_GIT_TOKEN_SECRET", "").strip()
        if secret and not AWS_SECRET.fullmatch(secret):
            raise ModelopsError(
                "MODELOPS_GIT_TOKEN_SECRET is not an aws-secretsmanager:<secret ARN> "
                "reference (the job reads the token itself; never give it the value)"
            )
        out = cls(
            repository=repository,
            workspace=Path(env.get("MODELOPS_WORKSPACE") or DEFAULT_WORKSPACE),
            deployment=env.get("MODELOPS_DEPLOYMENT", ""),
            environment=env.get("MODELOPS_ENVIRONMENT", ""),
            state_url=env.get("MODELOPS_STATE_URL", ""),
            token_secret=secret,
        )
        if out.state_url and not (out.deployment and out.environment):
            raise ModelopsError(
                "MODELOPS_DEPLOYMENT and MODELOPS_ENVIRONMENT must name the job's ledger "
                "record to read its applied revision"
            )
        return out


def read_token(reference: str) -> str:
    """The secret string of the Secrets Manager secret ``aws-secretsmanager:<ARN>`` (the
    region is the ARN's), read with the job's own credentials (its execution role).

    Raises:
        ModelopsError: (exit 2) the secret cannot be read or is not a string; the message
            names the ARN, never a value.
    """
    arn = reference.split(":", 1)[1]
    region = arn.split(":")[3]
    try:
        client = boto3.client("secretsmanager", region_name=region)
        value = client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; each is named
        raise ModelopsError(
            f"the Git token secret {arn} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(value, str) or not value.strip():
        raise ModelopsError(
            f"the Git token secret {arn} holds no string (a binary or empty secret)"
        )
    return value.strip()


def _git(args: list[str], cwd: Path, env: dict[str, str], what: str, repository: str) -> None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelopsError(f"{what} of {repository} failed: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelopsError(f"{what} of {repository} failed (git exit {proc.returncode}): {detail}")


def check_out(job: JobCheckout, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Check the spec repository out at the applied revision (see the module doc).

    Returns:
        The checkout directory (``<workspace>/repo``), and the job's credentials for the
        same repository (``{}`` without a token): ``GITHUB_TOKEN`` (unless ``env`` has
        one) and the ``GIT_CONFIG_*`` variables of the Authorization header, so that a
        retraining job pushes its proposal and opens its pull request with the token
        (the retraining command itself gets neither: ``monitor/command.py``).

    Raises:
        ModelopsError: (exit 2) the record has no applied revision, the token cannot be
            read, or a git step fails (the message names the repository).
    """
    revision = "HEAD"
    if job.state_url:
        try:
            backend = S3Backend(job.state_url)
        except ValueError as exc:
            raise ModelopsError(f"MODELOPS_STATE_URL {job.state_url!r}: {exc}") from None
        ledger = Ledger(Path(tempfile.gettempdir()) / "modelops-state", backend)
        revision = applied_revision(ledger, job.deployment, job.environment)
    dest = job.workspace / "repo"
    home = job.workspace / ".home"  # git's own files, removed once the checkout is done
    home.mkdir(parents=True, exist_ok=True)
    git_env = {**env, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0"}
    auth: dict[str, str] = {}
    if job.token_secret:
        token = read_token(job.token_secret)
        basic = base64.b64encode(f"x-access-token:{token}".encode())
        auth = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic.decode()}",
        }
        git_env.update(auth)
        auth = {**auth, "GITHUB_TOKEN": env.get("GITHUB_TOKEN") or token}
    _git(["init", "-q", str(dest)], job.workspace, git_env, "git init", job.repository)
    _git(["remote", "add", "origin", job.repository], dest, git_env, "git remote", job.repository)
    _git(
        ["fetch", "-q", "--depth", "1", "origin", revision],
        dest,
        git_env,
        f"the fetch of revision {revision}",
        job.repository,
    )
    detach = ["checkout", "-q", "--detach", "FETCH_HEAD"]
    _git(detach, dest, git_env, "the checkout", job.repository)
    shutil.rmtree(home, ignore_errors=True)
    return dest, auth


def main(argv: list[str] | None = None) -> int:
    """``JOB ARGV...``: check out, then run the job's argv in the checkout (exec)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m reconciler.state.checkout COMMAND [ARG...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        job = JobCheckout.from_env(env)
        dest, auth = check_out(job, env)
    except ModelopsError as exc:
        print(f"modelops: {exc.message}", file=sys.stderr)
        return 2
    print(f"checked out {job.repository} into {dest}", file=sys.stderr)
    os.chdir(dest)
    os.execvpe(args[0], args, {**env, **auth})
    return 0  # not reached: exec replaced the process


if __name__ == "__main__":
    sys.exit(main())
