"""The Pulumi engine: engine events → plan entries, missing CLI, locks, retries, round trip.

Events are built as the Pulumi CLI writes them (the JSON of its event log) and parsed
with the SDK's own ``EngineEvent.from_json``. The Automation API round trip needs the
``pulumi`` binary (and a cluster) and is skipped here with that reason. Where the CLI
cannot run, the engine's error handling is exercised with a *fake stack operation* that
raises the SDK's own error types.
"""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from pulumi.automation import CommandError, ConcurrentUpdateError
from pulumi.automation._cmd import CommandResult
from pulumi.automation.events import EngineEvent

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.events import PlanCollector, parse_property_path
from reconciler.engine.plan import diff
from reconciler.engine.pulumi_engine import PulumiEngine, is_transient, pulumi_available
from reconciler.engine.render import render
from reconciler.flow import apply as apply_flow
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger, LedgerRecord


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:fraud-detector-prod::modelops::{type_}::{name}"


def pre_event(seq, op, type_, name, old=None, new=None, detailed=None, keys=None):
    """A ``resourcePreEvent`` exactly as the CLI's event log carries it."""
    meta = {"op": op, "urn": urn(type_, name), "type": type_, "provider": ""}
    if old is not None:
        meta["old"] = {"type": type_, "urn": urn(type_, name), "inputs": old, "outputs": old}
    if new is not None:
        meta["new"] = {"type": type_, "urn": urn(type_, name), "inputs": new}
    if detailed is not None:
        meta["detailedDiff"] = {p: {"diffKind": k, "inputDiff": True} for p, k in detailed.items()}
        meta["diffs"] = sorted({parse_property_path(p)[0] for p in detailed})
    if keys is not None:
        meta["keys"] = keys
    return EngineEvent.from_json(
        {"sequence": seq, "timestamp": 1700000000 + seq, "resourcePreEvent": {"metadata": meta}}
    )


def dep_of(root, name="fraud-detector"):
    config = load_config(root)
    result = load_all(config, [name], "prod")
    assert not result.errors
    return result.deployments[0], config


def test_events_become_the_same_plan_entries_as_the_offline_plan(spec_repo):
    dep, config = dep_of(spec_repo)
    old_state = render(dep, None, config)
    path = spec_repo / "specs" / "fraud-detector.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["environments"]["prod"]["target"]["autoscaling"]["min_replicas"] = 4
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    dep, config = dep_of(spec_repo)
    new_state = render(dep, None, config)
    offline = diff(old_state.to_dict(), new_state, dep.key)

    hpa = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
    lines: list[str] = []
    collector = PlanCollector(dep.key, "kubernetes", new_state.image, lines.append)
    events = [
        EngineEvent.from_json({"sequence": 0, "timestamp": 1, "preludeEvent": {"config": {}}}),
        pre_event(1, "same", "pulumi:pulumi:Stack", "modelops-fraud-detector-prod"),
        pre_event(2, "same", "pulumi:providers:kubernetes", "default_4_34_2"),
        pre_event(
            3,
            "update",
            hpa,
            "fraud-detector",
            old=old_state.get(hpa, "fraud-detector").inputs,
            new=new_state.get(hpa, "fraud-detector").inputs,
            detailed={"spec.minReplicas": "update"},
        ),
    ]
    for r in new_state.resources:
        if r.type != hpa:
            events.append(pre_event(10, "same", r.type, r.name, old=r.inputs, new=r.inputs))
    for event in events:
        collector(event)
    online = collector.plan()
    assert [c.to_dict() for c in online.changes] == [c.to_dict() for c in offline.changes]
    assert (
        online.summary()
        == offline.summary()
        == "0 to create, 1 to update, 0 to replace, 0 to delete"
    )
    assert online.unchanged == 9 and not online.offline
    assert lines == [f"~ update {hpa} fraud-detector"]


def test_replacement_steps_are_one_replace_entry_with_the_forcing_keys():
    model = "aws:sagemaker/model:Model"
    old = {"primaryContainer": {"image": "acct.dkr.ecr/x:1"}, "tags": {"a": "b"}}
    new = {"primaryContainer": {"image": "acct.dkr.ecr/x:2"}, "tags": {"a": "b"}}
    collector = PlanCollector("d-prod", "aws-sagemaker")
    for op in ("create-replacement", "replace", "delete-replaced"):
        collector(
            pre_event(
                1,
                op,
                model,
                "d-prod-model",
                old=old,
                new=new,
                detailed={"primaryContainer.image": "update-replace"},
                keys=["primaryContainer"],
            )
        )
    (change,) = collector.plan().changes
    assert change.action == "replace"
    assert change.fields == [("primaryContainer.image", "acct.dkr.ecr/x:1", "acct.dkr.ecr/x:2")]
    assert change.replace_paths == ["primaryContainer.image", "primaryContainer"]


def test_create_delete_failure_and_summary_events():
    lines: list[str] = []
    collector = PlanCollector("d-prod", "kubernetes", progress=lines.append)
    collector(pre_event(1, "create", "kubernetes:core/v1:Service", "d", new={"kind": "Service"}))
    collector(
        pre_event(2, "delete", "kubernetes:batch/v1:CronJob", "d-retrain", old={"kind": "CronJob"})
    )
    collector(pre_event(3, "refresh", "kubernetes:core/v1:ServiceAccount", "d", old={}))
    collector(
        EngineEvent.from_json(
            {
                "sequence": 4,
                "timestamp": 5,
                "resOpFailedEvent": {
                    "metadata": {
                        "op": "create",
                        "urn": urn("kubernetes:core/v1:Service", "d"),
                        "type": "kubernetes:core/v1:Service",
                        "provider": "",
                    },
                    "status": 1,
                    "steps": 1,
                },
            }
        )
    )
    collector(
        EngineEvent.from_json(
            {
                "sequence": 5,
                "timestamp": 6,
                "diagnosticEvent": {
                    "message": 'services "d" is forbidden\n',
                    "color": "never",
                    "severity": "error",
                    "urn": urn("kubernetes:core/v1:Service", "d"),
                },
            }
        )
    )
    collector(
        EngineEvent.from_json(
            {
                "sequence": 6,
                "timestamp": 7,
                "summaryEvent": {
                    "maybeCorrupt": False,
                    "durationSeconds": 3,
                    "resourceChanges": {"create": 1, "delete": 1},
                    "PolicyPacks": {},
                },
            }
        )
    )
    plan = collector.plan()
    assert [(c.action, c.name) for c in plan.changes] == [("delete", "d-retrain"), ("create", "d")]
    assert plan.summary() == "1 to create, 0 to update, 0 to replace, 1 to delete"
    assert collector.failures == ["kubernetes:core/v1:Service d: create failed"]
    assert collector.errors == ['services "d" is forbidden']
    assert collector.summary == {"create": 1, "delete": 1}
    assert "! kubernetes:core/v1:Service d: create failed" in lines


def test_property_paths_with_quoted_keys():
    assert parse_property_path('metadata.labels["app.kubernetes.io/name"]') == [
        "metadata",
        "labels",
        "app.kubernetes.io/name",
    ]
    assert parse_property_path("spec.template.spec.containers[0].image") == [
        "spec",
        "template",
        "spec",
        "containers",
        0,
        "image",
    ]


def test_apply_without_the_cli_names_it_and_how_to_install(spec_repo, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not pulumi_available()
    dep, config = dep_of(spec_repo, "diabetes-progression")
    artifact = Artifact("diabetes-progression:1", "1" * 64)
    engine = PulumiEngine(config)
    for action in (
        lambda: engine.apply(dep, artifact, "abc123"),
        lambda: engine.destroy(LedgerRecord(dep.name, dep.env)),
        lambda: engine.preview(dep, artifact),
    ):
        with pytest.raises(ModelopsError) as err:
            action()
        assert err.value.exit_code == 2
        assert "`pulumi`" in err.value.message and "get.pulumi.com" in err.value.message
        assert "offline" in err.value.message
    # Nothing was recorded: a missing CLI is a usage error, not a failed apply.
    assert not (config.state_dir / "ledger").exists()


def test_self_managed_backend_needs_a_passphrase(spec_repo, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    _, config = dep_of(spec_repo)
    assert config.pulumi_backend.startswith("file://")
    with pytest.raises(ModelopsError, match="PULUMI_CONFIG_PASSPHRASE"):
        PulumiEngine(config)._env()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    env = PulumiEngine(config)._env()
    assert env["PULUMI_BACKEND_URL"] == config.pulumi_backend
    assert os.path.isdir(config.pulumi_backend[len("file://") :])


def test_lock_held_by_another_update_is_reported_with_the_stack(spec_repo):
    _, config = dep_of(spec_repo)

    def fake_up():  # a fake of the CLI's answer on a locked file backend
        raise ConcurrentUpdateError(
            CommandResult(
                "",
                "error: the stack is currently locked by 1 lock(s). Either wait for the other "
                "process(es) to end or delete the lock file with `pulumi cancel`.",
                255,
            )
        )

    with pytest.raises(ModelopsError) as err:
        PulumiEngine(config)._run("up", "fraud-detector-prod", fake_up)
    assert err.value.exit_code == 3
    assert "stack fraud-detector-prod is locked by another update" in err.value.message


def test_transient_failures_are_retried_with_backoff(spec_repo):
    _, config = dep_of(spec_repo)
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky_up():  # a fake CLI run that is throttled twice
        calls["n"] += 1
        if calls["n"] < 3:
            raise CommandError(CommandResult("", "ThrottlingException: Rate exceeded", 255))
        return "done"

    engine = PulumiEngine(config, retries=3, backoff_s=2.0, sleep=sleeps.append)
    assert engine._run("up", "x-prod", flaky_up) == ("done", 3)
    assert sleeps == [2.0, 4.0]

    def broken_up():
        raise CommandError(CommandResult("", "AccessDenied: not authorized", 255))

    sleeps.clear()
    with pytest.raises(ModelopsError) as err:
        engine._run("up", "x-prod", broken_up)
    assert err.value.exit_code == 3 and "AccessDenied" in err.value.message
    assert sleeps == []
    assert is_transient("read tcp: i/o timeout") and not is_transient("ValidationException")


needs_cli = pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the pulumi CLI on PATH (not installed here)"
)


@pytest.mark.pulumi_cli
@needs_cli
def test_automation_api_round_trip(spec_repo, monkeypatch):
    """preview → up → up (no changes) → destroy against a real cluster."""
    if not os.environ.get("KUBECONFIG") and not os.path.exists(
        os.path.expanduser("~/.kube/config")
    ):
        pytest.skip("needs a Kubernetes cluster (KUBECONFIG) for the kubernetes stack")
    image = os.environ.get("MODELOPS_TEST_BENTO_IMAGE")
    if not image:
        pytest.skip("needs MODELOPS_TEST_BENTO_IMAGE: a containerized Bento the cluster can pull")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
    dep, config = dep_of(spec_repo)
    engine = PulumiEngine(config)
    artifact = Artifact("fraud-detector:rt", "r" * 64, image, image_built=True)
    preview = engine.preview(dep, artifact)
    assert preview.counts()["create"] == 8
    first = engine.apply(dep, artifact, "rev1")
    assert first.changed and first.outputs["service"] == "fraud-detector"
    second = engine.apply(dep, artifact, "rev1")
    assert not second.changed and second.plan.empty
    engine.destroy(LedgerRecord(dep.name, dep.env))


class FakeStack:
    """A fake of the Automation API stack (the Pulumi CLI cannot run here).

    ``up`` streams the engine events the CLI would send for creating ``state``'s resources
    and returns the SDK's own ``UpResult``; ``fail`` makes ``up`` raise a CommandError.
    """

    def __init__(self, state, fail: str = ""):
        self.state = state
        self.fail = fail
        self.calls: list[str] = []

    def refresh(self, **kwargs):
        self.calls.append("refresh")

    def preview(self, on_event=None, **kwargs):
        self.calls.append("preview")

    def up(self, on_event=None, **kwargs):
        from datetime import datetime

        from pulumi.automation import OutputValue, UpdateSummary, UpResult

        self.calls.append("up")
        if self.fail:
            raise CommandError(CommandResult("", self.fail, 255))
        for i, r in enumerate(self.state.resources):
            on_event(pre_event(i, "create", r.type, r.name, new=r.inputs))
        summary = UpdateSummary(
            "update",
            datetime.now(),
            "",
            {},
            {},
            "succeeded",
            resource_changes={"create": len(self.state.resources)},
        )
        outputs = {k: OutputValue(v, False) for k, v in self.state.outputs.items()}
        outputs["token"] = OutputValue("s3cr3t", True)
        return UpResult("", "", summary, outputs)


def test_apply_records_outputs_revision_and_desired_state(spec_repo, monkeypatch):
    dep, config = dep_of(spec_repo, "diabetes-progression")
    artifact = Artifact(
        "diabetes-progression:1",
        "1" * 64,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/diabetes-progression:1",
    )
    state = render(dep, artifact, config)
    fake = FakeStack(state)
    monkeypatch.setattr(PulumiEngine, "stack", lambda self, dep, artifact=None, record=None: fake)
    engine = PulumiEngine(config, progress=lambda line: None)
    ledger = Ledger(config.state_dir)
    result = apply_flow.converge(dep, artifact, config, ledger, engine, "rev1")
    assert fake.calls == ["refresh", "preview", "up"]
    assert result.changed and result.summary == {"create": 13}
    assert result.plan.summary() == "13 to create, 0 to update, 0 to replace, 0 to delete"
    assert result.outputs["endpoint_name"] == "diabetes-progression-prod"
    assert result.outputs["token"] == "[secret]"
    record = ledger.get(dep.name, dep.env)
    assert record.lastAppliedRevision == "rev1" and record.platform == "aws-sagemaker"
    assert record.outputs["url"] == state.outputs["url"]
    assert record.desiredState == state.to_dict()
    assert record.artifact["bento_tag"] == "diabetes-progression:1"
    # The next offline plan against this record is empty.
    assert diff(record.desiredState, render(dep, artifact, config), dep.key).empty


def test_failed_apply_is_recorded_as_a_failure(spec_repo, monkeypatch):
    dep, config = dep_of(spec_repo, "diabetes-progression")
    fake = FakeStack(render(dep, None, config), fail="error: AccessDenied: sagemaker:CreateModel")
    monkeypatch.setattr(PulumiEngine, "stack", lambda self, dep, artifact=None, record=None: fake)
    engine = PulumiEngine(config, progress=lambda line: None)
    with pytest.raises(ModelopsError) as err:
        apply_flow.converge(dep, None, config, Ledger(config.state_dir), engine, "rev2")
    assert err.value.exit_code == 3 and "AccessDenied" in err.value.message
    record = Ledger(config.state_dir).get(dep.name, dep.env)
    assert record.lastAppliedRevision == "" and record.lastAttemptedRevision == "rev2"
    assert record.failures == 1 and record.condition("Ready")["status"] == "False"
