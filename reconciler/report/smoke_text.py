"""Writers for ``modelops smoke`` (text): the smoke cases, the load-test table, the rest.

Each case is shown once, with its reasons when it failed
(:func:`~reconciler.build.smoke.describe_case`); the load-test table is a Rich table.
"""

from __future__ import annotations

from rich.table import Table

from reconciler.build.smoke import describe_case


def cases(smoke) -> str:
    """One ``  ok  <case>`` or ``  FAIL <case>: <reasons>`` line per smoke case."""
    lines = []
    for case in smoke.cases:
        mark = "ok" if case["ok"] else "FAIL"
        lines.append(f"  {mark:4} {describe_case(case)}")
    return "".join(line + "\n" for line in lines)


def load_table(smoke) -> Table | None:
    """The load test (requests, clients, errors, latency percentiles in ms, req/s, the SLO's
    p99 in ms) as a table; ``None`` when no load test ran."""
    if not smoke.load:
        return None
    ld = smoke.load
    table = Table(title=f"{smoke.deployment}: load test", title_justify="left")
    for col in ("requests", "clients", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s"):
        table.add_column(col, justify="right")
    table.add_column("SLO p99 ms", justify="right")
    slo = "-" if smoke.slo_p99_ms is None else f"{smoke.slo_p99_ms:g}"
    table.add_row(
        str(ld["completed"]),
        str(ld["concurrency"]),
        str(ld["errors"]),
        f"{ld['p50_ms']:.1f}",
        f"{ld['p95_ms']:.1f}",
        f"{ld['p99_ms']:.1f}",
        f"{ld['throughput_rps']:.0f}",
        slo,
    )
    return table


def summary(smoke) -> str:
    """The failures that belong to no case, then the summary line."""
    lines = [f"  FAIL {failure}" for failure in smoke.other_failures]
    lines.append(smoke.summary())
    return "".join(line + "\n" for line in lines)
