"""Policy metadata (OPA METADATA blocks parsed in Python) and library problems."""

from __future__ import annotations

import re

from support.repo import PROJECT

from reconciler.policy.library import load_library, parse_policy

GOOD = """# METADATA
# title: A title
# description: What it checks.
# custom:
#   id: TST-001
#   severity: high
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["PCI-DSS 1.3.1"]
#   remediation: Fix it.
#   waivable: false
package modelops.tst

deny contains {"msg": "x", "path": ""} if false
"""


def test_metadata_is_parsed():
    p = parse_policy(GOOD, "policies/tst.rego")
    assert not p.problems
    assert (p.id, p.title, p.severity, p.enforcement) == ("TST-001", "A title", "high", "mandatory")
    assert p.enforcement_for("dev") == "advisory" and p.enforcement_for("prod") == "mandatory"
    assert p.controls == ["PCI-DSS 1.3.1"] and p.remediation == "Fix it." and not p.waivable
    assert p.package == "modelops.tst" and p.line == 12
    assert p.module().entrypoint == "modelops/tst/deny"
    assert p.security_severity == "8.0"


def test_missing_id_severity_enforcement_are_errors_with_lines():
    text = GOOD.replace("#   id: TST-001\n", "").replace("#   severity: high\n", "")
    text = text.replace("#   enforcement: mandatory\n", "#   enforcement: sometimes\n")
    p = parse_policy(text, "policies/tst.rego")
    messages = " | ".join(d.message for d in p.problems)
    assert "custom.id None is missing" in messages
    assert "custom.severity None is missing or invalid" in messages
    assert "custom.enforcement 'sometimes' is missing or invalid" in messages
    assert all(d.position.file == "policies/tst.rego" and d.position.line == 1 for d in p.problems)


def test_no_metadata_block_or_package():
    p = parse_policy("package modelops.x\ndeny contains 1 if true\n", "x.rego")
    assert "no `# METADATA` block" in p.problems[0].message
    p = parse_policy("deny contains 1 if true\n", "x.rego")
    assert "no `package` line" in p.problems[0].message


def test_duplicated_id_rego_tests_and_missing_org_file(tmp_path):
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "a.rego").write_text(GOOD)
    (pol / "b.rego").write_text(GOOD.replace("modelops.tst", "modelops.other"))
    (pol / "a_test.rego").write_text("package x\ntest_a if { true with input as {} }\n")
    lib = load_library(pol, pol / "organization.yaml", tmp_path)
    messages = [str(d) for d in lib.diagnostics]
    assert any("policies/b.rego:12:1: duplicated policy id TST-001" in m for m in messages)
    assert any("policies/a.rego" in m and "duplicated policy id TST-001" in m for m in messages)
    assert any("a_test.rego" in m and "YAML fixture case" in m for m in messages)
    assert any("organisation settings file not found" in m for m in messages)
    assert lib.usable == []


def test_empty_library_is_an_error(tmp_path):
    lib = load_library(tmp_path / "none", None, tmp_path)
    assert any("no policies" in d.message for d in lib.diagnostics)


def test_shipped_library_is_complete_and_portable():
    pol = PROJECT / "policies"
    lib = load_library(pol, pol / "organization.yaml", PROJECT)
    assert not lib.diagnostics, [str(d) for d in lib.diagnostics]
    assert len(lib.usable) >= 20
    assert len({p.id for p in lib.usable}) == len(lib.usable)
    for p in lib.usable:
        assert p.controls and p.remediation and p.description, p.id
        # portable OPA v1 Rego: only input and data.organization, no `with`, no v0 bodies
        code = [
            re.sub(r'"(\\.|[^"\\])*"|`[^`]*`', '""', ln)  # drop string literals
            for ln in p.source.splitlines()
            if not ln.lstrip().startswith("#")
        ]
        assert not any(" with " in ln for ln in code), p.id
        assert "deny contains" in p.source, p.id
        refs = [m for ln in code for m in re.findall(r"(?<![\w.])data\.\w+", ln)]
        assert set(refs) <= {"data.organization"}, (p.id, refs)


def test_metadata_goes_through_the_one_yaml_reader():
    # a second `enforcement` would silently turn the mandatory policy advisory
    dup = GOOD.replace(
        "#   enforcement: mandatory\n", "#   enforcement: mandatory\n#   enforcement: advisory\n"
    )
    p = parse_policy(dup, "policies/tst.rego")
    assert len(p.problems) == 1 and not p.id
    diag = p.problems[0]
    assert "duplicate key 'enforcement'" in diag.message
    assert (diag.position.line, diag.position.col) == (8, 5)  # the second key, in the .rego file
    assert "first defined at line 7" in diag.message
    bomb = ["# METADATA", "# title: t", '# a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        bomb.append(f"# {cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    p = parse_policy("\n".join([*bomb, "package modelops.tst", ""]), "policies/tst.rego")
    assert "expands to more than" in p.problems[0].message
    # a merge key with an explicit override is valid YAML, not a duplicate
    merged = GOOD.replace(
        "# custom:\n", "# base: &b {severity: low, id: TST-009}\n# custom:\n#   <<: *b\n"
    )
    p = parse_policy(merged, "policies/tst.rego")
    assert not p.problems and (p.id, p.severity) == ("TST-001", "high")
