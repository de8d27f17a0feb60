"""Retraining: run the spec's command, judge the candidate, propose it through Git.

One run (``modelops retrain NAME --env ENV``, or the drift job with
``spec.monitoring.on_drift: retrain``):

1. **Cooldown**: if the ledger's history has a completed retraining (``proposed``,
   ``rejected`` or ``unchanged``) less than ``spec.retraining.cooldown_hours`` (default
   :data:`DEFAULT_COOLDOWN_HOURS`) ago, the run is skipped (recorded as ``skipped``).
   Failed runs do not start a cooldown, so a fixed command can be retried at once.
2. **Command**: ``spec.retraining.command`` (an argv list, never a shell) runs in the
   repository root, in its own process group, with ``timeout_s`` (default
   :data:`DEFAULT_TIMEOUT_S`; on expiry the group gets SIGTERM, then SIGKILL after 5 s),
   stdout and stderr captured to ``train.log`` in the run directory
   ``<state_dir>/retrain/<name>-<env>/<UTC time>/``. Environment: the parent's, with
   modelops's Python first on ``PATH`` (so ``python`` is the interpreter modelops runs
   on), plus ``MODELOPS_OUTPUT_DIR`` (a fresh ``output/`` in the run directory),
   ``MODELOPS_REFERENCE_DATA`` and ``MODELOPS_HOLDOUT_DATA`` (absolute paths of
   ``spec.monitoring.reference`` and ``spec.retraining.holdout``),
   ``MODELOPS_TRAINING_DATA`` (only when training data is given: ``--training-data``;
   otherwise the command uses its own source), ``MODELOPS_DEPLOYMENT``,
   ``MODELOPS_ENV`` and ``MODELOPS_REASON``.
3. **Candidate**: the one model file in the output directory with the live model's
   suffix (``model.joblib`` preferred). Candidate and live model (loaded only after its
   digest matches ``spec.model.sha256``) are scored on ``spec.retraining.holdout`` (the
   signature's feature columns and a ``target`` column) with scikit-learn's scorer for
   ``spec.retraining.metric`` (default ``accuracy`` for classification, ``r2`` for
   regression); the candidate report is ``candidate.json`` in the run directory.
4. **Proposal** when candidate >= live (and the bytes differ): the model is copied next
   to the live one as ``<stem>-<sha256[:12]><suffix>`` (or into
   ``spec.retraining.output``), and ``uri``/``sha256`` are replaced in the spec text
   where they are written (base spec or this environment's overlay; comments and layout
   kept, :mod:`reconciler.monitor.specedit`). All of it happens in a temporary
   detached ``git worktree`` of HEAD: the edited repository is validated there with the
   normal loader (schema, digest, paths), committed, and only then the branch
   ``modelops/retrain/<name>-<UTC time>`` is created at that commit (GitPython). The
   user's checkout, index and current branch are never touched; this is verified
   before returning.

Every failure raises :class:`RetrainError` with a clear message, after recording a
``failed`` run in the ledger history; no branch is created.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, spec_path
from reconciler.state import status
from reconciler.state.ledger import Ledger, LedgerRecord

DEFAULT_TIMEOUT_S = 3600
"""Time-out of the retraining command when ``spec.retraining.timeout_s`` is unset (s)."""
DEFAULT_COOLDOWN_HOURS = 24.0
"""Minimum interval between completed retrainings when ``cooldown_hours`` is unset (h)."""
TARGET_COLUMN = "target"
"""The label column of the holdout set (the convention of ``examples/train.py``)."""
COMPLETED = ("proposed", "rejected", "unchanged")
SCORERS = {
    "accuracy": "accuracy",
    "f1": "f1",
    "roc_auc": "roc_auc",
    "r2": "r2",
    "neg_mae": "neg_mean_absolute_error",
    "neg_rmse": "neg_root_mean_squared_error",
}
"""``spec.retraining.metric`` → scikit-learn scorer name (higher is better for all)."""
MAX_REASON_CHARS = 500
"""Longest ``--reason`` accepted (characters): one readable line in the commit message and
the ledger history; longer text belongs in the pull request (number from review)."""


def check_reason(reason: object) -> str:
    """The ``--reason`` of a retraining run, checked; surrounding spaces are trimmed.

    The reason is written into the proposal's commit message (``Reason: <reason>``), the
    ledger history, ``candidate.json`` and ``MODELOPS_REASON``. A newline or other control
    character could add forged lines (``Signed-off-by:``, ``Co-authored-by:`` trailers) to
    the commit, and bidirectional-override or other invisible format characters could make
    it read differently than it is, so only printable text is accepted
    (:meth:`str.isprintable`: no Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp, and no
    spaces other than U+0020).

    Args:
        reason: the text given (``manual``, ``drift``, ``schedule``, or free text such as
            ``ticket ML-123: new fraud pattern``).

    Returns:
        The reason without leading/trailing spaces.

    Raises:
        ModelopsError: (exit 2) not a string, empty or only spaces, a character that is
            not printable (named with its code point and position), or longer than
            :data:`MAX_REASON_CHARS` characters.
    """
    allowed = (
        f"give one line of printable text, 1-{MAX_REASON_CHARS} characters (e.g. manual, "
        "drift, schedule or 'ticket ML-123: new fraud pattern')"
    )
    if not isinstance(reason, str):
        raise ModelopsError(f"--reason: expected text, got {type(reason).__name__}; {allowed}")
    text = reason.strip(" ")
    if not text.strip():
        raise ModelopsError(f"--reason: empty (or only whitespace); {allowed}")
    if len(text) > MAX_REASON_CHARS:
        raise ModelopsError(f"--reason: {len(text)} characters is too long; {allowed}")
    bad = next((i for i, ch in enumerate(text) if not ch.isprintable()), None)
    if bad is not None:
        char = text[bad]
        kinds = {"Cc": "control", "Cf": "format", "Cs": "surrogate", "Co": "private-use"}
        name = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(char) or (
            f"the character {unicodedata.name(char)}"
            if unicodedata.name(char, "")
            else f"a {kinds.get(unicodedata.category(char), 'unassigned')} character"
        )
        raise ModelopsError(
            f"--reason: {name} (U+{ord(char):04X}) at character {bad + 1}; the reason goes "
            f"into the commit message and the ledger as one line; {allowed}"
        )
    return text


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
        model_uri: repository path of the proposed model ('' unless proposed).
        sha256: SHA-256 of the candidate model file ('' if none).
        branch, commit: the proposal branch and its commit SHA ('' unless proposed).
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
    branch: str = ""
    commit: str = ""
    run_dir: str = ""
    log: str = ""
    report: str = ""
    seconds: float = 0.0
    command_seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready mapping of every field."""
        return asdict(self)


class RetrainError(ModelopsError):
    """A failed retraining run (exit 2); ``result`` holds the recorded failed run."""

    def __init__(self, message: str, result: RetrainResult) -> None:
        super().__init__(message)
        self.result = result


def _where(dep: Deployment, path: str) -> str:
    return f"{dep.locate(path)}: {path}"


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def last_retraining(record: LedgerRecord | None) -> dict | None:
    """The newest completed retraining entry of a ledger record's history, or ``None``."""
    if record is None:
        return None
    for entry in reversed(record.history):
        if entry.get("action") == "retrain" and entry.get("result") in COMPLETED:
            return entry
    return None


def _last_file(dep: Deployment, config: Config) -> Path:
    """``<state_dir>/retrain/<name>-<env>/last-completed.json``: the newest completed run.

    Kept beside the ledger because the ledger's history is capped (100 entries), which an
    hourly drift job fills in four days, shorter than a weekly cooldown.
    """
    return config.state_dir / "retrain" / dep.key / "last-completed.json"


def _last_completed(dep: Deployment, config: Config) -> dict | None:
    """The newest completed retraining: from the ledger history or ``last-completed.json``."""
    found = [last_retraining(Ledger(config.state_dir).get(dep.name, dep.env))]
    try:
        found.append(json.loads(_last_file(dep, config).read_text()))
    except (OSError, ValueError):
        pass
    dated = [(_parse_time(e.get("time", "")), e) for e in found if isinstance(e, dict)]
    dated = [(t, e) for t, e in dated if t is not None]
    return max(dated, key=lambda te: te[0])[1] if dated else None


def _record(dep: Deployment, config: Config, result: RetrainResult) -> None:
    extra = {
        k: v
        for k, v in result.to_dict().items()
        if k
        in (
            "reason",
            "metric",
            "candidate_score",
            "live_score",
            "branch",
            "commit",
            "sha256",
            "model_uri",
            "log",
        )
        and v not in ("", None)
    }
    entry = status.retraining_result(
        Ledger(config.state_dir), dep, result.status, result.message, **extra
    )
    if result.status in COMPLETED:
        last = _last_file(dep, config)
        last.parent.mkdir(parents=True, exist_ok=True)
        tmp = last.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
        os.replace(tmp, last)


def run_retraining(
    dep: Deployment,
    config: Config,
    *,
    reason: str = "manual",
    repo=None,
    training_data: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> RetrainResult:
    """Retrain one deployment's model and propose it on a new Git branch when not worse.

    Args:
        dep: the resolved deployment (``spec.retraining``, ``spec.model``).
        config: repository configuration (root, state directory).
        reason: why (``manual``, ``drift``, ``schedule`` or one line of free text,
            :func:`check_reason`); recorded and in the commit.
        repo: a ``git.Repo`` of the spec repository (default: found from ``config.root``).
        training_data: a Parquet/CSV path passed as ``MODELOPS_TRAINING_DATA``.
        force: ignore the cooldown.
        now: the current time (for the cooldown; default now, UTC).

    Returns:
        A :class:`RetrainResult` (``proposed``, ``rejected``, ``unchanged`` or
        ``skipped``), also recorded in the ledger history (action ``retrain``).

    Raises:
        ModelopsError: (exit 2) a ``reason`` that :func:`check_reason` refuses; nothing is
            run or recorded.
        RetrainError: (exit 2) no command or holdout, not a Git repository, the command
            fails, hangs past its time-out or produces no model, the holdout or a model
            cannot be read, the edited spec does not validate; recorded as ``failed``;
            nothing is committed.
    """
    reason = check_reason(reason)  # before anything is recorded
    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    result = RetrainResult(name=dep.name, env=dep.env, status="failed", reason=reason)
    try:
        cooldown = float(dep.get("spec.retraining.cooldown_hours", DEFAULT_COOLDOWN_HOURS))
        last = _last_completed(dep, config)
        when = _parse_time(last.get("time", "")) if last else None
        if not force and when and now - when < timedelta(hours=cooldown):
            result.status = "skipped"
            result.message = (
                f"cooldown: last retraining {last.get('result')} at {last.get('time')}, less "
                f"than spec.retraining.cooldown_hours ({cooldown:g} h) ago; next allowed "
                f"after {(when + timedelta(hours=cooldown)).isoformat()} (or use --force)"
            )
            _record(dep, config, result)
            return result
        _retrain(dep, config, result, reason, repo, training_data, now)
    except ModelopsError as exc:
        result.status = "failed"
        result.message = exc.message
        result.seconds = round(time.perf_counter() - started, 3)
        _record(dep, config, result)
        raise RetrainError(exc.message, result) from None
    result.seconds = round(time.perf_counter() - started, 3)
    _record(dep, config, result)
    return result


def _open_repo(config: Config, repo):
    import git

    if repo is not None:
        return repo
    try:
        return git.Repo(config.root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ModelopsError(
            f"{config.root} is not in a Git repository; retraining proposes the new model "
            "on a Git branch, so the spec repository must be a Git checkout"
        ) from None


def _run_command(argv: list[str], cwd: Path, env: dict, timeout_s: int, log: Path) -> float:
    """Run ``argv`` in its own process group; return its wall time (s)."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ModelopsError(
                f"cannot start the retraining command {argv[0]!r}: {exc.strerror}; "
                "spec.retraining.command must be an argv list whose first item is a program "
                "on PATH or a path in the repository"
            ) from None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ModelopsError(
                f"the retraining command timed out after {timeout_s} s "
                f"(spec.retraining.timeout_s) and was stopped; log: {log}"
            ) from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise ModelopsError(
            f"the retraining command exited with code {code}; last lines of {log}:\n  "
            + "\n  ".join(tail or ["(no output)"])
        )
    return time.perf_counter() - started


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _find_model(output: Path, live_name: str, log: Path) -> Path:
    suffix = Path(live_name).suffix
    found = sorted(p for p in output.rglob(f"*{suffix}") if p.is_file())
    if not found:
        raise ModelopsError(
            f"the retraining command produced no model: no *{suffix} file in "
            f"$MODELOPS_OUTPUT_DIR ({output}); the command must write the model there "
            f"(log: {log})"
        )
    same = [p for p in found if p.name == live_name]
    if same:
        return same[0]
    if len(found) > 1:
        raise ModelopsError(
            f"the retraining command wrote {len(found)} *{suffix} files in {output} and none "
            f"is named {live_name}; write exactly one model file"
        )
    return found[0]


def _score(model, x, y, metric: str, what: str) -> float:
    from sklearn.metrics import get_scorer

    try:
        return float(get_scorer(SCORERS[metric])(model, x, y))
    except Exception as exc:  # noqa: BLE001 - a model that cannot be scored
        raise ModelopsError(
            f"cannot score the {what} model with {metric} on the holdout: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _reference_path(dep: Deployment, config: Config) -> Path | None:
    """The local ``spec.monitoring.reference`` for ``MODELOPS_REFERENCE_DATA``, if any.

    ``None`` when the spec has no reference or it is an ``s3://`` URI: the variable is
    then not set and the retraining command reads its data from its own source.

    Raises:
        ModelopsError: a local reference that leaves the repository, or a malformed
            ``s3://`` URI (:func:`reconciler.spec.paths.spec_path`).
    """
    field = "spec.monitoring.reference"
    if dep.get(field) is None:
        return None
    return spec_path(dep, config, field, s3=True, what="reference data").local


def _retrain(dep, config, result, reason, repo, training_data, now) -> None:
    import joblib

    from reconciler.monitor.data import features_of, read_table
    from reconciler.monitor.drift import load_live_model
    from reconciler.spec.validate import file_sha256

    argv = dep.get("spec.retraining.command")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ModelopsError(
            f"{_where(dep, 'spec.retraining')}.command: not set; give the retraining command "
            'as an argv list, e.g. ["python", "examples/train.py", "fraud"]'
        )
    holdout_value = dep.get("spec.retraining.holdout")
    if not isinstance(holdout_value, str):
        raise ModelopsError(
            f"{_where(dep, 'spec.retraining')}.holdout: not set; the candidate is judged "
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
            f"{_where(dep, 'spec.model.framework')}: retraining judges candidates with "
            "scikit-learn scorers, so it supports framework sklearn only"
        )
    feats = features_of(dep)
    holdout = read_table(
        holdout_path,
        [*feats.names, TARGET_COLUMN],
        what="holdout data",
        origin=_where(dep, "spec.retraining.holdout"),
        categorical=True,
    )
    live, why = load_live_model(dep, config)
    if live is None:
        raise ModelopsError(f"{_where(dep, 'spec.model.uri')}: {why}")
    git_repo = _open_repo(config, repo)
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
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        MODELOPS_OUTPUT_DIR=str(output),
        MODELOPS_HOLDOUT_DATA=str(holdout_path),
        MODELOPS_DEPLOYMENT=dep.name,
        MODELOPS_ENV=dep.env,
        MODELOPS_REASON=reason,
    )
    env.pop("MODELOPS_TRAINING_DATA", None)
    ref = _reference_path(dep, config)
    if ref is not None:
        env["MODELOPS_REFERENCE_DATA"] = str(ref)
    if training_data:
        tpath = Path(training_data)
        tpath = tpath if tpath.is_absolute() else (config.root / tpath)
        if not tpath.is_file():
            raise ModelopsError(f"--training-data: {training_data} not found")
        env["MODELOPS_TRAINING_DATA"] = str(tpath.resolve())
    timeout_s = int(dep.get("spec.retraining.timeout_s", DEFAULT_TIMEOUT_S))
    result.command_seconds = round(_run_command(argv, config.root, env, timeout_s, log), 3)

    candidate_file = _find_model(output, Path(uri).name, log)
    result.sha256 = file_sha256(candidate_file)
    try:
        candidate = joblib.load(candidate_file)
    except Exception as exc:  # noqa: BLE001 - unreadable model
        raise ModelopsError(
            f"cannot load the candidate model {candidate_file}: {type(exc).__name__}: {exc}"
        ) from None
    x = holdout[feats.names].to_numpy(dtype="float32")
    y = holdout[TARGET_COLUMN].to_numpy()
    result.holdout_rows = len(holdout)
    result.candidate_score = round(_score(candidate, x, y, metric, "candidate"), 6)
    result.live_score = round(_score(live, x, y, metric, "live"), 6)
    live_sha = dep.get("spec.model.sha256") or file_sha256(
        spec_path(dep, config, "spec.model.uri", must_exist=True, what="model file").local
    )
    better = result.candidate_score >= result.live_score
    compare = (
        f"{metric} on {holdout_value} ({len(holdout)} rows): candidate "
        f"{result.candidate_score:.6g} {'>=' if better else '<'} live {result.live_score:.6g}"
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
    _propose(dep, config, git_repo, result, candidate_file, compare, stamp, argv)
    result.status = "proposed"
    result.message = (
        f"proposed {result.model_uri} on branch {result.branch} "
        f"(commit {result.commit[:12]}); {compare}"
    )


def _new_model_path(dep: Deployment, config: Config, sha: str) -> str:
    """Repository-relative path (from the config root) for the proposed model file."""
    from reconciler.spec.validate import URI_SCHEMES

    uri = dep.get("spec.model.uri")
    out = dep.get("spec.retraining.output")
    name = Path(uri).name if isinstance(uri, str) else "model.joblib"
    stem, suffix = Path(name).stem, Path(name).suffix
    stem = re.sub(r"-[0-9a-f]{12}$", "", stem)  # model-<old digest> -> model
    filename = f"{stem}-{sha[:12]}{suffix}"
    if isinstance(out, str):
        spec_path(
            dep,
            config,
            "spec.retraining.output",
            out,
            valid="a directory relative to the repository root that stays inside it (the "
            "proposed model is committed there)",
        )
        return (Path(out) / filename).as_posix()
    if uri.startswith(URI_SCHEMES):
        raise ModelopsError(
            f"{_where(dep, 'spec.model.uri')}: {uri} is not a repository path; set "
            "spec.retraining.output to the directory where proposed models go"
        )
    return (Path(uri).parent / filename).as_posix()


def _edit_paths(dep: Deployment) -> tuple[tuple, tuple]:
    """Where ``uri`` and ``sha256`` are written for this environment (base or overlay)."""
    base = ("spec", "model")
    over = ("spec", "environments", dep.env, "model")
    uri_path = (*over, "uri") if (*over, "uri") in dep.spec.positions else (*base, "uri")
    if (*over, "sha256") in dep.spec.positions:
        sha_path = (*over, "sha256")
    elif (*base, "sha256") in dep.spec.positions and uri_path[:-1] == base:
        sha_path = (*base, "sha256")
    else:
        sha_path = (*uri_path[:-1], "sha256")
    return uri_path, sha_path


def _repo_state(repo) -> tuple:
    """What must not change in the user's checkout: HEAD, its branch, the status."""
    branch = "" if repo.head.is_detached else repo.active_branch.name
    return (repo.head.commit.hexsha, branch, repo.git.status("--porcelain", "--untracked-files=no"))


def _propose(dep, config, repo, result, candidate_file, compare, stamp, argv) -> None:
    import git

    from reconciler.monitor.specedit import edit_scalars
    from reconciler.spec.repo import load_all

    repo_root = Path(repo.working_tree_dir).resolve()
    try:
        spec_rel = dep.spec.path.resolve().relative_to(repo_root).as_posix()
        root_rel = config.root.resolve().relative_to(repo_root)
    except ValueError:
        raise ModelopsError(
            f"{dep.spec.file}: the spec file is not inside the Git repository {repo_root}"
        ) from None
    try:
        head = repo.head.commit
    except ValueError:
        raise ModelopsError(f"{repo_root}: the repository has no commit yet") from None
    try:
        head.tree / spec_rel
    except KeyError:
        raise ModelopsError(
            f"{dep.spec.file}: not committed at HEAD ({head.hexsha[:12]}); commit the spec "
            "first, the proposal branch starts from HEAD"
        ) from None
    before = _repo_state(repo)
    model_rel = _new_model_path(dep, config, result.sha256)
    branch = f"modelops/retrain/{dep.name}-{stamp}"
    n = 1
    while branch in repo.heads:
        n += 1
        branch = f"modelops/retrain/{dep.name}-{stamp}-{n}"
    wt = Path(tempfile.mkdtemp(prefix="modelops-retrain-"))
    try:
        repo.git.worktree("add", "--detach", str(wt), head.hexsha)
        wt_root = wt / root_rel
        target = wt_root / model_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate_file, target)
        spec_file = wt / spec_rel
        text = spec_file.read_text(encoding="utf-8")
        uri_path, sha_path = _edit_paths(dep)
        edited = edit_scalars(
            text, dep.spec.file, {uri_path: model_rel, sha_path: result.sha256}, {sha_path}
        )
        spec_file.write_text(edited, encoding="utf-8")
        wt_config = dataclasses.replace(
            config,
            root=wt_root.resolve(),
            specs_dir=wt_root.resolve() / config.specs_dir.relative_to(config.root),
            policies_dir=wt_root.resolve() / config.policies_dir.relative_to(config.root),
        )
        loaded = load_all(wt_config, [str(spec_file)], dep.env)
        errors = [d for d in loaded.errors if d.position.file == dep.spec.file]
        if errors:
            raise ModelopsError(
                "the edited spec does not validate; nothing committed:\n  "
                + "\n  ".join(str(d) for d in errors[:5])
            )
        new = next((d for d in loaded.deployments if d.name == dep.name), None)
        if (
            new is None
            or new.get("spec.model.uri") != model_rel
            or (new.get("spec.model.sha256") != result.sha256)
        ):
            raise ModelopsError(
                f"{dep.spec.file}: after the edit, {dep.env} does not resolve to the new model "
                f"{model_rel}; nothing committed"
            )
        wt_repo = git.Repo(wt)
        model_in_repo = (root_rel / model_rel).as_posix()
        wt_repo.index.add([spec_rel, model_in_repo])
        reader = repo.config_reader()
        name = reader.get_value("user", "name", "modelops")
        email = reader.get_value("user", "email", "modelops@localhost")
        actor = git.Actor(str(name), str(email))
        message = (
            f"retrain {dep.name}: propose {model_rel} for {dep.env}\n\n"
            f"Reason: {result.reason}\n"
            f"Metric {compare}\n"
            f"Model sha256: {result.sha256}\n"
            f"Command: {json.dumps(argv)}\n"
            f"Spec fields: {'.'.join(uri_path)}, {'.'.join(sha_path)}\n"
        )
        commit = wt_repo.index.commit(message, author=actor, committer=actor)
        repo.create_head(branch, commit.hexsha)
    finally:
        try:
            repo.git.worktree("remove", "--force", str(wt))
        except git.GitCommandError:
            shutil.rmtree(wt, ignore_errors=True)
            repo.git.worktree("prune")
    after = _repo_state(repo)
    if after != before:
        raise ModelopsError(
            f"{repo_root}: the checkout changed while proposing (HEAD/branch/status before "
            f"{before[:2]}, after {after[:2]}); inspect it"
        )
    result.branch = branch
    result.commit = commit.hexsha
    result.model_uri = model_rel
