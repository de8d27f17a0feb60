"""The build stage: real Bento builds in a temp state directory.

Covers the build cache (reuse vs rebuild on a changed model, batching, template or
framework version), reproducible contents, garbage collection (ledger-protected), and
the two bad inputs of issue 6: a model that cannot be loaded and a digest mismatch, each
failing with the file named. Also ``modelops build`` end to end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import pytest
import yaml
from support.cli import invoke

from reconciler.build import bento as bento_mod
from reconciler.build.artifact import BuildError
from reconciler.build.bento import build, build_digest, build_inputs
from reconciler.build.store import bentoml_env, contents_digest, gc_bentos
from reconciler.core.config import load_config
from reconciler.core.digests import file_sha256
from reconciler.runtime import frameworks
from reconciler.spec.repo import load_all

pytestmark = pytest.mark.slow


def deployment(root: Path, name: str = "fraud-detector", env: str = "staging"):
    config = load_config(root)
    loaded = load_all(config, [name], env)
    assert not loaded.errors, [str(d) for d in loaded.errors]
    return loaded.deployments[0], config


def edit_spec(root: Path, name: str, fn) -> None:
    path = root / "specs" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_build_then_reuse_and_same_contents_on_rebuild(spec_repo):
    dep, config = deployment(spec_repo)
    first = build(dep, config, revision="r1")
    assert not first.reused
    assert first.bento_tag == f"fraud-detector:{first.digest[:16]}"
    assert first.image == f"registry.example.com/ml/fraud-detector:{first.digest[:16]}"
    assert not first.image_built
    assert (config.state_dir / "bentoml" / "bentos" / "fraud-detector").is_dir()
    src = Path(first.bento_path) / "src"
    cfg = json.loads((src / "modelops.json").read_text())
    assert cfg["batching"] == {"enabled": True, "max_batch_size": 64, "max_latency_ms": 20}
    assert cfg["model_sha256"] == dep.get("spec.model.sha256")
    assert cfg["workers"] == 2 and cfg["access_log"] is False  # spec.serving of the example
    before = contents_digest(first.bento_path)

    again = build(dep, config, revision="r2")
    assert again.reused and again.bento_tag == first.bento_tag

    with bentoml_env(config) as bentoml:
        bentoml.bentos.delete(first.bento_tag)
    rebuilt = build(dep, config, revision="r1")
    assert not rebuilt.reused and rebuilt.bento_tag == first.bento_tag
    assert contents_digest(rebuilt.bento_path) == before


def test_changed_batching_or_model_gives_a_new_bento(spec_repo):
    dep, config = deployment(spec_repo)
    base = build(dep, config)

    edit_spec(
        spec_repo,
        "fraud-detector",
        lambda d: d["spec"]["serving"]["batching"].update(max_batch_size=16),
    )
    dep2, _ = deployment(spec_repo)
    batched = build(dep2, config)
    assert batched.bento_tag != base.bento_tag and not batched.reused

    model_path = spec_repo / "examples/fraud/model.joblib"
    model = joblib.load(model_path)
    model.set_params(logisticregression__C=0.5)
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    model.fit(x, y)
    joblib.dump(model, model_path)
    new_sha = file_sha256(model_path)
    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["model"].update(sha256=new_sha))
    dep3, _ = deployment(spec_repo)
    retrained = build(dep3, config)
    assert retrained.model_sha256 == new_sha
    assert retrained.bento_tag not in (base.bento_tag, batched.bento_tag)


def test_slo_and_smoke_do_not_change_the_digest_template_and_framework_do(spec_repo, monkeypatch):
    dep, config = deployment(spec_repo)
    digest = build_digest(build_inputs(dep, config))
    edit_spec(
        spec_repo,
        "fraud-detector",
        lambda d: d["spec"]["serving"]["slo"].update(p99_latency_ms=150),
    )
    dep2, _ = deployment(spec_repo)
    assert build_digest(build_inputs(dep2, config)) == digest

    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["serving"].update(access_log=True))
    dep_logged, _ = deployment(spec_repo)
    assert build_digest(build_inputs(dep_logged, config)) != digest  # the Bento's config

    template = spec_repo / "service_template.py"
    template.write_text(bento_mod.RUNTIME_FILES["service.py"].read_text() + "\n# changed\n")
    monkeypatch.setitem(bento_mod.RUNTIME_FILES, "service.py", template)
    assert build_digest(build_inputs(dep, config)) != digest
    monkeypatch.undo()

    real = frameworks.distribution
    monkeypatch.setattr(
        frameworks, "distribution", lambda fw: (real(fw)[0], real(fw)[1] + ".post1")
    )
    assert build_digest(build_inputs(dep, config)) != digest


def test_digest_mismatch_fails_naming_the_file(spec_repo):
    dep, config = deployment(spec_repo)
    dep.data["spec"]["model"]["sha256"] = "0" * 64
    with pytest.raises(BuildError) as err:
        build(dep, config)
    msg = err.value.message
    assert "examples/fraud/model.joblib" in msg and "sha256" in msg and "0" * 64 in msg
    assert "specs/fraud-detector.yaml" in msg


def test_model_that_cannot_be_loaded_fails_naming_the_file(spec_repo):
    (spec_repo / "examples/fraud/model.joblib").write_bytes(b"not a pickle at all")
    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["model"].pop("sha256"))
    dep, config = deployment(spec_repo)
    with pytest.raises(BuildError) as err:
        build(dep, config)
    assert "examples/fraud/model.joblib" in err.value.message
    assert "cannot be loaded as a sklearn model" in err.value.message
    with bentoml_env(config) as bentoml:
        assert bentoml.bentos.list() == []


def test_model_that_does_not_fit_the_signature_fails(spec_repo):
    dep, config = deployment(spec_repo)
    dep.data["spec"]["model"]["signature"]["inputs"]["shape"] = [-1, 7]
    dep.data["spec"]["model"]["signature"]["inputs"].pop("names")
    with pytest.raises(BuildError) as err:
        build(dep, config)
    assert "examples/fraud/model.joblib" in err.value.message
    assert "[-1, 7]" in err.value.message


def test_gc_keeps_newest_and_ledger_records(spec_repo):
    from reconciler.state.ledger import Ledger, LedgerRecord

    tags = []
    for size in (8, 16, 32):
        edit_spec(
            spec_repo,
            "fraud-detector",
            lambda d, size=size: d["spec"]["serving"]["batching"].update(max_batch_size=size),
        )
        dep, config = deployment(spec_repo)
        tags.append(build(dep, config).bento_tag)
    ledger = Ledger(config.state_dir)
    ledger.put(
        LedgerRecord(name="fraud-detector", environment="staging", artifact={"bento_tag": tags[0]})
    )
    removed = gc_bentos(config, keep=1, protect=ledger.bento_tags())
    assert removed == [tags[1]]
    with bentoml_env(config) as bentoml:
        left = sorted(str(b.tag) for b in bentoml.bentos.list())
    assert left == sorted([tags[0], tags[2]])
    assert gc_bentos(config, keep=1, protect=ledger.bento_tags()) == []
    with pytest.raises(BuildError):
        gc_bentos(config, keep=-1, protect=())

    prod, _ = deployment(spec_repo, env="prod")
    prod_tag = build(prod, config).bento_tag  # same name, other environment: its own group
    assert gc_bentos(config, keep=1, protect=ledger.bento_tags()) == []
    in_use = [*ledger.bento_tags(), prod_tag]
    assert gc_bentos(config, keep=0, protect=in_use) == [tags[2]]  # tags[0]: ledger


def test_modelops_build_command(spec_repo, monkeypatch):
    monkeypatch.chdir(spec_repo)  # no --root: the repository is found from the cwd
    result = invoke(None, "build", "--env", "staging", "--format", "json")
    assert result.returncode == 0, result.output
    report = json.loads(result.stdout)
    statuses = {b["deployment"]: b["status"] for b in report["builds"]}
    assert statuses == {"diabetes-progression-staging": "built", "fraud-detector-staging": "built"}
    again = invoke(None, "build", "--env", "staging", "--format", "json")
    assert {b["status"] for b in json.loads(again.stdout)["builds"]} == {"reused"}

    (spec_repo / "examples/diabetes/model.joblib").write_bytes(b"garbage")
    bad = invoke(None, "build", "fraud-detector", "--env", "staging")
    assert bad.returncode == 0, bad.output  # only the named target is built
    text = invoke(None, "build", "diabetes-progression", "--env", "staging", "--image")
    assert text.returncode == 1  # validation catches the digest mismatch before any build
    assert "examples/diabetes/model.joblib" in text.output

    edit_spec(spec_repo, "diabetes-progression", lambda d: d["spec"]["model"].pop("sha256"))
    failed = invoke(None, "build", "--env", "staging")
    assert failed.returncode == 2, failed.output  # the build failed; the other one still ran
    assert "diabetes-progression-staging: failed" in failed.output
    assert "examples/diabetes/model.joblib: cannot be loaded as a sklearn model" in failed.output
    assert "fraud-detector-staging: reused" in failed.output


def test_containerize_without_docker_reports_why(spec_repo, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    dep, config = deployment(spec_repo)
    art = build(dep, config, image=True)
    assert not art.image_built
    assert "image not built" in art.image_note and "docker" in art.image_note


def test_reuse_restores_a_model_removed_or_altered_in_the_store(spec_repo):
    dep, config = deployment(spec_repo)
    first = build(dep, config)
    with bentoml_env(config) as bentoml:
        stored = Path(bentoml.models.get(first.model_tag).path_of("model.joblib"))
        stored.write_bytes(b"tampered")
    again = build(dep, config)
    assert again.reused
    with bentoml_env(config) as bentoml:
        stored = Path(bentoml.models.get(first.model_tag).path_of("model.joblib"))
        assert file_sha256(stored) == first.model_sha256
        bentoml.models.delete(first.model_tag)
    build(dep, config)
    with bentoml_env(config) as bentoml:
        assert bentoml.models.get(first.model_tag) is not None


def test_signature_width_is_taken_from_the_model_when_the_spec_has_none(spec_repo):
    dep, config = deployment(spec_repo)
    dep.data["spec"]["model"].pop("signature")
    art = build(dep, config)
    cfg = json.loads((Path(art.bento_path) / "src" / "modelops.json").read_text())
    assert cfg["signature"]["inputs"]["shape"] == [-1, 30]
    assert cfg["signature"]["inputs"]["dtype"] == "float32"


def test_model_from_the_bentoml_store_by_tag(spec_repo):
    import joblib as jl

    dep, config = deployment(spec_repo)
    model = jl.load(spec_repo / "examples/fraud/model.joblib")
    with bentoml_env(config) as bentoml:
        saved = bentoml.sklearn.save_model("fraud-sk", model)
    dep.data["spec"]["model"]["uri"] = f"bentoml:{saved.tag}"
    dep.data["spec"]["model"].pop("sha256")
    art = build(dep, config)
    cfg = json.loads((Path(art.bento_path) / "src" / "modelops.json").read_text())
    assert cfg["model_file"] == "model.joblib" and art.model_sha256 == file_sha256(
        Path(saved.path) / "saved_model.pkl"
    )
    dep.data["spec"]["model"]["uri"] = "bentoml:no-such-model:v1"
    with pytest.raises(BuildError, match="is not in the model store"):
        build(dep, config)
    # remote sources are fetched (tests/flow/test_model_sources.py); a malformed one is not
    dep.data["spec"]["model"]["uri"] = "models:/fraud-sk"
    with pytest.raises(BuildError, match="not a valid MLflow model URI"):
        build(dep, config)
