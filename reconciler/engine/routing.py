"""Host side of the local router (``reconciler.runtime.router``): start, switch, read, stop.

The router owns a local deployment's stable port; the Bento servers behind it run on
ephemeral ports. :func:`start_router` starts it in its own process group (like a server)
with ``MODELOPS_ROUTER_ID``, the state directory and the deployment in its environment,
so :func:`find_routers` finds it even when no ledger record names it;
:func:`set_backends` writes its table and waits until the router answers the new
generation; :func:`wait_drained` waits until no request is in flight on a backend that
was switched away from; :func:`stop_router` signals it only when its recorded identity
(pid, start time, process group, command line, router id) matches. Errors are
:class:`RouterError` (exit 3).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from reconciler.build.serve import DEPLOYMENT_ENV, HOST, STATE_ENV, log_tail, port_is_free
from reconciler.core.config import Config
from reconciler.core.diagnostics import EXIT_APPLY_FAILED, ModelopsError
from reconciler.core.procs import (
    STOP_GRACE_S,
    identity_mismatches,
    identity_of,
    leads_group,
    reap_finished,
    signal_group,
    start_group,
    stop_group,
    wait_exited,
)
from reconciler.runtime.router_ids import ROUTER_ID_ENV, STATUS_PATH

MODULE = "reconciler.runtime.router"
_POLL_S = 0.05


@functools.cache
def _client() -> httpx.Client:
    """One HTTP client per process for the router's control endpoint: ``httpx.get`` builds
    a client and its TLS context per call (about 30 ms of CPU), and the start, table and
    drain waits poll every :data:`_POLL_S` seconds."""
    return httpx.Client(trust_env=False)


READY_TIMEOUT_S = 30.0
"""Seconds a new router has to answer ``GET /-/router`` (it starts in about 0.5 s)."""
SWITCH_TIMEOUT_S = 10.0
"""Seconds a router has to answer a new table's generation after SIGHUP."""

_CHILDREN: dict[int, object] = {}  # Popen of routers this process started (reaped on stop)


class RouterError(ModelopsError):
    """The router could not start, did not take a new table, or its port is taken (exit 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_APPLY_FAILED)


@dataclass(frozen=True)
class RouterHandle:
    """A running router: the identity recorded in the ledger (``outputs.router``).

    Attributes:
        pid: the router process (leads its own process group: ``pgid == pid``).
        port: its stable TCP port on 127.0.0.1; ``url`` is ``http://127.0.0.1:<port>``.
        router_id: value of ``MODELOPS_ROUTER_ID`` in its environment.
        started: its start time (seconds since the epoch, psutil's ``create_time``).
        table: its routing table file (JSON, written by :func:`set_backends`).
    """

    pid: int
    pgid: int
    port: int
    url: str
    router_id: str
    started: float
    table: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> RouterHandle | None:
        """The handle recorded in ``outputs["router"]`` (None when none or malformed)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                pid=int(data["pid"]),
                pgid=int(data.get("pgid") or data["pid"]),
                port=int(data["port"]),
                url=str(data["url"]),
                router_id=str(data["router_id"]),
                started=float(data.get("started") or 0.0),
                table=str(data["table"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def port_holder(port: int) -> str:
    """Who listens on ``127.0.0.1:<port>`` (or ``*:<port>``): ``"pid 12 (python -m
    http.server)"``, or ``""`` when it cannot be told (another user's process)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return ""
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if not conn.pid:
                return ""
            try:
                cmd = " ".join(psutil.Process(conn.pid).cmdline())[:120]
            except psutil.Error:
                cmd = "?"
            return f"pid {conn.pid} ({cmd})"
    return ""


def port_taken_message(port: int, key: str) -> str:
    """The error for a stable port held by something else: which process, and how to
    choose another port."""
    holder = port_holder(port)
    return (
        f"port {port} on {HOST} is already in use"
        + (f" by {holder}" if holder else "")
        + f"; {key} keeps its port across applies, so it cannot move by itself. Stop "
        "whatever listens there (`ss -ltnp`), or choose another port: spec.target.port "
        "(in the environment's overlay), or leave it out and a free port is chosen on the "
        "first apply and kept. No server was started."
    )


def write_table(path: Path, generation: int, backends: list[dict], **extra: object) -> None:
    """Write a routing table atomically (temp file, fsync, rename).

    Args:
        backends: ``[{"name", "url", "weight"}]`` (weights: relative shares, >= 0).
        extra: ``fallback`` (a backend name), ``mirror`` (0..1).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"generation": generation, "backends": backends, **extra}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_status(url: str, timeout_s: float = 5.0) -> dict:
    """``GET <router url>/-/router`` (see ``reconciler.runtime.router``).

    Raises:
        RouterError: no answer, or not a router's answer.
    """
    try:
        resp = _client().get(f"{url}{STATUS_PATH}", timeout=timeout_s)
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise RouterError(f"router at {url} did not answer {STATUS_PATH}: {exc}") from None
    if resp.status_code != 200 or not isinstance(data, dict) or "generation" not in data:
        raise RouterError(f"{url}{STATUS_PATH} answered HTTP {resp.status_code}, not a router")
    return data


def start_router(
    config: Config,
    key: str,
    port: int,
    backends: list[dict],
    *,
    timeout_s: float = READY_TIMEOUT_S,
) -> RouterHandle:
    """Start the router of deployment ``key`` on ``127.0.0.1:<port>`` routing to
    ``backends`` (generation 0), and wait until it answers.

    Its log is appended to ``<state_dir>/logs/<key>.log`` (the server's log); its table is
    ``<state_dir>/routers/<router_id>.json``.

    Raises:
        RouterError: the port is taken (the message names the holder and how to choose
            another), the router exited or did not answer within ``timeout_s``; nothing
            of it is left running.
    """
    if not port_is_free(port):
        raise RouterError(port_taken_message(port, key))
    router_id = f"{key}-router-{uuid.uuid4().hex[:12]}"
    table = config.state_dir / "routers" / f"{router_id}.json"
    write_table(table, 0, backends, fallback=backends[0]["name"] if backends else "")
    log_path = config.state_dir / "logs" / f"{key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({ROUTER_ID_ENV: router_id, STATE_ENV: str(config.state_dir), DEPLOYMENT_ENV: key})
    argv = [sys.executable, "-m", MODULE, "--port", str(port), "--config", str(table)]
    with open(log_path, "ab", buffering=0) as log:
        offset = log.tell()
        with contextlib.suppress(OSError):
            log.write(f"=== modelops router {router_id} on port {port}\n".encode())
        try:
            proc = start_group(argv, stdout=log, cwd=config.state_dir, env=env)
        except OSError as exc:
            raise RouterError(f"cannot start the router of {key}: {exc}") from None
    _CHILDREN[proc.pid] = proc
    ident = identity_of(proc.pid)
    handle = RouterHandle(
        pid=proc.pid,
        pgid=proc.pid,
        port=port,
        url=f"http://{HOST}:{port}",
        router_id=router_id,
        started=ident["started"] if ident else 0.0,
        table=str(table),
    )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            code = proc.poll()
            if code is not None:
                tail = log_tail(log_path, offset)
                hint = ""
                if "address already in use" in tail.lower():
                    hint = f": {port_taken_message(port, key)}"
                raise RouterError(
                    f"router of {key} on port {port} exited with code {code}{hint}\n"
                    f"--- last lines of {config.rel(log_path)}:\n{tail or '(empty log)'}"
                )
            with contextlib.suppress(RouterError):
                if read_status(handle.url, timeout_s=1.0).get("router_id") == router_id:
                    return handle
            if time.monotonic() >= deadline:
                raise RouterError(
                    f"router of {key} on port {port} did not answer {STATUS_PATH} within "
                    f"{timeout_s:g} s"
                )
            time.sleep(_POLL_S)
    except BaseException:
        stop_group(proc, grace_s=2.0)
        _CHILDREN.pop(proc.pid, None)
        with contextlib.suppress(OSError):
            table.unlink()
        raise


def set_backends(
    handle: RouterHandle,
    backends: list[dict],
    *,
    fallback: str = "",
    mirror: float = 0.0,
    timeout_s: float = SWITCH_TIMEOUT_S,
) -> dict:
    """Give the router a new table and wait until it routes by it.

    Args:
        backends: ``[{"name", "url", "weight"}]``.
        fallback: the backend that answers in place of a failed one (default: the first).
        mirror: share (0..1) of requests also sent to the other backend and compared.

    Returns:
        The router's status (``GET /-/router``) once it answers the new generation.

    Raises:
        RouterError: the router is not the recorded one, is gone, or did not take the
            table within ``timeout_s``.
    """
    problems = router_identity_problems(handle)
    if problems:
        raise RouterError(f"router {handle.router_id} cannot be switched: {'; '.join(problems)}")
    current = read_status(handle.url)
    if current.get("router_id") != handle.router_id:
        raise RouterError(f"port {handle.port} is answered by another router")
    generation = int(current["generation"]) + 1
    write_table(
        Path(handle.table),
        generation,
        backends,
        fallback=fallback or (backends[0]["name"] if backends else ""),
        mirror=mirror,
    )
    os.kill(handle.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while True:
        status = read_status(handle.url)
        if int(status.get("generation", -1)) >= generation:
            return status
        if time.monotonic() >= deadline:
            raise RouterError(
                f"router {handle.router_id} did not take table generation {generation} within "
                f"{timeout_s:g} s ({status.get('load_error') or 'no error reported'})"
            )
        time.sleep(_POLL_S)


def wait_drained(handle: RouterHandle, url: str, timeout_s: float) -> int:
    """Wait until the router has no request in flight to backend ``url`` any more.

    Returns:
        The requests still in flight when ``timeout_s`` ran out (0: drained).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = read_status(handle.url)
        except RouterError:
            return 0  # the router is gone: nothing of it is in flight
        inflight = int(status.get("draining", {}).get(url, 0))
        inflight += sum(
            int(b.get("inflight", 0))
            for b in status.get("backends", {}).values()
            if b.get("url") == url
        )
        if inflight == 0 or time.monotonic() >= deadline:
            return inflight
        time.sleep(_POLL_S)


def router_identity_problems(handle: RouterHandle) -> list[str]:
    """What the live process ``handle.pid`` does not match of the recorded router
    (``[]``: it is that router)."""
    out = identity_mismatches(
        handle.pid, started=handle.started, pgid=handle.pgid, cmdline_has=[MODULE]
    )
    if out:
        return out
    if _router_id_of(handle.pid) != handle.router_id:
        out.append(f"process {handle.pid} does not carry router id {handle.router_id!r}")
    return out


def router_health(handle: RouterHandle | None) -> str:
    """``"Healthy"`` (the recorded router runs and answers), else why not."""
    if handle is None:
        return "NotRunning: no router recorded"
    problems = router_identity_problems(handle)
    if problems:
        return f"NotRunning: router {'; '.join(problems)}"
    try:
        read_status(handle.url, timeout_s=5.0)
    except RouterError as exc:
        return f"Unhealthy: {exc.message}"
    return "Healthy"


def _router_id_of(pid: int) -> str:
    try:
        return psutil.Process(pid).environ().get(ROUTER_ID_ENV, "")
    except (psutil.Error, OSError):
        return ""


def find_routers(state_dir: Path | str, deployment: str = "") -> dict[str, dict]:
    """Routers started from ``state_dir`` (of ``deployment`` when given), found by
    scanning processes for ``MODELOPS_ROUTER_ID``.

    Returns:
        ``{router_id: {"router_id", "deployment", "pid"}}``.
    """
    want = str(state_dir)
    found: dict[str, dict] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
            rid = env.get(ROUTER_ID_ENV)
            if not rid or env.get(STATE_ENV) != want:
                continue
            if deployment and env.get(DEPLOYMENT_ENV) != deployment:
                continue
            found[rid] = {
                "router_id": rid,
                "deployment": env.get(DEPLOYMENT_ENV, ""),
                "pid": proc.pid,
            }
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def reap_exited() -> int:
    """Reap every router this process started that has exited; returns how many (see
    :func:`reconciler.build.serve.reap_exited`)."""
    return reap_finished(_CHILDREN)


def stop_router(handle: RouterHandle, *, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the router (SIGTERM: it finishes in-flight requests; SIGKILL after
    ``grace_s``) when the live process is the recorded one; remove its table.

    Returns:
        True when it was signalled; False when the pid is gone or now another process
        (which is left alone).
    """
    signalled = False
    if not router_identity_problems(handle):
        signalled = _stop_pid(handle.pid, grace_s)
    with contextlib.suppress(OSError):
        Path(handle.table).unlink()
    return signalled


def stop_found(router: dict, *, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop a router :func:`find_routers` found (its pid carries its router id)."""
    if _router_id_of(router["pid"]) != router["router_id"]:
        return False
    return _stop_pid(router["pid"], grace_s)


def _stop_pid(pid: int, grace_s: float) -> bool:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        stop_group(child, grace_s=grace_s)  # type: ignore[arg-type]
        return True
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return False
    if leads_group(pid):
        signal_group(pid, signal.SIGTERM)
    else:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = wait_exited([proc], grace_s)
    if alive:
        if leads_group(pid):
            signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
        wait_exited(alive, 5)
    return True
