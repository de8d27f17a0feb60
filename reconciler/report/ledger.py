"""Writers for what the ledger holds: ``modelops status`` and ``modelops history``.

Tables are Rich tables (sized by the console that prints them); ledger values are
shown as text, never read as Rich markup.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from reconciler.engine.metrics import ServiceMetrics
from reconciler.state.ledger import REVIVING_ACTIONS
from reconciler.state.reasons import FAILED, READY, SUCCEEDED

STATUS_COLUMNS = (
    "deployment",
    "platform",
    "revision",
    "model",
    "applied",
    "health",
    "service",
    "stalled",
    "drift",
    "quality",
    "url",
)
HISTORY_COLUMNS = ("time", "action", "revision", "result", "actor", "detail")


def status_row(
    record,
    health: str,
    service: ServiceMetrics | str | None = None,
    now: datetime | None = None,
    model_version: str = "",
) -> dict:
    """One live ledger record as a ``status`` row: the :data:`STATUS_COLUMNS` plus
    ``failures``, ``service_metrics``, ``bundle``, ``model_sha256``, ``bento_tag``,
    ``applied_at`` (ISO 8601 UTC or ``""``) and ``age_s`` (seconds since then, or
    ``None``) (``--format json`` prints the rows as they are).

    ``model``: ``model_version``, the version the applied Bento serves (the spec's
    ``model.version``, else the first 12 hex digits of the model file's SHA-256), when the
    caller could read it; else those 12 hex digits from the record (``-`` when nothing
    was applied).
    ``applied``: the time of the last successful ``apply`` or ``rollback`` in the
    record's history and its age against ``now`` (default: the current UTC time), e.g.
    ``2026-12-06T20:01:07Z (3h 12m ago)``.
    ``last_failure``: the newest failed ``apply`` or ``rollback`` when no later one
    succeeded (:func:`last_failed_apply`: ``{"time", "revision", "reason"}``), else
    ``None``; ``health`` then ends with ``; last apply failed at <time>: <reason> (rev
    <12 hex>)``, so a failed apply whose previous version still serves (a missed SLO, an
    aborted canary) is not shown as plain ``Healthy``.

    ``service``: a local server's request figures since it started
    (:class:`ServiceMetrics`: column ``service`` is its summary,
    ``service_metrics`` its ``to_dict()``), a string saying why they could not be read,
    or ``None`` (not a local server, or not running: ``-``). For an edge deployment
    ``url`` is where its bundle was published and ``bundle`` the bundle's file name
    (``<name>-<digest12>.tar.gz``); ``""`` for other platforms."""
    drift = record.drift or {}
    artifact = record.artifact or {}
    applied_at = last_applied_time(record)
    age_s = _age_s(applied_at, now)
    stalled = record.stalled_reason or ("no" if not record.stalled else "yes")
    failure = last_failed_apply(record)
    if failure is not None:
        health += (
            f"; last {failure['action']} failed at {failure['time']}: {failure['reason']} "
            f"(rev {failure['revision'][:12] or '-'})"
        )
    if record.suspended:
        stalled = f"held: rolled back to {record.suspended.get('revision', '')[:12]}"
    return {
        "deployment": record.key,
        "platform": record.platform,
        "revision": (record.lastAppliedRevision or "-")[:12],
        "model": model_version or (artifact.get("model_sha256") or "-")[:12],
        "applied": f"{applied_at} ({age_text(age_s)} ago)" if age_s is not None else "-",
        "health": health,
        "stalled": stalled,
        "failures": record.failures,
        "drift": drift.get("status") or ("drifted" if drift.get("drifted") else "ok")
        if drift
        else "-",
        "service": service.summary() if isinstance(service, ServiceMetrics) else (service or "-"),
        "service_metrics": service.to_dict() if isinstance(service, ServiceMetrics) else None,
        "quality": _quality(record.quality or {}),
        "url": record.outputs.get("url", ""),
        "bundle": record.outputs.get("bundle", ""),
        "model_sha256": artifact.get("model_sha256", ""),
        "bento_tag": artifact.get("bento_tag", ""),
        "applied_at": applied_at,
        "age_s": age_s,
        "last_failure": failure,
    }


#: The longest failure reason ``status`` shows (its first line; ``history`` has it whole).
FAILURE_REASON_CHARS = 300


def last_failed_apply(record) -> dict | None:
    """The newest ``apply`` or ``rollback`` history entry of ``record`` when it failed
    (a transient failure too) and ``Ready`` is still ``False``, as ``{"action", "time",
    "revision", "reason"}`` (the reason: the first line of its message, at most
    :data:`FAILURE_REASON_CHARS` characters); ``None`` when there is none, the newest one
    succeeded, or a later apply found nothing to change (``Ready`` is ``True``)."""
    ready = record.condition(READY) or {}
    if ready.get("status") != "False":  # a later apply succeeded (or changed nothing)
        return None
    for entry in reversed(record.history or []):
        if entry.get("action") not in REVIVING_ACTIONS or entry.get("restored"):
            continue  # restoring what was live does not make a failed attempt succeed
        if entry.get("result") != FAILED:
            return None
        message = str(entry.get("message") or "").strip()
        reason = message.splitlines()[0] if message else "no message recorded"
        if len(reason) > FAILURE_REASON_CHARS:
            reason = reason[: FAILURE_REASON_CHARS - 3] + "..."
        return {
            "action": str(entry.get("action")),
            "time": str(entry.get("time") or "?"),
            "revision": str(entry.get("revision") or ""),
            "reason": reason,
        }
    return None


def last_applied_time(record) -> str:
    """The ``time`` of the newest succeeded ``apply`` or ``rollback`` history entry of
    ``record`` (ISO 8601 UTC as the ledger wrote it), or ``""`` when there is none."""
    for entry in reversed(record.history or []):
        if entry.get("action") in REVIVING_ACTIONS and entry.get("result") == SUCCEEDED:
            return str(entry.get("time") or "")
    return ""


def _age_s(when: str, now: datetime | None) -> int | None:
    """Whole seconds from ISO 8601 ``when`` to ``now`` (UTC); ``None`` when unreadable."""
    try:
        then = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))


def age_text(seconds: int) -> str:
    """``seconds`` as the two largest units: ``45s``, ``12m 5s``, ``3h 12m``, ``2d 4h``."""
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if seconds >= size or unit == "s":
            text = f"{seconds // size}{unit}"
            if unit != "s":
                small, small_size = units[i + 1]
                text += f" {seconds % size // small_size}{small}"
            return text
    raise AssertionError("unreachable: the unit 's' always matches")


def _quality(quality: dict) -> str:
    """The latest quality verdict with its watched metric: realized, estimated, kind; and
    an A/B experiment's verdict line when the quality job judged one."""
    if not quality:
        return "-"
    verdict = str(quality.get("status", "-"))
    metric = quality.get("metric")
    value = ((quality.get("metrics") or {}).get(metric) or {}).get("value")
    est = (quality.get("estimated_labelled") or {}).get(metric)
    if est is None:
        est = (quality.get("estimated") or {}).get(metric)
    bits = []
    if isinstance(value, int | float):
        bits.append(f"{metric} {value:.3f}")
    if isinstance(est, int | float):
        bits.append(f"est. {est:.3f}")
    kind = quality.get("drift_kind")
    if kind and kind != "none":
        bits.append(str(kind))
    text = f"{verdict} ({', '.join(bits)})" if bits else verdict
    experiment = quality.get("experiment") or {}
    if experiment:
        text += f"; A/B {experiment.get('summary') or experiment.get('verdict', '-')}"
    return text


def status_table(rows: list[dict]) -> Table:
    """The ``status`` rows as a table titled ``modelops status``."""
    table = Table(title="modelops status", title_justify="left")
    for col in STATUS_COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows:  # values from the ledger are text, never Rich markup
        table.add_row(*(Text(str(row[c])) for c in STATUS_COLUMNS))
    return table


def status_footer(destroyed: list[str], holder) -> str:
    """The destroyed deployments (one line) and who holds the state lock, if anyone."""
    lines = []
    if destroyed:
        lines.append(
            f"destroyed (not live; history kept, see `modelops history NAME --env ENV`): "
            f"{', '.join(destroyed)}"
        )
    if holder is not None:
        alive = holder.alive()
        state = "stale: run `modelops unlock`" if alive is False else "an apply is running"
        if holder.pid == 0:
            state = "not a lock modelops can read: if no apply runs, `modelops unlock --force`"
        lines.append(f"state directory locked by {holder.describe()} ({state})")
    return "".join(line + "\n" for line in lines)


def history_data(record, entries: list[dict]) -> dict:
    """``history --format json``: the record's revisions and state, and ``entries``."""
    return {
        "deployment": record.key,
        "lastAppliedRevision": record.lastAppliedRevision,
        "lastGoodRevision": record.lastGoodRevision,
        "stalled": record.stalled,
        "suspended": record.suspended,
        "destroyed": record.destroyed,
        "history": entries,
    }


def history_table(record, entries: list[dict]) -> Table:
    """``entries`` (newest first) as a table; results coloured, the rest plain text."""
    table = Table(title=f"history of {record.key}", title_justify="left")
    for col in HISTORY_COLUMNS:
        table.add_column(col, overflow="fold")
    for e in entries:
        style = {
            "failed": "red",
            "aborted": "red",
            "succeeded": "green",
            "promoted": "green",
        }.get(e.get("result", ""), "")
        result = f"[{style}]{e.get('result', '')}[/]" if style else e.get("result", "")
        detail = (e.get("message") or "").splitlines()[0][:160] if e.get("message") else ""
        table.add_row(  # values from the ledger are text, never Rich markup
            Text(str(e.get("time", ""))),
            Text(str(e.get("action", ""))),
            Text((e.get("revision") or "-")[:12]),
            result,
            Text(str(e.get("actor", ""))),
            Text(detail),
        )
    return table


def history_footer(record) -> str:
    """When the deployment was destroyed, or its applied and last good revisions."""
    if record.destroyed:
        gone = record.destroyed
        was = gone.get("lastAppliedRevision") or ""
        if was:
            live = f"was live at {was[:12]}"
        elif gone.get("artifact"):
            live = f"was live as {gone['artifact']}, applied from uncommitted specs"
        else:
            live = "never applied"
        return (
            f"DESTROYED at {gone.get('time', '?')} by {gone.get('actor', '?')} "
            f"({live}); not live now\n"
        )
    return (
        f"applied: {record.lastAppliedRevision[:12] or '-'}  last good: "
        f"{record.lastGoodRevision[:12] or '-'}"
        + ("  STALLED: " + record.stalled_reason if record.stalled else "")
        + "\n"
    )
