"""Every path field stays in the repository, symbolic links resolved (issue 16, item 3).

A capture sink given as ``../somewhere``, an absolute path or a symbolic link passed
every check and the served model wrote sensitive inputs there; the reference data,
holdout and batch paths were refused only when used. The real loader and validator on a
copy of the example specs, real symbolic links, and the real capture writer for the
runtime's own check before it writes.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from support.cli import invoke

from reconciler.core.config import load_config
from reconciler.runtime import capture
from reconciler.spec.repo import load_all

FRAUD = "specs/fraud-detector.yaml"


def _edit(root, old: str, new: str) -> int:
    path = root / FRAUD
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def _path_errors(root) -> list:
    return [d for d in load_all(load_config(root)).errors if d.code == "path"]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("sink: .modelops/capture", "sink: ../somewhere", "spec.monitoring.capture.sink"),
        ("sink: .modelops/capture", "sink: /tmp/modelops-capture", "spec.monitoring.capture.sink"),
        (
            "reference: examples/fraud/reference.parquet",
            "reference: examples/../../ref.parquet",
            "spec.monitoring.reference",
        ),
        (
            "holdout: examples/fraud/holdout.parquet",
            "holdout: /etc/passwd",
            "spec.retraining.holdout",
        ),
    ],
)
def test_a_path_that_leaves_the_repository_is_an_error_at_its_line(spec_repo, old, new, field):
    line = _edit(spec_repo, old, new)
    errors = [d for d in _path_errors(spec_repo) if d.field == field]
    assert errors and all(d.position.line == line for d in errors), [str(d) for d in errors]
    assert "leaves the repository" in errors[0].message
    code, out, err = invoke(spec_repo, "validate", str(spec_repo / FRAUD))
    assert code == 1 and f"{FRAUD}:{line}:" in out + err and field in out + err


def test_a_symbolic_link_out_of_the_repository_is_refused(spec_repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, spec_repo / "captures")
    line = _edit(spec_repo, "sink: .modelops/capture", "sink: captures/fraud")
    (error,) = [d for d in _path_errors(spec_repo) if d.field == "spec.monitoring.capture.sink"]
    assert error.position.line == line and "symbolic link" in error.message
    # a loop cannot be resolved: an error too, never a traceback
    os.symlink(spec_repo / "loop", spec_repo / "loop")
    _edit(spec_repo, "reference: examples/fraud/reference.parquet", "reference: loop/x.parquet")
    (loop,) = [d for d in _path_errors(spec_repo) if d.field == "spec.monitoring.reference"]
    assert "cannot be resolved" in loop.message or "leaves" in loop.message


def test_a_link_inside_the_repository_is_fine(spec_repo):
    (spec_repo / "data").mkdir()
    os.symlink(spec_repo / "data", spec_repo / "captures")
    _edit(spec_repo, "sink: .modelops/capture", "sink: captures/fraud")
    assert _path_errors(spec_repo) == []


def test_the_runtime_refuses_a_sink_outside_before_it_writes(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    for sink in ("../outside", str(outside)):
        with pytest.raises(ValueError, match="leaves the repository"):
            capture.resolve_sink(sink, root=repo)
    os.symlink(outside, repo / "cap")
    with pytest.raises(ValueError, match="leaves the repository"):
        capture.resolve_sink("cap", root=repo)
    # a link swapped in after the server started: the writer checks every new file
    sink = repo / "ok"
    (sink / "fraud").mkdir(parents=True)
    os.symlink(outside, sink / "fraud" / "staging")
    writer = capture.CaptureWriter(sink, "fraud", "staging", 1.0, confine=sink)
    writer.submit("r1", "v", 1.0, [[1.0]], [0], timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    writer.close(timeout_s=60)
    assert writer.written == 0 and writer.errors >= 1 and "outside the sink" in writer.last_error
    assert list(outside.rglob("*")) == []


def test_a_spec_file_that_links_out_of_the_repository_is_not_read(spec_repo, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text((spec_repo / FRAUD).read_text().replace("fraud-detector", "planted", 1))
    os.symlink(outside, spec_repo / "specs" / "linked.yaml")
    result = load_all(load_config(spec_repo))
    (error,) = [d for d in result.errors if d.position.file == "specs/linked.yaml"]
    assert "outside the repository" in error.message and str(outside) in error.message
    assert "planted" not in {s.name for s in result.specs}


@pytest.mark.parametrize("key", ["specs", "policies", "organization"])
def test_modelops_yaml_cannot_point_specs_or_policies_out_of_the_repository(
    spec_repo, tmp_path, key
):
    (tmp_path / "elsewhere").mkdir()
    config = spec_repo / "modelops.yaml"
    config.write_text(config.read_text() + f"{key}: ../elsewhere\n")
    code, _, err = invoke(spec_repo, "validate")
    assert code == 2 and "modelops.yaml:" in err and "outside the repository" in err
