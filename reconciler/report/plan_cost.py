"""The cost lines of a plan, shared by the text, JSON and markdown plan writers.

Each plan outcome carries ``cost`` (:func:`reconciler.flow.costs.cost_change`): the
monthly estimate before and after and the difference, in USD per month of 730 hours,
with the price snapshot's date. These helpers turn it into one line per deployment, the
priced items, and the total per environment (``docs/cost.md``).
"""

from __future__ import annotations

_ZERO = {"expected": 0.0, "max": 0.0}


def _usd(value: float) -> str:
    return f"{value:,.2f}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + _usd(abs(value))


def range_text(est: dict | None) -> str:
    """``12.34 USD/month`` or ``12.34 USD/month (max 56.78)``; ``0.00`` for none."""
    r = est or _ZERO
    if round(r["max"], 2) == round(r["expected"], 2):
        return f"{_usd(r['expected'])} USD/month"
    return f"{_usd(r['expected'])} USD/month (max {_usd(r['max'])})"


def change_text(cost: dict) -> str:
    """One deployment's cost: ``12.34 → 56.78 USD/month (+44.44; max 100.00 → 100.00,
    +0.00); prices as of 2026-12-06``, or ``... (no change)`` when nothing changes."""
    if not cost:
        return ""
    before, after, diff = cost.get("before"), cost.get("after"), cost["difference"]
    date = f"prices as of {cost['prices_date']}"
    note = f"; {cost['note']}" if cost.get("note") else ""
    if after is None and before is None:
        return f"not estimated{note}"
    if before is not None and after is not None and not diff["expected"] and not diff["max"]:
        return f"{range_text(after)} (no change); {date}{note}"
    b, a = before or _ZERO, after or _ZERO
    text = f"{_usd(b['expected'])} → {_usd(a['expected'])} USD/month ({_signed(diff['expected'])}"
    if round(b["max"], 2) != round(b["expected"], 2) or round(a["max"], 2) != round(
        a["expected"], 2
    ):
        text += f"; max {_usd(b['max'])} → {_usd(a['max'])}, {_signed(diff['max'])}"
    return text + f"); {date}{note}"


def item_lines(cost: dict) -> list[str]:
    """What was priced (the after side; the before side for a deletion), one line each:
    ``<item>: 12.34 USD/month (max 56.78) at <rate>``."""
    est = (cost or {}).get("after") or (cost or {}).get("before") or {}
    return [
        f"{line['item']}: {range_text(line)} at {line['rate']}" for line in est.get("lines", [])
    ]


def env_totals(outcomes: list[dict]) -> dict[str, dict]:
    """The total per environment of the estimated deployments: ``{env: {"before",
    "after", "difference": {"expected", "max"}, "deployments"}}`` (USD/month)."""
    out: dict[str, dict] = {}
    for o in outcomes:
        cost = o.get("cost") or {}
        if not cost or (cost.get("after") is None and cost.get("before") is None):
            continue
        t = out.setdefault(
            o["env"],
            {
                "before": dict(_ZERO),
                "after": dict(_ZERO),
                "difference": dict(_ZERO),
                "deployments": 0,
                "prices_date": cost["prices_date"],
            },
        )
        t["deployments"] += 1
        for side in ("before", "after"):
            est = cost.get(side) or _ZERO
            for k in ("expected", "max"):
                t[side][k] = round(t[side][k] + est[k], 2)
        for k in ("expected", "max"):
            t["difference"][k] = round(t["difference"][k] + cost["difference"][k], 2)
    return out


def totals_lines(outcomes: list[dict]) -> list[str]:
    """``prod: 12.34 → 56.78 USD/month (+44.44; max ...), 3 deployment(s)`` per environment."""
    lines = []
    for env, t in sorted(env_totals(outcomes).items()):
        cost = {
            "before": t["before"],
            "after": t["after"],
            "difference": t["difference"],
            "prices_date": t["prices_date"],
        }
        lines.append(f"{env}: {change_text(cost)}; {t['deployments']} deployment(s)")
    return lines
