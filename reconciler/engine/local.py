"""The local engine: ``target.platform: local`` runs the Bento on a loopback port.

Reconcile step for one deployment × environment (Flux-style, see ``shared/DESIGN.md``):

1. The *inputs digest* is a SHA-256 of the resolved deployment document and the
   artifact's digest and tag. When the ledger already records the same bento tag and
   digest, and that server is healthy (process alive and ``/livez`` answers), apply is a
   no-op and says so.
2. Otherwise a new server starts (``bentoml serve`` via :func:`start_server`) on a free
   ephemeral port, with ``spec.serving.workers`` workers (default 1), and is smoke-tested
   and load-tested against the SLO (:func:`run_smoke`) on its own port.
3. The deployment's *router* (``reconciler.runtime.router``, controlled through
   :mod:`reconciler.engine.routing`) owns its stable port: ``spec.target.port`` when the
   spec gives one, else the port recorded by the last apply, else a free one chosen on the
   first apply and kept from then on. The router is switched to the new server (and
   confirms the switch); the old server is stopped once no request is in flight on it
   (drained), so a re-apply drops no request. The first apply starts the router; a port
   held by anything else fails with the holder and how to choose another port.
4. On failure (not ready in time, smoke or SLO failed, router port taken) the new server
   is stopped and :class:`~reconciler.engine.base.ApplyError` (exit 3) is raised; the old
   server and router were never touched.

The engine reads the record it is given and writes no ledger: the status writer
(``reconciler.state.status``) records what it returns. Server logs go to
``<state_dir>/logs/<name>-<env>.log``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from reconciler.build.artifact import Artifact, artifact_of
from reconciler.build.serve import (
    ServeError,
    ServerHandle,
    find_servers,
    free_port,
    is_alive,
    port_is_free,
    server_health,
    start_server,
    stop_server,
)
from reconciler.build.smoke import run_smoke
from reconciler.build.store import bentoml_home
from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.digests import json_sha256
from reconciler.core.procs import fault_point
from reconciler.core.progress import step
from reconciler.engine.base import ApplyError, ApplyResult, LiveRecord
from reconciler.engine.canary import ABORTED, PROMOTED, STABLE, Analysis, Rollout, run_canary
from reconciler.engine.routing import (
    RouterError,
    RouterHandle,
    find_routers,
    port_taken_message,
    router_health,
    set_backends,
    start_router,
    stop_found,
    stop_router,
    wait_drained,
)
from reconciler.spec.model import Deployment
from reconciler.spec.smoke import RequestFileError, read_request_file

ENGINE_VERSION = "local/v2"  # v2: behind the router, on a stable port


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


def _probe_body(dep: Deployment, config: Config) -> dict | None:
    """The body of the smoke request (``spec.serving.smoke.request``) for the canary's
    probe; ``None`` when there is none or it cannot be read (no probe then)."""
    name = dep.get("spec.serving.smoke.request")
    if not isinstance(name, str):
        return None
    try:
        return read_request_file(config.root / name, name)
    except RequestFileError:
        return None


def _named(outputs: dict) -> set[str]:
    """The server and router ids a record's ``outputs`` name."""
    ids = {str(outputs.get("server_id") or "")}
    router = outputs.get("router")
    if isinstance(router, dict):
        ids.add(str(router.get("router_id") or ""))
    ids.discard("")
    return ids


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
        drain_timeout_s: seconds a replaced server has to finish the requests in flight
            on it after the router switched away (then it is stopped anyway).
        immediate: switch to the new server at once even when the spec asks for a canary
            analysis (a rollback: ``reconciler.flow.rollback``).

    Attribute ``on_canary_check`` (``(deployment, check) -> None``, default none): called
    with each canary check as it is made; the flow points it at the status writer.
    Attribute ``realized_quality`` (``(deployment, model_version, since) -> {"value",
    "n"} | None``, default none): the realized quality of the predictions of
    ``model_version`` captured since ``since`` (UTC) joined to the labels stored so far;
    the flow points it at the monitoring job's join. Without it a ``realized_quality``
    canary metric is never measurable (the promotion says so).
    """

    def __init__(
        self,
        config: Config,
        *,
        ready_timeout_s: float = 60.0,
        stop_grace_s: float = 10.0,
        drain_timeout_s: float = 30.0,
        immediate: bool = False,
    ) -> None:
        self.config = config
        self.immediate = immediate
        self.on_canary_check: Callable[[Deployment, dict], None] | None = None
        self.realized_quality: Callable[[Deployment, str, datetime], dict | None] | None = None
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.drain_timeout_s = drain_timeout_s

    # -- health ---------------------------------------------------------------------------

    def health(self, record: LiveRecord) -> str:
        """Health of the server a ledger record points to.

        Returns:
            ``"Healthy"`` (pid alive and ``GET /livez`` answers 200),
            ``"Unhealthy: <why>"`` (alive but the probe fails), or
            ``"NotRunning: process <pid> exited"``, or ``"NotRunning: no server
            recorded"`` when the record names none (a first apply that failed, a
            destroyed deployment).
        """
        pid = int(record.outputs.get("pid") or 0)
        url = record.outputs.get("backend_url") or record.outputs.get("url", "")
        if not pid or not url:
            return "NotRunning: no server recorded"
        health = server_health(pid, url, **identity(record.outputs))
        if health != "Healthy" or not record.outputs.get("router"):
            return health
        routed = router_health(RouterHandle.from_dict(record.outputs.get("router")))
        if routed != "Healthy":
            port = record.outputs.get("port", "?")
            return f"Unhealthy: the server runs, but not its router on port {port} ({routed})"
        return health

    def restore_router(self, record: LiveRecord) -> ApplyResult | None:
        """Start the router again for the recorded server, when that server runs and
        answers and only its router is gone (killed, crashed): the recorded deployment is
        restored as it was, on its stable port, without a new server and without
        anything from the spec in the tree (that is an apply's business).

        Returns:
            ``None`` when this does not apply (no router recorded, the recorded server is
            not healthy, or the router is); else an :class:`ApplyResult` (``changed``)
            whose ``outputs`` are the record's with the new router's ``url``, ``port``
            and ``router`` identity. A recorded router process that still lives but
            does not answer is stopped first (identity checked).

        Raises:
            ApplyError: (exit 3, transient: not the spec's fault) the stable port is held
                by another process, or the router did not start; the recorded server is
                left running.
        """
        out = dict(record.outputs)
        pid, backend = int(out.get("pid") or 0), str(out.get("backend_url") or "")
        old = RouterHandle.from_dict(out.get("router"))
        if not pid or not backend or old is None:
            return None
        if server_health(pid, backend, **identity(out)) != "Healthy":
            return None
        if router_health(old) == "Healthy":
            return None
        stop_router(old, grace_s=self.stop_grace_s)  # a hung one; a dead one is a no-op
        key = record.key
        try:
            if not port_is_free(old.port):
                raise RouterError(port_taken_message(old.port, key))
            router = start_router(
                self.config, key, old.port, [{"name": STABLE, "url": backend, "weight": 100}]
            )
        except RouterError as exc:
            raise ApplyError(
                f"{key}: its recorded server (pid {pid}) runs, but its router could not be "
                f"started again: {exc.message}",
                transient=True,
            ) from None
        outputs = {**out, "url": router.url, "port": router.port, "router": router.to_dict()}
        return ApplyResult(
            True,
            outputs,
            f"restored the recorded deployment: a new router on port {router.port} for its "
            f"running server {out.get('bento_tag', '')} (pid {pid}); no new server started",
            engine_digest=record.inputsDigest,
        )

    def restore_server(self, record: LiveRecord) -> ApplyResult | None:
        """Start the recorded Bento again when the recorded server is gone, behind the
        recorded router (switched to it) or a new router on the recorded stable port:
        the deployment the ledger records serves again, before the spec in the tree (that
        differs from it) is tried. One worker; no smoke test (the Bento passed its own
        when it was applied).

        Returns:
            ``None`` when this does not apply (the recorded server answers, no Bento or
            port is recorded, or the Bento is no longer in the store); else an
            :class:`ApplyResult` (``changed``) with the new server's and router's
            ``outputs``.

        Raises:
            ApplyError: (exit 3, transient) the server or router could not be started
                (nothing of them is left running).
        """
        out = dict(record.outputs)
        artifact = artifact_of(record.artifact)
        port = int(out.get("port") or 0)
        if artifact is None or not artifact.bento_tag or not port or record.destroyed:
            return None
        pid, backend = int(out.get("pid") or 0), str(out.get("backend_url") or "")
        if pid and backend and server_health(pid, backend, **identity(out)) == "Healthy":
            return None
        name, _, version = artifact.bento_tag.partition(":")
        if not (bentoml_home(self.config) / "bentos" / name / version / "bento.yaml").is_file():
            return None  # garbage-collected: only a build of the recorded spec brings it back
        key = record.key
        try:
            with step("restore", key, f"{artifact.bento_tag} (bentoml serve)"):
                handle = start_server(
                    artifact,
                    self.config,
                    port=None,
                    timeout_s=self.ready_timeout_s,
                    workers=1,
                    log_name=key,
                    deployment=key,
                )
        except ServeError as exc:
            raise ApplyError(
                f"{key}: the recorded Bento {artifact.bento_tag} could not be started again: "
                f"{exc.message}",
                transient=True,
            ) from None
        backends = [{"name": STABLE, "url": handle.url, "weight": 100}]
        router = self._live_router(out)
        try:
            if router is not None:
                set_backends(router, backends)
            else:
                old = RouterHandle.from_dict(out.get("router"))
                if old is not None:
                    stop_router(old, grace_s=self.stop_grace_s)
                if not port_is_free(port):
                    raise RouterError(port_taken_message(port, key))
                router = start_router(self.config, key, port, backends)
        except RouterError as exc:
            stop_server(handle, grace_s=self.stop_grace_s)
            raise ApplyError(
                f"{key}: the recorded Bento {artifact.bento_tag} was started again, but not "
                f"its router: {exc.message}",
                transient=True,
            ) from None
        if pid or out.get("server_id"):
            self._stop_backend(out)  # what is left of the dead one (identity-checked)
        return ApplyResult(
            True,
            self._outputs(handle, router),
            f"restored the recorded deployment: {artifact.bento_tag} started again behind "
            f"the router on port {router.port}",
            engine_digest=record.inputsDigest,
        )

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
                restored = self.restore_router(record)
                if restored is not None:  # the recorded server runs: only its router died
                    return ApplyResult(
                        True,
                        restored.outputs,
                        f"{restored.message}{_swept_note(swept)}",
                        engine_digest=digest,
                    )
                why = f"same inputs, but the server is not healthy ({health})"
            elif not record.artifact.get("bento_tag"):
                why = f"no artifact was applied before; serving {artifact.bento_tag}"
            elif record.artifact.get("bento_tag") != artifact.bento_tag:
                why = (
                    f"artifact changed ({record.artifact.get('bento_tag')} -> {artifact.bento_tag})"
                )
            else:
                why = "inputs changed"

        old = dict(record.outputs) if record is not None and not record.destroyed else {}
        port = self._stable_port(dep, old)
        old_router = self._live_router(old)
        if old_router is not None and old_router.port != port:
            old_router_to_stop, old_router = old_router, None
        else:
            old_router_to_stop = None
        # a record of the engine before the router (the server itself on the pinned port)
        legacy_on_port = bool(old and not old.get("router") and int(old.get("port") or 0) == port)
        if (
            port is not None
            and old_router is None
            and not legacy_on_port
            and not port_is_free(port)
        ):
            taken = self._failed(dep, record, port_taken_message(port, dep.key))
            taken.transient = True  # another process's doing, not the spec's: not counted
            raise taken

        # a canary needs a stable version to compare with: a live router and server
        analysis = None if self.immediate else Analysis.of(dep)
        if analysis is not None and (
            old_router is None or not old.get("backend_url") or self.health(record) != "Healthy"
        ):
            analysis = None  # nothing live to compare with: the first apply goes straight
        try:
            handle = self._start(dep, artifact)
        except ServeError as exc:
            if analysis is None:
                raise self._failed(dep, record, exc.message) from None
            raise self._aborted(
                dep, record, f"its server did not start: {exc.message}", Rollout()
            ) from None
        try:
            smoke = run_smoke(dep, self.config, handle.url)
        except BaseException:
            stop_server(handle, grace_s=self.stop_grace_s)
            raise
        if not smoke.passed:
            stop_server(handle, grace_s=self.stop_grace_s)
            detail = "\n".join(f"  - {f}" for f in smoke.failures)
            reason = (
                f"smoke test of {dep.key} ({artifact.bento_tag}) failed:\n{detail}\n"
                f"The new server was stopped; server log: {self.config.rel(handle.log_path)}"
            )
            if analysis is not None:
                raise self._aborted(dep, record, reason, Rollout(), smoke)
            raise self._failed(dep, record, reason, smoke)
        fault_point("smoke")

        rollout = None
        if analysis is not None and old_router is not None:
            rollout = self._canary(dep, record, old_router, old, handle, analysis, smoke)

        backends = [{"name": STABLE, "url": handle.url, "weight": 100}]
        try:
            if rollout is not None:
                router = old_router  # the canary walk ended on the new server
            elif old_router is not None:
                set_backends(old_router, backends)
                router = old_router
            else:
                if legacy_on_port:
                    self._stop_backend(old)  # it holds the port the router takes
                router = start_router(
                    self.config, dep.key, port if port is not None else free_port(), backends
                )
        except RouterError as exc:
            stop_server(handle, grace_s=self.stop_grace_s)
            raise self._failed(dep, record, exc.message, smoke) from None
        drained = ""
        if old_router_to_stop is not None:
            # the port changed: the old router answers its in-flight requests as it stops
            stop_router(old_router_to_stop, grace_s=self.stop_grace_s)
        if old:
            left = wait_drained(router, str(old.get("backend_url") or ""), self.drain_timeout_s)
            if left:
                drained = f"; {left} request(s) still in flight on the old server after "
                drained += f"{self.drain_timeout_s:g} s were cut"
            self._stop_backend(old)
        fault_point("update")
        message = (
            f"serving {artifact.bento_tag} at {router.url} ({why}); {smoke.summary()}"
            + (f"; canary promoted: {rollout.reason}" if rollout is not None else "")
            + drained
            + _swept_note(swept)
        )
        outputs = self._outputs(handle, router)
        return ApplyResult(
            True,
            outputs,
            message,
            digest,
            smoke=smoke,
            rollout=rollout.to_dict() if rollout is not None else None,
        )

    def _canary(
        self,
        dep: Deployment,
        record: LiveRecord | None,
        router: RouterHandle,
        old: dict,
        handle: ServerHandle,
        analysis: Analysis,
        smoke,
    ) -> Rollout:
        """Walk the canary steps (:func:`~reconciler.engine.canary.run_canary`); returns
        the promoted rollout, or stops the canary server and raises the abort."""
        realized, not_judged = self._realized(dep, str(old["backend_url"]), analysis)
        try:
            with step("canary", dep.key, f"steps {', '.join(map(str, analysis.steps))} %"):
                rollout = run_canary(
                    router,
                    str(old["backend_url"]),
                    handle.url,
                    analysis,
                    probe_body=_probe_body(dep, self.config),
                    on_check=(
                        None
                        if self.on_canary_check is None
                        else functools.partial(self.on_canary_check, dep)
                    ),
                    realized=realized,
                )
        except (RouterError, OSError) as exc:
            rollout = Rollout(verdict=ABORTED, reason=f"the router failed: {exc}")
            with contextlib.suppress(RouterError, OSError):
                set_backends(router, [{"name": STABLE, "url": old["backend_url"], "weight": 100}])
        if rollout.verdict == PROMOTED:
            if not_judged:
                rollout.reason += f" ({not_judged})"
            return rollout
        left = wait_drained(router, handle.url, self.drain_timeout_s)
        stop_server(handle, grace_s=self.stop_grace_s)
        note = f" ({left} request(s) still in flight on it were cut)" if left else ""
        raise self._aborted(dep, record, rollout.reason + note, rollout, smoke)

    def _realized(
        self, dep: Deployment, stable_url: str, analysis: Analysis
    ) -> tuple[Callable[[], dict | None] | None, str]:
        """The canary's realized-quality reader for :func:`run_canary`, and why there is
        none (``""`` when there is one or the metric is not asked for).

        The canary's captured predictions are told apart by ``spec.model.version``, so
        it must differ from the version the stable server reports (``GET /metadata``).
        """
        if analysis.realized_quality is None:
            return None, ""
        if self.realized_quality is None:
            return None, "nothing reads labels in this run"
        version = str(dep.get("spec.model.version", "") or "")
        try:
            resp = httpx.get(f"{stable_url}/metadata", timeout=10, trust_env=False)
            stable_version = str(resp.json().get("model_version", ""))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return None, f"the stable version's model.version could not be read: {exc}"
        if not version or version == stable_version:
            return None, (
                f"the new version's captured predictions cannot be told from the stable "
                f"version's: both are model.version {version!r}; give the new model its "
                "own version"
            )
        reader, since = self.realized_quality, datetime.now(UTC)
        return functools.partial(reader, dep, version, since), ""

    def _aborted(
        self, dep: Deployment, record: LiveRecord | None, reason: str, rollout: Rollout, smoke=None
    ) -> ApplyError:
        """The error of an aborted canary: the stable version serves all traffic."""
        rollout.verdict, rollout.reason = ABORTED, rollout.reason or reason
        error = self._failed(
            dep,
            record,
            f"canary aborted: {reason}; traffic stays on the stable version "
            f"({(record.outputs if record else {}).get('bento_tag', '?')})",
            smoke,
        )
        error.rollout = rollout.to_dict()
        return error

    def _stable_port(self, dep: Deployment, old: dict) -> int | None:
        """The deployment's stable port: ``spec.target.port``, else the port its last
        apply recorded (kept across applies), else ``None`` (a free one is chosen)."""
        port = dep.get("spec.target.port")
        if isinstance(port, int):
            return port
        recorded = int(old.get("port") or 0) if isinstance(old.get("port"), int) else 0
        return recorded or None

    def _live_router(self, old: dict) -> RouterHandle | None:
        """The recorded router when it still runs and answers (else ``None``)."""
        handle = RouterHandle.from_dict(old.get("router"))
        if handle is not None and router_health(handle) == "Healthy":
            return handle
        return None

    def _start(self, dep: Deployment, artifact: Artifact) -> ServerHandle:
        """Start the new server on a free port (the router keeps the stable one).

        Raises:
            ServeError: it exited or was not ready in time (nothing of it is left).
        """
        workers = dep.get("spec.serving.workers", 1)
        with step("start", dep.key, f"{artifact.bento_tag} (bentoml serve)"):
            return start_server(
                artifact,
                self.config,
                port=None,
                timeout_s=self.ready_timeout_s,
                workers=int(workers) if isinstance(workers, int) else 1,
                log_name=dep.key,
                deployment=dep.key,
            )

    def _stop_backend(self, outputs: dict) -> None:
        """Stop the server a record's ``outputs`` name (identity-checked)."""
        pid = int(outputs.get("pid") or 0)
        if pid or outputs.get("server_id"):
            stop_server(pid, **identity(outputs), grace_s=self.stop_grace_s)

    def _outputs(self, handle: ServerHandle, router: RouterHandle) -> dict:
        """The ledger's ``outputs``: the stable ``url``/``port`` (the router's), the
        serving server's identity (``pid``, ``pgid``, ``server_id``, ``bento_tag``,
        ``process_started``) and its own ``backend_url``/``backend_port``, and the
        router's identity (``router``: :class:`RouterHandle` fields)."""
        return {
            "url": router.url,
            "port": router.port,
            "backend_url": handle.url,
            "backend_port": handle.port,
            "router": router.to_dict(),
            "pid": handle.pid,
            "pgid": handle.pgid,
            "bento_tag": handle.bento_tag,
            "server_id": handle.server_id,
            "process_started": handle.started,
            "log": self.config.rel(handle.log_path),
            "started": now_iso(),
        }

    def _failed(
        self, dep: Deployment, record: LiveRecord | None, reason: str, smoke=None
    ) -> ApplyError:
        """The error of a failed apply; the previous server and router were not touched."""
        kept = (
            f"{dep.key} stays at revision {record.lastAppliedRevision or '(none)'}"
            if record is not None
            else f"nothing was recorded for {dep.key}"
        )
        return ApplyError(f"apply of {dep.key} failed: {reason}\n(ledger: {kept})", smoke=smoke)

    # -- destroy --------------------------------------------------------------------------

    def destroy(self, record: LiveRecord) -> bool:
        """Stop the router and the server ``record`` points to (and any orphaned
        workers), and every server or router of the deployment started from this state
        directory that no record names (:meth:`unrecorded`).

        Returns:
            True when the record was live (it is not destroyed and names a server) or an
            unrecorded server was stopped, False when there was nothing to stop.
        """
        strays = self.stop_unrecorded(f"{record.name}-{record.environment}", record)
        if record.destroyed:
            return bool(strays)
        router = RouterHandle.from_dict(record.outputs.get("router"))
        if router is not None:
            stop_router(router, grace_s=self.stop_grace_s)
        pid = int(record.outputs.get("pid") or 0)
        server_id = record.outputs.get("server_id", "")
        if not (pid or server_id):
            return bool(strays) or router is not None
        stop_server(pid, **identity(record.outputs), grace_s=self.stop_grace_s)
        return True

    def unrecorded(self, key: str, record: LiveRecord | None) -> list[dict]:
        """Servers and routers of deployment ``key`` started from this state directory
        that ``record`` does not name (left by an apply killed before it recorded them),
        from :func:`~reconciler.build.serve.find_servers` and
        :func:`~reconciler.engine.routing.find_routers` (a router as ``{"server_id":
        router id, "deployment", "pids": [pid], "manager": pid, "router": True}``)."""
        known = _named(record.outputs) if record is not None and not record.destroyed else set()
        return [s for sid, s in self._processes(key).items() if sid not in known]

    def _processes(self, key: str = "") -> dict[str, dict]:
        found = find_servers(self.config.state_dir, key)
        for rid, router in find_routers(self.config.state_dir, key).items():
            found[rid] = {
                "server_id": rid,
                "deployment": router["deployment"],
                "pids": [router["pid"]],
                "manager": router["pid"],
                "router": True,
            }
        return found

    def without_record(self, env: str, records: list) -> dict[str, list[dict]]:
        """Servers and routers of ``env`` started from this state directory that no live
        record in ``records`` names: ``{deployment key: [server, ...]}`` (as
        :meth:`unrecorded`)."""
        named: set[str] = set()
        for r in records:
            if not r.destroyed:
                named |= _named(r.outputs)
        out: dict[str, list[dict]] = {}
        for sid, server in self._processes().items():
            if server["deployment"].endswith(f"-{env}") and sid not in named:
                out.setdefault(server["deployment"], []).append(server)
        return out

    def stop_unrecorded(self, key: str, record: LiveRecord | None) -> list[dict]:
        """Stop every server and router of :meth:`unrecorded`; returns the ones stopped."""
        strays = self.unrecorded(key, record)
        for s in strays:
            if s.get("router"):
                stop_found(
                    {"router_id": s["server_id"], "pid": s["manager"]}, grace_s=self.stop_grace_s
                )
                table = self.config.state_dir / "routers" / f"{s['server_id']}.json"
                table.unlink(missing_ok=True)
                continue
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
