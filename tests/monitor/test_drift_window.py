"""The drift job's window checks on real data (the fraud example's reference rows, captured
through the serving runtime's CaptureWriter): a window too small for the test is
``insufficient data``, never drift; an all-empty reference column is reported on its own
while the other features are still tested; a what-if run (``--current``) records
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.monitor import NOW, capture, deployment, fraud_repo, reference

from reconciler.flow.monitor import monitor_run
from reconciler.monitor.drift import INSUFFICIENT
from reconciler.monitor.power import min_rows
from reconciler.monitor.traffic import shifted
from reconciler.state.ledger import Ledger


@pytest.mark.parametrize(
    ("method", "threshold", "m", "want"),
    [
        # the PSI rule at Evidently's 0.1: chi-square(10 df) 95% point 18.31 over
        # 0.1 - 1/426 per row; Sturges gives 11 bins at 322 + 426 rows
        ("psi", None, 426, 322),
        ("ks", None, 426, 52),
        ("chisquare", None, 426, 10),
    ],
)
def test_min_rows_follows_the_documented_rules(method, threshold, m, want) -> None:
    assert min_rows(method, threshold, m).rows == want


def test_min_rows_grows_as_the_threshold_tightens_and_says_when_no_window_is_enough() -> None:
    assert min_rows("psi", 0.05, 5000).rows > min_rows("psi", 0.1, 5000).rows
    # normed Wasserstein at 0.1 against 426 reference rows: the reference alone is too
    # noisy, so no current window is enough (and the rule says why)
    tiny = min_rows("wasserstein", 0.1, 426)
    assert tiny.rows >= 10**9 and "wasserstein" in tiny.rule


def test_too_few_rows_is_insufficient_data_never_drift(tmp_path: Path) -> None:
    # 54 rows drawn from the reference itself: PSI on them is noise above 0.1, which
    # used to be called drift on every feature
    root = fraud_repo(tmp_path)
    config, dep = deployment(root)
    few = reference().sample(54, random_state=3)
    capture(root, few)

    result = monitor_run(dep, config, now=NOW)

    assert result.verdict == INSUFFICIENT and not result.drifted
    assert result.rows_used["current"] == 54 and result.min_rows == 322
    assert not result.drifted_features
    summary = json.loads(Path(result.summary_json).read_text())
    assert summary["status"] == INSUFFICIENT and summary["min_rows"] == 322
    rec = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert rec.drift["status"] == INSUFFICIENT
    assert rec.history[-1]["result"] == INSUFFICIENT
    assert "54 current rows, the test needs at least 322" in rec.history[-1]["message"]

    # a what-if run on other data changes nothing in the ledger (a small one: no
    # Evidently run needed to show it)
    what_if = monitor_run(dep, config, current=shifted(reference(), seed=4).iloc[:100], now=NOW)
    assert what_if.what_if and what_if.verdict == INSUFFICIENT
    again = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert again.drift == rec.drift and len(again.history) == len(rec.history)


def test_all_empty_reference_column_is_reported_and_the_rest_is_tested(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    ref = reference()
    ref["mean_radius"] = float("nan")
    ref["mean_texture"] = 1.0  # constant on both sides: not drifted, not an error
    ref.to_parquet(root / "examples" / "fraud" / "reference.parquet")
    config, dep = deployment(root)
    cur = shifted(reference(), seed=1)
    cur["mean_texture"] = 1.0
    capture(root, cur)

    result = monitor_run(dep, config, now=NOW)

    by_name = {f["name"]: f for f in result.features}
    assert by_name["mean_radius"]["status"] == "empty"
    assert by_name["mean_radius"]["side"] == "reference" and not by_name["mean_radius"]["drifted"]
    assert by_name["mean_texture"]["status"] == "constant"
    assert not by_name["mean_texture"]["drifted"]
    tested = [f for f in result.features if f["status"] == "tested"]
    assert len(tested) == 25  # 30 features, 3 hashed in the capture, 2 screened
    assert all(f["score"] is not None for f in tested)
    assert result.drifted  # the shifted columns are still found
    assert any("mean_radius: no values in the reference data" in n for n in result.notes)
