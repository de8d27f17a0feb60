"""``modelops retrain --reason``: what is refused (exit 2, nothing run or recorded), what is kept.

Real Git repository with the fraud example (support.monitor.fraud_repo) and the
real entry point, as in tests/test_monitor_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
from support.cli import invoke
from support.monitor import fraud_repo, set_line

from reconciler.core.diagnostics import ModelopsError
from reconciler.monitor.reason import MAX_REASON_CHARS, check_reason
from reconciler.state.ledger import Ledger

COPY_LIVE = (
    'command: ["python", "-c", "import os, shutil; shutil.copy(\'examples/fraud/model.joblib\', '
    "os.environ['MODELOPS_OUTPUT_DIR'])\"]"
)
ALLOWED = f"give one line of printable text, 1-{MAX_REASON_CHARS} characters"


@pytest.mark.parametrize(
    ("reason", "needle"),
    [
        ("", "--reason: empty (or only whitespace)"),
        ("   ", "--reason: empty (or only whitespace)"),
        (
            "manual\nSigned-off-by: Mallory <mallory@example.com>",
            "--reason: a newline (U+000A) at character 7",
        ),
        ("drift\r\nCo-authored-by: x", "--reason: a carriage return (U+000D) at character 6"),
        ("two\tcolumns", "--reason: a tab (U+0009) at character 4"),
        ("esc \x1b[31mred", "--reason: a control character (U+001B) at character 5"),
        ("invoice \u202egnp.exe", "the character RIGHT-TO-LEFT OVERRIDE (U+202E) at character 9"),
        ("line\u2028separator", "LINE SEPARATOR (U+2028)"),
        ("x" * (MAX_REASON_CHARS + 1), f"--reason: {MAX_REASON_CHARS + 1} characters is too long"),
    ],
)
def test_bad_reason_exits_2_before_anything_runs(tmp_path: Path, reason, needle) -> None:
    root = fraud_repo(tmp_path, lambda t: set_line(t, "command:", COPY_LIVE))
    code, out, err = invoke(
        root,
        "retrain",
        "fraud-detector",
        "--env",
        "staging",
        "--reason",
        reason,
    )
    assert code == 2, out + err
    assert needle in err and ALLOWED in err, err
    assert "Traceback" not in out + err
    # nothing ran, nothing was recorded, no branch
    assert Ledger(root / ".modelops").get("fraud-detector", "staging") is None
    assert not (root / ".modelops" / "retrain").exists()
    assert [h.name for h in git.Repo(root).heads] == ["main"]


def test_free_text_reason_is_recorded_trimmed(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path, lambda t: set_line(t, "command:", COPY_LIVE))
    reason = "ticket ML-123: Überprüfung nach Rückfrage (5% more chargebacks)"
    code, out, err = invoke(
        root,
        "retrain",
        "fraud-detector",
        "--env",
        "staging",
        "--reason",
        f"  {reason} ",
        "--format",
        "json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "unchanged" and data["reason"] == reason
    record = Ledger(root / ".modelops").get("fraud-detector", "staging")
    assert record.history[-1]["reason"] == reason
    assert json.loads(Path(data["report"]).read_text())["reason"] == reason


def test_check_reason_limits() -> None:
    assert check_reason("x" * MAX_REASON_CHARS) == "x" * MAX_REASON_CHARS
    assert check_reason(" drift ") == "drift"
    assert check_reason("schedule") == "schedule"
    with pytest.raises(ModelopsError, match="too long") as info:
        check_reason("x" * (MAX_REASON_CHARS + 1))
    assert info.value.exit_code == 2
    with pytest.raises(ModelopsError, match="expected text, got NoneType"):
        check_reason(None)
    with pytest.raises(
        ModelopsError, match=r"NO-BREAK SPACE \(U\+00A0\)"
    ):  # a no-break space hides as a space
        check_reason("manual\u00a0review")
