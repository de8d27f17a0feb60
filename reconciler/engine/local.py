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
   and the new one returned (:class:`~reconciler.engine.base.ApplyResult`). When
   ``spec.target.port`` is the port the old server holds, the old server has to be
   stopped first; if the new one then fails, the old Bento is started again on that port.
3. On failure (port taken, not ready in time, smoke or SLO failed) the new server is
   stopped and :class:`~reconciler.engine.base.ApplyError` (exit 3) is raised, saying
   whether the old server was started again.

The engine reads the record it is given and writes no ledger: the status writer
(``reconciler.state.status``) records what it returns. Server logs go to
``<state_dir>/logs/<name>-<env>.log``.
"""

from __future__ import annotations

from reconciler.build.artifact import Artifact
from reconciler.build.serve import (
    ServeError,
    ServerHandle,
    find_servers,
    is_alive,
    server_health,
    start_server,
    stop_server,
)
from reconciler.build.smoke import run_smoke
from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.digests import json_sha256
from reconciler.core.procs import fault_point
from reconciler.core.progress import step
from reconciler.engine.base import ApplyError, ApplyResult, LiveRecord
from reconciler.spec.model import Deployment

ENGINE_VERSION = "local/v1"


def engine_digest(dep: Deployment, artifact: Artifact) -> str:
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
    return json_sha256(doc)


def identity(outputs: dict) -> dict:
    """The recorded identity of a server from a ledger record's ``outputs``: keyword
    arguments of :func:`~reconciler.build.serve.stop_server` and
    :func:`~reconciler.build.serve.server_health` (``server_id``, ``bento_tag``,
    ``started``: ``process_started``, ``pgid``); what was not recorded is empty or 0."""

    def number(key: str) -> float:
        value = outputs.get(key)
        return float(value) if isinstance(value, int | float) and value > 0 else 0.0

    return {
        "server_id": str(outputs.get("server_id") or ""),
        "bento_tag": str(outputs.get("bento_tag") or ""),
        "started": number("process_started"),
        "pgid": int(number("pgid")),
    }


def _swept_note(swept: list[dict]) -> str:
    if not swept:
        return ""
    pids = ", ".join(str(s["manager"] or s["pids"][0]) for s in swept)
    return f"; stopped {len(swept)} unrecorded server(s) left by an interrupted run (pid {pids})"


class LocalEngine:
    """Runs local deployments as ``bentoml serve`` processes (an :class:`Engine`).

    Args:
        config: repository configuration (state directory: BentoML home, logs).
        ready_timeout_s: seconds a new server has to answer ``/readyz`` (default 60).
        stop_grace_s: seconds between SIGTERM and SIGKILL when stopping a server.
    """

    def __init__(
        self, config: Config, *, ready_timeout_s: float = 60.0, stop_grace_s: float = 10.0
    ) -> None:
        self.config = config
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s

    # -- health ---------------------------------------------------------------------------

    def health(self, record: LiveRecord) -> str:
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
        return server_health(pid, url, **identity(record.outputs))

    # -- apply ----------------------------------------------------------------------------

    def apply(
        self,
        dep: Deployment,
        artifact: Artifact,
        revision: str,
        record: LiveRecord | None = None,
    ) -> ApplyResult:
        """Converge one local deployment to ``artifact`` (see the module docstring).

        Args:
            dep: the resolved deployment (``spec.target.port``, ``spec.serving.*``).
            artifact: the built Bento.
            revision: the Git revision being applied ('' outside a repository).
            record: the deployment's last ledger record (``None`` when there is none):
                the server it points to is kept (no-op), replaced, or restarted.

        Returns:
            :class:`ApplyResult`; ``changed`` and ``ran`` False for a no-op.

        Raises:
            ApplyError: (exit 3) the server could not start (port taken, exited, not ready
                in time) or failed its smoke/SLO check; nothing of the new server is left
                running (``smoke``: the failed check; ``outputs``/``restore_failed``: the
                old server, when it had to make way).
        """
        digest = engine_digest(dep, artifact)
        swept = self.stop_unrecorded(dep.key, record)
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
                return ApplyResult(
                    False,
                    dict(record.outputs),
                    f"unchanged: {artifact.bento_tag} already serving at "
                    f"{record.outputs.get('url')}; nothing to do{_swept_note(swept)}",
                    engine_digest=digest,
                    ran=False,
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
            stop_server(old_pid, **identity(old), grace_s=self.stop_grace_s)
            stopped_old_first = True

        workers = dep.get("spec.serving.workers", 1)
        try:
            with step("start", dep.key, f"{artifact.bento_tag} (bentoml serve)"):
                handle = start_server(
                    artifact,
                    self.config,
                    port=port,
                    timeout_s=self.ready_timeout_s,
                    workers=int(workers) if isinstance(workers, int) else 1,
                    log_name=dep.key,
                    deployment=dep.key,
                )
        except ServeError as exc:
            raise self._failed(dep, record, exc.message, stopped_old_first) from None

        try:
            smoke = run_smoke(dep, self.config, handle.url)
        except BaseException:
            stop_server(handle, grace_s=self.stop_grace_s)
            raise
        if not smoke.passed:
            stop_server(handle, grace_s=self.stop_grace_s)
            detail = "\n".join(f"  - {f}" for f in smoke.failures)
            raise self._failed(
                dep,
                record,
                f"smoke test of {dep.key} ({artifact.bento_tag}) failed:\n{detail}\n"
                f"The new server was stopped; server log: {self.config.rel(handle.log_path)}",
                stopped_old_first,
                smoke,
            )

        fault_point("smoke")
        if old_pid and not stopped_old_first:
            stop_server(old_pid, **identity(old), grace_s=self.stop_grace_s)
        fault_point("update")
        message = (
            f"serving {artifact.bento_tag} at {handle.url} ({why}); {smoke.summary()}"
            + _swept_note(swept)
        )
        return ApplyResult(True, self._outputs(handle), message, digest, smoke=smoke)

    def _outputs(self, handle: ServerHandle) -> dict:
        return {
            "url": handle.url,
            "port": handle.port,
            "pid": handle.pid,
            "pgid": handle.pgid,
            "bento_tag": handle.bento_tag,
            "server_id": handle.server_id,
            "process_started": handle.started,
            "log": self.config.rel(handle.log_path),
            "started": now_iso(),
        }

    def _failed(
        self,
        dep: Deployment,
        record: LiveRecord | None,
        reason: str,
        stopped_old_first: bool,
        smoke=None,
    ) -> ApplyError:
        """The error of a failed apply, after starting the old server again if it made way."""
        kept = (
            f"{dep.key} stays at revision {record.lastAppliedRevision or '(none)'}"
            if record is not None
            else f"nothing was recorded for {dep.key}"
        )
        outputs, restore_failed = self._restore(record, stopped_old_first)
        return ApplyError(
            f"apply of {dep.key} failed: {reason}\n(ledger: {kept})",
            smoke=smoke,
            outputs=outputs,
            restore_failed=restore_failed,
        )

    def _restore(
        self, record: LiveRecord | None, stopped_old_first: bool
    ) -> tuple[dict | None, str]:
        """Start the previously applied Bento again when it had to make way for the new one.

        Returns:
            ``(outputs, "")`` of the restarted server, ``(None, why)`` when it could not
            start, ``(None, "")`` when nothing had to be restarted.
        """
        if record is None or not stopped_old_first:
            return None, ""
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
                deployment=f"{record.name}-{record.environment}",
            )
        except ServeError as exc:
            return None, str(exc)
        return self._outputs(handle), ""

    # -- destroy --------------------------------------------------------------------------

    def destroy(self, record: LiveRecord) -> bool:
        """Stop the server ``record`` points to (and any orphaned workers), and every
        server of the deployment started from this state directory that no record names
        (:meth:`unrecorded`).

        Returns:
            True when the record was live (it is not destroyed and names a server) or an
            unrecorded server was stopped, False when there was nothing to stop.
        """
        strays = self.stop_unrecorded(f"{record.name}-{record.environment}", record)
        if record.destroyed:
            return bool(strays)
        pid = int(record.outputs.get("pid") or 0)
        server_id = record.outputs.get("server_id", "")
        if not (pid or server_id):
            return bool(strays)
        stop_server(pid, **identity(record.outputs), grace_s=self.stop_grace_s)
        return True

    def unrecorded(self, key: str, record: LiveRecord | None) -> list[dict]:
        """Servers of deployment ``key`` started from this state directory that ``record``
        does not name (left by an apply killed before it recorded them), from
        :func:`~reconciler.build.serve.find_servers`."""
        known = ""
        if record is not None and not record.destroyed:
            known = str(record.outputs.get("server_id") or "")
        return [s for sid, s in find_servers(self.config.state_dir, key).items() if sid != known]

    def without_record(self, env: str, records: list) -> dict[str, list[dict]]:
        """Servers of ``env`` started from this state directory that no live record in
        ``records`` names: ``{deployment key: [server, ...]}``
        (:func:`~reconciler.build.serve.find_servers`)."""
        named = {str(r.outputs.get("server_id") or "") for r in records if not r.destroyed}
        out: dict[str, list[dict]] = {}
        for sid, server in find_servers(self.config.state_dir).items():
            if server["deployment"].endswith(f"-{env}") and sid not in named:
                out.setdefault(server["deployment"], []).append(server)
        return out

    def stop_unrecorded(self, key: str, record: LiveRecord | None) -> list[dict]:
        """Stop every server of :meth:`unrecorded`; returns the ones stopped."""
        strays = self.unrecorded(key, record)
        for s in strays:
            stop_server(s["manager"], server_id=s["server_id"], grace_s=self.stop_grace_s)
            # a server killed while it started may have spawned a worker (its own process
            # group) after the scan: look again until none carries the id (the manager is
            # gone, so nothing spawns any more)
            for _ in range(3):
                if s["server_id"] not in find_servers(self.config.state_dir, key):
                    break
                stop_server(0, server_id=s["server_id"], grace_s=self.stop_grace_s)
        return strays

    def running(self, record: LiveRecord) -> bool:
        """Whether the record's server process is alive (without probing HTTP)."""
        return is_alive(int(record.outputs.get("pid") or 0))
