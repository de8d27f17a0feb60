"""Approving a guard change by pull-request review (``docs/flow.md``, "Approving a guard
change").

A pull request that loosens a guard setting of ``modelops.yaml`` blocks its plan until
one of ``guard_reviewers`` (read from the merge base and the head, only those of both:
:data:`reconciler.core.config.GUARDS`) approves it on the commit being planned, as
Atlantis' ``apply_requirements: [approved]`` and GitHub's code-owner reviews do. The
reviews are GitHub's "List reviews for a pull request" answer (``GET
/repos/{owner}/{repo}/pulls/{n}/reviews``, every page), which the action writes to a file
(``action.yml`` input ``guard-reviews``) and ``plan --reviews FILE`` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.diagnostics import ModelopsError

#: Review states that decide a reviewer's verdict (GitHub's; ``COMMENTED`` and
#: ``PENDING`` leave the previous verdict standing, as on GitHub).
DECIDING = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")


@dataclass(frozen=True)
class Review:
    """One pull-request review.

    Attributes:
        login: the reviewer's GitHub login (compared case-insensitively, as GitHub does).
        state: ``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``, ``DISMISSED``, ``PENDING``.
        commit_id: the commit the review was given on (40 hex digits; ``""`` unknown).
        submitted_at: ISO 8601 time (``""`` for a pending review); orders the reviews.
    """

    login: str
    state: str
    commit_id: str = ""
    submitted_at: str = ""


@dataclass(frozen=True)
class GuardApproval:
    """Whether the reviews approve loosening a guard setting.

    Attributes:
        approved: an allowed reviewer's latest verdict approves the planned commit and no
            allowed reviewer's latest verdict requests changes.
        by: the logins that approved (empty when not approved).
        reason: one sentence saying why (who approved, or what is missing).
    """

    approved: bool
    by: tuple[str, ...]
    reason: str


def load_reviews(path: Path | str) -> list[Review]:
    """Read a JSON file of GitHub pull-request reviews.

    Accepts the API's array of review objects (``user.login``, ``state``, ``commit_id``,
    ``submitted_at``), or an array of such arrays (``gh api --paginate --slurp``).

    Raises:
        ModelopsError: (exit 2) the file is missing, not UTF-8 JSON, or not of that shape;
            the message names the file and the entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelopsError(f"--reviews {path}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelopsError(
            f"--reviews {path}: not UTF-8 JSON ({exc}); expected GitHub's list of "
            "pull-request reviews (GET /repos/OWNER/REPO/pulls/N/reviews)"
        ) from None
    if isinstance(data, list) and all(isinstance(page, list) for page in data) and data:
        data = [entry for page in data for entry in page]
    if not isinstance(data, list):
        raise ModelopsError(
            f"--reviews {path}: expected a JSON array of pull-request reviews, "
            f"got {type(data).__name__}"
        )
    out = []
    for i, entry in enumerate(data):
        user = entry.get("user") if isinstance(entry, dict) else None
        login = user.get("login") if isinstance(user, dict) else None
        state = entry.get("state") if isinstance(entry, dict) else None
        if not isinstance(login, str) or not isinstance(state, str):
            raise ModelopsError(
                f"--reviews {path}: entry {i}: expected a review object with user.login "
                "and state (GitHub's pull-request review)"
            )
        commit = entry.get("commit_id")
        submitted = entry.get("submitted_at")
        out.append(
            Review(
                login,
                state.upper(),
                commit if isinstance(commit, str) else "",
                submitted if isinstance(submitted, str) else "",
            )
        )
    return out


def guard_approval(reviews: list[Review], reviewers: list[str], commits: set[str]) -> GuardApproval:
    """Decide whether ``reviews`` approve loosening a guard setting.

    Each reviewer's verdict is their latest deciding review (:data:`DECIDING`, ordered
    by ``submitted_at``, the list's order breaking ties); ``DISMISSED`` withdraws it.
    Approved when one of ``reviewers`` approved one of ``commits`` (an approval of an
    earlier push is stale: the change may have grown since) and none of them requests
    changes. Reviews by anyone else count for nothing.

    Args:
        reviews: the pull request's reviews.
        reviewers: the allowed logins (the stricter ``guard_reviewers``), compared
            case-insensitively.
        commits: the commit(s) the plan is of: the head, and for GitHub's merge ref
            (``refs/pull/N/merge``) also the pull request's head, its second parent.
    """
    allowed = {r.casefold() for r in reviewers}
    if not allowed:
        return GuardApproval(
            False,
            (),
            "no guard_reviewers are set in modelops.yaml at the merge base, so no review "
            "can approve it",
        )
    ordered = sorted(enumerate(reviews), key=lambda ir: (ir[1].submitted_at, ir[0]))
    latest: dict[str, Review] = {}
    for _, review in ordered:
        if review.state in DECIDING and review.login.casefold() in allowed:
            latest[review.login.casefold()] = review
    who = ", ".join(sorted(reviewers, key=str.casefold))
    objecting = sorted(r.login for r in latest.values() if r.state == "CHANGES_REQUESTED")
    if objecting:
        return GuardApproval(False, (), f"changes requested by {', '.join(objecting)}")
    approving = [r for r in latest.values() if r.state == "APPROVED"]
    current = sorted(r.login for r in approving if r.commit_id in commits)
    if current:
        return GuardApproval(True, tuple(current), f"approved by {', '.join(current)}")
    stale = sorted(r.login for r in approving)
    shown = ", ".join(sorted(c[:7] for c in commits)) or "the planned commit"
    if stale:
        return GuardApproval(
            False,
            (),
            f"the approval by {', '.join(stale)} is of an earlier commit, not {shown}; "
            f"one of the guard reviewers ({who}) must approve again",
        )
    return GuardApproval(
        False, (), f"needs an approving review of {shown} by one of the guard reviewers ({who})"
    )
