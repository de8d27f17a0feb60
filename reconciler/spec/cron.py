"""Cron schedules checked in the dialect of the target that runs them.

A spec writes every schedule (``monitoring.schedule``, ``retraining.schedule``,
``serving.batch.schedule``) as a five-field Unix cron expression, read in UTC:
``minute hour day-of-month month day-of-week``. The target decides who reads it:

- ``kubernetes`` (CronJob, robfig/cron's standard parser) and ``local`` read it as is:
  day-of-week 0-6 (Sunday 0; ``7`` is refused by the CronJob controller), names
  ``JAN``-``DEC`` and ``SUN``-``SAT``, ranges, lists and steps.
- ``aws-sagemaker`` and ``aws-serverless`` render it as an EventBridge Scheduler
  ``cron(min hour dom month dow year)`` expression (``stacks/common.py: to_aws_cron``):
  one of day-of-month / day-of-week must be ``?``, so both cannot be restricted, and
  day-of-week takes no step (``/``); AWS "Cron expressions reference", EventBridge
  Scheduler user guide.

Whatever the dialect, a day-of-month and a day-of-week both restricted mean "either"
in Vixie cron (and in the CronJob controller): almost never what the author meant, so
it is a warning. A schedule whose dates never occur (day 30 or 31 in every month listed
lacks it, e.g. ``0 0 31 2,4 *``) never runs: an error, since a policy requiring
monitoring would otherwise pass with monitoring that never happens.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

KUBERNETES = "kubernetes"
EVENTBRIDGE = "eventbridge"
# target.platform -> the dialect its schedules are rendered in (edge runs no schedule;
# its monitor/retrain jobs, if any, run where the spec repository's CI runs: Unix cron)
DIALECTS = {
    "kubernetes": KUBERNETES,
    "local": KUBERNETES,
    "edge": KUBERNETES,
    "aws-sagemaker": EVENTBRIDGE,
    "aws-serverless": EVENTBRIDGE,
}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()  # names[i] means lo + i


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS)),
    _Field("day-of-week", 0, 6, tuple(_DAYS)),
)
_PART = re.compile(r"^(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


@dataclass(frozen=True)
class CronFinding:
    """One problem with a schedule: ``severity`` is ``"error"`` or ``"warning"``."""

    severity: str
    message: str


class CronError(ValueError):
    """A schedule that no target can parse; the message says what would be valid."""


class SundaySevenError(CronError):
    """Day-of-week 7: Sunday in Vixie cron, but outside the 0-6 that specs are written in
    (:func:`check` says which target refuses it: :data:`SUNDAY_SEVEN`)."""


#: target.platform -> why day-of-week 7 is refused there (the message names the target
#: the spec uses, not Kubernetes for every one).
SUNDAY_SEVEN = {
    "kubernetes": "the Kubernetes CronJob controller (robfig/cron) refuses 7",
    "local": "the local target's schedules are read by modelops as day-of-week 0-6, "
    "Sunday 0, as GitHub Actions' schedule reads them",
    "edge": "the edge target's jobs run on the CI's Unix cron schedule, day-of-week 0-6",
    "aws-sagemaker": "modelops renders day-of-week 0-6 as EventBridge's 1-7 (SUN=1), so a "
    "7 would mean Saturday there",
    "aws-serverless": "modelops renders day-of-week 0-6 as EventBridge's 1-7 (SUN=1), so a "
    "7 would mean Saturday there",
}


def _value(token: str, field: _Field) -> int:
    if token.isdigit():
        number = int(token)
        if field.name == "day-of-week" and number == 7:
            raise SundaySevenError("day-of-week 7 is out of range 0-6; write 0 (or SUN) for Sunday")
        if not field.lo <= number <= field.hi:
            raise CronError(f"{field.name} {number} is out of range {field.lo}-{field.hi}")
        return number
    upper = token.upper()
    if upper in field.names:
        return field.lo + field.names.index(upper)
    valid = f"{field.lo}-{field.hi}"
    if field.names:
        valid += f" or {field.names[0]}-{field.names[-1]}"
    raise CronError(f"{field.name} {token!r} is not a value ({valid})")


def _parse_field(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise CronError(
                f"{field.name} {part!r} is not a value, range (a-b), list (a,b) or step (*/n)"
            )
        base, step = match.group("base"), match.group("step")
        if base == "*":
            lo, hi = field.lo, field.hi
        elif "-" in base:
            first, last = base.split("-", 1)
            lo, hi = _value(first, field), _value(last, field)
            if lo > hi:
                raise CronError(
                    f"{field.name} range {base} starts after it ends; write {last}-{first}"
                )
        else:
            lo = hi = _value(base, field)
            if step:
                hi = field.hi  # "5/15" means 5-59/15, as in Vixie cron
        n = int(step) if step else 1
        if n < 1:
            raise CronError(f"{field.name} step /{step} must be 1 or more")
        values.update(range(lo, hi + 1, n))
    return values


def parse(expr: str) -> tuple[str, ...]:
    """Split and check a five-field expression; raise :class:`CronError` when invalid."""
    if not isinstance(expr, str):
        raise CronError(f"{expr!r} is not a cron expression (a string such as '0 3 * * 0')")
    parts = tuple(expr.split())
    if len(parts) != 5:
        raise CronError(
            f"cron expression {expr!r} has {len(parts)} field(s); write 5: minute hour "
            "day-of-month month "
            "day-of-week, in UTC (e.g. '0 3 * * 0')"
        )
    for text, field in zip(parts, _FIELDS, strict=True):
        if "?" in text:
            raise CronError(
                f"{field.name} '?' is EventBridge syntax; write '*' (modelops writes the "
                "'?' itself for AWS targets)"
            )
        _parse_field(text, field)
    return parts


def _restricted(text: str) -> bool:
    return not text.startswith("*")


def fires(expr: str) -> bool:
    """Whether a valid five-field expression has at least one date that occurs.

    A date occurs when some listed month has the listed day of month (29 February counts:
    it occurs in leap years). The day of week never prevents that on its own: over 28
    years every date falls on every weekday.
    """
    _, _, dom, month, _ = parse(expr)
    days = _parse_field(dom, _FIELDS[2])
    months = _parse_field(month, _FIELDS[3])
    return any(day <= calendar.monthrange(2024, m)[1] for m in months for day in days)


def check(expr: str, dialect: str, platform: str | None = None) -> list[CronFinding]:
    """Every finding for one schedule in one dialect (``kubernetes`` or ``eventbridge``).

    Args:
        expr: the five-field expression.
        dialect: :data:`KUBERNETES` or :data:`EVENTBRIDGE` (:data:`DIALECTS`).
        platform: the spec's ``target.platform``, named in messages that depend on it
            (day-of-week 7: :data:`SUNDAY_SEVEN`); ``None``: by the dialect.

    Returns:
        Findings, errors first; empty when the target accepts the schedule and it
        means what it says.
    """
    try:
        minute, hour, dom, month, dow = parse(expr)
    except SundaySevenError:
        target = platform if platform in SUNDAY_SEVEN else dialect
        why = SUNDAY_SEVEN.get(target) or SUNDAY_SEVEN["aws-sagemaker"]
        return [
            CronFinding(
                "error",
                f"day-of-week 7 is refused for the {target} target: {why}; "
                "write 0 (or SUN) for Sunday",
            )
        ]
    except CronError as exc:
        return [CronFinding("error", str(exc))]
    out: list[CronFinding] = []
    if not fires(expr):
        out.append(
            CronFinding(
                "error",
                f"{expr!r} never runs: no month in {month!r} has day {dom!r}; "
                "choose days every listed month has (1-28 are in all of them)",
            )
        )
    both = _restricted(dom) and _restricted(dow)
    if dialect == EVENTBRIDGE:
        if both:
            out.append(
                CronFinding(
                    "error",
                    "day-of-month and day-of-week are both restricted, which EventBridge "
                    "Scheduler cannot express (one of them must be '?'); restrict only one",
                )
            )
        if "/" in dow:
            out.append(
                CronFinding(
                    "error",
                    f"day-of-week {dow!r} has a step, which EventBridge does not accept in "
                    "that field; list the days instead (e.g. MON,WED,FRI)",
                )
            )
    elif both:
        out.append(
            CronFinding(
                "warning",
                f"day-of-month {dom!r} and day-of-week {dow!r} are both restricted: cron runs "
                "when EITHER matches, not when both do; set one of them to '*'",
            )
        )
    return out


#: Kubernetes CronJob's macros (robfig/cron), as five fields.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: EventBridge ``rate(N unit)`` units, in hours.
_RATE_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}
# Share of months that have day-of-month d (a 400-year Gregorian cycle: 97 leap Februaries).
_DAY_SHARE = {29: (11 + 97 / 400) / 12, 30: 11 / 12, 31: 7 / 12}
_EB_SUFFIX = re.compile(r"^(?P<day>[0-9A-Za-z]+)(?:L|#[1-5])$")


def eventbridge_fields(expr: str) -> str:
    """The five Unix cron fields of an EventBridge ``cron(min hour dom month dow year)``
    expression (the inverse of ``stacks/common.py: to_aws_cron``), for counting runs.

    ``?`` becomes ``*``; day-of-week 1-7 (SUN=1) becomes SUN-SAT; the year is dropped.
    Forms with no Unix equivalent are read as one day: day-of-month ``L`` (last day) as
    the 1st, ``15W`` (nearest weekday) as the 15th, day-of-week ``6L`` (last Friday) and
    ``MON#2`` (second Monday) as that weekday every week (so a count of those is an upper
    bound, about 4.3 times too high). AWS "Cron expressions reference".

    Raises:
        CronError: not ``cron(`` with six fields ``)``, or a field it cannot read.
    """
    text = expr.strip()
    if not (text.startswith("cron(") and text.endswith(")")):
        raise CronError(f"{expr!r} is not an EventBridge cron(...) expression")
    fields = text[5:-1].split()
    if len(fields) != 6:
        raise CronError(f"{expr!r} has {len(fields)} field(s) in cron(...); EventBridge has 6")
    minute, hour, dom, month, dow, _year = fields
    dom = "*" if dom == "?" else dom
    if dom == "L" or re.fullmatch(r"[0-9]+W", dom):
        dom = "1" if dom == "L" else dom[:-1]
    if dow == "?":
        dow = "*"
    else:
        suffix = _EB_SUFFIX.match(dow)
        dow = suffix.group("day") if suffix else dow
        dow = re.sub(r"[1-7]", lambda m: _DAYS[int(m.group()) - 1], dow)
    return f"{minute} {hour} {dom} {month} {dow}"


def runs_per_month(expr: str, hours_per_month: float) -> float:
    """How many times a schedule fires in an average month of ``hours_per_month`` hours.

    The one reader of every schedule form a target runs: five-field Unix cron (what specs
    write; Kubernetes CronJob's ``@hourly``-style :data:`MACROS` too), and EventBridge
    Scheduler's ``cron(...)`` (:func:`eventbridge_fields`), ``rate(N unit)`` and
    ``at(...)`` (once: 0 per month). Fields are read by the same parser as validate's
    (:func:`parse`). Days of the month past the 28th count as the share of months that
    have them; a day-of-month and a day-of-week both restricted fire on either (cron's
    rule: neither starts with ``*``), with the two treated as independent; months count
    equally. Exact for hourly, daily, weekly and first-of-month schedules.

    Raises:
        CronError: (a ``ValueError``) an expression it cannot read.
    """
    text = expr.strip() if isinstance(expr, str) else expr
    if isinstance(text, str) and text.startswith("at(") and text.endswith(")"):
        return 0.0
    if isinstance(text, str) and text.startswith("rate(") and text.endswith(")"):
        parts = text[5:-1].split()
        unit = parts[1].rstrip("s") if len(parts) == 2 else ""
        if not (parts and parts[0].isdigit() and int(parts[0]) > 0 and unit in _RATE_HOURS):
            raise CronError(f"{expr!r}: expected rate(N minutes|hours|days) with N >= 1")
        return hours_per_month / (int(parts[0]) * _RATE_HOURS[unit])
    if isinstance(text, str) and text.startswith("cron("):
        text = eventbridge_fields(text)
    minute, hour, dom, month, dow = parse(MACROS.get(text, text))
    per_day = len(_parse_field(minute, _FIELDS[0])) * len(_parse_field(hour, _FIELDS[1]))
    days_per_month = hours_per_month / 24
    days = _parse_field(dom, _FIELDS[2])
    dom_share = (
        1.0 if len(days) == 31 else sum(_DAY_SHARE.get(d, 1.0) for d in days) / days_per_month
    )
    dow_share = len(_parse_field(dow, _FIELDS[4])) / 7
    if _restricted(dom) and _restricted(dow):
        day_share = dom_share + dow_share - dom_share * dow_share
    else:
        day_share = dom_share * dow_share
    month_share = len(_parse_field(month, _FIELDS[3])) / 12
    return per_day * days_per_month * day_share * month_share


def next_runs(expr: str, n: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next ``n`` UTC run times of a valid five-field expression after ``now``.

    Raises:
        CronError: the expression is invalid or never runs.
    """
    parse(expr)
    if not fires(expr):
        raise CronError(f"{expr!r} never runs")
    start = now or datetime.now(UTC)
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    it = croniter(expr, start)
    return [it.get_next(datetime).astimezone(UTC) for _ in range(n)]
