"""One hostile input: the shape every ``cases_*.py`` module of this corpus returns.

The corpus (``tests/hostile/``) holds inputs that users of peer tools have reported as
failure classes (YAML 1.1 surprises, alias bombs, cron dialects, names a platform refuses,
paths that leave the repository, guards a pull request loosens, ...). Each
``cases_<topic>.py`` module defines ``cases() -> list[Case]``; the runner
(``test_corpus.py``) writes each case's files over a copy of the example repository, runs
its command and checks the outcome: no traceback, no hang, the expected exit code, and,
for findings, a ``file:line:col`` position.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """A hostile input and what modelops must answer.

    ``files`` maps repository-relative paths to their text (or bytes) written over the
    example repository; a value of ``None`` deletes that path. ``argv`` is the
    ``modelops`` command (without ``--root``). ``exit`` is the required exit code
    (1 findings, 2 usage or configuration). ``positioned`` says the output must name
    a ``file:line`` (a finding knowable from the repository). ``contains`` are
    substrings the output must hold (the field, what would be valid). ``klass`` is the
    failure class, for the counts the runner prints.
    """

    name: str
    klass: str
    files: dict[str, str | bytes | None]
    argv: tuple[str, ...]
    exit: int
    positioned: bool = True
    contains: tuple[str, ...] = field(default_factory=tuple)
