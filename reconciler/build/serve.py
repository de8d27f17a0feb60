"""Serve a built Bento locally: ``bentoml serve <tag>`` on a loopback port.

:func:`start_server` starts it in its own process group (``reconciler.core.procs``) and
waits for ``GET /readyz``; :func:`stop_server` stops the group and every process that
carries the server's ``MODELOPS_SERVER_ID`` marker (workers orphaned by a crashed
manager). Errors are :class:`ServeError` (exit 3). How and why: ``docs/build.md``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from reconciler.build.artifact import Artifact
from reconciler.core.config import Config
from reconciler.core.diagnostics import EXIT_APPLY_FAILED, ModelopsError
from reconciler.core.procs import (
    STOP_GRACE_S,
    fault_point,
    identity_mismatches,
    identity_of,
    leads_group,
    reap_finished,
    signal_group,
    start_group,
    wait_exited,
)

HOST = "127.0.0.1"
MARKER_ENV = "MODELOPS_SERVER_ID"
STATE_ENV = "MODELOPS_SERVER_STATE"
"""In every server process the engine starts: the state directory it was started from."""
DEPLOYMENT_ENV = "MODELOPS_SERVER_DEPLOYMENT"
"""In every server process the engine starts: its deployment (``<name>-<env>``)."""
LOG_TAIL_LINES = 25
_POLL_S = 0.2

# Popen objects of the servers this process started, by pid, so that they are reaped
# (a killed child stays a zombie, and looks alive, until its parent waits for it).
_CHILDREN: dict[int, subprocess.Popen] = {}


class ServeError(ModelopsError):
    """A local server could not be started, became unhealthy, or failed its smoke test.

    Always exit code 3 (apply failed). The message says why and, when there is one,
    ends with the tail of the server log.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_APPLY_FAILED)


@dataclass(frozen=True)
class ServerHandle:
    """A running ``bentoml serve`` process.

    Attributes:
        pid: process id of the ``bentoml serve`` manager process.
        pgid: its process group id (equal to ``pid``: it leads a new session).
        port: TCP port on 127.0.0.1.
        url: ``http://127.0.0.1:<port>``.
        log_path: file receiving the server's stdout and stderr (appended to).
        server_id: value of ``MODELOPS_SERVER_ID`` in every process of this server.
        bento_tag: the Bento being served.
        started: the manager's start time (seconds since the epoch, psutil's
            ``create_time``; 0.0 when it could not be read): with ``pid``, ``pgid``,
            ``bento_tag`` and ``server_id`` the identity a later stop or health check
            compares (:func:`identity_problems`).
    """

    pid: int
    pgid: int
    port: int
    url: str
    log_path: str
    server_id: str = ""
    bento_tag: str = ""
    started: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready mapping of every field."""
        return asdict(self)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (chosen by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``127.0.0.1:<port>`` can be bound now (``SO_REUSEADDR`` like the server).

    Returns False when any socket is bound or listening on it (``EADDRINUSE``).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def log_tail(path: Path | str, start: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file from byte offset ``start`` ('' if none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


def _service_name(artifact: Artifact) -> str | None:
    """The entry service's name from the Bento's ``bento.yaml`` (None when unknown)."""
    if not artifact.bento_path:
        return None
    path = Path(artifact.bento_path) / "bento.yaml"
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    services = info.get("services") or []
    if services and isinstance(services[0], dict) and services[0].get("name"):
        return str(services[0]["name"])
    service = info.get("service", "")
    if isinstance(service, str) and ":" in service:
        return service.rsplit(":", 1)[1]
    return None


#: Parts of the shared BentoML home a server's own home links to (the Bento and model
#: stores and the environments built for them); everything else is the server's own.
_SHARED_HOME_PARTS = ("bentos", "models", "envs")


#: RAM-backed file systems for the servers' Prometheus multiprocess files, first that is
#: a writable directory wins (else the temp directory).
METRICS_ROOTS = (Path("/dev/shm"), Path("/run/shm"))


def metrics_dir(home: Path) -> Path:
    """The Prometheus multiprocess directory of the servers of BentoML home ``home``, off
    the state directory, emptied; ``<home>/prometheus_multiproc_dir`` links to it.

    Every worker of a BentoML server keeps its request metrics (health probes included)
    in memory-mapped files there, created per worker process and grown as label sets
    appear. On a full state disk a new page of such a file cannot be allocated: the
    worker is killed (SIGBUS) at its next request, and every restarted worker again, so
    ``/livez`` and ``/predict`` failed while ``/metrics`` answered (measured on a filled
    tmpfs, ``docs/build.md``). Prometheus' client recommends a tmpfs for the directory;
    this is one (``/dev/shm``), named after ``home`` and owned by this user (mode 0700; a
    directory someone else made there is refused: a :class:`ServeError`). BentoML empties
    the directory at start but cannot through a link, so it is emptied here; those of
    homes that are gone are removed (:func:`prune_metrics_dirs`).
    """
    root = next(
        (r for r in METRICS_ROOTS if r.is_dir() and os.access(r, os.W_OK | os.X_OK)),
        Path(tempfile.gettempdir()),
    )
    prune_metrics_dirs(root)
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    target = root / f"modelops-metrics-{os.getuid()}-{digest}"
    with contextlib.suppress(FileExistsError):
        target.mkdir(mode=0o700)
    # beside it (BentoML would take a file inside for metrics left over and move away)
    target.with_name(target.name + ".home").write_text(str(home.resolve()), encoding="utf-8")
    info = os.lstat(target)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ServeError(
            f"{target} (the servers' metrics directory) is not a directory of this user; "
            "remove it and start again"
        )
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    link = home / "prometheus_multiproc_dir"
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink(missing_ok=True)
        link.symlink_to(target, target_is_directory=True)
    return target


def prune_metrics_dirs(root: Path) -> None:
    """Remove this user's metrics directories under ``root`` whose BentoML home is gone
    (a removed state directory, a test's temporary one): the ``.home`` file beside each
    names its home. Best-effort: a directory that cannot be removed stays."""
    for marker in root.glob(f"modelops-metrics-{os.getuid()}-*.home"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if Path(marker.read_text(encoding="utf-8")).exists():
                continue
            target = marker.with_name(marker.name.removesuffix(".home"))
            info = os.lstat(target)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                shutil.rmtree(target)
            marker.unlink()


def server_home(config: Config, stem: str) -> Path:
    """The BentoML home of the server(s) of ``stem`` (a deployment ``<name>-<env>`` or a
    Bento name): ``<state_dir>/servers/<stem>/bentoml``, linking the shared stores.

    BentoML derives its Prometheus multiprocess directory from ``BENTOML_HOME`` and empties
    it when a server starts (``bentoml.serving.ensure_prometheus_dir``), so servers sharing
    one home wiped and mixed each other's metrics: ``/metrics`` and ``status`` showed
    another deployment's latency. Each stem gets its own home; the Bento store itself
    (``bentos``, ``models``, ``envs``) stays the shared one under ``<state_dir>/bentoml``.
    The metrics files themselves live in RAM, not on the state disk (:func:`metrics_dir`).
    """
    shared = config.state_dir / "bentoml"
    home = config.state_dir / "servers" / stem / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    for part in _SHARED_HOME_PARTS:
        (shared / part).mkdir(parents=True, exist_ok=True)
        link = home / part
        if not link.is_symlink() and not link.exists():
            link.symlink_to(shared / part, target_is_directory=True)
    metrics_dir(home)
    return home


def _server_env(
    config: Config,
    server_id: str,
    artifact: Artifact,
    workers: int,
    deployment: str = "",
    home: Path | None = None,
) -> dict:
    env = dict(os.environ)
    for key in ("BENTOML_PORT", "BENTOML_HOST", "BENTOML_CONFIG_OPTIONS"):
        env.pop(key, None)
    env["BENTOML_HOME"] = str(home or config.state_dir / "bentoml")
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env["PYTHONUNBUFFERED"] = "1"
    env["MODELOPS_REPO_ROOT"] = str(config.root)  # relative capture sinks resolve here
    env[MARKER_ENV] = server_id
    if deployment:
        env[STATE_ENV] = str(config.state_dir)
        env[DEPLOYMENT_ENV] = deployment
    name = _service_name(artifact)
    if name:
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {name: {"workers": workers}}})
    return env


def start_server(
    artifact: Artifact,
    config: Config,
    *,
    port: int | None = None,
    timeout_s: float = 60,
    workers: int = 1,
    log_name: str | None = None,
    deployment: str = "",
) -> ServerHandle:
    """Start ``bentoml serve <artifact.bento_tag>`` on 127.0.0.1 and wait until it is ready.

    Args:
        artifact: the built Bento (its ``bento_tag`` must be in ``<state_dir>/bentoml``).
        config: gives the state directory (BentoML home, ``logs/``).
        port: TCP port to listen on; ``None`` picks a free one. An explicit port is
            honoured or the start fails: it is never silently replaced.
        timeout_s: seconds to wait for ``GET /readyz`` to answer 200 (the server's import
            and model load take about 5-7 s on this machine).
        workers: BentoML worker processes for the service (>= 1).
        log_name: log file stem; default the Bento name. The log is
            ``<state_dir>/logs/<log_name>.log``, appended to (the local engine uses
            ``<name>-<env>``).
        deployment: ``<name>-<env>`` when the server serves a deployment (the local
            engine): every process of it then carries the state directory and the
            deployment in its environment, so :func:`find_servers` finds it even when
            no ledger record names it (an apply killed before it recorded the server).

    Returns:
        A :class:`ServerHandle` of the ready server.

    Raises:
        ServeError: (exit 3) no bento tag; the port is taken; the process exited before it
            was ready; not ready within ``timeout_s``. The server's processes are stopped
            first, and the message ends with the tail of the server log.
    """
    tag = artifact.bento_tag
    if not tag:
        raise ServeError("cannot serve: the artifact has no bento tag (was it built?)")
    if workers < 1:
        raise ServeError(f"workers must be at least 1, got {workers}")
    if port is None:
        port = free_port()
    elif not 1 <= int(port) <= 65535:
        raise ServeError(f"port {port} is not a TCP port (valid: 1-65535)")
    elif not port_is_free(int(port)):
        raise ServeError(
            f"port {port} on {HOST} is already in use; stop whatever listens there "
            "(`ss -ltnp`) or choose another port (spec.target.port, or leave it out for a "
            "free one). No server was started."
        )
    port = int(port)
    stem = log_name or tag.split(":", 1)[0]
    log_path = config.state_dir / "logs" / f"{stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    (config.state_dir / "bentoml").mkdir(parents=True, exist_ok=True)
    server_id = f"{stem}-{uuid.uuid4().hex[:12]}"
    argv = [sys.executable, "-m", "bentoml", "serve", tag, "--host", HOST, "--port", str(port)]
    with open(log_path, "ab", buffering=0) as log:  # unbuffered: nothing left to flush
        start_offset = log.tell()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # the header is a convenience: a full disk must not stop the server from starting
        # (its log writes fail too; serving and health do not depend on them)
        with contextlib.suppress(OSError):
            log.write(f"=== modelops {stamp}: {' '.join(argv[1:])} ({server_id})\n".encode())
        try:
            proc = start_group(
                argv,
                stdout=log,
                cwd=config.state_dir,
                env=_server_env(
                    config, server_id, artifact, workers, deployment, server_home(config, stem)
                ),
            )
        except OSError as exc:
            raise ServeError(f"cannot start `bentoml serve {tag}`: {exc}") from None
    fault_point("start")
    _CHILDREN[proc.pid] = proc
    ident = identity_of(proc.pid)
    handle = ServerHandle(
        pid=proc.pid,
        pgid=proc.pid,
        port=port,
        url=f"http://{HOST}:{port}",
        log_path=str(log_path),
        server_id=server_id,
        bento_tag=tag,
        started=ident["started"] if ident else 0.0,
    )

    def fail(reason: str) -> ServeError:
        stop_server(handle)
        tail = log_tail(log_path, start_offset)
        hint = ""
        if "Address already in use" in tail:
            hint = f" (port {port} was taken by another process meanwhile)"
        return ServeError(
            f"server for {tag} on {handle.url} {reason}{hint}; it was stopped.\n"
            f"--- last lines of {config.rel(log_path)}:\n{tail or '(empty log)'}"
        )

    deadline = time.monotonic() + timeout_s
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    raise fail(f"exited with code {code} before it became ready")
                try:
                    if client.get(f"{handle.url}/readyz").status_code == 200:
                        return handle
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    raise fail(f"did not become ready (GET /readyz) within {timeout_s:g} s")
                time.sleep(_POLL_S)
    except ServeError:
        raise
    except BaseException:  # interrupted (Ctrl-C) or anything unexpected: no server left behind
        stop_server(handle, grace_s=5)
        raise


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def reap_exited() -> int:
    """Reap every server this process started that has exited (another process, a
    ``destroy`` from another shell, stopped it); returns how many. A long-running
    ``reconcile --interval`` calls it after each pass: without it each such server
    stayed a zombie child until the loop ended."""
    return reap_finished(_CHILDREN)


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as exited, and is reaped if ours)."""
    if not pid:
        return False
    _reap(pid)
    proc = _proc(pid)
    if proc is None:
        return False
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
    except psutil.NoSuchProcess:
        return False
    return True


def is_bentoml_server(pid: int) -> bool:
    """Whether ``pid`` is a live ``bentoml serve`` process (guards against reused pids)."""
    if not is_alive(pid):
        return False
    proc = _proc(pid)
    try:
        cmd = proc.cmdline() if proc else []
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any("bentoml" in part for part in cmd) and "serve" in cmd


def _marked(server_id: str) -> list[psutil.Process]:
    """Every live process whose environment has ``MODELOPS_SERVER_ID=<server_id>``."""
    if not server_id:
        return []
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if proc.environ().get(MARKER_ENV) == server_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def find_servers(state_dir, deployment: str = "") -> dict[str, dict]:
    """Servers started by the local engine from ``state_dir``, found by scanning processes.

    Every process carrying ``MODELOPS_SERVER_STATE=<state_dir>`` (and, when given,
    ``MODELOPS_SERVER_DEPLOYMENT=<deployment>``) counts, recorded in the ledger or not.

    Returns:
        ``{server_id: {"server_id", "deployment", "pids": [int, ...], "manager": pid of
        the ``bentoml serve`` process or 0 (workers left by a crashed manager)}}``.
    """
    want = str(state_dir)
    found: dict[str, dict] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
            if env.get(STATE_ENV) != want or not env.get(MARKER_ENV):
                continue
            if deployment and env.get(DEPLOYMENT_ENV) != deployment:
                continue
            sid = env[MARKER_ENV]
            entry = found.setdefault(
                sid,
                {
                    "server_id": sid,
                    "deployment": env.get(DEPLOYMENT_ENV, ""),
                    "pids": [],
                    "manager": 0,
                },
            )
            entry["pids"].append(proc.pid)
            if "serve" in proc.cmdline():
                entry["manager"] = proc.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def server_id_of(pid: int) -> str:
    """The ``MODELOPS_SERVER_ID`` of a live process ('' when gone or unmarked)."""
    proc = _proc(pid)
    try:
        return proc.environ().get(MARKER_ENV, "") if proc else ""
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return ""


def identity_problems(
    pid: int, *, server_id: str = "", bento_tag: str = "", started: float = 0.0, pgid: int = 0
) -> list[str]:
    """What live process ``pid`` does not match of a recorded server's identity.

    The identity: a ``bentoml serve`` process whose command line contains ``bento_tag``,
    started at ``started``, leading process group ``pgid``, and carrying
    ``MODELOPS_SERVER_ID=<server_id>``; a part recorded as empty or 0 is not compared
    (records written before it was recorded).

    Returns:
        ``[]`` when everything recorded matches; otherwise one phrase per mismatch
        (:func:`reconciler.core.procs.identity_mismatches`, plus the server id).
    """
    if not is_alive(pid):
        return [f"process {pid} is not running"]
    out = identity_mismatches(
        pid, started=started, pgid=pgid, cmdline_has=[n for n in ("bentoml", bento_tag) if n]
    )
    if server_id:
        found = server_id_of(pid)
        if found != server_id:
            out.append(
                f"process {pid} carries server id {found or '(none)'!r}, recorded {server_id!r}"
            )
    return out


def server_processes(
    pid: int,
    server_id: str = "",
    *,
    bento_tag: str = "",
    started: float = 0.0,
    pgid: int = 0,
) -> list[psutil.Process]:
    """The processes of one server: ``pid`` and its descendants when ``pid`` is still that
    server (:func:`identity_problems` finds nothing), and every process marked with
    ``server_id``. ``[]`` when ``pid`` carries ``server_id`` but another part of the
    identity does not match (a contradiction: nothing may be signalled)."""
    procs: dict[int, psutil.Process] = {}
    main = None
    if pid and is_bentoml_server(pid):
        problems = identity_problems(
            pid, server_id=server_id, bento_tag=bento_tag, started=started, pgid=pgid
        )
        if problems and server_id and server_id_of(pid) == server_id:
            # our server id, yet another start time, group or program: the record and the
            # process contradict each other, so nothing is signalled (fail safe)
            return []
        main = None if problems else _proc(pid)
    if main is not None:
        procs[main.pid] = main
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for child in main.children(recursive=True):
                procs[child.pid] = child
        server_id = server_id or server_id_of(pid)
    for proc in _marked(server_id):
        procs[proc.pid] = proc
    return list(procs.values())


def stop_server(
    pid_or_handle: int | ServerHandle,
    *,
    server_id: str = "",
    bento_tag: str = "",
    started: float = 0.0,
    pgid: int = 0,
    grace_s: float = STOP_GRACE_S,
) -> bool:
    """Stop a local server: SIGTERM its process group, wait, SIGKILL what is left.

    Args:
        pid_or_handle: a :class:`ServerHandle`, or the pid of a ``bentoml serve`` process
            (e.g. from the ledger's outputs). A pid that is no longer a ``bentoml serve``
            process is not signalled (it may have been reused by another program).
        server_id: the server's ``MODELOPS_SERVER_ID`` (taken from the handle, or from the
            live process); with it, workers orphaned by a crashed manager are stopped too.
        bento_tag, started, pgid: the rest of the recorded identity (from the handle, or
            the ledger's outputs): ``pid`` is signalled only when every recorded part
            matches (:func:`identity_problems`); a reused pid, even another server's, is
            left alone.
        grace_s: seconds to wait after SIGTERM before SIGKILL (BentoML's graceful
            shutdown takes about 1-5 s here).

    Returns:
        True when at least one process was signalled.
    """
    if isinstance(pid_or_handle, ServerHandle):
        h = pid_or_handle
        pid, server_id = h.pid, server_id or h.server_id
        bento_tag, started, pgid = h.bento_tag, h.started, h.pgid
    else:
        pid = int(pid_or_handle)
    procs = server_processes(pid, server_id, bento_tag=bento_tag, started=started, pgid=pgid)
    if not procs:
        _reap(pid)
        return False
    group = any(p.pid == pid for p in procs) and leads_group(pid)  # start_group made it
    if group:
        server_id = server_id or server_id_of(pid)
    if group:
        signal_group(pid, signal.SIGTERM)  # the manager stops its workers gracefully
    else:  # the manager is gone (or not a group leader): signal each process
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.terminate()
    deadline = time.monotonic() + grace_s
    child = _CHILDREN.get(pid)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_s)
    _, alive = wait_exited(procs, max(0.1, deadline - time.monotonic()))
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    if group and alive:
        signal_group(pid, signal.SIGKILL)
    wait_exited(alive, 5)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    _reap(pid)
    # A worker the manager forked after ``procs`` was listed (a start stopped while the
    # manager was still spawning: a readiness timeout) got no signal and outlives its
    # manager. Once the manager is gone nothing forks any more, so what still carries the
    # server's marker now is all that is left of it.
    late = [p for p in _marked(server_id) if p.pid not in {q.pid for q in procs}]
    for proc in late:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    wait_exited(late, 5)
    return True


@functools.cache
def _probe_client() -> httpx.Client:
    """One HTTP client for the liveness probes of a process: ``httpx.get`` builds a client
    (and its TLS context) per call, about 30 ms of CPU, which a self-heal pass over many
    local deployments paid once per deployment (``bench/bench_gitops.py``)."""
    return httpx.Client(trust_env=False)


def server_health(
    pid: int,
    url: str,
    *,
    server_id: str = "",
    bento_tag: str = "",
    started: float = 0.0,
    pgid: int = 0,
    timeout_s: float = 5.0,
) -> str:
    """Health of a local server: the process is alive and ``GET <url>/livez`` answers 200.

    Args:
        pid: the ``bentoml serve`` process id.
        url: its base URL.
        server_id, bento_tag, started, pgid: the recorded identity; a live process that
            does not match every recorded part (a reused pid running some other server)
            does not count, and the answer says what mismatched.
        timeout_s: seconds for the liveness probe.

    Returns:
        ``"Healthy"``, ``"Unhealthy: <why>"`` (process alive, liveness probe fails) or
        ``"NotRunning: process <pid> exited"``.
    """
    if not is_bentoml_server(pid):
        if is_alive(pid):
            return f"NotRunning: process {pid} exited (the pid now belongs to another program)"
        return f"NotRunning: process {pid} exited"
    problems = identity_problems(
        pid, server_id=server_id, bento_tag=bento_tag, started=started, pgid=pgid
    )
    if problems:
        return (
            f"NotRunning: process {pid} exited (the pid now belongs to another server: "
            f"{'; '.join(problems)})"
        )
    try:
        resp = _probe_client().get(f"{url}/livez", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"Unhealthy: GET {url}/livez failed ({type(exc).__name__}: {exc})"
    if resp.status_code != 200:
        return f"Unhealthy: GET {url}/livez answered HTTP {resp.status_code}"
    return "Healthy"
