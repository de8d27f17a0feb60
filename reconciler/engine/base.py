"""The one interface every engine implements (:class:`Engine`) and what it returns.

Engines converge one deployment × environment and return what they did
(:class:`ApplyResult`, or raise :class:`ApplyError`); they never write the ledger: the
flow passes them the deployment's last record (:class:`LiveRecord`) and hands their
result to the status writer (``reconciler.state.status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from reconciler.build.artifact import Artifact
from reconciler.build.smoke import SmokeResult
from reconciler.core.diagnostics import EXIT_APPLY_FAILED, ModelopsError
from reconciler.engine.plan import Plan
from reconciler.spec.model import Deployment


class LiveRecord(Protocol):
    """What an engine reads of a deployment's last ledger record.

    :class:`reconciler.state.ledger.LedgerRecord` has these attributes (see there).
    """

    name: str
    environment: str
    platform: str
    lastAppliedRevision: str  # noqa: N815 - the ledger's (Flux's) field names
    inputsDigest: str  # noqa: N815
    artifact: dict
    outputs: dict
    desiredState: dict  # noqa: N815
    destroyed: dict

    @property
    def key(self) -> str: ...


@dataclass
class ApplyResult:
    """What one apply did.

    Attributes:
        changed: False when nothing changed (the deployment was already live with the
            same inputs, or the update changed no resource).
        outputs: engine outputs: local ``url``, ``port``, ``pid``, ``pgid``,
            ``bento_tag``, ``server_id``, ``log``, ``started``; Pulumi: the stack outputs
            (plain values; secrets as ``[secret]``).
        message: one sentence for humans.
        engine_digest: SHA-256 hex of what the engine converged (its own digest: equal
            digest and a healthy server make a local re-apply a no-op).
        ran: False when the engine found the deployment live and did nothing at all (a
            local no-op): it is then not recorded as an apply.
        smoke: the smoke/SLO result of the new local server (``None`` otherwise).
        plan: the changes the Pulumi engine reported during ``up`` (``None`` for local).
        summary: Pulumi's resource change counts (``{"create": 3, "same": 2}``).
        attempts: how many ``up`` attempts it took (retries of transient failures).
        rollout: the local canary's checks and verdict
            (:meth:`reconciler.engine.canary.Rollout.to_dict`; ``None`` without one).
    """

    changed: bool
    outputs: dict = field(default_factory=dict)
    message: str = ""
    engine_digest: str = ""
    ran: bool = True
    smoke: SmokeResult | None = None
    plan: Plan | None = None
    summary: dict = field(default_factory=dict)
    attempts: int = 1
    rollout: dict | None = None


class ApplyError(ModelopsError):
    """An apply that failed (exit 3), with what the engine left behind.

    Attributes:
        smoke: the failed smoke/SLO result of the new server (``None`` when it did not
            get that far).
        outputs: when the previous server had to make way and was started again, its new
            outputs (``None`` otherwise).
        restore_failed: why the previous server could not be started again (``""``
            when it was not stopped, or came back).
        rollout: an aborted local canary's checks and verdict (``None`` otherwise).
        transient: the failure is not the spec's fault (the stable port held by another
            process): ``flow/transient.py`` records it as ``TransientFailure``, never
            counted toward ``Stalled``. A subclass may set it as a class attribute
            (``flow.sources.PlanOutdated``); the argument, when given, overrides it.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        smoke: SmokeResult | None = None,
        outputs: dict | None = None,
        restore_failed: str = "",
        rollout: dict | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message, exit_code=EXIT_APPLY_FAILED)
        self.smoke = smoke
        self.outputs = outputs
        self.restore_failed = restore_failed
        self.rollout = rollout
        if transient is not None:  # else the class's: a subclass may say it once for all
            self.transient = transient


class Engine(Protocol):
    """Converges deployments of some platforms; returns values, writes no ledger."""

    def apply(
        self,
        dep: Deployment,
        artifact: Artifact | None,
        revision: str,
        record: LiveRecord | None = None,
    ) -> ApplyResult:
        """Converge ``dep`` to ``artifact`` at Git ``revision``.

        ``record`` is the deployment's last ledger record (``None`` when there is none).

        Raises:
            ApplyError | ModelopsError: exit 3 when the apply failed (nothing new is
                live), exit 2 for a usage error (missing CLI or passphrase).
        """
        ...

    def destroy(self, record: LiveRecord) -> bool:
        """Tear down what ``record`` says is live; True when something was torn down.

        Raises:
            ModelopsError: exit 3 when the teardown failed, exit 2 for a usage error.
        """
        ...
