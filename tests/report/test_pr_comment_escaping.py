"""Hostile spec values cannot break the PR comment or the markdown policy report.

Spec values reach the comment in plan fields, model rows, policy messages (which quote
spec values), waiver fields, spec errors, build and smoke errors. Each test writes such
values (HTML that would close ``<details>`` or load an image, a team @mention, backtick
runs longer than the comment's own fences) and checks the rendered structure.

The Markdown is rendered with markdown-it-py (CommonMark with the GFM table rule, raw
HTML on, as GitHub allows it); it is installed with ``rich``, which the CLI uses. What is
checked is what GitHub would also see: which raw HTML tags reach the output, that no
text outside code notifies anyone, that code spans and the plan fence hold the value
intact, and that table rows keep their cells.

The end-to-end tests use real Git repositories in temp dirs, the real spec loader and
the real Rego policies; the unit test builds a :class:`RunReport` by hand for the build
and smoke errors that would otherwise need a real build.
"""

from __future__ import annotations

import datetime as dt

import pytest
from support.markdown import HOSTILE, MENTION, TEAM, assert_safe, parse, raw_html, visible_text
from support.repo import replace_in_file

from reconciler.build.smoke import SmokeResult
from reconciler.core.config import load_config
from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.engine.plan import Change, Plan
from reconciler.flow.plan import plan
from reconciler.flow.run import Outcome, RunReport
from reconciler.policy.check import check_policies
from reconciler.report import escape, plan_markdown, render_policy_report
from reconciler.spec.repo import load_all

SPEC = "specs/fraud-detector.yaml"


def _edit(root, old: str, new: str) -> None:
    replace_in_file(root / SPEC, old, new)


@pytest.fixture
def repo(git_repo):
    return git_repo


def test_hostile_values_in_plan_fields_model_rows_and_waivers(repo):
    """Values that pass schema and policy: description, version, registry path, waiver."""
    root = repo.root
    _edit(root, 'version: "1.0.0"', f"version: '1.0`0 {HOSTILE}'")
    _edit(root, "registry: registry.example.com/ml", f"registry: 'registry.example.com/{HOSTILE}'")
    _edit(root, "description: Flags", f"description: '{HOSTILE}' # Flags")
    _edit(root, "min_replicas: 3}", "min_replicas: 4}")
    # a rolling update in prod (MDL-011), waived by a team handle; the waiver is on the
    # base branch already (one added by the same pull request does not waive: the plan
    # checks a PR's specs against the base's policies and waivers)
    _edit(
        root,
        "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}",
        "rollout: {strategy: rolling}",
    )
    spec_edits = (root / SPEC).read_text()
    repo.git.git.checkout("--", SPEC)
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    repo.write(
        "policies/waivers.yaml",
        "waivers:\n  - policy: MDL-011\n    deployment: fraud-detector\n"
        f"    environment: prod\n    reason: '{HOSTILE}'\n    approver: '{TEAM}'\n"
        f"    ticket: SEC-1\n    expires: {expires}\n",
    )
    base = repo.commit("waiver, reviewed on main")
    (root / SPEC).write_text(spec_edits)
    head = repo.commit("hostile values")
    report = plan(load_config(root), "prod", base=base, head=head)
    assert report.exit_code == 0, [str(d) for d in report.diagnostics]
    md = plan_markdown.write(report)
    assert md.startswith(plan_markdown.MARKER) and md.count(plan_markdown.MARKER) == 1
    tokens = assert_safe(md, details=1)

    # the version, with its backticks, is one intact code span in the model table
    version = f"1.0`0 {HOSTILE}"
    assert version in [t.content for t in tokens if t.type == "code_inline"]
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("th_open", "td_open")]
    assert len(rows) == 5 and len(cells) == 15  # header + 4 model rows, 3 cells each

    # the plan is one fence, inside the one <details>, holding the hostile lines intact
    (fence,) = [t for t in tokens if t.type == "fence"]
    assert fence.info == "diff" and HOSTILE.split(" ")[0] in fence.content
    assert "spec.minReplicas: 3 → 4" in fence.content
    order = [t.type for t in tokens if t.type in ("fence", "html_block")]
    assert order[order.index("fence") - 1 : order.index("fence") + 2] == [
        "html_block",
        "fence",
        "html_block",
    ]

    # the waiver's approver is shown, readable, but notifies nobody
    waived = next(ln for ln in md.splitlines() if "waived until" in ln)
    assert TEAM not in waived and TEAM in waived.replace(escape.ZWJ, "")
    assert f"@{escape.ZWJ}org/security-team" in visible_text(tokens)


def test_hostile_value_quoted_by_a_policy_message_and_a_spec_error(repo):
    """A registry outside the allowed ones: the blocking policy message quotes it."""
    base = repo.git.head.commit.hexsha
    _edit(repo.root, "registry: registry.example.com/ml", f"registry: 'evil.example.org/{HOSTILE}'")
    head = repo.commit("registry")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert report.exit_code == 1 and report.policy.blocking
    md = plan_markdown.write(report)
    tokens = assert_safe(md, details=md.count("<details><summary>"))
    blocking = md[md.index("### Blocking the merge") :].split("\n\n")[1]
    assert "is not from an allowed registry" in blocking
    # rendered, the message reads as the value itself (entities and escapes undone)
    text = visible_text(tokens).replace(escape.ZWJ, "")
    assert f"evil.example.org/{HOSTILE}" in text

    # a schema error quotes the value too (a label must match a pattern)
    _edit(repo.root, "cost-center: cc-1234", f"cost-center: '{HOSTILE}'")
    head2 = repo.commit("label")
    report = plan(load_config(repo.root), "prod", base=head, head=head2)
    assert report.exit_code == 1 and report.spec_errors
    md = plan_markdown.write(report)
    tokens = assert_safe(md, details=0)
    assert HOSTILE in visible_text(tokens).replace(escape.ZWJ, "")


def _hand_report() -> RunReport:
    """A plan run with hostile text in every field the comment shows (no build needed)."""
    report = RunReport("plan", "prod", "a" * 40, envs=["prod"], base="b" * 40)
    fields = [(f"spec.env.{i}.value", f"old {HOSTILE}", f"new ``` {HOSTILE}") for i in range(15)]
    plan = Plan("svc-prod", [Change("update", "kubernetes:apps/v1:Deployment", "svc", fields)])
    report.plans.append(plan)
    report.outcomes.append(
        Outcome(
            "svc-prod",
            "svc",
            "prod",
            "kubernetes",
            "planned",
            f"message {HOSTILE}",
            plan=plan,
            change={"status": "modified", "path": f"specs/`{HOSTILE}`.yaml", "reasons": [HOSTILE]},
            model={
                "old": {"framework": "sklearn", "uri": "a`|`b.joblib", "sha256": "1" * 64},
                "new": {"framework": HOSTILE, "uri": f"``` {HOSTILE} |", "sha256": "2" * 64},
            },
            build={"status": "failed", "message": f"build error {HOSTILE}"},
            smoke=SmokeResult("svc-prod", "", failures=[f"smoke {HOSTILE}", TEAM]),
        )
    )
    report.diagnostics.append(
        Diagnostic(Position(f"specs/{HOSTILE}.yaml", 3, 1), "spec.x", HOSTILE, severity="warning")
    )
    report.guards.append(f"guard {HOSTILE}")
    report.notes.append(f"note {HOSTILE}")
    return report


def test_hand_built_report_with_hostile_build_smoke_guard_and_note_text():
    md = plan_markdown.write(_hand_report())
    tokens = assert_safe(md, details=1)
    codes = [t.content for t in tokens if t.type == "code_inline"]
    # code spans hold values with backticks and pipes intact (table cells included)
    assert "a`|`b.joblib" in codes and f"``` {HOSTILE} |" in codes
    assert f"specs/`{HOSTILE}`.yaml" in codes and f"specs/{HOSTILE}.yaml:3:1" in codes
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("th_open", "td_open")]
    assert len(cells) == 3 * len(rows)
    # the one fence is longer than the longest backtick run of the plan (4, in HOSTILE)
    (fence,) = [t for t in tokens if t.type == "fence"]
    assert fence.markup == "`" * 5 and fence.content.count(HOSTILE.split(" ")[0]) == 30
    text = visible_text(tokens).replace(escape.ZWJ, "")
    for shown in (f"build error {HOSTILE}", f"smoke {HOSTILE}", f"guard {HOSTILE}"):
        assert shown in text
    assert f"note {HOSTILE}" in text  # inside <sub>, still text, still escaped
    assert "<sub>note &lt;/details&gt;&lt;img" in md


def test_policy_markdown_report_with_hostile_message_and_waiver(git_repo):
    """``policy check -f markdown``: the findings table and How-to-fix keep their shape."""
    repo = git_repo
    _edit(repo.root, "registry: registry.example.com/ml", f"registry: 'evil.example.org/{HOSTILE}'")
    _edit(
        repo.root,
        "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}",
        "rollout: {strategy: rolling}",
    )
    today = dt.date.today()
    repo.write(
        "policies/waivers.yaml",
        "waivers:\n  - policy: MDL-011\n    deployment: fraud-detector\n"
        f"    environment: prod\n    reason: '{HOSTILE}'\n    approver: '{TEAM}'\n"
        f"    ticket: '{HOSTILE}'\n    expires: {today + dt.timedelta(days=30)}\n",
    )
    config = load_config(repo.root)
    loaded = load_all(config, None, "prod")
    assert not loaded.errors, loaded.errors
    report = check_policies(config, loaded.deployments, today=today)
    assert report.blocking
    md = render_policy_report("markdown", report)
    tokens = assert_safe(md, details=1)
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("th_open", "td_open")]
    assert len(rows) >= 3 and len(cells) == 5 * len(rows)
    text = visible_text(tokens).replace(escape.ZWJ, "")
    assert f"registry evil.example.org/{HOSTILE} is not from an allowed registry" in text
    assert f"waived by {TEAM}" in text
    assert f"waived by @{escape.ZWJ}org/security-team" in md


@pytest.mark.parametrize(
    "value",
    [
        "plain value",
        "sec@example.com",
        HOSTILE,
        "`",
        "``x``",
        " ` ",
        "a\nb\r\nc\u2028d",
        "\\`not code\\`",
        "[click](https://evil.example) ![x](https://evil.example/p.png)",
        "<!-- modelops-plan --> &lt; &amp; *bold* | cell",
        "@a @b-c x@y (@z) _@w",
    ],
)
def test_text_and_code_render_as_the_value_itself(value):
    """Round trip through a CommonMark renderer: what is shown is the value (one line)."""
    flat = escape.one_line(value)
    tokens = parse(escape.text(value))
    assert not raw_html(tokens)
    assert not any(t.type in ("link_open", "image", "code_inline", "em_open") for t in tokens)
    shown = "".join(t.content for t in tokens if t.type == "text")
    assert shown.replace(escape.ZWJ, "") == flat
    assert not MENTION.search(shown)
    if flat.strip():
        tokens = parse("x " + escape.code(value) + " y")
        (span,) = [t for t in tokens if t.type == "code_inline"]
        assert span.content == flat
        tokens = parse("| h |\n|---|\n| " + escape.code(value, table=True) + " |\n")
        (span,) = [t for t in tokens if t.type == "code_inline"]
        assert span.content == flat
    body = f"line 1\n{value}\n```\n````` tail"
    (fence,) = [t for t in parse(escape.fence(body, "diff")) if t.type == "fence"]
    # the parser normalises line endings (CommonMark §2.2); nothing else changes
    assert fence.content == body.replace("\r\n", "\n").replace("\r", "\n") + "\n"


def test_email_addresses_are_left_alone():
    assert escape.text("approved by sec@example.com") == "approved by sec@example.com"
    assert escape.text("@team and x_@y") == f"@{escape.ZWJ}team and x_@y"
