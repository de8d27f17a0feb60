"""The warm caches of a full pass (spec load cache, render cache) are reused only while
nothing they were computed from changed: the spec, a file it names, the policies, the
code (engine version)."""

from __future__ import annotations

import shutil

from reconciler.core.config import load_config
from reconciler.engine import render as render_mod
from reconciler.flow.plan import plan
from reconciler.spec import cache as cache_mod
from reconciler.spec import repo as repo_mod
from reconciler.spec.repo import load_files


def _counting(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = repo_mod.spec_diagnostics
    monkeypatch.setattr(
        repo_mod,
        "spec_diagnostics",
        lambda spec, config: calls.append(spec.file) or real(spec, config),
    )
    return calls


def _load(config, path):
    result = load_files(config, [path], ["prod"])
    return [d.to_dict() for d in result.diagnostics], [d.data for d in result.deployments]


def test_the_load_cache_is_reused_until_the_spec_a_file_it_names_or_the_code_changes(
    spec_repo, monkeypatch
):
    config = load_config(spec_repo)
    path = spec_repo / "specs" / "fraud-detector.yaml"
    # unpinned: validate does not load the model in a child process (not what is tested)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(ln for ln in lines if "sha256:" not in ln))
    calls = _counting(monkeypatch)
    first = _load(config, path)
    assert calls == ["specs/fraud-detector.yaml"] and first[0] == [] and len(first[1]) == 1
    assert _load(config, path) == first and len(calls) == 1  # reused: not validated again
    # the spec changes
    path.write_text(path.read_text().replace("min_replicas: 3}", "min_replicas: 4}"))
    edited = _load(config, path)
    assert len(calls) == 2
    assert edited[1][0]["spec"]["target"]["autoscaling"]["min_replicas"] == 4
    # a file it names changes (same spec bytes): the model file is gone
    model = spec_repo / "examples" / "fraud" / "model.joblib"
    saved = spec_repo / "saved.joblib"
    shutil.move(model, saved)
    broken = _load(config, path)
    assert len(calls) == 3 and broken[1] == []
    assert any(d["field"] == "spec.model.uri" and d["severity"] == "error" for d in broken[0])
    shutil.move(saved, model)  # put back: valid again (the error is not kept)
    assert _load(config, path) == edited and len(calls) == 4
    # the code that validates changes (a new modelops version)
    monkeypatch.setattr(cache_mod, "code_digest", lambda: "another version")
    assert _load(config, path) == edited and len(calls) == 5


def test_the_render_cache_misses_when_the_engine_code_changes(spec_repo, monkeypatch):
    config = load_config(spec_repo)
    path = spec_repo / "specs" / "fraud-detector.yaml"
    (dep,) = load_files(config, [path], ["prod"]).deployments
    calls: list[str] = []
    real = render_mod._render_pulumi
    monkeypatch.setattr(render_mod, "_render_pulumi", lambda *a: calls.append(a[0].key) or real(*a))
    render_mod._MEMORY.clear()
    first = render_mod.render(dep, None, config).to_dict()
    assert render_mod.render(dep, None, config).to_dict() == first and len(calls) == 1
    monkeypatch.setattr(render_mod, "_code_digest", lambda module: "another engine version")
    assert render_mod.render(dep, None, config).to_dict() == first and len(calls) == 2


def test_a_warm_plan_sees_a_policy_change(spec_repo):
    config = load_config(spec_repo)
    report = plan(config, "prod", ["fraud-detector"])
    assert not report.blocked, report.to_dict()["policy"]
    assert not plan(config, "prod", ["fraud-detector"]).blocked  # warm
    org = spec_repo / "policies" / "organization.yaml"
    org.write_text(
        org.read_text().replace("min_production_replicas: 2", "min_production_replicas: 5")
    )
    report = plan(config, "prod", ["fraud-detector"])
    assert report.blocked
    assert "prod_min_replicas" in str(report.policy.to_dict())


def test_a_spec_read_back_from_the_load_cache_has_every_position(spec_repo):
    import copy
    import pickle

    from reconciler.spec.model import PackedPositions

    config = load_config(spec_repo)
    path = spec_repo / "specs" / "fraud-detector.yaml"
    loaded = load_files(config, [path], ["prod"])
    spec, dep = loaded.specs[0], loaded.deployments[0]
    assert isinstance(spec.positions, dict) and len(spec.positions) > 50
    back_spec, back_dep = pickle.loads(pickle.dumps((spec, dep)))  # what the cache stores
    assert isinstance(back_spec.positions, PackedPositions)
    assert back_dep.spec is back_spec  # one object, as before
    assert back_spec == spec and back_spec.positions == spec.positions
    assert dict(back_spec.positions.items()) == spec.positions
    for key in (("spec", "target", "platform"), ("spec", "nothing", "here"), ()):
        assert back_spec.locate(key) == spec.locate(key)
    assert copy.deepcopy(back_spec) == spec
    assert pickle.loads(pickle.dumps(back_spec)) == spec  # packed again as it is
    # positions naming another file are kept as they are
    spec.positions[("x",)] = type(spec.positions[()])("elsewhere.yaml", 3, 4)
    assert isinstance(pickle.loads(pickle.dumps(spec)).positions, dict)
    assert pickle.loads(pickle.dumps(spec)) == spec
    # a warm load (read back from the disk cache) gives the same diagnostics and data
    assert _load(config, path) == _load(config, path)
