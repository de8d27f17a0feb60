"""The stage calls the commands share: build, smoke test, render and diff.

Each takes the previous stage's value; failures that concern one deployment are
recorded on its :class:`~reconciler.flow.run.Outcome` instead of raised.
"""

from __future__ import annotations

from reconciler.build.artifact import Artifact
from reconciler.build.bento import build
from reconciler.build.edge_bundle import build_edge, edge_artifact
from reconciler.build.serve import start_server, stop_server
from reconciler.build.smoke import SmokeResult, run_smoke
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    Diagnostic,
    ModelopsError,
)
from reconciler.core.progress import step
from reconciler.engine.base import Engine
from reconciler.engine.engines import engine_factory
from reconciler.engine.local import LocalEngine
from reconciler.engine.plan import Plan, diff
from reconciler.engine.render import DesiredState, render, stable_image_of
from reconciler.flow.run import Outcome, RunReport
from reconciler.monitor.schedule import schedules
from reconciler.spec.model import Deployment
from reconciler.state.ledger import Ledger


def error_message(exc: BaseException) -> str:
    """The text of a failure: a :class:`ModelopsError`'s message, else ``Type: text``."""
    if isinstance(exc, ModelopsError) and exc.message:
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def state_dict(state: DesiredState | None) -> dict | None:
    """The JSON form of a rendered DesiredState (``None`` stays ``None``)."""
    return state.to_dict() if state is not None else None


def live_stable_image(config: Config, name: str, env: str) -> str | None:
    """The image the stable track of ``name`` × ``env`` runs, from its ledger record.

    Raises:
        LedgerError: the record is corrupt or from a newer modelops.
    """
    record = Ledger.of(config).get(name, env)
    return stable_image_of(record.desiredState if record is not None else None)


def render_live(dep: Deployment, artifact: Artifact | None, config: Config) -> DesiredState:
    """Render ``dep`` as ``apply`` would: with the stable image its ledger record names.

    Raises:
        RenderError | ModelopsError | LedgerError: as :func:`~reconciler.engine.render.render`
            and :func:`live_stable_image`.
    """
    stable = live_stable_image(config, dep.name, dep.env)
    return render(dep, artifact, config, stable_image=stable)


def render_plan(
    dep: Deployment | None,
    old_state: dict | None,
    config: Config,
    artifact: Artifact | None = None,
) -> tuple[Plan, DesiredState | None]:
    """(plan, rendered DesiredState or None) of ``dep`` against ``old_state`` (a dict).

    ``dep`` is rendered as ``apply`` would (:func:`render_live`); the plan carries the
    next three run times of each of its schedules (:func:`reconciler.monitor.schedule.schedules`).
    """
    rendered = render_live(dep, artifact, config) if dep is not None else None
    key = dep.key if dep is not None else (old_state or {}).get("deployment", "")
    plan = diff(old_state or None, rendered, key)
    if dep is not None:
        try:
            runs = schedules(dep)
        except ModelopsError:
            runs = {}  # an invalid schedule is a validate error, reported with its position
        plan.schedules = {kind: [t.isoformat() for t in times] for kind, times in runs.items()}
    return plan, rendered


def build_artifact(dep: Deployment, config: Config, revision: str) -> Artifact:
    """Build (or reuse) the Bento of ``dep`` (:func:`reconciler.build.bento.build`); for
    ``target.platform: edge`` the edge bundle instead
    (:func:`reconciler.build.edge_bundle.build_edge`: export, parity, budget, bundle).

    Raises:
        BuildError: the build failed (an edge build's
            :class:`~reconciler.build.edge_export.EdgeBuildError` lists every miss).
    """
    if dep.platform == "edge":
        built = build_edge(dep, config, revision)
        return edge_artifact(built, dep.get("spec.model.framework", ""))
    return build(dep, config, revision=revision)


def _was(before: dict, key: str, unit: str, fmt: str = "{}") -> str:
    value = before.get(key)
    return f"{fmt.format(value)}{unit} -> " if value is not None else ""


def edge_budget_text(dep: Deployment, before: dict, after: dict) -> str:
    """The budget and parity of an edge build, before (the ledger's last applied bundle)
    -> after (this build), with the spec's limits, for the plan's build line.

    ``before`` and ``after`` are :meth:`~reconciler.build.edge_bundle.EdgeBuild.summary`
    dicts (``before`` may be ``{}``): size in bytes, p50/p99 in ms.
    """
    limit_bytes = dep.get("spec.edge.max_bytes")
    limit_ms = dep.get("spec.edge.max_p99_ms")
    parts = [
        f"size {_was(before, 'size_bytes', ' bytes')}{after.get('size_bytes')} bytes"
        + (f" (max {limit_bytes})" if limit_bytes is not None else ""),
        f"p99 {_was(before, 'p99_ms', ' ms', '{:.3f}')}{after.get('p99_ms', 0):.3f} ms"
        + (f" (max {limit_ms})" if limit_ms is not None else "")
        + f", p50 {after.get('p50_ms', 0):.3f} ms",
    ]
    agreement = after.get("label_agreement")
    parity = (
        f"parity on {after.get('parity_rows')} rows: "
        f"max abs diff {after.get('max_abs_diff', 0):.2g}"
    )
    if agreement is not None:
        parity += f", label agreement {agreement:.4f}"
    parts.append(parity)
    parts += list(after.get("notes") or [])
    return "; ".join(parts)


def smoke_test(dep: Deployment, config: Config, artifact: Artifact) -> SmokeResult:
    """Serve the Bento on loopback, run the smoke and SLO check, stop it (plan --smoke).

    A smoke test that cannot run (the server does not start) is a failed
    :class:`SmokeResult` with that one failure and no cases; never raises.
    """
    try:
        with step("start", dep.key, f"{artifact.bento_tag} (bentoml serve)"):
            handle = start_server(artifact, config, log_name=f"{dep.key}-plan-smoke")
        try:
            return run_smoke(dep, config, handle.url)
        finally:
            stop_server(handle)
    except Exception as exc:  # noqa: BLE001 - reported per deployment, the plan goes on
        return SmokeResult(dep.key, "", failures=[getattr(exc, "message", str(exc))])


def build_and_smoke(
    outcome: Outcome, dep: Deployment, config: Config, revision: str, smoke: bool
) -> Artifact | None:
    """Build ``dep`` (and smoke-test it when ``smoke``) into ``outcome``; never raises.

    Sets ``outcome.build`` (``{"status": "built"|"reused"|"failed", "message"}``),
    ``outcome.artifact`` and ``outcome.smoke``; returns the artifact, ``None`` when the
    build failed.
    """
    try:
        with step("build", dep.key):
            artifact = build_artifact(dep, config, revision)
    except Exception as exc:  # noqa: BLE001 - reported per deployment, the plan goes on
        outcome.build = {"status": "failed", "message": getattr(exc, "message", str(exc))}
        return None
    outcome.artifact = artifact
    outcome.build = {
        "status": "reused" if artifact.reused else "built",
        "message": f"{'reused' if artifact.reused else 'built'} "
        f"{artifact.bento_tag or artifact.edge.get('bundle', '')}",
    }
    if artifact.edge:
        record = Ledger.of(config).get(dep.name, dep.env)
        before = (record.artifact.get("edge") or {}) if record is not None else {}
        outcome.build["message"] += f" ({edge_budget_text(dep, before, artifact.edge)})"
    if smoke and dep.platform != "edge":  # an edge build's parity check is its smoke test
        outcome.smoke = smoke_test(dep, config, artifact)
    return artifact


def render_failed(report: RunReport, outcome: Outcome, dep: Deployment, exc: ModelopsError):
    """Record a deployment that cannot be rendered as a spec finding (it blocks)."""
    diags = list(exc.diagnostics) or [
        Diagnostic(dep.spec.locate(()), "", exc.message, code="render")
    ]
    report.diagnostics.extend(d for d in diags if d not in report.diagnostics)
    outcome.status = "invalid"
    outcome.message = f"cannot render: {exc.message}"
    report.plans.append(None)


class Engines:
    """The engines of one run, created on first use (one per engine class).

    Args:
        config: repository configuration, given to each engine.
        immediate: a rollback: the local engine switches to the applied version at once
            (no canary walk: the version rolled back to is the known-good one, and a
            canary judged against the bad live version could be refused).
    """

    def __init__(self, config: Config, *, immediate: bool = False) -> None:
        self.config = config
        self.immediate = immediate
        self._made: dict = {}

    def for_platform(self, platform: str) -> Engine:
        """The engine that converges ``platform`` (:data:`~reconciler.engine.engines.ENGINES`).

        Raises:
            ModelopsError: (exit 2) a platform no engine converges.
        """
        factory = engine_factory(platform)
        if factory not in self._made:
            engine = factory(self.config)
            if self.immediate and isinstance(engine, LocalEngine):
                engine.immediate = True
            self._made[factory] = engine
        return self._made[factory]
