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

from reconciler.build.fetch import ModelSource, is_remote, resolve_model
from reconciler.core.config import Config
from reconciler.engine.base import ApplyError
from reconciler.spec.model import Deployment
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


def check_planned_model(dep: Deployment, config: Config, ledger: Ledger) -> None:
    """Refuse to deploy a remote model other than the one the last plan pinned.

    Nothing is checked for a repository path, a BentoML tag, or when no plan pinned
    the deployment's current URI (apply then deploys what it resolves).

    Raises:
        FetchError: the source cannot be resolved or fetched now.
        ApplyError: (exit 3) the alias moved, or the object changed, since the plan.
    """
    uri = dep.get("spec.model.uri")
    pin = ledger.pin(dep.name, dep.env)
    if not is_remote(uri) or pin is None or pin.get("uri") != uri:
        return
    source = resolve_model(dep, config)
    if (source.resolved, source.sha256) == (pin.get("resolved"), pin.get("sha256")):
        return
    raise ApplyError(
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
