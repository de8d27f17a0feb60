"""The local engine: ``target.platform: local`` runs the Bento on a loopback port.

Reconcile step for one deployment × environment (Flux-style, see ``shared/DESIGN.md``):

1. The *inputs digest* is a SHA-256 of the resolved deployment document and the
   artifact's digest and tag. When the ledger already records the same bento tag and
   digest, and that server is healthy (process alive and ``/livez`` answers), apply is a
   no-op and says so.
2. Otherwise a new server starts (``bentoml serve`` via :func:`start_server`), on
   ``spec.target.port`` when the spec gives one, else on a free port, with
   ``spec.serving.workers`` workers (default 1). It is smoke-tested and load-tested
   against the SLO (:func:`run_smoke`). Only when that passed is the old server stopped
   and the ledger written (``Ready=True``, ``lastAppliedRevision``, outputs, history).
   When ``spec.target.port`` is the port the old server holds, the old server has to be
   stopped first; if the new one then fails, the old Bento is started again on that port.
3. On failure (port taken, not ready in time, smoke or SLO failed) the new server is
   stopped, the applied state in the ledger is left as it was (only
   ``lastAttemptedRevision``, ``failures``, a failed history entry and, after
   ``config.stalled_after`` consecutive failures, ``Stalled=True`` are recorded, and only
   when a record already exists), and :class:`ServeError` (exit 3) is raised.

Server logs go to ``<state_dir>/logs/<name>-<env>.log``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from reconciler.build.artifact import Artifact
from reconciler.build.serve import (
    ServeError,
    ServerHandle,
    is_alive,
    server_health,
    start_server,
    stop_server,
)
from reconciler.build.smoke import SmokeResult, run_smoke
from reconciler.core.config import Config
from reconciler.spec.model import Deployment
from reconciler.state.ledger import Ledger, LedgerRecord, now_iso

ENGINE_VERSION = "local/v1"


@dataclass
class ApplyResult:
    """What one local apply did.

    Attributes:
        changed: False when the deployment was already live with the same inputs.
        outputs: ``url``, ``port``, ``pid``, ``pgid``, ``bento_tag``, ``server_id``,
            ``log`` (log path relative to the root), ``started`` (ISO 8601 UTC).
        message: one sentence for humans.
        smoke: the smoke/SLO result of the new server (None on a no-op).
    """

    changed: bool
    outputs: dict = field(default_factory=dict)
    message: str = ""
    smoke: SmokeResult | None = None


def inputs_digest(dep: Deployment, artifact: Artifact) -> str:
    """SHA-256 hex of what determines a local server: resolved spec, artifact, engine.

    Equal digests mean a re-apply has nothing to do.
    """
    doc = {
        "engine": ENGINE_VERSION,
        "deployment": dep.data,
        "environment": dep.env,
        "bento_tag": artifact.bento_tag,
        "artifact_digest": artifact.digest,
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class LocalEngine:
    """Runs local deployments as ``bentoml serve`` processes and records them in the ledger.

    Args:
        config: repository configuration (state directory: ledger, BentoML home, logs).
        ready_timeout_s: seconds a new server has to answer ``/readyz`` (default 60).
        stop_grace_s: seconds between SIGTERM and SIGKILL when stopping a server.
    """

    def __init__(
        self, config: Config, *, ready_timeout_s: float = 60.0, stop_grace_s: float = 10.0
    ) -> None:
        self.config = config
        self.ledger = Ledger(config.state_dir)
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s

    # -- health ---------------------------------------------------------------------------

    def health(self, record: LedgerRecord) -> str:
        """Health of the server a ledger record points to.

        Returns:
            ``"Healthy"`` (pid alive and ``GET /livez`` answers 200),
            ``"Unhealthy: <why>"`` (alive but the probe fails), or
            ``"NotRunning: process <pid> exited"`` (also when the record has no pid).
        """
        pid = int(record.outputs.get("pid") or 0)
        url = record.outputs.get("url", "")
        if not pid or not url:
            return f"NotRunning: process {pid or '?'} exited"
        return server_health(pid, url, server_id=record.outputs.get("server_id", ""))

    # -- apply ----------------------------------------------------------------------------

    def apply(self, dep: Deployment, artifact: Artifact, revision: str) -> ApplyResult:
        """Converge one local deployment to ``artifact`` (see the module docstring).

        Args:
            dep: the resolved deployment (``spec.target.port``, ``spec.serving.*``).
            artifact: the built Bento.
            revision: the Git revision being applied ('' outside a repository).

        Returns:
            :class:`ApplyResult`; ``changed`` False for a no-op.

        Raises:
            ServeError: (exit 3) the server could not start (port taken, exited, not ready
                in time) or failed its smoke/SLO check; nothing of the new server is left
                running and the ledger's applied state is unchanged.
            LedgerError: (exit 2) the existing record is corrupt.
        """
        record = self.ledger.get(dep.name, dep.env)
        digest = inputs_digest(dep, artifact)
        why = "first apply"
        if record is not None and record.destroyed:
            why = f"first apply since it was destroyed at {record.destroyed.get('time', '?')}"
        elif record is not None:
            same = (
                record.artifact.get("bento_tag") == artifact.bento_tag
                and record.inputsDigest == digest
            )
            health = self.health(record)
            if same and health == "Healthy":
                if revision and record.lastAppliedRevision != revision:
                    record.lastAppliedRevision = revision
                    record.lastAttemptedRevision = revision
                    self.ledger.put(record)
                return ApplyResult(
                    False,
                    dict(record.outputs),
                    f"unchanged: {artifact.bento_tag} already serving at "
                    f"{record.outputs.get('url')}; nothing to do",
                )
            if same:
                why = f"same inputs, but the server is not healthy ({health})"
            elif record.artifact.get("bento_tag") != artifact.bento_tag:
                why = (
                    f"artifact changed ({record.artifact.get('bento_tag')} -> {artifact.bento_tag})"
                )
            else:
                why = "inputs changed"

        port = dep.get("spec.target.port")
        port = int(port) if isinstance(port, int) else None
        old = dict(record.outputs) if record is not None else {}
        old_pid = int(old.get("pid") or 0)
        stopped_old_first = False
        if port is not None and old_pid and int(old.get("port") or 0) == port:
            # The spec pins the port the old server holds: it must go first.
            stop_server(old_pid, server_id=old.get("server_id", ""), grace_s=self.stop_grace_s)
            stopped_old_first = True

        workers = dep.get("spec.serving.workers", 1)
        try:
            handle = start_server(
                artifact,
                self.config,
                port=port,
                timeout_s=self.ready_timeout_s,
                workers=int(workers) if isinstance(workers, int) else 1,
                log_name=dep.key,
            )
        except ServeError as exc:
            message = self._fail(dep, record, revision, artifact, exc.message)
            self._restore(record, stopped_old_first)
            raise ServeError(message) from None

        try:
            smoke = run_smoke(dep, self.config, handle.url)
        except BaseException:
            stop_server(handle, grace_s=self.stop_grace_s)
            raise
        if not smoke.passed:
            stop_server(handle, grace_s=self.stop_grace_s)
            detail = "\n".join(f"  - {f}" for f in smoke.failures)
            message = self._fail(
                dep,
                record,
                revision,
                artifact,
                f"smoke test of {dep.key} ({artifact.bento_tag}) failed:\n{detail}\n"
                f"The new server was stopped; server log: {self.config.rel(handle.log_path)}",
            )
            self._restore(record, stopped_old_first)
            err = ServeError(message)
            err.smoke = smoke  # type: ignore[attr-defined]
            raise err

        if old_pid and not stopped_old_first:
            stop_server(old_pid, server_id=old.get("server_id", ""), grace_s=self.stop_grace_s)
        outputs = self._outputs(handle)
        rec = record or LedgerRecord(name=dep.name, environment=dep.env)
        if rec.lastAppliedRevision and rec.lastAppliedRevision != revision:
            rec.lastGoodRevision = rec.lastAppliedRevision
        rec.platform = "local"
        rec.specFile = dep.spec.file
        rec.lastAppliedRevision = revision
        rec.lastAttemptedRevision = revision
        rec.inputsDigest = digest
        rec.artifact = artifact.to_dict()
        rec.outputs = outputs
        rec.failures = 0
        message = f"serving {artifact.bento_tag} at {handle.url} ({why}); {smoke.summary()}"
        rec.set_condition("Ready", "True", "ApplySucceeded", message)
        if rec.condition("Stalled") is not None:
            rec.set_condition("Stalled", "False", "ApplySucceeded", "the last apply succeeded")
        rec.add_history(
            "apply",
            revision,
            "succeeded",
            message,
            artifact=artifact.bento_tag,
            smoke=smoke.to_dict(),
        )
        self.ledger.put(rec)
        return ApplyResult(True, outputs, message, smoke)

    def _outputs(self, handle: ServerHandle) -> dict:
        return {
            "url": handle.url,
            "port": handle.port,
            "pid": handle.pid,
            "pgid": handle.pgid,
            "bento_tag": handle.bento_tag,
            "server_id": handle.server_id,
            "log": self.config.rel(handle.log_path),
            "started": now_iso(),
        }

    def _fail(
        self,
        dep: Deployment,
        record: LedgerRecord | None,
        revision: str,
        artifact: Artifact,
        reason: str,
    ) -> str:
        """Record a failed attempt (only on an existing record); return the error text."""
        kept = (
            f"{dep.key} stays at revision {record.lastAppliedRevision or '(none)'}"
            if record is not None
            else f"nothing was recorded for {dep.key}"
        )
        message = f"apply of {dep.key} failed: {reason}\n(ledger: {kept})"
        if record is not None:
            record.lastAttemptedRevision = revision
            record.failures += 1
            record.add_history(
                "apply", revision, "failed", reason[:2000], artifact=artifact.bento_tag
            )
            if record.failures >= self.config.stalled_after:
                record.set_condition(
                    "Stalled",
                    "True",
                    "ApplyFailed",
                    f"{record.failures} consecutive failed applies; last: {reason[:300]}",
                )
            self.ledger.put(record)
        return message

    def _restore(self, record: LedgerRecord | None, stopped_old_first: bool) -> None:
        """Start the previously applied Bento again when it had to make way for the new one."""
        if record is None or not stopped_old_first:
            return
        old = record.outputs
        artifact = Artifact(
            bento_tag=record.artifact.get("bento_tag", ""),
            digest=record.artifact.get("digest", ""),
            bento_path=record.artifact.get("bento_path", ""),
        )
        try:
            handle = start_server(
                artifact,
                self.config,
                port=int(old.get("port") or 0) or None,
                timeout_s=self.ready_timeout_s,
                log_name=f"{record.name}-{record.environment}",
            )
        except ServeError as exc:
            record.set_condition(
                "Ready", "False", "RestoreFailed", f"previous server could not restart: {exc}"
            )
        else:
            record.outputs = self._outputs(handle)
        self.ledger.put(record)

    # -- destroy --------------------------------------------------------------------------

    def destroy(self, name: str, env: str, revision: str = "", reason: str = "") -> bool:
        """Stop the deployment's server (and any orphaned workers); mark its record destroyed.

        The record and its history stay (:meth:`LedgerRecord.record_destroyed`: a
        ``destroy`` history entry with ``revision`` and ``reason``, nothing live left).

        Args:
            name, env: the deployment.
            revision: the Git revision modelops runs at, for the history entry.
            reason: why or by what, for the history message (``modelops destroy``).

        Returns:
            True when a managed record existed (and is now destroyed), False when there
            was none or it was already destroyed.

        Raises:
            LedgerError: (exit 2) the record is corrupt (it is left in place).
        """
        record = self.ledger.get(name, env)
        if record is None or record.destroyed:
            return False
        pid = int(record.outputs.get("pid") or 0)
        server_id = record.outputs.get("server_id", "")
        if pid or server_id:
            stop_server(pid, server_id=server_id, grace_s=self.stop_grace_s)
        record.record_destroyed(revision, reason)
        self.ledger.put(record)
        return True

    def running(self, record: LedgerRecord) -> bool:
        """Whether the record's server process is alive (without probing HTTP)."""
        return is_alive(int(record.outputs.get("pid") or 0))
