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
