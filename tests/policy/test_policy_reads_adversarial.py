"""Adversarial cases for answer reuse in ``PolicyEngine.evaluate_many``.

Found by an adversarial review of the analysis in ``reconciler/policy/reads.py``. Each
test builds a small policy set that regopy compiles, runs it on >= 40 inputs with
``evaluate_many`` (reuse on) and checks the answers against ``evaluate`` run on one input
at a time (no reuse). Before the fixes, ``evaluate_many`` gave a different answer in each,
usually an empty ``deny`` set (fail open); the analysis must now give up (whole input) or
name the right path. The tests from the second and third reviews take regopy itself,
evaluating the policy on the full input, as the reference.
"""

from __future__ import annotations

import json

import pytest
import regopy
from support.policy import custom
from support.rego_faults import UNREACHABLE_S, worker_fault

from reconciler.policy.engine import PolicyEngine
from reconciler.policy.reads import input_reads

ROOTS = {"organization"}
DATA = {"organization": {}}
FIRES = [{"msg": "m", "path": ""}]


def run(policies, docs, **kwargs):
    """(evaluate_many answers, one-at-a-time evaluate answers)."""
    items = [(doc, f"d{i}") for i, doc in enumerate(docs)]
    with PolicyEngine(policies, DATA, workers=2, **kwargs) as engine:
        assert not engine.compile_errors, engine.compile_errors
        many = engine.evaluate_many(items)
        one = [engine.evaluate(*item) for item in items]
    return many, one


def regopy_deny(policy, doc):
    """The policy's deny set from plain regopy on the full input (valid JSON only)."""
    interp = regopy.Interpreter()
    interp.add_data(DATA)
    interp.add_module(policy.file, policy.source)
    interp.set_input(doc)
    out = interp.query(f"x := data.{policy.package}.deny")
    return json.loads(str(out))["bindings"]["x"]


def test_ref_head_rule_in_parent_package_adds_to_nested_policy_deny():
    """A v1 ref-head rule (``b.deny contains ... if input.other == 1``) in the module of
    package ``modelops.a`` adds elements to ``data.modelops.a.b.deny``, the deny set of
    another policy. That policy's reads were computed from its own source only
    (``input.spec.x``) and it was standalone, so its answer was reused across inputs
    that differ in ``input.other``. ``_policy_reads`` now treats packages that contain
    one another as shared (whole input, not standalone).
    """
    nested = custom("TST-002", "a.b", 'deny contains {"msg": "b", "path": ""} if input.spec.x == 1')
    parent = custom(
        "TST-001",
        "a",
        'deny contains {"msg": "a", "path": ""} if false\n'
        'b.deny contains {"msg": "injected", "path": ""} if input.other == 1',
    )
    docs = [{"spec": {"x": 0}, "other": i % 2} for i in range(48)]
    many, one = run([parent, nested], docs)
    assert one[1]["TST-002"] == ("ok", [{"msg": "injected", "path": ""}])
    assert [m["TST-002"] for m in many] == [o["TST-002"] for o in one]


def test_escaped_string_key_is_not_the_key_regopy_reads():
    """rego-cpp 1.5 keeps escape sequences of string literals as written: ``"\\u0041"``
    is the 6-character string ``\\u0041`` (``count("\\u0041") == 6``) and
    ``input["\\n"]`` reads the key backslash-n. ``reads._string_value`` decoded the
    literal as JSON (``"A"``, newline), so ``project`` dropped the key the policy really
    reads. A string with a backslash is no longer taken as a literal.
    """
    policy = custom(
        "TST-001", "esc", 'deny contains {"msg": "esc", "path": ""} if input["\\u0041"] == 1'
    )
    assert input_reads(policy.source, ROOTS).whole  # no decoding is trusted
    docs = [{"\\u0041": i % 2} for i in range(48)]
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", [{"msg": "esc", "path": ""}])
    assert many == one


def test_newline_ends_a_reference_before_an_array_literal():
    """In a rule body a newline separates expressions, so ``m := input.spec`` followed
    by a line starting with ``["x"][0] == "x"`` reads all of ``input.spec``. ``_dotted``
    joined the two lines into ``input.spec["x"]`` (path ``("spec", "x")``); a new line now
    ends a reference.
    """
    policy = custom(
        "TST-001",
        "nl",
        'deny contains {"msg": "m", "path": ""} if {\n'
        "\tm := input.spec\n"
        '\t["x"][0] == "x"\n'
        "\tm.secret == 1\n"
        "}",
    )
    assert input_reads(policy.source, ROOTS).paths == (("spec",),)
    docs = [{"spec": {"x": 0, "secret": i % 2}} for i in range(48)]
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", [{"msg": "m", "path": ""}])
    assert many == one


def test_user_function_named_object_get_shadows_the_builtin():
    """A module may define its own ``object.get`` (a ref-head function,
    ``object.get(x, k, d) := x``), and regopy then calls it instead of the built-in. The
    analysis assumed the built-in and recorded only ``("spec",)``; a module that defines
    a rule named ``object``, ``input`` or ``data`` is no longer analysed.
    """
    policy = custom(
        "TST-001",
        "shadow",
        "object.get(x, k, d) := x\n"
        'deny contains {"msg": "m", "path": ""} if {\n'
        '\tobject.get(input, ["spec"], 0).secret == 1\n'
        "}",
    )
    reads = input_reads(policy.source, ROOTS)
    assert reads.whole and not reads.standalone and not reads.cacheable
    docs = [{"spec": {"x": 0}, "secret": i % 2} for i in range(48)]
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", [{"msg": "m", "path": ""}])
    assert many == one


def test_template_string_with_raw_string_hides_a_data_reference():
    """regopy 1.5 accepts a raw string inside a template expression (``$"{`"`}"``).
    The tokenizer reads ``"{`"`` as the string, then a raw string from the second
    backtick to the next backtick in the module, which swallows
    ``data.modelops.h.flag``. The policy was "whole input" but standalone, so the worker
    evaluated it in a bundle of its own module, where ``data.modelops.h.flag`` is
    undefined. A template string now stops the analysis: whole input, not standalone.
    """
    helper = custom(
        "TST-002", "h", 'flag if input.other == 1\ndeny contains {"msg": "h", "path": ""} if false'
    )
    user = custom(
        "TST-001",
        "u",
        'deny contains {"msg": m, "path": ""} if {\n'
        '\tm := $"{`"`}"\n'
        "\tdata.modelops.h.flag\n"
        "\tn := `x`\n"
        '\tn == "x"\n'
        "}",
    )
    s1 = custom("TST-003", "s1", 'deny contains {"msg": "s", "path": ""} if input.spec.x == 1')
    s2 = custom("TST-004", "s2", 'deny contains {"msg": "s", "path": ""} if input.spec.y == 1')
    reads = input_reads(user.source, ROOTS, {"modelops"})
    assert reads.whole and not reads.standalone and not reads.cacheable
    docs = [{"spec": {"x": 0, "y": 0}, "other": 1, "n": i} for i in range(60)]
    many, one = run([helper, user, s1, s2], docs)
    assert all(o["TST-001"] == ("ok", [{"msg": '"', "path": ""}]) for o in one)
    assert [m["TST-001"] for m in many] == [o["TST-001"] for o in one]


def test_nul_in_an_unread_field_gives_the_same_answer_in_small_and_large_runs():
    """``evaluate`` used to send the whole input, so a NUL character in a field no policy
    reads made every policy an error, while ``evaluate_many`` sent only the paths read
    and passed: one spec's outcome depended on the size of the run. Both now send each
    policy the paths it reads; a NUL in a path a policy reads is an error in both."""
    policy = custom("TST-001", "s1", 'deny contains {"msg": "s", "path": ""} if input.spec.x == 1')
    docs = [{"spec": {"x": 0}, "junk": "a\0b" if i == 0 else "ok"} for i in range(40)]
    docs[1]["spec"]["x"] = "a\0b"
    many, one = run([policy], docs, reuse=False)
    assert one[0]["TST-001"] == ("ok", [])
    assert one[1]["TST-001"][0] == "error" and "NUL" in one[1]["TST-001"][1]
    assert many[:2] == one[:2]


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

    def spins(doc) -> bool:
        return isinstance(doc, dict) and (doc.get("spec") or {}).get("x") == 3

    # The spinning evaluations never end (the worker is stopped), so both workers time
    # out whatever the machine's speed; the time-out itself is one no answer can reach.
    with (
        worker_fault("TST-001", "hang", when=spins),
        PolicyEngine([slow], DATA, workers=2, timeout_s=UNREACHABLE_S) as engine,
    ):
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
    ``encoding.set_input`` refuses quote-wrapped keys and values, as NUL characters.
    """
    policy = custom(
        "TST-001", "q", 'deny contains {"msg": "m", "path": ""} if input.spec.secret == 1'
    )
    docs = [{"spec": {'"secret"': i % 2}} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES
    many, one = run([policy], docs)
    assert one[1]["TST-001"] != ("ok", [])  # fires or is an error, never a pass
    assert many[1]["TST-001"] != ("ok", [])


# Third review: raw-string keys are looked up by their JSON text, and a line for
# rego-cpp ends only at \n.


def test_raw_string_key_with_backslash_is_not_the_key_regopy_reads():
    """A raw string keeps its backslashes (`` `a\\nb` `` is the 4 characters a, \\, n, b),
    and ``reads._string_value`` took it as that key. But rego-cpp 1.5 looks an input key
    up by its JSON token: the raw string becomes the properly escaped token
    ``"a\\\\nb"``, while an input string is wrapped in quotes *without* escaping. So
    `` input.spec[`a\\nb`] `` matches the input key of 5 characters ``a\\\\nb`` (two
    backslashes), not the 4-character key the analysis recorded (which it matches only
    for ``"a\\nb"`` double-quoted: escapes are kept as written there). ``project`` kept
    only the 4-character key, dropped the one regopy reads, and the policy never fired
    (fail open). A raw string with a backslash, a double quote or a control character is
    no longer taken as a literal key.
    """
    policy = custom(
        "TST-001", "rawbs", 'deny contains {"msg": "m", "path": ""} if input.spec[`a\\nb`] == 1'
    )
    docs = [{"spec": {"a\\\\nb": i % 2}} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES  # regopy on the full input fires
    assert regopy_deny(policy, docs[0]) == []
    assert input_reads(policy.source, ROOTS).paths == (("spec",),)  # not the raw key
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", FIRES)
    assert many[1]["TST-001"] == ("ok", FIRES)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('`"s"`', '\\"s\\"'),  # the token "\"s\"": backslash, quote, s, backslash, quote
        ("`a\tb`", "a\\tb"),  # a tab (or a new line) in the source: the token "a\tb"
    ],
)
def test_raw_string_key_that_json_escapes_is_not_the_key_regopy_reads(raw, key):
    """Same cause as above with a double quote, and with a tab (no backslash or quote
    in the source at all): rego-cpp turns the raw string into its escaped JSON token and
    matches the input key spelled that way, not the characters the analysis recorded.
    The worker's check for quote-wrapped keys does not apply (the key starts with a
    backslash); ``project`` dropped the key, and the policy passed where regopy fires.
    Only a raw string of characters JSON does not escape is trusted as a key now.
    """
    policy = custom(
        "TST-001", "rawkey", f'deny contains {{"msg": "m", "path": ""}} if input[{raw}] == 1'
    )
    docs = [{key: i % 2} for i in range(40)]
    assert regopy_deny(policy, docs[1]) == FIRES
    assert regopy_deny(policy, docs[0]) == []
    many, one = run([policy], docs)
    assert one[1]["TST-001"] == ("ok", FIRES)
    assert many[1]["TST-001"] == ("ok", FIRES)


def test_package_line_hidden_in_a_comment_defeats_the_overlap_check():
    """``library.parse_policy`` found the package with ``str.splitlines()``, which also
    splits at form feed, vertical tab, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028/U+2029;
    rego-cpp ends a line (and a comment) only at ``\\n``. So the comment line
    ``#<FF>package modelops.a.zz`` was a package line to the library and a comment to
    rego-cpp, whose package is the next line, ``package modelops.a``. ``_policy_reads``
    then saw no overlap with the policy of package ``modelops.a.b``, whose deny set the
    module extends with ``b.deny`` (reading ``input.other``): its answer was reused
    across inputs that differ in ``input.other`` (fail open). Lines are now split at
    ``\\n`` only: inside the METADATA block the hidden line makes the block invalid (a
    policy error), and elsewhere it is a comment, as to rego-cpp.
    """
    import regopy

    from reconciler.policy.library import parse_policy

    head = (
        "# METADATA\n# title: Test policy TST-002\n# custom:\n#   id: TST-002\n"
        "#   severity: high\n#   enforcement: mandatory\n"
    )
    body = (
        'zz.deny contains {"msg": "z", "path": ""} if false\n'
        'b.deny contains {"msg": "injected", "path": ""} if input.other == 1\n'
    )
    in_block = parse_policy(
        head + "#\x0cpackage modelops.a.zz\npackage modelops.a\n\n" + body, "policies/a.rego"
    )
    assert in_block.problems and in_block.package != "modelops.a.zz"  # fails closed
    injector = parse_policy(
        head + "package modelops.a\n#\x0cpackage modelops.a.zz\n\n" + body, "policies/a.rego"
    )
    assert not injector.problems and injector.package == "modelops.a"
    nested = custom("TST-001", "a.b", 'deny contains {"msg": "b", "path": ""} if input.spec.x == 1')
    docs = [{"spec": {"x": 0}, "other": i % 2} for i in range(40)]
    interp = regopy.Interpreter()
    interp.add_data(DATA)
    interp.add_module(nested.file, nested.source)
    interp.add_module(injector.file, injector.source)
    interp.set_input(docs[5])
    # regopy, both modules, full input: the nested policy's deny holds the injection
    assert '"injected"' in str(interp.query("x := data.modelops.a.b.deny"))
    many, one = run([injector, nested], docs)
    assert one[5]["TST-001"] == ("ok", [{"msg": "injected", "path": ""}])
    assert many[5]["TST-001"] == ("ok", [{"msg": "injected", "path": ""}])
