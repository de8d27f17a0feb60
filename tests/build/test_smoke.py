"""run_smoke and ``modelops smoke``: smoke cases, expectations, load test, SLO.

The checks run against one real served Bento (the session's shared ``served_fraud``); the
deployments differ only in ``spec.serving.smoke``/``slo``, which do not change the
Bento, so one server answers them all. The pure helpers are tested without a server.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console
from support.cli import run_cli
from support.ports import refused_port
from support.repo import make_repo
from support.serving import servers_under

from reconciler.build.smoke import (
    SmokeResult,
    _compare,
    _shape,
    describe_case,
    percentiles_ms,
    run_smoke,
)
from reconciler.core.config import load_config
from reconciler.report.progress import rendering
from reconciler.spec.repo import load_all
from reconciler.spec.smoke import RequestFileError, read_request_file

SPEC = "specs/fraud-detector.yaml"
BODY = {"instances": [[1.0] * 30, [20.0] * 30]}


def set_smoke(root: Path, smoke: dict, slo_ms: float = 5000, max_latency_ms: int = 2000):
    """Rewrite the fraud spec's serving.smoke and SLO; return the staging deployment.

    The spec serves one BentoML worker (``modelops smoke`` starts its own server: a second
    worker is another BentoML import and model load, and no test here counts workers)."""
    path = root / SPEC
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["serving"]["smoke"] = smoke
    doc["spec"]["serving"]["workers"] = 1
    doc["spec"]["serving"]["slo"] = {"p99_latency_ms": slo_ms}
    doc["spec"]["serving"]["batching"]["max_latency_ms"] = max_latency_ms
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(root)
    result = load_all(config, ["fraud-detector"], "staging")
    assert not result.errors, [str(d) for d in result.errors]
    return config, next(d for d in result.deployments if d.env == "staging")


# -- helpers, no server -----------------------------------------------------------------


def test_shape_of_nested_lists():
    assert _shape([1, 2, 3]) == [3]
    assert _shape([[1, 2], [3, 4], [5, 6]]) == [3, 2]
    assert _shape([]) == [0]
    assert _shape(7) == []


def test_compare_values_with_tolerance():
    assert _compare([1, 0], [1, 0], 0) is None
    assert _compare([0.5, 0.25], [0.49, 0.26], 0.02) is None
    assert _compare([0.5], [0.4], 0.05) == "predictions[0]: expected 0.4 (± 0.05), got 0.5"
    assert _compare([1, 0], [1, 0, 1], 0) == "predictions: expected 3 item(s), got 2 item(s)"
    assert _compare(["a"], ["b"], 1) == "predictions[0]: expected 'b', got 'a'"
    assert _compare([[1, 2]], [[1, 3]], 0) == "predictions[0][1]: expected 3, got 2"


def test_percentiles_in_ms():
    stats = percentiles_ms([float(i) for i in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["max_ms"] == 100.0
    assert percentiles_ms([])["p99_ms"] == 0.0


def test_result_summary_and_dict():
    result = SmokeResult("x-dev", "http://127.0.0.1:1", failures=["boom"])
    assert not result.passed
    assert result.to_dict()["passed"] is False
    assert result.summary() == "smoke FAILED: 0 case(s), 0 failed"
    assert result.other_failures == ["boom"]


def test_summary_counts_every_case_and_the_failed_ones():
    cases = [
        {"request": "a.json", "sent": True, "status": 200, "ok": True, "failures": []},
        {"request": "b.json", "sent": True, "status": 200, "ok": False, "failures": ["b.json: x"]},
        {"request": "c.json", "sent": False, "status": None, "ok": False, "failures": ["c: y"]},
    ]
    result = SmokeResult("x-dev", "u", cases=cases, failures=["b.json: x", "c: y", "load: z"])
    assert result.summary() == "smoke FAILED: 3 case(s), 2 failed"
    assert result.failed_cases == 2 and result.to_dict()["failed_cases"] == 2
    assert result.other_failures == ["load: z"]  # case reasons are shown with their case


def test_describe_case_shows_each_case_once_with_its_reasons():
    ok = dict(request="a.json", sent=True, status=200, ok=True, latency_ms=3.14, failures=[])
    assert describe_case(ok) == "a.json: HTTP 200 in 3.1 ms"
    wrong = {**ok, "ok": False, "failures": ["a.json: predictions[0]: expected 0, got 1"]}
    assert describe_case(wrong) == "a.json: HTTP 200 in 3.1 ms: predictions[0]: expected 0, got 1"
    unsent = {**ok, "sent": False, "status": None, "ok": False, "latency_ms": None}
    unsent.update(request="b.json", failures=["specs/x.yaml:9:5: f: not valid JSON"])
    assert describe_case(unsent) == "b.json: not sent: specs/x.yaml:9:5: f: not valid JSON"
    down = {**ok, "status": None, "ok": False, "failures": ["POST /predict with a.json failed"]}
    assert describe_case(down) == "a.json: no answer: POST /predict with a.json failed"


@pytest.mark.parametrize(
    ("text", "status", "needle"),
    [
        ('{"instances": [[1, 2,', 200, "is not valid JSON: line 1 column 22: Expecting value"),
        ('{"instances": [[1]]}\n,', 200, "is not valid JSON: line 2 column 1: Extra data"),
        ("[[1, 2, 3]]", 200, 'is a list; expected a JSON object {"instances": [[...], ...]}'),
        ('{"rows": [[1]]}', 400, 'has no "instances" (keys: rows)'),
        ('{"instances": []}', 200, '"instances" is an empty list, so the case cannot expect'),
        ('{"instances": "x"}', 201, '"instances" is not a list (str)'),
    ],
)
def test_read_request_file_names_what_is_wrong(tmp_path, text, status, needle):
    path = tmp_path / "req.json"
    path.write_text(text)
    with pytest.raises(RequestFileError) as err:
        read_request_file(path, "examples/req.json", status)
    assert str(err.value).startswith("smoke request file examples/req.json")
    assert needle in str(err.value)


def test_read_request_file_accepts_a_refusal_case_and_reports_bad_bytes(tmp_path):
    path = tmp_path / "req.json"
    path.write_text('{"instances": []}')
    assert read_request_file(path, "r.json", 400) == {"instances": []}  # checks a 400
    path.write_bytes(b'{"instances": [[1\xff]]}')
    with pytest.raises(RequestFileError, match="r.json is not UTF-8 text"):
        read_request_file(path, "r.json")
    with pytest.raises(RequestFileError, match="gone.json does not exist"):
        read_request_file(tmp_path / "gone.json", "gone.json")


def test_missing_request_file_fails_with_file_line_and_field(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    (root / "examples/fraud/gone.json").write_text(json.dumps(BODY))
    config, dep = set_smoke(root, {"requests": [{"request": "examples/fraud/gone.json"}]})
    # validation reports a missing file; run_smoke must not crash when it goes afterwards
    (root / "examples/fraud/gone.json").unlink()
    with refused_port() as port:
        result = run_smoke(dep, config, f"http://127.0.0.1:{port}")
    assert not result.passed
    assert not result.load
    (msg,) = result.failures
    assert msg.startswith("specs/fraud-detector.yaml:")
    assert "spec.serving.smoke.requests.0.request: smoke request file " in msg
    assert "examples/fraud/gone.json does not exist" in msg
    (case,) = result.cases  # still a case: counted, reported once, not sent
    assert case["sent"] is False and case["failures"] == [msg]
    assert result.summary() == "smoke FAILED: 1 case(s), 1 failed"
    assert result.other_failures == []


def test_unreachable_server_is_a_failure_not_a_crash(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    config, dep = set_smoke(root, {"request": "examples/fraud/request.json"})
    with refused_port() as port:  # nothing answers, not even another test's server
        result = run_smoke(dep, config, f"http://127.0.0.1:{port}")
    assert not result.passed
    assert "POST /predict with examples/fraud/request.json failed" in result.failures[0]


# -- against a real server --------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    """A repository whose smoke cases the tests rewrite (with two more request files)."""
    root = make_repo(tmp_path_factory.mktemp("smoke") / "repo", policies=False).root
    (root / "examples/fraud/bad_request.json").write_text('{"instances": [[1, 2, 3]]}')
    (root / "examples/fraud/two.json").write_text(json.dumps(BODY))
    return root


@pytest.fixture
def served(smoke_repo, served_fraud):
    """(root, server) : the smoke repository, and the shared served fraud Bento
    (``served_fraud`` in conftest.py; built with max_latency_ms 2000). Smoke and SLO do
    not change the Bento, so this one server answers every deployment here."""
    return smoke_repo, served_fraud


@pytest.mark.slow
def test_smoke_and_load_test_pass(served):
    root, handle = served
    config, dep = set_smoke(
        root, {"request": "examples/fraud/request.json", "load": {"requests": 30, "concurrency": 2}}
    )
    before = httpx.get(f"{handle.url}/metadata", timeout=10).json()["capture_stats"]["synthetic"]
    result = run_smoke(dep, config, handle.url)
    assert result.passed, result.failures
    # every request of the smoke case and of the load test (warm-up included) is marked
    # synthetic: counted by the service, never captured
    after = httpx.get(f"{handle.url}/metadata", timeout=10).json()["capture_stats"]["synthetic"]
    assert after.get("smoke", 0) - before.get("smoke", 0) == 1
    assert after.get("load", 0) - before.get("load", 0) == 30 + result.load["warmup"]
    (case,) = result.cases
    assert case["status"] == 200 and case["ok"]
    load = result.load
    assert (load["requests"], load["concurrency"], load["completed"]) == (30, 2, 30)
    assert load["errors"] == 0
    assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"] <= load["max_ms"]
    assert load["throughput_rps"] > 0
    assert result.slo_p99_ms == 5000 and result.slo_met is True
    # the caller's numbers beat the spec's
    quick = run_smoke(dep, config, handle.url, requests=5, concurrency=1)
    assert (quick.load["requests"], quick.load["concurrency"]) == (5, 1)
    assert run_smoke(dep, config, handle.url, requests=0).load == {}


@pytest.mark.slow
def test_smoke_and_load_test_are_shown_as_steps_on_a_terminal_only(served):
    root, handle = served
    config, dep = set_smoke(
        root, {"request": "examples/fraud/request.json", "load": {"requests": 5, "concurrency": 1}}
    )
    tty = io.StringIO()
    with rendering(Console(file=tty, force_terminal=True, width=100, color_system=None)):
        assert run_smoke(dep, config, handle.url).passed
    text = tty.getvalue()
    assert "✓ fraud-detector-staging: smoke (" in text
    assert "✓ fraud-detector-staging: load test (" in text
    assert text.index(": smoke (") < text.index(": load test (")
    ci = io.StringIO()  # not a terminal: the same run prints nothing
    with rendering(Console(file=ci, width=100)):
        assert run_smoke(dep, config, handle.url).passed
    assert ci.getvalue() == ""


@pytest.mark.slow
def test_expectations_status_shape_values_tolerance(served):
    root, handle = served
    actual = httpx.post(f"{handle.url}/predict", json=BODY, timeout=30).json()["predictions"]
    cases = [
        {"request": "examples/fraud/two.json", "expect": {"shape": [2], "values": actual}},
        {"request": "examples/fraud/bad_request.json", "expect": {"status": 400}},
    ]
    config, dep = set_smoke(root, {"requests": cases})
    result = run_smoke(dep, config, handle.url, requests=0)
    assert result.passed, result.failures
    assert [c["status"] for c in result.cases] == [200, 400]

    wrong = [actual[0], 7]
    cases = [
        {"request": "examples/fraud/two.json", "expect": {"values": wrong}},
        {"request": "examples/fraud/two.json", "expect": {"shape": [3]}},
        # a body the service refuses cannot expect 200 (validate says so): a refusal
        # expected of a valid body fails on the status instead
        {"request": "examples/fraud/request.json", "expect": {"status": 400}},
    ]
    config, dep = set_smoke(root, {"requests": cases})
    result = run_smoke(dep, config, handle.url)
    assert not result.passed
    assert not result.load  # no load test after a failed case
    f_values, f_shape, f_status = result.failures
    assert f_values == f"examples/fraud/two.json: predictions[1]: expected 7, got {actual[1]!r}"
    assert f_shape == "examples/fraud/two.json: predictions have shape [2], expected [3]"
    assert f_status.startswith("examples/fraud/request.json: expected HTTP 400, got 200")


@pytest.mark.slow
def test_four_cases_each_reported_once_and_counted(served):
    """The new-user trial: four cases, one value mismatch and one request file that is
    not JSON (broken after validation), once reported twice and summed up as 3 cases."""
    root, handle = served
    actual = httpx.post(f"{handle.url}/predict", json=BODY, timeout=30).json()["predictions"]
    (root / "examples/fraud/broken.json").write_text(json.dumps(BODY))
    cases = [
        {"request": "examples/fraud/request.json"},
        {"request": "examples/fraud/two.json", "expect": {"values": [actual[0], 7]}},
        {"request": "examples/fraud/broken.json"},
        {"request": "examples/fraud/bad_request.json", "expect": {"status": 400}},
    ]
    config, dep = set_smoke(root, {"requests": cases})
    (root / "examples/fraud/broken.json").write_text('{"instances": [[1, 2,')
    result = run_smoke(dep, config, handle.url)
    assert [c["ok"] for c in result.cases] == [True, False, False, True]
    assert [c["sent"] for c in result.cases] == [True, True, False, True]
    assert result.summary() == "smoke FAILED: 4 case(s), 2 failed"
    assert result.other_failures == []
    lines = [describe_case(c) for c in result.cases]
    assert lines[1].startswith("examples/fraud/two.json: HTTP 200 in ")
    assert lines[1].endswith(f": predictions[1]: expected 7, got {actual[1]!r}")
    line = dep.locate("spec.serving.smoke.requests.2.request")
    assert lines[2] == (
        f"examples/fraud/broken.json: not sent: {line}: spec.serving.smoke.requests.2.request: "
        "smoke request file examples/fraud/broken.json is not valid JSON: line 1 column 22: "
        "Expecting value"
    )
    assert len(result.failures) == 2


@pytest.mark.slow
def test_slo_miss_fails_and_names_the_spec_line(served):
    root, handle = served
    config, dep = set_smoke(root, {"request": "examples/fraud/request.json"}, slo_ms=0.001)
    result = run_smoke(dep, config, handle.url, requests=10, concurrency=2)
    assert result.slo_met is False
    assert all(c["ok"] for c in result.cases)
    (failure,) = result.failures
    line = dep.locate("spec.serving.slo.p99_latency_ms")
    assert failure.startswith(f"{line}: spec.serving.slo.p99_latency_ms: SLO missed: p99 latency ")
    assert "> 0.001 ms at concurrency 2 (10 requests)" in failure


# -- the command ------------------------------------------------------------------------


def test_cli_smoke_unknown_deployment_is_a_usage_error(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    proc = run_cli(root, "smoke", "no-such-model", "--env", "staging")
    assert proc.returncode == 2, proc.stderr
    assert "no-such-model" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_cli_smoke_text_reports_each_case_once_and_counts_them(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    (root / "examples/fraud/bad_request.json").write_text('{"instances": [[1, 2, 3]]}')
    (root / "examples/fraud/two.json").write_text(json.dumps(BODY))
    cases = [
        {"request": "examples/fraud/request.json"},
        {"request": "examples/fraud/two.json", "expect": {"values": [7, 7]}},
        {"request": "examples/fraud/request.json", "expect": {"status": 400}},  # gets 200
        {"request": "examples/fraud/bad_request.json", "expect": {"status": 400}},
    ]
    set_smoke(root, {"requests": cases})
    proc = run_cli(root, "smoke", "fraud-detector", "--env", "staging", "-n", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    case_lines = [ln.strip() for ln in out.splitlines() if ln.startswith(("  ok ", "  FAIL "))]
    assert len(case_lines) == 4, out
    assert case_lines[0].startswith("ok   examples/fraud/request.json: HTTP 200 in ")
    assert case_lines[1].startswith("FAIL examples/fraud/two.json: HTTP 200 in ")
    assert "predictions[0]: expected 7" in case_lines[1]
    assert case_lines[2].startswith("FAIL examples/fraud/request.json: HTTP 200 in ")
    assert "expected HTTP 400, got 200" in case_lines[2]
    assert case_lines[3].startswith("ok   examples/fraud/bad_request.json: HTTP 400 in ")
    assert out.count("predictions[0]: expected 7") == 1  # once, with its case
    assert out.count("expected HTTP 400, got 200") == 1
    assert out.strip().splitlines()[-1] == "smoke FAILED: 4 case(s), 2 failed"
    assert not servers_under(root / ".modelops")


@pytest.mark.slow
def test_cli_smoke_reports_slo_miss_with_exit_1_and_stops_the_server(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    set_smoke(root, {"request": "examples/fraud/request.json"}, slo_ms=0.001)
    args = ("smoke", "fraud-detector", "--env", "staging", "-n", "10", "-c", "2")
    proc = run_cli(root, *args, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    (report,) = json.loads(proc.stdout)
    assert report["passed"] is False and report["slo_met"] is False
    assert report["cases"][0]["status"] == 200
    assert report["load"]["completed"] == 10
    assert report["bento_tag"].startswith("fraud-detector:")
    assert not servers_under(root / ".modelops")
