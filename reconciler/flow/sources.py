"""Remote model sources in the flow: resolved and pinned by ``plan``, held to by ``apply``.

``plan`` resolves each deployment's ``s3://`` or ``models:/`` model
(:func:`reconciler.build.fetch.resolve_model`: an MLflow alias becomes one version, the
bytes are fetched into the cache and their SHA-256 checked) and pins what it showed
(:func:`reconciler.state.status.model_planned`). ``apply`` deploys only that: when the
alias moved or the object changed since the plan, the deployment fails (exit 3) naming
both, and the next plan shows the new version and digest as a change to review.
Rationale: ``docs/build.md`` ("Model sources").
"""

from __future__ import annotations

import re

from reconciler.build.fetch import FetchError, ModelSource, is_remote, resolve_model
from reconciler.core.config import Config
from reconciler.engine.base import ApplyError
from reconciler.gitops.changes import ChangeSet, RevisionFiles, SpecChange
from reconciler.spec.files import quick_load, spec_name
from reconciler.spec.model import Deployment
from reconciler.spec.source import SpecSource
from reconciler.state import status
from reconciler.state.ledger import Ledger


def remote_source(dep: Deployment, config: Config) -> ModelSource | None:
    """The resolved remote model of ``dep``, or ``None`` for a repository path or a
    BentoML tag.

    Raises:
        FetchError: (exit 2) the source cannot be resolved or fetched, or its digest
            does not match; the message names the URI.
    """
    if not is_remote(dep.get("spec.model.uri")):
        return None
    return resolve_model(dep, config)


def pin_remote_models(
    deployments: list[Deployment], config: Config, ledger: Ledger, revision: str
) -> list[str]:
    """Resolve and pin the remote model of each deployment (``plan``).

    Returns:
        notes for the report: one per deployment whose pin could not be written (the
        state directory is read-only here).

    Raises:
        FetchError: (exit 2) the first source that cannot be resolved or fetched, or
            whose digest does not match ``spec.model.sha256``.
    """
    notes = []
    for dep in deployments:
        source = remote_source(dep, config)
        if source is None:
            continue
        if not status.model_planned(ledger, dep, source.to_dict(), revision=revision):
            notes.append(
                f"{dep.key}: model {source.resolved} (sha256 {source.sha256[:12]}) not pinned: "
                f"the state directory is not writable here; apply deploys what it resolves"
            )
    return notes


class PlanOutdated(ApplyError):
    """The remote model moved since the plan (exit 3). Not the spec's fault, so it is
    recorded as transient and never counts toward Stalled: running ``plan`` again (which
    pins the new model) is the remedy, and a stalled record would keep skipping it."""

    transient = True


def check_planned_model(dep: Deployment, config: Config, ledger: Ledger) -> None:
    """Refuse to deploy a remote model other than the one the last plan pinned.

    Nothing is checked for a repository path, a BentoML tag, or when no plan pinned
    the deployment's current URI (apply then deploys what it resolves).

    Raises:
        FetchError: the source cannot be resolved or fetched now.
        PlanOutdated: (exit 3) the alias moved, or the object changed, since the plan.
    """
    uri = dep.get("spec.model.uri")
    pin = ledger.pin(dep.name, dep.env)
    if not is_remote(uri) or pin is None or pin.get("uri") != uri:
        return
    source = resolve_model(dep, config)
    if (source.resolved, source.sha256) == (pin.get("resolved"), pin.get("sha256")):
        return
    raise PlanOutdated(
        f"{dep.locate('spec.model.uri')}: spec.model.uri: {uri} moved since the plan: the "
        f"plan showed {pin.get('resolved')} (sha256 {str(pin.get('sha256'))[:12]}), it is now "
        f"{source.resolved} (sha256 {source.sha256[:12]}); nothing was deployed. Run "
        "`modelops plan` to review the new model, then apply again"
    )


def as_applied(info: dict | None, record) -> dict | None:
    """A base revision's model info (``reconciler.flow.digests.model_info``) as it was
    applied: for a remote model whose URI the ledger's artifact recorded, the version
    and digest resolved then (an MLflow alias resolves to its current version now, so a
    moved alias shows as a change only against what was applied).

    Args:
        info: the model info, or ``None``.
        record: the deployment's ledger record, or ``None``.
    """
    if not info or "resolved" not in info or record is None or not record.lastAppliedRevision:
        return info
    source = (record.artifact or {}).get("model_source") or {}
    if source.get("uri") != info.get("uri") or not source.get("sha256"):
        return info
    return {**info, "resolved": source.get("resolved", ""), "sha256": source["sha256"]}


#: a spec's text that may name a remote model (checked before parsing it)
_REMOTE_URI = re.compile(rb"uri:\s*['\"]?(models:/|s3://)")


def _remote_uris(data: dict | None) -> bool:
    """Whether a quick-loaded spec names a remote model in its base or an overlay."""
    spec = (data or {}).get("spec") if isinstance(data, dict) else None
    if not isinstance(spec, dict):
        return False
    sections = [spec, *((spec.get("environments") or {}).values())]
    for section in sections:
        model = section.get("model") if isinstance(section, dict) else None
        if isinstance(model, dict) and is_remote(model.get("uri")):
            return True
    return False


def moved_models(
    config: Config, changes: ChangeSet, envs: list[str], head: RevisionFiles, ledger: Ledger
) -> list[str]:
    """Add to ``changes`` the specs a pull request does not touch whose remote model moved.

    An MLflow alias (or an overwritten ``s3://`` object) can move without any change in
    Git; a plan against the base shows it as a change to review: every spec at head
    (the working tree) not planned for its own change whose resolved model differs from
    the one its ledger record says was applied becomes ``affected`` (an ``unchanged``
    one of ``--all`` too). A source that cannot be resolved now is left out, with a note.

    Returns:
        notes for the report (sources that could not be resolved).
    """
    notes: list[str] = []
    planned = {s.path: s for s in changes.specs if s.path}
    source = SpecSource(config)
    specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
    for path in head.spec_files(specs_rel):
        change = planned.get(path)
        if change is not None and change.status != "unchanged":
            continue
        raw = head.read(path)
        if not raw or not _REMOTE_URI.search(raw):  # most specs: no YAML parse at all
            continue
        data = quick_load(raw)
        if not _remote_uris(data):
            continue
        reasons = []
        for env in envs:
            dep, _diags = source.deployment(path, env)
            if dep is None or not is_remote(dep.get("spec.model.uri")):
                continue
            record = ledger.get(dep.name, env)
            applied = ((record.artifact or {}).get("model_source") or {}) if record else {}
            if not applied or applied.get("uri") != dep.get("spec.model.uri"):
                continue
            try:
                now = resolve_model(dep, config)
            except FetchError as exc:
                notes.append(f"{dep.key}: the model's move could not be checked: {exc.message}")
                continue
            if (now.resolved, now.sha256) != (applied.get("resolved"), applied.get("sha256")):
                reasons.append(
                    f"{env}: model {now.uri} now resolves to {now.resolved} (sha256 "
                    f"{now.sha256[:12]}); applied: {applied.get('resolved')} "
                    f"(sha256 {str(applied.get('sha256'))[:12]})"
                )
        if not reasons:
            continue
        if change is not None:
            change.status, change.reasons = "affected", reasons
        else:
            changes.specs.append(SpecChange(spec_name(data), "affected", path, path, reasons))
    changes.specs.sort(key=lambda s: (s.path or s.old_path, s.status))
    return notes
