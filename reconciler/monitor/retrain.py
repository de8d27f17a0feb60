"""Retraining: run the spec's command, judge the candidate, propose it through Git.

:func:`run_retraining` checks the cooldown, runs ``spec.retraining.command``
(:mod:`~reconciler.monitor.command`), scores the candidate against the live model on
the holdout (:mod:`~reconciler.monitor.scoring`) and, when it improves on it by at least
``spec.retraining.min_improvement``, publishes it to the spec's model store
(:mod:`~reconciler.monitor.publish`) and commits the spec edit on a new branch
(:mod:`~reconciler.monitor.proposal`); the flow pushes it and opens the pull request.
It returns the run (or raises it, as :class:`RetrainError`) and writes nothing to the
ledger: ``reconciler.flow.monitor`` reads the last retraining for the cooldown and
records every run. The steps, the command's environment and the rationale:
``docs/monitor.md``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.build.fetch import is_remote, resolve_model
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.digests import file_sha256
from reconciler.monitor.command import command_env, run_command
from reconciler.monitor.data import features_of, field_origin, read_table
from reconciler.monitor.drift import load_live_model
from reconciler.monitor.proposal import proposal_repo, propose
from reconciler.monitor.publish import publish_candidate
from reconciler.monitor.reason import check_reason
from reconciler.monitor.scoring import TARGET_COLUMN, find_model, load_candidate, score
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, spec_path

DEFAULT_TIMEOUT_S = 3600
"""Time-out of the retraining command when ``spec.retraining.timeout_s`` is unset (s)."""
DEFAULT_COOLDOWN_HOURS = 24.0
"""Minimum interval between completed retrainings when ``cooldown_hours`` is unset (h)."""
DEFAULT_MIN_IMPROVEMENT = 0.001
"""Improvement of the metric a candidate needs when ``spec.retraining.min_improvement`` is
unset (in the metric's units; every metric here is higher-is-better). Above zero: a
candidate that only ties the live model is not proposed (issue 14)."""
COMPLETED = ("proposed", "rejected", "unchanged")
"""The statuses of a completed run: the ones that start the cooldown."""


@dataclass
class RetrainResult:
    """The outcome of one retraining run.

    Attributes:
        name, env: the deployment and environment.
        status: ``proposed`` (branch committed), ``rejected`` (candidate worse),
            ``unchanged`` (candidate byte-identical to the live model), ``skipped``
            (cooldown) or ``failed``.
        reason: why it ran (``manual``, ``drift``, ``schedule``).
        message: one sentence for humans.
        metric: the metric used; candidate_score / live_score: its values on the holdout.
        holdout_rows: rows of the holdout set.
        model_uri: the proposed ``spec.model.uri`` ('' unless proposed): a repository path,
            or the published reference (``s3://...``, ``models:/<name>/<version>``).
        sha256: SHA-256 of the candidate model file ('' if none).
        model_version: the proposed ``spec.model.version`` ('' unless proposed).
        published: where the candidate was uploaded or registered ('' when committed).
        edited: the spec mapping the proposal edits (``spec.environments.<env>.model``).
        branch, commit: the proposal branch and its commit SHA ('' unless proposed).
        remote: the Git remote the branch was pushed to ('' when not pushed).
        pull_request: the pull request's URL, or the compare URL to open one ('').
        run_dir: the run directory; log: the command's output; report: candidate.json.
        seconds: wall time of the run (s); command_seconds: of the command alone (s).
    """

    name: str
    env: str
    status: str
    reason: str = "manual"
    message: str = ""
    metric: str = ""
    candidate_score: float | None = None
    live_score: float | None = None
    holdout_rows: int = 0
    model_uri: str = ""
    sha256: str = ""
    model_version: str = ""
    published: str = ""
    edited: str = ""
    branch: str = ""
    commit: str = ""
    remote: str = ""
    pull_request: str = ""
    run_dir: str = ""
    log: str = ""
    report: str = ""
    seconds: float = 0.0
    command_seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready mapping of every field."""
        return asdict(self)


class RetrainError(ModelopsError):
    """A failed retraining run (exit 2); ``result`` holds the failed run (to record)."""

    def __init__(self, message: str, result: RetrainResult) -> None:
        super().__init__(message)
        self.result = result


def improves(candidate: float, live: float, needed: float) -> tuple[bool, float]:
    """Whether a candidate scoring ``candidate`` is proposed over a live model scoring
    ``live`` (metric units, higher is better), and its gain (rounded to 6 decimals, as
    the scores are): the gain must be above zero (a tie is never proposed) and at least
    ``needed`` (``spec.retraining.min_improvement``)."""
    gain = round(candidate - live, 6)
    return gain > 0 and gain >= needed, gain


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 time of a ledger entry (``...Z`` or with an offset), or ``None``."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def run_retraining(
    dep: Deployment,
    config: Config,
    *,
    reason: str = "manual",
    repo=None,
    training_data: str | None = None,
    force: bool = False,
    now: datetime | None = None,
    last: dict | None = None,
    base: bool = False,
) -> RetrainResult:
    """Retrain one deployment's model and propose it on a new Git branch when better.

    Args:
        dep: the resolved deployment (``spec.retraining``, ``spec.model``).
        config: repository configuration (root, state directory).
        reason: why (``manual``, ``drift``, ``schedule`` or one line of free text,
            :func:`check_reason`); recorded and in the commit.
        repo: a ``git.Repo`` of the spec repository (default: found from ``config.root``).
        training_data: a Parquet/CSV path passed as ``MODELOPS_TRAINING_DATA``.
        force: ignore the cooldown.
        now: the current time (for the cooldown; default now, UTC).
        last: the newest completed retraining (a ``retrain`` history entry: ``time``,
            ``result``...), read by the flow; ``None`` means no cooldown applies.
        base: propose the model in the base ``spec.model`` (every environment) instead
            of this environment's overlay.

    Returns:
        A :class:`RetrainResult` (``proposed``, ``rejected``, ``unchanged`` or
        ``skipped``); nothing is written to the ledger
        (:func:`reconciler.flow.monitor.retrain` records it).

    Raises:
        ModelopsError: (exit 2) a ``reason`` that :func:`check_reason` refuses; nothing is
            run.
        RetrainError: (exit 2) no command or holdout, not a Git repository, the command
            fails, hangs past its time-out or produces no model, the holdout or a model
            cannot be read, the edited spec does not validate; ``result`` is the
            ``failed`` run; nothing is committed.
    """
    reason = check_reason(reason)  # before anything runs
    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    result = RetrainResult(name=dep.name, env=dep.env, status="failed", reason=reason)
    try:
        cooldown = float(dep.get("spec.retraining.cooldown_hours", DEFAULT_COOLDOWN_HOURS))
        when = parse_time(last.get("time", "")) if last else None
        if not force and when and now - when < timedelta(hours=cooldown):
            result.status = "skipped"
            result.message = (
                f"cooldown: last retraining {last.get('result')} at {last.get('time')}, less "
                f"than spec.retraining.cooldown_hours ({cooldown:g} h) ago; next allowed "
                f"after {(when + timedelta(hours=cooldown)).isoformat()} (or use --force)"
            )
            return result
        _retrain(dep, config, result, reason, repo, training_data, now, base)
    except ModelopsError as exc:
        result.status = "failed"
        result.message = exc.message
        result.seconds = round(time.perf_counter() - started, 3)
        raise RetrainError(exc.message, result) from None
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _retrain(dep, config, result, reason, repo, training_data, now, base) -> None:
    argv = dep.get("spec.retraining.command")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ModelopsError(
            f"{field_origin(dep, 'spec.retraining')}.command: not set; give the retraining command "
            'as an argv list, e.g. ["python", "examples/train.py", "fraud"]'
        )
    holdout_value = dep.get("spec.retraining.holdout")
    if not isinstance(holdout_value, str):
        raise ModelopsError(
            f"{field_origin(dep, 'spec.retraining')}.holdout: not set; the candidate is judged "
            "against the live model on a holdout set (Parquet/CSV with the features and "
            f"a {TARGET_COLUMN!r} column)"
        )
    holdout_path = spec_path(
        dep,
        config,
        "spec.retraining.holdout",
        holdout_value,
        s3=S3_UNREACHABLE,
        must_exist=True,
        what="holdout data",
        valid="a repository path to a Parquet or CSV file (copy S3 data into the repository)",
    ).local
    if dep.get("spec.model.framework", "sklearn") != "sklearn":
        raise ModelopsError(
            f"{field_origin(dep, 'spec.model.framework')}: retraining judges candidates with "
            "scikit-learn scorers, so it supports framework sklearn only"
        )
    feats = features_of(dep)
    holdout = read_table(
        holdout_path,
        [*feats.names, TARGET_COLUMN],
        what="holdout data",
        origin=field_origin(dep, "spec.retraining.holdout"),
        categorical=True,
    )
    live, why = load_live_model(dep, config)
    if live is None:
        raise ModelopsError(f"{field_origin(dep, 'spec.model.uri')}: {why}")
    git_repo = proposal_repo(config, repo)
    uri = dep.get("spec.model.uri")
    metric = dep.get("spec.retraining.metric") or (
        "accuracy" if dep.get("spec.model.task", "classification") == "classification" else "r2"
    )
    result.metric = metric

    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    run_dir = config.state_dir / "retrain" / dep.key / stamp
    if run_dir.exists():
        run_dir = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=run_dir.parent))
    output = run_dir / "output"
    output.mkdir(parents=True)
    log = run_dir / "train.log"
    result.run_dir, result.log = str(run_dir), str(log)
    env = command_env(
        dep,
        config,
        output=output,
        holdout=holdout_path,
        reason=reason,
        training_data=training_data,
    )
    timeout_s = int(dep.get("spec.retraining.timeout_s", DEFAULT_TIMEOUT_S))
    result.command_seconds = round(run_command(argv, config.root, env, timeout_s, log), 3)

    # the live model's file name gives the suffix the candidate must have
    remote = resolve_model(dep, config) if is_remote(uri) else None
    candidate_file = find_model(output, remote.path.name if remote else Path(uri).name, log)
    result.sha256 = file_sha256(candidate_file)
    candidate = load_candidate(candidate_file)
    x = holdout[feats.names].to_numpy(dtype="float32")
    y = holdout[TARGET_COLUMN].to_numpy()
    result.holdout_rows = len(holdout)
    result.candidate_score = round(score(candidate, x, y, metric, "candidate"), 6)
    result.live_score = round(score(live, x, y, metric, "live"), 6)
    if remote is not None:  # loaded above from the cache: the digest of the fetched bytes
        live_sha = remote.sha256
    else:
        live_sha = dep.get("spec.model.sha256") or file_sha256(
            spec_path(dep, config, "spec.model.uri", must_exist=True, what="model file").local
        )
    needed = float(dep.get("spec.retraining.min_improvement", DEFAULT_MIN_IMPROVEMENT))
    better, gain = improves(result.candidate_score, result.live_score, needed)
    compare = (
        f"{metric} on {holdout_value} ({len(holdout)} rows): candidate "
        f"{result.candidate_score:.6g} vs live {result.live_score:.6g}, improvement "
        f"{gain:+.6g} ({'meets' if better else 'below'} the required > 0 and >= {needed:g}, "
        "spec.retraining.min_improvement)"
    )
    promote = better and result.sha256 != live_sha
    if result.sha256 == live_sha:
        result.status = "unchanged"
        result.message = f"the retrained model is byte-identical to the live one; {compare}"
    elif not better:
        result.status = "rejected"
        result.message = f"candidate not promoted: {compare}"
    report = {
        "deployment": dep.name,
        "environment": dep.env,
        "reason": reason,
        "metric": metric,
        "holdout": holdout_value,
        "holdout_rows": len(holdout),
        "candidate": {
            "file": str(candidate_file),
            "sha256": result.sha256,
            "score": result.candidate_score,
        },
        "live": {"uri": uri, "sha256": live_sha, "score": result.live_score},
        "decision": "promote" if promote else result.status,
        "command": argv,
        "log": str(log),
        "command_seconds": result.command_seconds,
    }
    result.report = str(run_dir / "candidate.json")
    Path(result.report).write_text(json.dumps(report, indent=2) + "\n")
    if not promote:
        return
    published = publish_candidate(dep, candidate_file, result.sha256)
    if published is not None:
        result.published = published.uri
    proposal = propose(
        dep,
        config,
        git_repo,
        candidate_file=candidate_file,
        sha256=result.sha256,
        reason=result.reason,
        compare=compare,
        stamp=stamp,
        argv=argv,
        published=published,
        base=base,
    )
    result.model_version = proposal.version
    result.edited = proposal.edited
    result.branch = proposal.branch
    result.commit = proposal.commit
    result.model_uri = proposal.model_uri
    result.status = "proposed"
    result.message = (
        f"proposed {result.model_uri} on branch {result.branch} "
        f"(commit {result.commit[:12]}); {compare}"
    )
