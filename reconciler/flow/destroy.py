"""``modelops destroy`` and the teardown ``apply --prune`` shares.

The ledger record is kept with its history and marked destroyed.
"""

from __future__ import annotations

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    ModelopsError,
)
from reconciler.core.procs import fault_point
from reconciler.core.progress import step
from reconciler.engine.local import LocalEngine
from reconciler.flow.gates import (
    pulumi_gate,
)
from reconciler.flow.run import Outcome, RunReport
from reconciler.flow.stages import Engines, error_message
from reconciler.state import status
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.lock import StateLock
from reconciler.state.reasons import DESTROY

#: Why ``apply --prune`` destroys a deployment (outcome and history message).
PRUNED = "spec deleted, --prune"


def destroy(config: Config, env: str, names: list[str], *, lock_timeout_s: float = 60.0):
    """Tear down deployments by name in ``env`` (all live ones when ``names`` is empty).

    Each ledger record is kept with its history and marked destroyed, with a
    ``destroy`` history entry at the current revision (:func:`destroy_record`):
    ``status`` no longer lists it, ``history`` still shows what was live and when, and a
    later apply continues the same history.

    Returns:
        A :class:`RunReport` (action ``destroy``); exit 3 when one failed.

    Raises:
        ModelopsError: (exit 2) a name with no live ledger record (never deployed in
            ``env``, or already destroyed: the message says when and by whom); a cloud
            target without the ``pulumi`` CLI; the lock is held.
    """
    report = RunReport("destroy", env, g.head_revision(config.root), envs=[env])
    with StateLock.of(config, timeout_s=lock_timeout_s):
        ledger = Ledger.of(config)
        records = [r for r in ledger.all(include_destroyed=True) if r.environment == env]
        chosen = [r for r in records if not r.destroyed and (not names or r.name in names)]
        engines = Engines(config)
        swept = _unrecorded_servers(report, LocalEngine(config), env, names, records, chosen)
        missing = sorted(set(names) - {r.name for r in chosen} - swept)
        if missing:
            gone = {r.name: r.destroyed for r in records if r.destroyed}
            raise ModelopsError(
                "; ".join(
                    f"{n} in {env} was already destroyed ({gone[n].get('time', '?')} by "
                    f"{gone[n].get('actor', '?')}); `modelops history {n} --env {env}` shows "
                    "its history"
                    if n in gone
                    else f"nothing recorded for {n} in {env}"
                    for n in missing
                )
                + "; `modelops status` lists what is deployed"
            )
        pulumi_gate({r.key: r.platform for r in chosen}, env)
        for record in chosen:
            outcome = destroy_record(record, engines, ledger, report.revision, "modelops destroy")
            if outcome.status == "destroyed":
                outcome.message = (
                    f"destroyed; history kept: `modelops history {record.name} --env {env}`"
                )
            report.outcomes.append(outcome)
    report.offline = False
    return report


def _unrecorded_servers(report, local: LocalEngine, env, names, records, chosen) -> set[str]:
    """Stop the local servers of ``env`` (of ``names``, or all) that no live record names
    and whose deployment is not being destroyed anyway: left by a run killed before it
    recorded them, or after its record was marked destroyed. One ``destroyed`` outcome
    per deployment; returns the names swept."""
    busy = {r.name for r in chosen}
    swept = set()
    for key, servers in sorted(local.without_record(env, records).items()):
        name = key[: -len(env) - 1]
        if name in busy or (names and name not in names):
            continue
        servers = local.stop_unrecorded(key, None) or servers
        pids = ", ".join(str(s["manager"] or s["pids"][0]) for s in servers)
        report.outcomes.append(
            Outcome(
                key,
                name,
                env,
                "local",
                "destroyed",
                f"stopped {len(servers)} server(s) no ledger record names (pid {pids}), "
                "left by an interrupted run",
            )
        )
        swept.add(name)
    return swept


def destroy_record(
    record: LedgerRecord, engines: Engines, ledger: Ledger, revision: str, reason: str
) -> Outcome:
    """Tear down one deployment and mark its ledger record destroyed; never raises.

    What was live is torn down by its engine (a record that was never applied has
    nothing live). The record is kept with its history and a ``destroy`` entry at
    ``revision`` saying ``reason`` (:func:`reconciler.state.status.destroyed`), so
    ``modelops history`` still shows what was live and when. A teardown that fails
    leaves the record live and adds a failed ``destroy`` entry; the outcome is
    ``failed`` with the engine's message; otherwise ``destroyed``, message
    ``destroyed (<reason>)``.
    """
    outcome = Outcome(record.key, record.name, record.environment, record.platform, "failed")
    try:
        live = record.lastAppliedRevision or record.outputs or record.pending
        if live:
            # intent, act, confirm: a run killed (or a ledger write failing) after this
            # line leaves the record pending, never "Ready" with its servers stopped
            status.pending(
                ledger, (record.name, record.environment), action=DESTROY, revision=revision
            )
            with step("destroy", record.key, f"({record.platform})"):
                engines.for_platform(record.platform).destroy(record)
            fault_point("destroy")
        status.destroyed(ledger, record, revision=revision, reason=reason)
        outcome.status, outcome.message = "destroyed", f"destroyed ({reason})"
    except Exception as exc:  # noqa: BLE001 - one failure does not stop the others
        outcome.message = error_message(exc)
        try:
            status.destroy_failed(ledger, record, revision=revision, message=outcome.message)
        except Exception as ledger_exc:  # noqa: BLE001 - reported with the teardown error
            why = (
                ledger_exc.message
                if isinstance(ledger_exc, ModelopsError) and ledger_exc.message
                else type(ledger_exc).__name__
            )
            outcome.message += f" (the failed destroy could not be recorded: {why})"
    return outcome
