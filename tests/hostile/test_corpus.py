"""The hostile corpus: every ``cases_*.py`` module's cases, in-process, one repository.

For each :class:`~hostile.case.Case` the runner writes its files over the corpus
repository (a copy of the example specs, examples and policies), runs its ``modelops``
command in this process (:func:`support.cli.invoke`, with the Typer command built once)
and restores the files. It asserts, for every case: no crash (no traceback, no
``internal error``), no fail-open (the exact exit code: 1 findings, 2 usage or
configuration, 0 only where the case is valid input), no hang (a watchdog of
:data:`WATCHDOG_S` per case, far above any real run: a guard, not a speed target), and
for findings a ``file:line:col`` position plus the case's expected substrings. The
counts per class are printed at the end of the run (``conftest.py`` beside this file).
"""

from __future__ import annotations

import importlib
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
import typer
from support.cli import invoke
from support.repo import make_repo

from reconciler import cli

HERE = Path(__file__).parent
WATCHDOG_S = 120
_POSITION = re.compile(r"[\w./%-]+\.(?:ya?ml|rego|json):\d+:\d+")


def _modules() -> list[str]:
    return sorted(p.stem for p in HERE.glob("cases_*.py"))


def all_cases():
    """(module, case) for every case of every ``cases_*.py`` module."""
    out = []
    for name in _modules():
        module = importlib.import_module(f"hostile.{name}")
        out += [(name, case) for case in module.cases()]
    return out


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _check(case, code: int, output: str) -> str:
    """The first broken expectation, or ``""``."""
    if "Traceback" in output or "internal error" in output:
        return "crash"
    if code != case.exit:
        return "fail-open" if code == 0 else f"exit {code}, expected {case.exit}"
    if case.positioned and case.exit == 1 and not _POSITION.search(output):
        return "not positioned"
    missing = [needle for needle in case.contains if needle not in output]
    if missing:
        return f"missing {missing!r}"
    return ""


def test_hostile_corpus(tmp_path, monkeypatch, record_property):
    cases = all_cases()
    names = [case.name for _, case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector", "diabetes-progression"])
    root = repo.root
    monkeypatch.chdir(root)  # the cases' paths are relative to the repository
    # build the Typer command once (main() calls app(...), which rebuilds it each time)
    monkeypatch.setattr(cli, "app", typer.main.get_command(cli.app))
    previous = signal.signal(signal.SIGALRM, _alarm)
    outcomes: Counter = Counter()
    per_class: Counter = Counter()
    problems = []
    try:
        for module, case in cases:
            saved = {}
            for rel, body in case.files.items():
                path = root / rel
                saved[rel] = path.read_bytes() if path.exists() else None
                if body is None:
                    path.unlink(missing_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body.encode() if isinstance(body, str) else body)
            signal.alarm(WATCHDOG_S)
            try:
                code, out, err = invoke(root, *case.argv)
                problem = _check(case, code, out + err)
            except _Hang:
                code, out, err, problem = -1, "", "", "hang"
            finally:
                signal.alarm(0)
                for rel, old in saved.items():
                    if old is None:
                        (root / rel).unlink(missing_ok=True)
                    else:
                        (root / rel).write_bytes(old)
            per_class[case.klass] += 1
            outcomes[problem.split(",")[0].split(" ")[0] if problem else "ok"] += 1
            if problem:
                tail = (out + err).strip().splitlines()[-3:]
                problems.append(f"{module}:{case.name}: {problem}: {' | '.join(tail)}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    named = outcomes["crash"] + outcomes["fail-open"] + outcomes["hang"] + outcomes["not"]
    summary = (
        f"hostile corpus: {len(cases)} cases in {len(per_class)} classes "
        f"({', '.join(f'{k} {v}' for k, v in sorted(per_class.items()))}); "
        f"crashes {outcomes['crash']}, fail-opens {outcomes['fail-open']}, "
        f"hangs {outcomes['hang']}, unpositioned {outcomes['not']}, "
        f"other mismatches {len(problems) - named}"
    )
    record_property("hostile_summary", summary)
    assert len(cases) >= 150, summary
    assert not problems, summary + "\n" + "\n".join(problems)


def test_every_case_module_defines_cases():
    for name in _modules():
        module = importlib.import_module(f"hostile.{name}")
        assert callable(getattr(module, "cases", None)), name


@pytest.fixture(autouse=True)
def _bentoml_quiet(monkeypatch):
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
