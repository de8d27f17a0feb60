"""reconciler.spec.paths: repository-relative paths and s3:// URIs, on a real directory tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.runtime.uris import S3Uri, parse_s3_uri
from reconciler.spec.loader import load_spec
from reconciler.spec.paths import (
    S3_UNREACHABLE,
    SpecPathError,
    check_path,
    spec_path,
)
from reconciler.spec.resolve import resolve

WHERE = "specs/x.yaml:12:7: spec.monitoring.reference"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A repository root with data/ref.csv and a file outside it (``outside/secret.csv``)."""
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "ref.csv").write_text("a\n1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n2\n")
    return root, outside


def _fails(root: Path, value, match: str, **options) -> str:
    with pytest.raises(SpecPathError, match=match) as info:
        check_path(value, root, WHERE, **options)
    message = info.value.message
    assert message.startswith(f"{WHERE}: "), message
    assert "; expected " in message, message  # every message says what would be valid
    return message


def test_relative_path_inside_the_repository(tree):
    root, _ = tree
    got = check_path("data/ref.csv", root, WHERE, must_exist=True)
    assert got.local == (root / "data" / "ref.csv").resolve() and got.s3 is None
    assert got.value == "data/ref.csv"
    # '..' that stays inside the root is fine, and so is a path not there yet
    assert check_path("data/../data/ref.csv", root, WHERE).local == got.local
    assert check_path("out/new.csv", root, WHERE).local == (root / "out" / "new.csv").resolve()
    assert check_path("data", root, WHERE, must_exist=True, kind="dir").local.is_dir()


@pytest.mark.parametrize("value", ["../outside/secret.csv", "data/../../outside/secret.csv", ".."])
def test_dot_dot_escape_is_refused(tree, value):
    root, _ = tree
    message = _fails(root, value, r"leaves the repository \(its '\.\.' climbs above the root\)")
    assert repr(value) in message
    assert "expected a path relative to the repository root that stays inside it" in message


def test_absolute_path_is_refused(tree):
    root, outside = tree
    value = str(outside / "secret.csv")
    _fails(root, value, "is an absolute path, which leaves the repository")
    # even one that points into the repository: a spec's paths are repository-relative
    _fails(root, str(root / "data" / "ref.csv"), "is an absolute path")
    # the command line may give absolute paths (allow_absolute)
    got = check_path(value, root, "--input", allow_absolute=True, must_exist=True)
    assert got.local == Path(value).resolve()


def test_symlink_pointing_outside_is_refused(tree):
    root, outside = tree
    os.symlink(outside / "secret.csv", root / "data" / "link.csv")
    os.symlink(outside, root / "elsewhere")
    message = _fails(root, "data/link.csv", r"leaves the repository \(a symbolic link")
    assert str((outside / "secret.csv").resolve()) in message
    _fails(root, "elsewhere/secret.csv", "leaves the repository")
    # a link that stays inside the repository is fine
    os.symlink(root / "data" / "ref.csv", root / "data" / "inside.csv")
    got = check_path("data/inside.csv", root, WHERE, must_exist=True)
    assert got.local == (root / "data" / "ref.csv").resolve()


def test_symlink_loop_is_a_clear_error(tree):
    root, _ = tree
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    _fails(root, "loop-a", "cannot be resolved")


def test_missing_file(tree):
    root, _ = tree
    with pytest.raises(SpecPathError) as info:
        check_path("data/nope.csv", root, WHERE, must_exist=True, what="reference data")
    message = info.value.message
    assert message.startswith(f"{WHERE}: reference data data/nope.csv not found")
    assert message.endswith(f"; expected an existing file, relative to the repository root {root}")
    # what the path resolved to is named when it differs from what was written
    with pytest.raises(SpecPathError, match=r"data/\./nope\.csv not found \(data/nope\.csv does"):
        check_path("data/./nope.csv", root, WHERE, must_exist=True)
    with pytest.raises(SpecPathError, match="is not a file"):
        check_path("data", root, WHERE, must_exist=True)
    with pytest.raises(SpecPathError, match="is not a directory"):
        check_path("data/ref.csv", root, WHERE, must_exist=True, kind="dir")
    # without must_exist a missing path is fine (an output to be written)
    assert check_path("data/nope.csv", root, WHERE).local.name == "nope.csv"


@pytest.mark.parametrize(
    ("value", "bucket", "key"),
    [
        ("s3://my-bucket/capture/fraud", "my-bucket", "capture/fraud"),
        ("s3://my.bucket.eu/", "my.bucket.eu", ""),
        ("s3://abc", "abc", ""),
    ],
)
def test_s3_uri_is_accepted(tree, value, bucket, key):
    root, _ = tree
    got = check_path(value, root, WHERE, s3=True)
    assert got.s3 == S3Uri(bucket, key) and got.local is None
    assert parse_s3_uri(value) == S3Uri(bucket, key)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("s3://", "names no bucket"),
        ("s3:///key", "names no bucket"),
        ("s3://Bucket/key", "not a valid S3 bucket name"),
        ("s3://ab/key", "not a valid S3 bucket name"),
        ("s3://-bucket/key", "not a valid S3 bucket name"),
        ("s3://my..bucket/key", "not a valid S3 bucket name"),
        ("s3://my_bucket/key", "not a valid S3 bucket name"),
        ("s3://192.168.0.1/key", "is an IP address"),
        ("s3://bucket/../../etc", r"has a '\.' or '\.\.' segment"),
        ("s3:/bucket/key", "does not start with s3://"),
        ("S3://bucket/key", "does not start with s3://"),
    ],
)
def test_malformed_s3_uri_is_refused(tree, value, why):
    root, _ = tree
    message = _fails(root, value, why, s3=True)
    assert "is not a valid S3 URI" in message and "s3://<bucket>/<key>" in message


def test_s3_where_not_accepted(tree):
    root, _ = tree
    message = _fails(
        root, "s3://bucket/ref.parquet", "on S3, which needs AWS credentials", s3=S3_UNREACHABLE
    )
    assert "'s3://bucket/ref.parquet'" in message
    _fails(root, "s3://bucket/ref.parquet", "S3 URIs are not supported here")
    # the default "what would be valid" mentions S3 only where S3 is accepted
    assert "s3://" not in _fails(root, "../x", "leaves")
    assert "or an s3://<bucket>/<key>" in _fails(root, "../x", "leaves", s3=True)


@pytest.mark.parametrize("value", [None, "", 3, ["a"]])
def test_not_a_path(tree, value):
    root, _ = tree
    _fails(root, value, "not set" if value in (None, "") else "is not a path")


def test_other_uri_schemes_and_nul(tree):
    root, _ = tree
    _fails(root, "gs://bucket/key", "gs: URIs are not supported here", s3=True)
    _fails(root, "https://example.com/m.joblib", "https: URIs are not supported here")
    _fails(root, "data/a\0b", "NUL character")


def test_error_class_and_valid_text_are_the_callers(tree):
    root, _ = tree

    class CallerError(ModelopsError):
        pass

    with pytest.raises(CallerError, match="; expected a Parquet file$"):
        check_path("../x", root, WHERE, valid="a Parquet file", error=CallerError)


def test_spec_path_names_file_line_column_and_field(tmp_path):
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    spec_file = root / "specs" / "m.yaml"
    spec_file.write_text(
        "apiVersion: modelops/v1alpha1\n"
        "kind: ModelDeployment\n"
        "metadata: {name: m}\n"
        "spec:\n"
        "  model: {framework: sklearn, uri: models/m.joblib}\n"
        "  monitoring:\n"
        "    reference: ../data/ref.parquet\n"
        "  environments:\n"
        "    dev: {}\n"
        "    prod:\n"
        "      monitoring: {reference: data/gone.parquet}\n"
    )
    config = load_config(root)
    spec = load_spec(spec_file, root)
    dev, _ = resolve(spec, "dev", config)
    with pytest.raises(SpecPathError) as info:
        spec_path(dev, config, "spec.monitoring.reference")
    assert info.value.message.startswith(
        "specs/m.yaml:7:5: spec.monitoring.reference: '../data/ref.parquet' leaves the repository"
    )
    # the overlay's value is reported at the overlay's line and column
    prod, _ = resolve(spec, "prod", config)
    with pytest.raises(SpecPathError) as info:
        spec_path(prod, config, "spec.monitoring.reference", must_exist=True)
    assert info.value.message.startswith(
        "specs/m.yaml:11:20: spec.monitoring.reference: file data/gone.parquet not found"
    )
