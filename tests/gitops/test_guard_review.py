"""Approving a guard change by pull-request review (gitops/review.py): the decision on
GitHub's review objects (the shape ``GET /repos/O/R/pulls/N/reviews`` answers; no forge is
called here, the action fetches them), and the reviews file ``plan --reviews`` reads."""

from __future__ import annotations

import json

import pytest

from reconciler.core.diagnostics import ModelopsError
from reconciler.gitops.review import Review, guard_approval, load_reviews

HEAD, OLD = "a" * 40, "b" * 40


def _r(login, state, commit=HEAD, at="2026-01-01T10:00:00Z"):
    return Review(login, state, commit, at)


@pytest.mark.parametrize(
    ("reviews", "approved", "reason"),
    [
        ([_r("alice", "APPROVED")], True, "approved by alice"),
        # GitHub compares logins case-insensitively; so does the decision
        ([_r("ALICE", "APPROVED")], True, "approved by ALICE"),
        # someone who is not a guard reviewer approves nothing
        ([_r("mallory", "APPROVED")], False, "needs an approving review of aaaaaaa"),
        # an approval of an earlier push is stale
        ([_r("alice", "APPROVED", OLD)], False, "earlier commit"),
        # a later dismissal withdraws it; a later comment does not
        (
            [_r("alice", "APPROVED"), _r("alice", "DISMISSED", at="2026-01-02T00:00:00Z")],
            False,
            "needs an approving review",
        ),
        (
            [_r("alice", "APPROVED"), _r("alice", "COMMENTED", at="2026-01-02T00:00:00Z")],
            True,
            "approved by alice",
        ),
        # one guard reviewer's standing request for changes blocks another's approval
        (
            [_r("alice", "APPROVED"), _r("bob", "CHANGES_REQUESTED")],
            False,
            "changes requested by bob",
        ),
        # ... until bob approves later (the order is submitted_at, not the list's)
        (
            [
                _r("bob", "APPROVED", at="2026-01-03T00:00:00Z"),
                _r("bob", "CHANGES_REQUESTED", at="2026-01-02T00:00:00Z"),
            ],
            True,
            "approved by bob",
        ),
        ([_r("alice", "PENDING", at="")], False, "needs an approving review"),
    ],
)
def test_guard_approval_decides_like_a_required_review(reviews, approved, reason):
    got = guard_approval(reviews, ["Alice", "bob"], {HEAD})
    assert got.approved is approved and reason in got.reason
    assert bool(got.by) is approved


def test_without_guard_reviewers_no_review_approves():
    got = guard_approval([_r("alice", "APPROVED")], [], {HEAD})
    assert not got.approved and "no guard_reviewers are set" in got.reason


def test_load_reviews_reads_the_api_answer_and_refuses_other_shapes(tmp_path):
    api = [
        {
            "id": 1,
            "user": {"login": "alice"},
            "state": "APPROVED",
            "commit_id": HEAD,
            "submitted_at": "2026-01-01T10:00:00Z",
        },
        {"id": 2, "user": {"login": "bob"}, "state": "PENDING"},
    ]
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps(api))
    assert load_reviews(path) == [
        Review("alice", "APPROVED", HEAD, "2026-01-01T10:00:00Z"),
        Review("bob", "PENDING", "", ""),
    ]
    path.write_text(json.dumps([api[:1], api[1:]]))  # gh api --paginate --slurp
    assert len(load_reviews(path)) == 2
    for text, message in (
        ("{", "not UTF-8 JSON"),
        ('{"user": 1}', "expected a JSON array"),
        ('[{"state": "APPROVED"}]', "entry 0: expected a review object"),
    ):
        path.write_text(text)
        with pytest.raises(ModelopsError, match=message) as exc:
            load_reviews(path)
        assert str(path) in str(exc.value) and exc.value.exit_code == 2
    with pytest.raises(ModelopsError, match="cannot read it"):
        load_reviews(tmp_path / "missing.json")
