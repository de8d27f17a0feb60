"""Writer for ``modelops policy test`` (text): the summary line of a policy test run."""

from __future__ import annotations


def summary(run) -> str:
    """How many fixture cases passed and how many policies are proven to fire and to pass,
    with the verdict (``ok`` or ``FAILED``).

    When a policy does not compile, no case can check it: the line names those policies
    and says how many cases agree on the ones that compile, so it does not read as 0 of N.
    """
    proven = sum(1 for v in run.coverage.values() if v["fires"] and v["passes"])
    if run.not_compiled:
        agree = sum(not c.errors and c.agrees_on_compiled for c in run.cases)
        return (
            f"{len(run.not_compiled)} policy(ies) do not compile "
            f"({', '.join(sorted(run.not_compiled))}), so no case could check them; "
            f"{agree}/{len(run.cases)} case(s) agree on the "
            f"{len(run.coverage) - len(run.not_compiled)} policies that compile; "
            f"{proven}/{len(run.coverage)} policies proven to fire and to pass: FAILED\n"
        )
    passed = sum(c.passed for c in run.cases)
    return (
        f"{passed}/{len(run.cases)} case(s) passed; {proven}/{len(run.coverage)} "
        f"policies proven to fire and to pass: {'ok' if run.ok else 'FAILED'}\n"
    )
