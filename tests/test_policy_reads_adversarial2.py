"""Second adversarial review of ``PolicyEngine`` (answer reuse, input projection, worker).

Each test failed before its fix (a fail-open, or a crash of the caller). The reference
answer is regopy itself evaluating the policy on the FULL input (``regopy.Interpreter``,
``set_input(doc)``, ``x := data.<pkg>.deny``), or, for the time-out case, the engine's
own contract (one outcome mapping per input).
"""

from __future__ import annotations

import json

import regopy

from reconciler.policy.engine import PolicyEngine
from reconciler.policy.library import parse_policy
from reconciler.policy.reads import input_reads

ROOTS = {"organization"}
DATA = {"organization": {}}
FIRES = [{"msg": "m", "path": ""}]


def custom(pid: str, package: str, body: str):
    source = (
        "# METADATA\n"
        f"# title: Test policy {pid}\n"
        "# custom:\n"
        f"#   id: {pid}\n"
        "#   severity: high\n"
        "#   enforcement: mandatory\n"
        f"package modelops.{package}\n\n{body}\n"
    )
    policy = parse_policy(source, f"policies/{package.replace('.', '_')}.rego")
    assert not policy.problems, policy.problems
    return policy


def regopy_deny(policy, doc):
    """The policy's deny set from plain regopy on the full input (valid JSON only)."""
    interp = regopy.Interpreter()
    interp.add_data(DATA)
    interp.add_module(policy.file, policy.source)
    interp.set_input(doc)
    out = interp.query(f"x := data.{policy.package}.deny")
    return json.loads(str(out))["bindings"]["x"]


def run(policies, docs, **kwargs):
    """(evaluate_many answers, one-at-a-time evaluate answers)."""
    items = [(doc, f"d{i}") for i, doc in enumerate(docs)]
    with PolicyEngine(policies, DATA, workers=2, **kwargs) as engine:
        assert not engine.compile_errors, engine.compile_errors
        many = engine.evaluate_many(items)
        one = [engine.evaluate(*item) for item in items]
    return many, one


def test_with_modifier_that_replaces_object_get_reads_the_whole_input():
    """``with object.get as mock`` replaces the built-in for the evaluation of ``secret``
    (regopy 1.5 supports mocking built-ins), and ``mock(x, k, d) := x`` returns the whole
    input, so ``object.get(input, ["spec"], {}).secret`` reads ``input.secret``.
    ``reads.input_reads`` assumed ``object.get`` is always the built-in and recorded only
    ``("spec",)``; ``project`` then dropped ``input.secret`` and the policy never fired
    (fail open). ``with object.get as ...`` (``with`` on input, data or object) now
    stops the analysis: whole input.
    """
    policy = custom(
        "TST-001",
        "mock",
        "mock(x, k, d) := x\n"
        'secret := object.get(input, ["spec"], {}).secret\n'
        'deny contains {"msg": "m", "path": ""} if {\n'
        "\tv := secret with object.get as mock\n"
        "\tv == 1\n"
        "}",
    )
    docs = [{"spec": {"x": 0}, "secret": i % 2} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES  # regopy on the full input fires
    assert regopy_deny(policy, docs[0]) == []
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", FIRES)
    assert many[1]["TST-001"] == ("ok", FIRES)


def test_rule_named_object_after_a_semicolon_shadows_object_get():
    """regopy accepts two rules on one line separated by ``;``
    (``ok := true; object.get(x, k, d) := x``). The check for a rule named ``object``
    only looked at the first token of a line, so the user-defined ``object.get`` was
    missed and the engine never fired (fail open). A statement now also starts after
    ``;``.
    """
    policy = custom(
        "TST-001",
        "semi",
        "ok := true; object.get(x, k, d) := x\n"
        'deny contains {"msg": "m", "path": ""} if {\n'
        '\tobject.get(input, ["spec"], {}).secret == 1\n'
        "}",
    )
    docs = [{"spec": {"x": 0}, "secret": i % 2} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES
    reads = input_reads(policy.source, ROOTS)
    assert reads.whole, reads
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", FIRES)
    assert many[1]["TST-001"] == ("ok", FIRES)


def test_every_worker_timing_out_leaves_inputs_without_an_outcome():
    """When every worker of ``evaluate_many`` times out (or crashes) before the chunks
    are all sent, the loop ``while pending:`` (engine.py, ``evaluate_many``) ended with
    chunks never fed to any worker: their slots stayed ``None`` and callers crashed
    (``check.py`` does ``outcomes[policy.id]``). Here a policy spins only when
    ``input.spec.x == 3`` (inputs 4 and on). Unsent chunks are now evaluated one input
    at a time like failed ones: every input gets a mapping.
    """
    slow = custom(
        "TST-001",
        "slow",
        'deny contains {"msg": "slow", "path": ""} if {\n'
        "\tinput.spec.x == 3\n"
        "\tcount([1 | some a in numbers.range(1, 3000); some b in numbers.range(1, 3000)]) > 0\n"
        "}",
    )
    docs = [{"spec": {"x": 3 if i >= 4 else 0, "n": i}} for i in range(40)]
    items = [(doc, f"d{i}") for i, doc in enumerate(docs)]
    with PolicyEngine([slow], DATA, workers=2, timeout_s=0.5) as engine:
        many = engine.evaluate_many(items)
    missing = [i for i, outcome in enumerate(many) if outcome is None]
    assert missing == []
    assert all(outcome["TST-001"][0] == "error" for outcome in many[4:])


def test_quote_wrapped_input_key_is_read_by_regopy_but_projected_away():
    """rego-cpp treats an input string that starts and ends with a double quote as a
    JSON token: the key ``'"secret"'`` (with the quotes, e.g. from a YAML key written
    ``'"secret"': 1``) *is* the key ``secret`` to Rego (``input.spec.secret == 1`` holds
    on the full input). ``reads.project`` (and ``path_value_key``) looked the key up
    literally, dropped the quoted key, and the engine answered "no violation" (fail
    open). Now a quoted key on a read path sends the whole input, and
    ``worker.set_input`` refuses quote-wrapped keys and values, as NUL characters.
    """
    policy = custom(
        "TST-001", "q", 'deny contains {"msg": "m", "path": ""} if input.spec.secret == 1'
    )
    docs = [{"spec": {'"secret"': i % 2}} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES
    many, one = run([policy], docs)
    assert one[1]["TST-001"] != ("ok", [])  # fires or is an error, never a pass
    assert many[1]["TST-001"] != ("ok", [])
