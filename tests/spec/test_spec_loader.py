"""The YAML loader: positions, duplicate keys, encodings, non-mapping documents."""

from __future__ import annotations

import pytest
import yaml
from support.yaml12 import read_yaml12

from reconciler.core.yaml import YamlLoadError, dump_yaml, load_yaml
from reconciler.spec.loader import load_spec


def test_positions_point_at_keys_and_items():
    text = b"a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\n"
    value, pos = load_yaml(text, "f.yaml")
    assert value == {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 2}]}}
    assert (pos[("b", "c")].line, pos[("b", "c")].col) == (3, 3)
    assert (pos[("b", "c", 1)].line, pos[("b", "c", 1)].col) == (3, 10)
    assert pos[("b", "d", 0, "e")].line == 5


@pytest.mark.parametrize(
    ("raw", "line", "needle"),
    [
        (b"a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first defined at line 1)"),
        (b"", 1, "file is empty"),
        (b"# only a comment\n", 1, "file is empty"),
        (b"a: [1, 2\nb: 3\n", 2, "YAML syntax error"),
        (b"a: 1\n\xff\xfeb: 2\n", 2, "not valid UTF-8"),
        (b"yes: 1\n", 1, "read as a bool"),
        (b"a: 1\n---\nb: 2\n", 2, "YAML syntax error"),
        (b"a:\n  expires: 2027-02-30\n", 2, "cannot be read as timestamp"),
        # a tab is named, at its column, with what to write instead
        (b"a:\n\tb: 1\n", 2, "YAML forbids tabs for indentation; use spaces"),
        (b"a:\n  b: 1\n  \tc: 2\n", 3, "a tab character in the indentation"),
        (b"a:\n  - 1\n  -\t2\n", 3, "YAML forbids tabs for indentation"),
    ],
)
def test_bad_yaml_gives_one_positioned_diagnostic(raw, line, needle):
    with pytest.raises(YamlLoadError) as info:
        load_yaml(raw, "bad.yaml")
    diag = info.value.diagnostic
    assert diag.position.file == "bad.yaml"
    assert diag.position.line == line
    assert needle in diag.message
    assert str(diag).startswith(f"bad.yaml:{line}:")
    if b"\t" in raw:
        column = raw.splitlines()[line - 1].index(b"\t") + 1
        assert str(diag).startswith(f"bad.yaml:{line}:{column}: a tab character")


def test_duplicate_keys_nested_and_merge_keys(tmp_path):
    with pytest.raises(YamlLoadError, match="duplicate key 'x'"):
        load_yaml(b"a:\n  x: 1\n  x: 2\n", "f.yaml")
    value, _ = load_yaml(b"base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert value["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # an explicit key overrides a merged one, before or after the '<<' (YAML merge spec)
        (b"b: &b {x: 1, y: 3}\nc:\n  <<: *b\n  x: 2\n", {"x": 2, "y": 3}),
        (b"b: &b {x: 1, y: 3}\nc:\n  x: 2\n  <<: *b\n", {"x": 2, "y": 3}),
        # in a merge list the earlier mapping wins
        (b"b: &b {x: 1}\nd: &d {x: 5, z: 6}\nc:\n  <<: [*b, *d]\n", {"x": 1, "z": 6}),
    ],
)
def test_merge_key_override_is_not_a_duplicate(raw, expected):
    value, _ = load_yaml(raw, "f.yaml")
    assert value["c"] == expected


def test_duplicate_after_a_merge_is_still_a_duplicate():
    with pytest.raises(YamlLoadError, match="duplicate key 'x'"):
        load_yaml(b"b: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n  x: 3\n", "f.yaml")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0755", "493 under YAML 1.1 (PyYAML) but 755 under YAML 1.2"),
        ("08", "'08' under YAML 1.1"),
        ("1:30", "90 under YAML 1.1"),
        ("-1:30:00", "-5400 under YAML 1.1"),
        ("1_000", "1000 under YAML 1.1"),
        ("0b101", "5 under YAML 1.1"),
        ("0o17", "15 under YAML 1.2"),
        ("7e3", "7000.0 under YAML 1.2"),
        ("1.5E3", "1500.0 under YAML 1.2"),
        ("no", "False under YAML 1.1"),
        ("On", "True under YAML 1.1"),
    ],
)
def test_yaml_11_and_12_disagreements_are_refused_with_the_way_to_write_them(text, needle):
    with pytest.raises(YamlLoadError) as info:
        load_yaml(f"a:\n  port: {text}\n", "f.yaml")
    diag = info.value.diagnostic
    assert (diag.position.line, diag.position.col, diag.field) == (2, 9, "a.port")
    assert needle in diag.message
    assert f'"{text}" (quoted)' in diag.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'0755'", "0755"),
        ("!!str 0755", "0755"),
        ("493", 493),
        ("0x1f", 31),
        ("-12", -12),
        ("1.5", 1.5),
        ("1.0e+3", 1000.0),
        ("true", True),
        ("~", None),
        ('"no"', "no"),
    ],
)
def test_values_both_yaml_versions_agree_on_are_read(text, value):
    assert load_yaml(f"a: {text}\n", "f.yaml")[0] == {"a": value}


@pytest.mark.parametrize(("raw", "kind"), [(b"- a\n- b\n", "a list"), (b"just text\n", "a str")])
def test_document_must_be_a_mapping(tmp_path, raw, kind):
    path = tmp_path / "s.yaml"
    path.write_bytes(raw)
    with pytest.raises(YamlLoadError, match=f"document is {kind}; expected a ModelDeployment"):
        load_spec(path, tmp_path)


def test_load_spec_records_digest_and_relative_file(tmp_path):
    path = tmp_path / "specs" / "s.yaml"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")  # a UTF-8 BOM is accepted
    spec = load_spec(path, tmp_path)
    assert spec.file == "specs/s.yaml"
    assert spec.data == {"a": 1}
    assert len(spec.digest) == 64


def test_unreadable_file(tmp_path):
    with pytest.raises(YamlLoadError, match="cannot read file"):
        load_spec(tmp_path / "missing.yaml", tmp_path)


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    with pytest.raises(YamlLoadError, match="expands to more than 100,000 nodes through YAML"):
        load_yaml("\n".join(lines).encode(), "bomb.yaml")


def test_a_document_too_large_without_aliases_is_not_blamed_on_aliases():
    raw = "labels:\n" + "".join(f"  k{i}: v\n" for i in range(60_000))
    with pytest.raises(YamlLoadError) as caught:
        load_yaml(raw.encode(), "big.yaml")
    message = str(caught.value)
    assert "has more than 100,000 nodes" in message and "alias" not in message


@pytest.mark.parametrize(
    "value",
    ["7e3", "0x1f", ".inf", "-.Inf", ".NaN", "no", "On", "0755", "1:30", "1_000", "0o17", "08"]
    + ["1.5E3", "true", "null", "~", "", "12", "ok", "x: y", "- a", "ü"],
)
def test_dump_yaml_quotes_what_any_yaml_version_reads_as_a_non_string(value):
    text = dump_yaml({"a": value})
    assert read_yaml12(text) == {"a": value}  # kubectl / Argo CD (YAML 1.2)
    assert yaml.safe_load(text) == {"a": value}  # PyYAML (YAML 1.1)
    assert load_yaml(text, "f.yaml")[0] == {"a": value}  # and the one reader
