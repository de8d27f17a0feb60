"""A retraining proposal delivered: its branch pushed, a pull request opened.

:func:`deliver` runs after :func:`reconciler.monitor.retrain.run_retraining` committed
the proposal on a local branch: it pushes the branch to the remote
(:func:`reconciler.gitops.forge.push_branch`) and opens the pull request through the
forge's API (:func:`reconciler.gitops.forge.open_pull_request`), its body the candidate
report and the monitoring verdicts of the ledger record. When a step fails, what the
earlier steps made is taken back (the remote branch deleted, the local branch removed),
so nothing is left half-proposed; the published model stays in the store (its name is
its digest: harmless, and reused by the next proposal of the same bytes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import git

from reconciler.gitops.forge import (
    ForgeError,
    PullRequest,
    delete_remote_branch,
    open_pull_request,
    push_branch,
)
from reconciler.monitor.retrain import RetrainResult
from reconciler.spec.model import Deployment
from reconciler.state.ledger import LedgerRecord

DEFAULT_REMOTE = "origin"


def base_branch(repo: git.Repo) -> str:
    """The branch the pull request targets: the checkout's branch; on a detached HEAD
    (a CI checkout) ``GITHUB_BASE_REF``, then ``GITHUB_REF_NAME``, else ``main``."""
    if not repo.head.is_detached:
        return repo.active_branch.name
    for name in ("GITHUB_BASE_REF", "GITHUB_REF_NAME"):
        if value := os.environ.get(name, "").strip():
            return value
    return "main"


def _verdicts(record: LedgerRecord | None) -> list[str]:
    """One line per monitoring verdict the ledger holds (drift, quality)."""
    if record is None:
        return ["- no monitoring result recorded yet"]
    lines = []
    for name, value in (("drift", record.drift), ("quality", record.quality)):
        if not value:
            lines.append(f"- {name}: no result recorded")
            continue
        detail = value.get("message") or value.get("summary") or ""
        when = value.get("time") or value.get("checked_at") or ""
        text = f"- {name}: {value.get('status', 'unknown')}"
        text += f" ({when})" if when else ""
        text += f": {detail}" if detail else ""
        lines.append(text)
    return lines


def pull_request_text(
    dep: Deployment, result: RetrainResult, record: LedgerRecord | None
) -> tuple[str, str]:
    """``(title, body)`` of the pull request: the decision, the spec edit, the candidate
    report (``candidate.json``) and the monitoring verdicts."""
    title = (
        f"retrain {dep.name} ({dep.env}): {result.metric} "
        f"{result.live_score:.4g} -> {result.candidate_score:.4g}"
    )
    try:
        report = json.loads(Path(result.report).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {"report": result.report, "note": "unreadable"}
    where = f"published to {result.published}" if result.published else "committed on the branch"
    body = [
        f"Retraining of **{dep.name}** for **{dep.env}** (reason: {result.reason}).",
        "",
        f"- decision: {result.message}",
        f"- candidate sha256 `{result.sha256}`, {where}",
        f"- spec edit: `{result.edited}`: uri `{result.model_uri}`, "
        f"version `{result.model_version}`",
        "",
        "### Monitoring verdicts",
        *_verdicts(record),
        "",
        "### Candidate report",
        "```json",
        json.dumps(report, indent=2, sort_keys=True),
        "```",
        "",
        "Opened by `modelops retrain`; the plan of this pull request shows the change.",
    ]
    return title, "\n".join(body)


def deliver(
    repo: git.Repo,
    dep: Deployment,
    result: RetrainResult,
    record: LedgerRecord | None,
    *,
    remote: str | None = None,
) -> PullRequest | None:
    """Push ``result.branch`` and open its pull request; fills ``result.remote`` and
    ``result.pull_request``.

    Args:
        remote: the Git remote; ``None`` means ``origin`` when the repository has one,
            else the proposal stays a local branch (returns ``None``, said in the
            result's message).

    Raises:
        ForgeError: (exit 2) the push was rejected or failed, or the forge answered
            4xx/5xx or could not be reached; the remote branch (if pushed) and the local
            branch are deleted first, and the message says so.
    """
    if remote is None:
        if DEFAULT_REMOTE not in [r.name for r in repo.remotes]:
            result.message += "; not pushed: the repository has no remote 'origin'"
            return None
        remote = DEFAULT_REMOTE
    base = base_branch(repo)
    pushed = False
    try:
        url = push_branch(repo, remote, result.branch)
        pushed = True
        title, body = pull_request_text(dep, result, record)
        pr = open_pull_request(
            remote=remote, remote_url=url, branch=result.branch, base=base, title=title, body=body
        )
    except ForgeError as exc:
        undone = []
        if pushed:
            why = delete_remote_branch(repo, remote, result.branch)
            undone.append(
                f"the branch was deleted from {remote}"
                if not why
                else f"the branch could NOT be deleted from {remote} ({why}): delete it by hand"
            )
        try:
            repo.delete_head(result.branch, force=True)
            undone.append("the local branch was deleted")
        except git.GitCommandError as gexc:
            undone.append(f"the local branch could not be deleted ({gexc})")
        raise ForgeError(f"{exc.message}; nothing proposed: {', '.join(undone)}") from None
    result.remote = remote
    result.pull_request = pr.url
    if pr.number:
        state = "already open" if pr.existing else "opened"
        result.message += f"; pushed to {remote}, pull request #{pr.number} {state}: {pr.url}"
    elif pr.url:
        result.message += f"; pushed to {remote}; open the pull request: {pr.url}"
    else:
        result.message += f"; pushed to {remote} ({url}); open a pull request there"
    return pr
