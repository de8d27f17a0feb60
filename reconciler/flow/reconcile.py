"""``modelops reconcile``: the self-heal pass alone, once or on an interval.

One pass holds the state lock, checks every live deployment of the environment against
its ledger record (:func:`reconciler.flow.heal.check_live`), finds the deployments a spec
declares that were never applied, and converges those and the ones that diverged from
the spec at the working tree's revision, through the same gates and
:func:`~reconciler.flow.apply.apply_one` as ``apply`` (validate and police the specs it
loads, refuse uncommitted changes, need the ``pulumi`` CLI for a cloud target). A
deployment whose live state matches is not touched, not built and not policed: a pass
with nothing to do reads the ledger, checks processes or stacks and parses the spec files
(cached by content, to see which ones the ledger lacks), nothing more.

:func:`reconcile_loop` repeats passes every ``interval_s`` seconds until SIGTERM or
SIGINT, which stop it between passes (a pass in progress finishes and is reported).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

from reconciler.build import serve
from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.engine import routing
from reconciler.engine.local import LocalEngine
from reconciler.flow.apply import apply_one
from reconciler.flow.costs import policy_costs
from reconciler.flow.gates import check_dirty, envs_of, policy_gate, pulumi_gate
from reconciler.flow.heal import check_live, heal_files, mark_healed
from reconciler.flow.run import Outcome, RunReport, sort_report
from reconciler.flow.stages import Engines
from reconciler.spec.repo import load_files
from reconciler.state.ledger import Ledger
from reconciler.state.lock import StateLock


def reconcile(
    config: Config, env: str, *, allow_dirty: bool = False, lock_timeout_s: float = 60.0
) -> RunReport:
    """One self-heal pass over ``env`` (see the module doc).

    Args:
        config: repository configuration.
        env: the environment.
        allow_dirty: converge with uncommitted changes to what is deployed (recorded as
            ``<sha>-dirty``); when False they stop the pass (exit 2).
        lock_timeout_s: seconds to wait for another run holding the state lock.

    Returns:
        A :class:`RunReport` with action ``reconcile``: one outcome per diverged
        deployment (``change["status"] == "diverged"`` with the reason), ``notes`` with
        how many were checked and what could not be; ``exit_code`` 1 when a spec or
        policy blocks (nothing converged), 3 when a deployment failed to converge, is
        stalled (a ``stalled`` outcome: :func:`stalled`) or still does not serve after
        the pass (:func:`still_down`).

    Raises:
        ModelopsError: (exit 2) unknown environment; the lock is held; a diverged cloud
            deployment without the ``pulumi`` CLI; uncommitted changes (see
            ``allow_dirty``). Raised before anything is converged.
        LedgerError: a record is corrupt.
    """
    envs = envs_of(config, env)
    report = RunReport("reconcile", env, g.head_revision(config.root).removesuffix("-dirty"))
    report.envs = envs
    with StateLock.of(config, timeout_s=lock_timeout_s, break_stale=True) as lock:
        if lock.broken is not None:
            report.notes.append(
                f"removed a stale state lock: its holder is gone ({lock.broken.describe()}); "
                "this pass converges what that run left unfinished"
            )
        engines = Engines(config)
        ledger = Ledger.of(config)
        check = check_live(config, env, ledger, engines)
        files, reasons = heal_files(config, env, check)
        report.notes.append(check.summary(env))
        report.notes.extend(check.notes)
        stalled(report, ledger, env, set(reasons))
        if not files:
            return report
        loaded = load_files(config, files, envs)
        report.diagnostics.extend(loaded.diagnostics)
        deployments = [d for d in loaded.deployments if d.key in reasons]
        if loaded.errors:
            deployments = []
        if deployments:
            costs = policy_costs(deployments, config, report)
            if not policy_gate(config, deployments, report, costs):
                deployments = []
        if report.blocked:
            return report
        check_dirty(config, deployments, allow_dirty, report)
        pulumi_gate({d.key: d.platform for d in deployments}, env)
        for dep in deployments:
            outcome = apply_one(dep, config, ledger, engines, report.revision)
            mark_healed(outcome, reasons[dep.key], dep.spec.file)
            report.outcomes.append(outcome)
        still_down(report, ledger, engines)
    sort_report(report)
    report.offline = False
    return report


def stalled(report: RunReport, ledger: Ledger, env: str, converging: set[str]) -> None:
    """Add a ``stalled`` outcome (exit 3) for each stalled deployment of ``env`` that the
    pass does not converge: a pass never exits 0 while a deployment is stalled (it waits
    for a change of its spec; the message says what failed)."""
    for record in ledger.all():
        if record.environment != env or not record.stalled or record.key in converging:
            continue
        report.outcomes.append(
            Outcome(
                record.key,
                record.name,
                env,
                record.platform,
                "stalled",
                revision=report.revision,
                message=f"stalled, not retried until its spec changes: {record.stalled_reason}",
            )
        )


def still_down(report: RunReport, ledger: Ledger, engines: Engines) -> None:
    """Mark ``failed`` (exit 3) each converged local deployment whose recorded server
    still does not serve after the pass (a held deployment whose server could not be
    restored, an update that failed while the old server was already gone): a pass
    never exits 0 while a deployment it checked is down."""
    engine = engines.for_platform("local")
    if not isinstance(engine, LocalEngine):
        return
    for outcome in report.outcomes:
        if outcome.platform != "local" or outcome.failed:
            continue
        record = ledger.get(outcome.name, outcome.env)
        if record is None or record.destroyed:
            continue
        health = engine.health(record)
        if health != "Healthy":
            outcome.status = "failed"
            outcome.message = f"{outcome.message}; still not serving: {health}"


class StopFlag:
    """Set by SIGTERM or SIGINT while installed (:meth:`installed`); a loop checks it
    between passes and sleeps on it, so a signal ends the wait at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal = 0

    def set(self, signum: int = 0) -> None:
        """Ask the loop to stop (``signum``: the signal that asked, 0 for none)."""
        self.signal = signum
        self._event.set()

    @property
    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a stop was asked for meanwhile."""
        return self._event.wait(max(0.0, seconds))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route SIGTERM and SIGINT to :meth:`set` while in the ``with`` block; the
        previous handlers are restored after it (main thread only)."""
        previous = {
            sig: signal.signal(sig, lambda signum, frame: self.set(signum))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def reconcile_loop(
    run_pass: Callable[[], RunReport],
    on_report: Callable[[RunReport], None],
    *,
    interval_s: float,
    stop: StopFlag,
    on_error: Callable[[Exception], None] | None = None,
) -> int:
    """Run ``run_pass`` every ``interval_s`` seconds until ``stop`` is set; returns the
    number of passes run.

    Each report goes to ``on_report``. A pass that raises (the lock held by another
    run, a configuration error) goes to ``on_error`` and the loop goes on at the next
    interval; without ``on_error`` it is raised. The interval counts from the start of
    a pass: a pass longer than the interval is followed at once by the next.
    """
    passes = 0
    while not stop.is_set:
        started = time.monotonic()
        try:
            on_report(run_pass())
        except Exception as exc:
            if on_error is None:
                raise
            on_error(exc)
        passes += 1
        # servers and routers this loop started that another run stopped since
        serve.reap_exited()
        routing.reap_exited()
        if stop.wait(interval_s - (time.monotonic() - started)):
            break
    return passes
