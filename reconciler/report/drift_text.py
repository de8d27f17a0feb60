"""Writers for ``modelops monitor run`` and ``modelops retrain`` (text).

The drift table (one row per feature: test, score, threshold, result; drifted rows in
red), the notes, the verdict line with the share of drifted features and the rows
used, the report paths; and the outcome of a retraining run.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from reconciler.monitor.drift import format_table


def drift_table(result) -> Table:
    """The drift of each feature as a table titled ``drift <key> (<source>)``."""
    table = Table(title=f"drift {result.name}-{result.env} ({result.source})")
    for col in ("feature", "test", "score", "threshold", "result"):
        table.add_column(col)
    for row in format_table(result):  # feature names come from the data: text, not markup
        table.add_row(*(Text(str(c)) for c in row), style="red" if row[-1] == "DRIFT" else None)
    return table


def drift_summary(result, config) -> str:
    """The notes, the verdict (share drifted against the threshold, rows used, seconds)
    and the paths of the HTML report and the JSON summary (relative to the repository)."""
    key = f"{result.name}-{result.env}"
    lines = [f"note: {note}" for note in result.notes]
    if result.insufficient:
        lines.append(
            f"{key}: INSUFFICIENT DATA: {result.rows_used['current']} current rows, the "
            f"test needs at least {result.min_rows} ({result.min_rows_rule}); not drift"
        )
    else:
        verdict = "DRIFT" if result.drifted else "no drift"
        lines.append(
            f"{key}: {verdict}: {len(result.drifted_features)}/{len(result.features)} "
            f"features drifted (share {result.share_drifted:.2f}, threshold "
            f"{result.threshold:.2f}); {result.rows_used['current']} current vs "
            f"{result.rows_used['reference']} reference rows; {result.seconds:.1f} s"
        )
    if result.what_if:
        lines.append(f"{key}: what-if run on --current data: the ledger is unchanged")
    lines.append(f"report: {config.rel(result.report_html)}")
    lines.append(f"summary: {config.rel(result.summary_json)}")
    return "".join(line + "\n" for line in lines)


def retraining(key: str, res, config) -> str:
    """The outcome of a retraining run of deployment ``key``: status and message, the
    proposed branch and commit, the candidate report and the log (when there are)."""
    lines = [f"retrain {key}: {res.status}: {res.message}"]
    if res.branch:
        lines.append(f"branch: {res.branch}\ncommit: {res.commit}")
    if getattr(res, "published", ""):
        lines.append(f"published: {res.published}")
    if getattr(res, "pull_request", ""):
        lines.append(f"pull request: {res.pull_request}")
    if res.report:
        lines.append(f"candidate report: {config.rel(res.report)}")
    if res.log:
        lines.append(f"log: {config.rel(res.log)}")
    return "".join(line + "\n" for line in lines)
