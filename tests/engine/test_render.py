"""The offline renderer and ``modelops render``: every example, normalisation, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from support.cli import invoke
from support.crds import assert_valid_manifest
from support.yaml12 import read_yaml12

from reconciler.core.config import load_config
from reconciler.engine import render as render_mod
from reconciler.engine.render import (
    LOCAL_TYPE,
    SECRET,
    DesiredState,
    RenderError,
    normalise,
    render,
)
from reconciler.spec.repo import load_all


def all_deployments(root: Path):
    config = load_config(root)
    result = load_all(config, None, None)
    assert not result.errors, [str(d) for d in result.errors]
    return result.deployments, config


def test_every_example_spec_and_environment_renders(spec_repo):
    deployments, config = all_deployments(spec_repo)
    platforms = set()
    assert len(deployments) == 6
    for dep in deployments:
        state = render(dep, None, config)
        platforms.add(state.platform)
        assert state.resources, dep.key
        keys = [(r.type, r.name) for r in state.resources]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        for manifest in state.manifests():
            assert_valid_manifest(manifest)
        # JSON round trip is lossless.
        again = DesiredState.from_dict(json.loads(json.dumps(state.to_dict())))
        assert again.to_dict() == state.to_dict()
    assert platforms == {"local", "kubernetes", "aws-sagemaker", "aws-serverless"}


def test_render_is_deterministic(spec_repo):
    deployments, config = all_deployments(spec_repo)
    for dep in deployments:
        first = render(dep, None, config, cache=False).to_dict()
        assert render(dep, None, config, cache=False).to_dict() == first


AFTER_ASYNCIO_RUN = """
import asyncio, json, sys
from pathlib import Path
from reconciler.core.config import load_config
from reconciler.engine.render import render
from reconciler.spec.repo import load_all
asyncio.run(asyncio.sleep(0))  # leaves no current event loop
config = load_config(Path(sys.argv[1]))
dep = next(d for d in load_all(config, None, None).deployments if d.platform == "kubernetes")
print(json.dumps(render(dep, None, config, cache=False).to_dict()))
"""


def test_render_needs_no_event_loop_from_the_caller(spec_repo):
    """Pulumi's mocks need a current asyncio loop for the first render of a process;
    ``asyncio.run`` leaves none set, and a thread other than the main one has none. A
    render works after both and renders the same state (it once failed with "There is no
    current event loop" when a test using ``asyncio.run`` ran first in the process)."""
    deployments, config = all_deployments(spec_repo)
    dep = next(d for d in deployments if d.platform == "kubernetes")
    first = render(dep, None, config, cache=False).to_dict()
    proc = subprocess.run(
        [sys.executable, "-c", AFTER_ASYNCIO_RUN, str(spec_repo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(first))
    in_thread: list[dict] = []
    thread = threading.Thread(
        target=lambda: in_thread.append(render(dep, None, config, cache=False).to_dict())
    )
    thread.start()
    thread.join(300)
    assert in_thread == [first]


def test_render_cache_hits_and_misses(spec_repo, monkeypatch):
    deployments, config = all_deployments(spec_repo)
    dep = next(d for d in deployments if d.key == "diabetes-progression-prod")
    calls = []
    real = render_mod._render_pulumi
    monkeypatch.setattr(render_mod, "_render_pulumi", lambda *a: calls.append(a[0].key) or real(*a))
    render_mod._MEMORY.clear()
    first = render(dep, None, config)
    assert calls == ["diabetes-progression-prod"]
    files = list((config.state_dir / "cache" / "render").glob("*.json"))
    assert len(files) == 1
    # In memory, then from disk in a "new process", then a corrupt file renders again.
    assert render(dep, None, config).to_dict() == first.to_dict()
    render_mod._MEMORY.clear()
    assert render(dep, None, config).to_dict() == first.to_dict()
    assert len(calls) == 1
    render_mod._MEMORY.clear()
    files[0].write_text("{broken")
    assert render(dep, None, config).to_dict() == first.to_dict()
    assert len(calls) == 2
    # Another image is another key.
    from reconciler.build.artifact import Artifact

    other = Artifact("d:2", "2" * 64, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/d:2")
    assert render(dep, other, config).image["ref"] == other.image
    assert len(calls) == 3


def test_local_platform_renders_one_loopback_bento_server(spec_repo):
    deployments, config = all_deployments(spec_repo)
    dep = next(d for d in deployments if d.key == "fraud-detector-staging")
    state = render(dep, None, config)
    (res,) = state.resources
    assert res.type == LOCAL_TYPE
    assert res.inputs == {
        "bento_tag": "fraud-detector:unbuilt",
        "host": "127.0.0.1",
        "workers": 2,  # spec.serving.workers of the example
        "batching": {"enabled": True, "max_batch_size": 64, "max_latency_ms": 20},
    }
    assert state.manifests() == []


def test_normalise_ints_secrets_and_unknowns():
    wrapped = {
        "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
        "value": "hunter2",
    }
    value = {"n": 3.0, "x": 0.5, "s": wrapped, "u": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}
    assert normalise(value) == {"n": 3, "x": 0.5, "s": SECRET, "u": "[unknown]"}


def test_secret_inputs_under_mocks_are_shown_as_secret(spec_repo, monkeypatch):
    deployments, config = all_deployments(spec_repo)
    dep = next(d for d in deployments if d.platform == "kubernetes")

    def program(dep, image, stable_image=None, jobs=None):
        k8s.core.v1.ConfigMap(
            "c",
            metadata={"name": "c", "namespace": "ml"},
            data={"token": pulumi.Output.secret("hunter2"), "replicas": "3"},
        )
        return {"token": pulumi.Output.secret("hunter2"), "count": 2}

    monkeypatch.setattr(render_mod, "program_for", lambda platform: program)
    state = render(dep, None, config, cache=False)
    (res,) = state.resources
    assert "hunter2" not in json.dumps(state.to_dict())
    assert res.inputs["data"] == SECRET
    assert state.outputs["count"] == 2 and isinstance(state.outputs["count"], int)


def test_duplicate_resource_names_are_an_error(spec_repo, monkeypatch):
    deployments, config = all_deployments(spec_repo)
    dep = next(d for d in deployments if d.platform == "kubernetes")

    def program(dep, image, stable_image=None, jobs=None):
        for _ in range(2):
            k8s.core.v1.ServiceAccount("same", metadata={"name": "same", "namespace": "ml"})
        return {}

    monkeypatch.setattr(render_mod, "program_for", lambda platform: program)
    with pytest.raises(RenderError, match="duplicate") as err:
        render(dep, None, config, cache=False)
    assert "kubernetes:core/v1:ServiceAccount 'same'" in str(err.value)


def test_render_command_writes_state_and_manifests(spec_repo, tmp_path):
    out = tmp_path / "out"
    result = invoke(spec_repo, "render", "--env", "prod", "--out", str(out))
    assert result.returncode == 0, result.output
    assert "rendered offline" in result.output
    dirs = sorted(p.name for p in out.iterdir())
    assert dirs == [
        "diabetes-progression-prod",
        "fraud-detector-prod",
        "fraud-scorer-serverless-prod",
    ]
    state = json.loads((out / "fraud-detector-prod" / "desired-state.json").read_text())
    assert state["platform"] == "kubernetes"
    files = sorted((out / "fraud-detector-prod" / "manifests").iterdir())
    assert len(files) == len(state["resources"]) == 10
    assert files[0].name.startswith("01-") and "networkpolicy" in files[0].name
    for f in files:
        assert_valid_manifest(yaml.safe_load(f.read_text()))
    assert not (out / "diabetes-progression-prod" / "manifests").exists()


def test_render_command_yaml_to_stdout(spec_repo):
    result = invoke(spec_repo, "render", "--env", "staging", "--format", "yaml", "fraud-detector")
    assert result.returncode == 0, result.output
    docs = yaml.safe_load(result.stdout)
    assert docs[0]["deployment"] == "fraud-detector-staging"


def _break(root: Path, name: str, change) -> None:
    path = root / "specs" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


BAD_VALUES = [
    (
        "fraud-detector",
        lambda d: d["spec"]["target"]["resources"]["requests"].update(cpu="2 cores"),
        "spec.target.resources.requests.cpu",
    ),
    (
        "fraud-detector",
        lambda d: d["spec"]["target"]["resources"]["limits"].update(memory="-1Gi"),
        "spec.target.resources.limits.memory",
    ),
    (
        "fraud-detector",
        lambda d: d["spec"]["environments"]["prod"]["target"]["autoscaling"].update(
            min_replicas=12
        ),
        "spec.target.autoscaling.min_replicas",
    ),
    (
        "diabetes-progression",
        lambda d: d["spec"]["target"].update(instance_type="ml.m5.huge"),
        "spec.target.instance_type",
    ),
]


@pytest.mark.parametrize("name,change,field", BAD_VALUES)
def test_bad_values_fail_validation_before_render(spec_repo, tmp_path, name, change, field):
    _break(spec_repo, name, change)
    result = load_all(load_config(spec_repo), [name], "prod")
    fields = {d.field for d in result.errors}
    assert field in fields, [str(d) for d in result.errors]
    diag = next(d for d in result.errors if d.field == field)
    assert diag.position.file == f"specs/{name}.yaml" and diag.position.line > 0
    assert not result.deployments
    out = tmp_path / "out"
    cmd = invoke(spec_repo, "render", "--env", "prod", "--out", str(out))
    assert cmd.returncode == 1
    assert f"specs/{name}.yaml:{diag.position.line}" in cmd.output
    assert not out.exists()


def test_render_command_reports_unrenderable_deployments(spec_repo, tmp_path):
    _break(spec_repo, "fraud-detector", lambda d: d["spec"]["exposure"].update(public=True))
    out = tmp_path / "out"
    cmd = invoke(spec_repo, "render", "--env", "prod", "--out", str(out))
    assert cmd.returncode == 1
    assert "specs/fraud-detector.yaml:" in cmd.output and "spec.exposure.public" in cmd.output
    assert not out.exists()


def test_render_command_rejects_unknown_format(spec_repo):
    cmd = invoke(spec_repo, "render", "--env", "prod", "--format", "toml")
    assert cmd.returncode == 2
    assert "error: " in cmd.stderr and "valid formats: json, yaml" in cmd.stderr


NUMBER_LOOKING = ["7e3", "0x1f", "no", "0755", "1_000", "0o17", "08", "1.5E3", "true"]


def test_number_looking_strings_are_quoted_in_every_rendered_manifest(spec_repo, tmp_path):
    # label values (and so every resource's labels) that YAML 1.1 or 1.2 read as numbers,
    # booleans or infinity, quoted in the spec as strings
    path = spec_repo / "specs" / "fraud-detector.yaml"
    labels = "".join(f'    l{i}: "{v}"\n' for i, v in enumerate(NUMBER_LOOKING))
    path.write_text(path.read_text().replace("    cost-center: cc-1234\n", labels))
    out = tmp_path / "out"
    result = invoke(spec_repo, "render", "--env", "prod", "--format", "yaml", "--out", str(out))
    assert result.returncode == 0, result.output
    files = sorted((out / "fraud-detector-prod" / "manifests").iterdir())
    assert files
    want = {f"l{i}": v for i, v in enumerate(NUMBER_LOOKING)}
    for f in [*files, out / "fraud-detector-prod" / "desired-state.yaml"]:
        text = f.read_text()
        as_kubectl_reads = read_yaml12(text)  # a YAML 1.2 reader, as kubectl and Argo CD
        assert as_kubectl_reads == yaml.safe_load(text)  # and PyYAML (1.1) agree
    deployment = read_yaml12(next(f for f in files if "-deployment-" in f.name).read_text())
    assert {k: deployment["metadata"]["labels"][k] for k in want} == want
