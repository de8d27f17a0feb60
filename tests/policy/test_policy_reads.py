"""What a policy reads of ``input``, and reusing its answers: never a different answer.

The analysis (``reconciler.policy.reads``) is checked on Rego text; the reuse in
``PolicyEngine.evaluate_many`` is checked against evaluating every policy on every input,
with the real shipped library and real regopy workers, on specs hypothesis varies at
paths that policies read and at paths that they do not.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.policy import custom
from support.repo import PROJECT

from reconciler.core.config import load_config
from reconciler.policy.engine import PolicyEngine
from reconciler.policy.library import load_library
from reconciler.policy.reads import input_reads, minimal, path_value_key, project
from reconciler.spec.loader import load_spec
from reconciler.spec.resolve import resolve

ROOTS = {"organization"}


def reads(body: str):
    return input_reads(f"package modelops.t\n\n{body}\n", ROOTS)


# --- the analysis ------------------------------------------------------------------------


def test_static_paths_are_found_in_every_form():
    r = reads(
        "a := input.spec.target.platform\n"
        'b := object.get(input, ["spec", "exposure", "public"], false)\n'
        'c := object.get(input, "environment", null)\n'
        'd := input["metadata"]["team"]\n'
        'e := object.get(input, ["spec", "target", "resources", kind, "gpu"], 0)\n'
        "f := input.spec.secrets[i].from\n"
        "g := data.organization.allowed_registries\n"
        "import input.spec.model as model\n"
    )
    assert r.paths == (
        ("environment",),
        ("metadata", "team"),
        ("spec", "exposure", "public"),
        ("spec", "model"),
        ("spec", "secrets"),
        ("spec", "target", "platform"),
        ("spec", "target", "resources"),
    )
    assert r.cacheable and not r.whole


@pytest.mark.parametrize(
    "body",
    [
        "x := input",  # bound to a variable
        "x := walk(input)",  # passed to a function
        "x := count(input)",
        "x := input[k]",  # a non-literal key
        "x := object.get(input, keys, null)",  # keys from a variable
        'x := object.get(input, [k | some k in ["spec"]], null)',  # a comprehension
        'x := object.get(input, ["spec"][0], null)',  # indexing a literal
        "x := data.modelops.other.deny",  # another policy's rules read input too
        'x := data["modelops"]["other"].deny',
        "x := data[k]",
        "x := data",
        "x := data.unknown_root",
        "import data.modelops.other",
        'x := $"name {input.metadata.name}"',  # template strings hold expressions
        "every k, v in input { v != 1 }",
        'x := input["\\u0041"]',  # regopy keeps escapes as written: no trusted key
        "input := {}\nx := input.a",  # a rule named input shadows it (regopy allows it)
        'default object := {}\nx := object.get(input, ["a"], 0)',
        'object.get(x, k, d) := x\ny := object.get(input, ["a"], 0)',
    ],
)
def test_references_that_cannot_be_bounded_read_the_whole_input(body):
    r = reads(body)
    assert r.whole, (body, r)
    assert r.reason


def test_a_module_that_names_other_modules_does_not_stand_alone():
    """It must be evaluated in the bundle of every module (the rules it names are there)."""
    assert not reads("x := data.modelops.other.flagged").standalone
    assert not reads("import data.modelops.lib").standalone
    assert reads("x := walk(input)").standalone  # whole input, but no other module
    assert reads("x := data.organization.allowed_registries").standalone


def test_comments_strings_and_member_names_are_not_references():
    r = reads(
        "# input is read below, data.modelops.x too\n"
        'msg := "input.x, data.modelops.y and walk(input)"\n'
        "raw := `input`\n"
        'x := object.get(input, ["spec"], {}).input\n'
    )
    assert r.paths == (("spec",),)


def test_non_deterministic_builtins_are_never_cached():
    for call in ("time.now_ns()", 'rand.intn("a", 5)', "http.send({})", 'uuid.rfc4122("a")'):
        r = reads(f"x := {call}\ny := input.spec")
        assert not r.cacheable and call.split("(")[0] in r.reason


def test_every_shipped_policy_reads_only_bounded_paths():
    """If a policy change makes one read the whole input, reuse silently stops for it;
    this test makes that a visible decision."""
    pol = PROJECT / "policies"
    lib = load_library(pol, pol / "organization.yaml", PROJECT)
    engine_reads = {p.id: input_reads(p.source, set(lib.data)) for p in lib.usable}
    assert len(engine_reads) >= 20
    for pid, r in engine_reads.items():
        assert not r.whole and r.cacheable, (pid, r)
    assert engine_reads["MDL-001"].paths == (
        ("spec", "data", "classification"),
        ("spec", "exposure", "public"),
    )


def test_minimal_drops_paths_under_another():
    assert minimal([("a", "b"), ("a",), ("c", "d"), ("c", "d")]) == (("a",), ("c", "d"))
    assert minimal([("a",), ()]) == ((),)


# --- keys and projections ----------------------------------------------------------------


def test_keys_tell_types_and_absence_apart():
    values = [1, 1.0, True, "1", None, [1], {"x": 1}]
    keys = {path_value_key({"a": {"b": v}}, ("a", "b")) for v in values}
    assert len(keys) == len(values)
    assert path_value_key({"a": {}}, ("a", "b")) != path_value_key({}, ("a", "b"))
    assert path_value_key({"a": {}}, ("a", "b")) != path_value_key({"a": {"b": None}}, ("a", "b"))
    # the walk stops at a non-object: its value (and depth) is the key
    assert path_value_key({"a": "text"}, ("a", "b")) != path_value_key({"a": "other"}, ("a", "b"))


def test_project_keeps_only_the_paths_and_shares_the_leaves():
    leaf = {"min_replicas": 1}
    doc = {
        "environment": "prod",
        "metadata": {"name": "x", "team": "t"},
        "spec": {"target": {"autoscaling": leaf, "image": "i"}, "exposure": "oops"},
    }
    paths = minimal(
        [("environment",), ("spec", "target", "autoscaling"), ("spec", "exposure", "public")]
    )
    out = project(doc, paths)
    assert out == {
        "environment": "prod",
        "spec": {"target": {"autoscaling": leaf}, "exposure": "oops"},
    }
    assert out["spec"]["target"]["autoscaling"] is leaf
    assert project(doc, ((),)) is doc
    assert project(doc, (("missing", "x"),)) == {}


# '"a"' is the key a to rego-cpp (it reads a quote-wrapped string as a JSON token)
keys = st.sampled_from(["a", "b", "c", '"a"'])
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.text(max_size=2)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)
some_paths = st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map(tuple))


# deadline=None and no too_slow health check: a loaded machine must not fail a test
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.dictionaries(keys, json_like), b=json_like, paths=some_paths)
def test_equal_keys_mean_equal_projections(a, b, paths):
    """What decides reuse (the keys) and what the worker sees (the projection) agree:
    two documents with the same keys on a path set project to the same document, and
    a projection has the same keys as the document it came from."""
    b = b if isinstance(b, dict) else {"a": b}
    paths = minimal(paths)
    for doc in (a, b):
        cut = project(doc, paths)
        assert [path_value_key(cut, p) for p in paths] == [path_value_key(doc, p) for p in paths]
    if [path_value_key(a, p) for p in paths] == [path_value_key(b, p) for p in paths]:
        assert project(a, paths) == project(b, paths)


# --- the engine: reuse never changes an answer -------------------------------------------


@pytest.fixture(scope="module")
def library():
    pol = PROJECT / "policies"
    return load_library(pol, pol / "organization.yaml", PROJECT)


@pytest.fixture(scope="module")
def engines(library):
    with (
        PolicyEngine(library.usable, library.data, workers=2) as reusing,
        PolicyEngine(library.usable, library.data, workers=2, reuse=False) as plain,
    ):
        yield reusing, plain


@pytest.fixture(scope="module")
def prod_doc():
    spec = load_spec(PROJECT / "specs" / "fraud-detector.yaml", PROJECT)
    dep, _ = resolve(spec, "prod", load_config(PROJECT))
    return dep.policy_input()


# Paths policies read (a change there must be seen) and paths none reads (reuse applies).
VARIED = [
    ("spec", "exposure", "public"),
    ("spec", "target", "autoscaling", "min_replicas"),
    ("spec", "target", "platform"),
    ("spec", "target", "security_context", "run_as_non_root"),
    ("spec", "monitoring", "capture", "retention_days"),
    ("spec", "data", "classification"),
    ("spec", "secrets"),
    ("environment",),
    ("metadata", "team"),
    ("spec", "serving", "workers"),  # no policy reads this
    ("spec", "model", "framework"),
]
values = st.one_of(
    st.sampled_from([True, False, 0, 1, 2, "1", "yes", None, "kubernetes", "local", "pii"]),
    st.sampled_from(["dev", "prod", "sagemaker", [{"name": "K", "from": "plain"}], 30, 3]),
)


def put(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    edits=st.lists(
        st.lists(st.tuples(st.sampled_from(VARIED), values), max_size=3),
        min_size=40,
        max_size=60,
    )
)
def test_reused_answers_equal_evaluating_everything(engines, prod_doc, edits):
    reusing, plain = engines
    docs = []
    for i, changes in enumerate(edits):
        doc = prod_doc
        for path, value in changes:
            doc = put(doc, path, value)
        docs.append((doc, f"d{i}"))
    before = dict(reusing.stats)
    got = reusing.evaluate_many(docs)
    want = plain.evaluate_many(docs)
    assert got == want
    assert reusing.stats["reused"] > before["reused"]  # inputs repeat: reuse happened
    assert plain.stats["reused"] == 0


def test_whole_input_and_cross_package_policies_see_every_difference():
    """A policy that walks the whole input, and one that reads another policy's rule
    (which reads a path the first does not name), must see a change anywhere."""
    walker = custom(
        "TST-001",
        "walker",
        'deny contains {"msg": "forbidden value", "path": ""} if {\n'
        '\twalk(input, [_, value])\n\tvalue == "forbidden"\n}',
    )
    helper = custom(
        "TST-002",
        "helper",
        "flagged if input.spec.serving.workers == 7\n"
        'deny contains {"msg": "x", "path": ""} if false',
    )
    user = custom(
        "TST-003",
        "user",
        'deny contains {"msg": "flagged by helper", "path": ""} if data.modelops.helper.flagged',
    )
    static = custom(
        "TST-004",
        "static",
        'deny contains {"msg": "public", "path": "spec.exposure.public"} if {\n'
        "\tinput.spec.exposure.public == true\n}",
    )
    docs = []
    for i in range(48):
        doc = {"spec": {"serving": {"workers": 7 if i % 4 == 1 else 2}, "exposure": {}}}
        if i % 4 == 2:
            doc["spec"]["model"] = {"notes": ["forbidden"]}
        docs.append((doc, f"d{i}"))
    with PolicyEngine([walker, helper, user, static], {"organization": {}}, workers=2) as eng:
        assert eng.reads["TST-001"].whole and eng.reads["TST-003"].whole
        assert not eng.reads["TST-004"].whole
        got = eng.evaluate_many(docs)
        stats = dict(eng.stats)
    for i, outcome in enumerate(got):
        assert bool(outcome["TST-001"][1]) == (i % 4 == 2), i
        assert bool(outcome["TST-003"][1]) == (i % 4 == 1), i
        assert outcome["TST-004"] == ("ok", [])
    assert stats["reused"] > 0  # TST-002 and TST-004 were reused, the others never
    assert stats["evaluated"] >= 2 * len(docs)
