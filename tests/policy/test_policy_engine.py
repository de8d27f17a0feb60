"""The policy engine end to end with real Rego under regopy: fail closed on every bad input.

Each test builds a real spec repository in a temp dir (``spec_repo``) and runs
``check_policies``; bad policies are real ``.rego`` files written next to the library.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from support.rego_faults import GUARD_S, UNREACHABLE_S, worker_fault
from support.repo import replace_in_file

from reconciler.core.config import load_config
from reconciler.policy.check import check_policies
from reconciler.policy.engine import PolicyEngine
from reconciler.policy.library import load_library
from reconciler.policy.worker import EngineFailure, PolicyModule, RegoWorker
from reconciler.spec.repo import load_all

TODAY = dt.date(2026, 11, 29)
# A rule that takes seconds under regopy (builds a 5M-element array). The tests never
# wait for it: worker_fault hangs or crashes the worker it is sent to, so the outcome
# does not depend on how fast the machine is.
SLOW = (
    'deny contains {"msg": "slow", "path": ""} if '
    "{ count([y | some y in numbers.range(1, 5000000)]) > 0 }"
)
SLOW_WHEN_HANG = (  # slow only on an input with hang: true
    'deny contains {"msg": "slow", "path": ""} if '
    "{ input.hang == true; count([y | some y in numbers.range(1, 5000000)]) > 0 }"
)


def policy_file(pid: str, package: str, body: str, enforcement: str = "mandatory") -> str:
    return (
        "# METADATA\n"
        f"# title: Test policy {pid}\n"
        "# custom:\n"
        f"#   id: {pid}\n"
        "#   severity: high\n"
        f"#   enforcement: {enforcement}\n"
        f"package modelops.{package}\n\n{body}\n"
    )


def only_policies(root: Path, files: dict[str, str]) -> None:
    """Replace the library with ``files`` (keeping organization.yaml and waivers.yaml)."""
    for rego in (root / "policies").glob("*.rego"):
        rego.unlink()
    for name, text in files.items():
        (root / "policies" / name).write_text(text)


def check(root: Path, env: str | None = None, **kw):
    config = load_config(root)
    loaded = load_all(config, None, env)
    assert not loaded.errors, loaded.errors
    return check_policies(config, loaded.deployments, today=TODAY, **kw)


def test_example_specs_pass_every_policy_in_every_environment(spec_repo):
    report = check(spec_repo)
    assert not report.blocking, [str(d) for d in report.diagnostics()]
    assert len(report.deployments) == 6
    assert {r.status for r in report.results} == {"pass"}
    # every usable policy was evaluated on every deployment where it is not disabled
    lib = load_library(spec_repo / "policies", spec_repo / "policies/organization.yaml", spec_repo)
    assert len(lib.usable) >= 20


def test_overlay_only_value_is_caught_and_points_into_the_overlay(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    text = path.read_text()
    assert "    prod:\n      target:\n" in text
    path.write_text(text.replace("    prod:\n", "    prod:\n      exposure: {public: true}\n"))
    report = check(spec_repo, env="prod")
    assert report.blocking
    fails = [r for r in report.results if r.status == "fail" and r.policy_id == "MDL-001"]
    assert len(fails) == 1
    fail = fails[0]
    assert fail.deployment == "fraud-detector-prod" and fail.path == "spec.exposure.public"
    lines = path.read_text().splitlines()
    assert fail.position.file == "specs/fraud-detector.yaml"
    assert "exposure: {public: true}" in lines[fail.position.line - 1]
    # the same spec in staging (no overlay value) is not affected
    assert not check(spec_repo, env="staging").blocking
    diag = next(d for d in report.diagnostics() if d.code == "MDL-001")
    assert diag.severity == "error" and diag.field == "spec.exposure.public"


def test_per_environment_enforcement_advisory_in_dev(spec_repo):
    path = spec_repo / "specs" / "fraud-scorer-serverless.yaml"
    text = path.read_text()
    # dev runs locally in the example; put it on the cloud without a KMS key
    text = text.replace(
        "    dev:\n      target: {platform: local}\n",
        "    dev:\n      target: {encryption: {kms_key_id: alias/aws/sagemaker}}\n",
    )
    path.write_text(text)
    report = check(spec_repo, env="dev")
    kms = [r for r in report.results if r.policy_id == "MDL-003"]
    assert [(r.status, r.enforcement) for r in kms] == [("warn", "advisory")]
    assert not report.blocking
    assert next(d for d in report.diagnostics() if d.code == "MDL-003").severity == "warning"


def test_syntax_error_is_a_policy_error_with_file_and_line(spec_repo):
    only_policies(
        spec_repo,
        {
            "good.rego": policy_file(
                "TST-001", "good", 'deny contains {"msg": "x", "path": ""} if false'
            ),
            "broken.rego": policy_file(
                "TST-002", "broken", 'deny contains {"msg": "x" if {\n  true\n}'
            ),
        },
    )
    report = check(spec_repo, env="prod")
    assert report.blocking
    compile_diags = [d for d in report.library_diagnostics if d.code == "policy-compile"]
    assert len(compile_diags) == 1
    d = compile_diags[0]
    assert d.position.file == "policies/broken.rego" and d.position.line >= 7
    assert "TST-002" in d.message and "does not compile" in d.message
    statuses = {(r.policy_id, r.status) for r in report.results}
    assert ("TST-002", "error") in statuses and ("TST-001", "pass") in statuses


def test_rule_returning_a_string_or_missing_path_is_malformed(spec_repo):
    only_policies(
        spec_repo,
        {
            "s.rego": policy_file("TST-001", "s", 'deny contains "public endpoint" if true'),
            "p.rego": policy_file("TST-002", "p", 'deny contains {"msg": "no path"} if true'),
            "v0.rego": policy_file("TST-003", "v0", "deny := 1"),
        },
    )
    report = check(spec_repo, env="prod")
    assert report.blocking
    by_id = {r.policy_id: r for r in report.results}
    assert (
        by_id["TST-001"].status == "error" and "str 'public endpoint'" in by_id["TST-001"].message
    )
    assert (
        by_id["TST-002"].status == "error" and "without a string path" in by_id["TST-002"].message
    )
    assert by_id["TST-003"].status == "error" and "must be a set" in by_id["TST-003"].message


def test_undefined_deny_is_an_error_not_a_pass(spec_repo):
    only_policies(
        spec_repo,
        {
            "nodeny.rego": policy_file("TST-001", "nodeny", "allow := true"),
            "complete.rego": policy_file(
                "TST-002", "complete", 'deny := [{"msg": "x", "path": ""}] if input.nothing'
            ),
        },
    )
    report = check(spec_repo, env="prod")
    assert report.blocking
    assert {r.status for r in report.results} == {"error"}
    assert all("undefined" in r.message for r in report.results)


def test_builtin_error_is_an_error_not_undefined(spec_repo):
    # regopy turns built-in errors into "undefined" by default: a silently passing rule.
    only_policies(
        spec_repo,
        {
            "b.rego": policy_file(
                "TST-001",
                "b",
                'deny contains {"msg": "x", "path": ""} if { regex.match(input.spec.target, "x") }',
            ),
        },
    )
    report = check(spec_repo, env="prod")
    assert report.blocking
    assert {r.status for r in report.results} == {"error"}


def test_slow_policy_times_out_and_the_rest_still_runs(spec_repo):
    slow = SLOW
    only_policies(
        spec_repo,
        {
            "fast.rego": policy_file(
                "TST-001", "fast", 'deny contains {"msg": "x", "path": ""} if false'
            ),
            "slow.rego": policy_file("TST-002", "slow", slow),
        },
    )
    start = time.monotonic()
    with worker_fault("TST-002", "hang"):  # no evaluation of TST-002 ever ends
        report = check(spec_repo, env="prod", timeout_s=UNREACHABLE_S)
    assert time.monotonic() - start < GUARD_S  # hang guard: the engine gave up by itself
    assert report.blocking
    slow_results = [r for r in report.results if r.policy_id == "TST-002"]
    assert len(slow_results) == 3 and {r.status for r in slow_results} == {"error"}
    timed_out = f"timed out after {UNREACHABLE_S:g} s while evaluating TST-002 on"
    assert timed_out in slow_results[0].message
    assert "not evaluated" in slow_results[1].message  # quarantined for the rest of the run
    assert {r.status for r in report.results if r.policy_id == "TST-001"} == {"pass"}


def test_worker_crash_is_reported_as_a_crash_of_that_policy(spec_repo):
    slow = SLOW
    lib_dir = spec_repo / "policies"
    only_policies(spec_repo, {"slow.rego": policy_file("TST-009", "slow", slow)})
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    # a real SIGSEGV in every worker sent TST-009, as a rego-cpp crash would deliver
    with (
        worker_fault("TST-009", "crash") as crashed,
        PolicyEngine(lib.usable, lib.data, timeout_s=30) as engine,
    ):
        out = engine.evaluate({"environment": "prod"}, "demo-prod")
    assert len(crashed) == 2  # the query of every policy, then TST-009 alone
    assert out["TST-009"] == (
        "error",
        "policy engine crashed while evaluating TST-009 on demo-prod",
    )


def test_value_that_breaks_regopy_is_an_error_not_a_pass(spec_repo):
    # Found by the property test: a float near the double maximum makes rego-cpp fail
    # (std::stod) while it renders the message, inside an output marked ok. The check
    # must report an error that says so and block, never pass.
    lib_dir = spec_repo / "policies"
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    config = load_config(spec_repo)
    dep = load_all(config, ["fraud-detector"], "prod").deployments[0]
    doc = dep.policy_input()
    doc["spec"]["target"]["autoscaling"]["min_replicas"] = -1.7976931348623155e308
    with PolicyEngine(lib.usable, lib.data) as engine:
        out = engine.evaluate(doc, dep.key)
        again = engine.evaluate(dep.policy_input(), dep.key)
    kind, cause = out["MDL-010"]
    assert kind == "error"
    assert cause.startswith("evaluation error: a number is out of the range rego-cpp")
    # the other policies were still evaluated on that input
    assert out["MDL-001"] == ("ok", [])
    # an error on one input is not a crash: the policy is evaluated again on the next
    assert again["MDL-010"] == ("ok", [])


def test_worker_reports_crash_as_engine_failure():
    mod = PolicyModule(
        "TST-001",
        "t.rego",
        "package t\ndeny contains 1 if { count([y | some y in numbers.range(1, 5000000)]) > 0 }\n",
        "t",
    )
    with worker_fault("TST-001", "crash"):  # killed by a signal while it evaluates
        worker = RegoWorker([mod], {}, timeout_s=30)
        with pytest.raises(EngineFailure) as info:
            worker.evaluate_one("TST-001", {})
    assert info.value.kind == "crash" and info.value.detail == "evaluating TST-001"
    assert not worker.alive


def test_non_boolean_public_is_treated_as_public(spec_repo):
    lib_dir = spec_repo / "policies"
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    config = load_config(spec_repo)
    dep = next(d for d in load_all(config, ["fraud-detector"], "prod").deployments)
    with PolicyEngine(lib.usable, lib.data) as engine:
        for trick in ["yes", "false", 0, None, [], {}]:
            doc = dep.policy_input()
            doc["spec"]["exposure"]["public"] = trick
            kind, value = engine.evaluate(doc, dep.key)["MDL-001"]
            assert kind == "ok" and value, f"public: {trick!r} passed MDL-001"
        doc = dep.policy_input()
        doc["spec"]["target"]["autoscaling"]["min_replicas"] = "1"
        assert engine.evaluate(doc, dep.key)["MDL-010"][1]


def test_to_dict_is_json_ready(spec_repo):
    import json

    report = check(spec_repo, env="prod")
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["blocking"] is False and doc["summary"]["pass"] > 0
    assert {"policy", "status", "file", "line", "path"} <= set(doc["results"][0])


def test_evaluate_many_over_two_workers_matches_one_at_a_time(spec_repo):
    lib_dir = spec_repo / "policies"
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    config = load_config(spec_repo)
    deps = load_all(config).deployments
    items = []
    for i in range(40):
        doc = deps[i % len(deps)].policy_input()
        doc["spec"].setdefault("exposure", {})["public"] = i % 3 == 0
        items.append((doc, f"d{i}"))
    with PolicyEngine(lib.usable, lib.data, workers=2) as engine:
        many = engine.evaluate_many(items)
        single = [engine.evaluate(doc, label) for doc, label in items]
    assert many == single
    assert sum(bool(m["MDL-001"][1]) for m in many) > 0


def hangs(doc) -> bool:
    """Whether a policy input is one on which SLOW_WHEN_HANG spins (``hang: true``)."""
    return isinstance(doc, dict) and doc.get("hang") is True


def test_evaluate_many_attributes_a_crash_and_a_hang_inside_a_chunk(spec_repo):
    """In one run a worker crashes (a real SIGSEGV) while it evaluates one input of 40;
    in another one input hangs a policy. The culprit input gets the crash or time-out of
    that policy; every input still gets an answer for every policy, and nothing is
    reported as a pass that was not evaluated."""
    lib_dir = spec_repo / "policies"
    only_policies(
        spec_repo,
        {
            "fast.rego": policy_file(
                "TST-001", "fast", 'deny contains {"msg": "x", "path": ""} if false'
            ),
            "slow.rego": policy_file("TST-002", "slow", SLOW_WHEN_HANG),
        },
    )
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    items = [({"environment": "prod", "hang": i == 17, "n": i}, f"d{i}") for i in range(40)]
    with (
        worker_fault("TST-002", "crash", when=hangs),  # d17 crashes the worker it is sent to
        PolicyEngine(lib.usable, lib.data, workers=2, timeout_s=30) as engine,
    ):
        many = engine.evaluate_many(items)
    assert many[17]["TST-002"] == (
        "error",
        "policy engine crashed while evaluating TST-002 on d17",
    )
    assert all(set(m) == {"TST-001", "TST-002"} for m in many)
    assert many[0]["TST-002"] == ("ok", [])  # evaluated before the crash, in another chunk
    for m in many[18:]:  # after the crash TST-002 is quarantined or was evaluated: never lost
        assert m["TST-002"] == ("ok", []) or "not evaluated" in m["TST-002"][1]
    assert all(m["TST-001"] == ("ok", []) for m in many)

    docs = [({"environment": "prod", "hang": i == 25}, f"d{i}") for i in range(40)]
    start = time.monotonic()
    with (
        worker_fault("TST-002", "hang", when=hangs),  # d25 never ends
        PolicyEngine(lib.usable, lib.data, workers=2, timeout_s=UNREACHABLE_S) as engine,
    ):
        many = engine.evaluate_many(docs)
    assert time.monotonic() - start < GUARD_S  # hang guard: the engine gave up by itself
    assert many[25]["TST-002"][0] == "error"
    timed_out = f"timed out after {UNREACHABLE_S:g} s while evaluating TST-002 on d25"
    assert timed_out in many[25]["TST-002"][1]
    assert many[0] == {"TST-001": ("ok", []), "TST-002": ("ok", [])}
    assert all(m["TST-001"] == ("ok", []) for m in many)


def test_integers_beyond_int64_are_not_wrapped_around(spec_repo):
    """regopy wraps ints outside int64 silently (-2**63 - 1 arrives as 2**63 - 1): a huge
    negative min_replicas must still fail MDL-010, a huge replica count MDL-009."""
    lib_dir = spec_repo / "policies"
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    config = load_config(spec_repo)
    dep = load_all(config, ["fraud-detector"], "prod").deployments[0]
    doc = dep.policy_input()
    doc["spec"]["target"]["autoscaling"]["min_replicas"] = -(2**63) - 1
    doc["spec"]["target"]["autoscaling"]["max_replicas"] = 2**64 + 5
    with PolicyEngine(lib.usable, lib.data) as engine:
        out = engine.evaluate(doc, dep.key)
    assert out["MDL-010"][0] == "ok" and out["MDL-010"][1], out["MDL-010"]
    assert out["MDL-009"][0] == "ok" and out["MDL-009"][1], out["MDL-009"]


def test_set_input_keeps_huge_ints_ordered_and_refuses_nul(spec_repo):
    """The input builder passes ints beyond int64 as floats (regopy wraps them) and refuses
    a NUL character (rego-cpp would cut the string there: "vault:a#b\\0x" would be read
    as the valid reference "vault:a#b")."""
    import regopy

    from reconciler.policy.encoding import InputError, set_input

    runner = regopy.Interpreter()
    set_input(runner, {"a": [-(2**63) - 1, 2**64 + 5, 3, True, None, "é"]})
    checks = "input.a[0] < -9e18, input.a[1] > 1e19, input.a[2] == 3, input.a[3] == true"
    checks += ', input.a[4] == null, input.a[5] == "é"'
    assert str(runner.query(f"x := [{checks}]")).count("true") == 1 + 6  # expression + 6
    with pytest.raises(InputError) as info:
        set_input(runner, {"spec": {"secrets": [{"from": "vault:a#b\0rest"}]}})
    assert info.value.path == "spec.secrets.0.from"
    with pytest.raises(InputError):
        set_input(runner, {"when": dt.date(2026, 1, 1)})
    with pytest.raises(InputError) as info:  # rego-cpp would read it as the string x
        set_input(runner, {"spec": {"registry": '"x"'}})
    assert info.value.path == "spec.registry" and "double quotes" in str(info.value)
    set_input(runner, {"spec": {"registry": 'a "quoted" word', "q": '"'}})  # fine

    lib_dir = spec_repo / "policies"
    lib = load_library(lib_dir, lib_dir / "organization.yaml", spec_repo)
    config = load_config(spec_repo)
    dep = load_all(config, ["fraud-detector"], "prod").deployments[0]
    doc = dep.policy_input()
    doc["spec"]["secrets"] = [{"name": "T", "from": "vault:kv/x#token\0plain-value"}]
    with PolicyEngine(lib.usable, lib.data) as engine:
        out = engine.evaluate(doc, dep.key)
    kind, cause = out["MDL-017"]
    assert kind == "error" and "spec.secrets.0.from" in cause and "NUL" in cause


def test_refused_input_is_an_error_at_its_field_in_the_overlay(spec_repo):
    """A value rego-cpp cannot see as written (here wrapped in double quotes, set in the
    prod overlay; validate warns about it) is an error of each policy that reads it,
    placed at the value's line. (A NUL character is refused the same way, but validate
    already rejects a spec that holds one.)"""
    spec = spec_repo / "specs" / "fraud-detector.yaml"
    quoted = "        registry: '\"registry.example.com/ml\"'"
    replace_in_file(
        spec,
        "        autoscaling: {min_replicas: 3}",
        f"        autoscaling: {{min_replicas: 3}}\n{quoted}",
    )
    report = check(spec_repo, "prod")
    errors = [r for r in report.results if r.status == "error"]
    assert errors and {r.policy_id for r in errors} == {"MDL-005"}
    (err,) = errors
    assert err.path == "spec.target.registry" and "double quotes" in err.message
    line = spec.read_text().splitlines().index(quoted)
    assert (err.position.file, err.position.line) == ("specs/fraud-detector.yaml", line + 1)
    assert report.blocking
