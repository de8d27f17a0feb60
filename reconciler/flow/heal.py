"""The self-heal check: which deployments' live state no longer matches their ledger record.

Git says what should run; the ledger says what modelops last made run. A deployment can
leave that state without any change in Git: its local server was killed, someone edited
a cloud resource by hand, an apply was interrupted, or its last apply failed for a
reason that was not the spec's (a throttled API, a stack locked by another run). A
``--base`` apply only looks at what changed in Git, so nothing would converge those
again. :func:`check_live` finds them, per ledger record of one environment, in this
order (the first that applies is the reason):

1. ``pending``: an apply or destroy was begun and never recorded (the run was killed);
2. ``Ready`` is ``False`` with reason ``TransientFailure`` (``flow/transient.py``): the
   last attempt failed for a reason that was not the spec's, so it is tried again;
3. ``local``: the recorded server is not ``Healthy``
   (:meth:`~reconciler.engine.local.LocalEngine.health`: process identity checked with
   ``core/procs.py``, then ``GET /livez``), or servers of the deployment that no record
   names are running;
4. Pulumi platforms: a preview of a refresh of the stack shows changes
   (:meth:`~reconciler.engine.pulumi_engine.PulumiEngine.drift`); without the ``pulumi``
   CLI this check cannot run and the report says so.

Records that are destroyed, held by a rollback, stalled (they wait for a spec change),
never applied or never successfully applied (nothing live to drift) are not checked;
``edge`` bundles have no live process to check.

Git can also hold a deployment that modelops never made run: a spec in the tree declares
an overlay for the environment, and the ledger has no record of it (or only the job
history of a monitoring run, no apply attempt): the apply job of the merge that added it
died before recording anything, or never ran. Argo CD calls such an application
``OutOfSync`` and syncs it; :func:`unapplied` finds them (reason :data:`NOT_APPLIED`) and
they are converged like the others. A record that was destroyed is not one of them: a
deliberate ``modelops destroy`` is not undone by a self-heal pass.

The check returns values; the flow re-converges what it found with the same
``apply_one`` an apply uses (``flow/apply.py``, ``flow/reconcile.py``). Rationale and
measurements: ``docs/flow.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.local import LocalEngine
from reconciler.engine.pulumi_engine import PulumiEngine, pulumi_available
from reconciler.engine.render import PROGRAMS
from reconciler.flow.run import Outcome
from reconciler.flow.stages import Engines, error_message
from reconciler.gitops.changes import overlay_envs
from reconciler.spec.files import quick_cache_dir, quick_load, spec_name
from reconciler.spec.repo import discover
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.reasons import READY, TRANSIENT_FAILURE

#: ``Outcome.change["status"]`` of a deployment in a run because its live state diverged.
DIVERGED = "diverged"
#: The reason of a deployment a spec in the tree declares and that was never applied.
NOT_APPLIED = "NotApplied: declared in Git, never applied"


@dataclass(frozen=True)
class Divergence:
    """One deployment whose live state no longer matches what Git and its ledger record say.

    Attributes:
        name: the deployment (``metadata.name``).
        env: the environment.
        reason: why, one phrase (``"NotRunning: process 123 exited"``, :data:`NOT_APPLIED`).
        spec_file: its spec file, relative to the repository root (``""``: not known).
        record: its ledger record (``None``: there is none, the deployment was never
            applied).
    """

    name: str
    env: str
    reason: str
    spec_file: str = ""
    record: LedgerRecord | None = None

    @classmethod
    def of(cls, record: LedgerRecord, reason: str) -> Divergence:
        """The divergence of a recorded deployment."""
        return cls(record.name, record.environment, reason, record.specFile, record)

    @property
    def key(self) -> str:
        """``<name>-<env>``."""
        return f"{self.name}-{self.env}"


@dataclass
class LiveCheck:
    """What one self-heal check of an environment found.

    Attributes:
        checked: ledger records whose live state was checked.
        diverged: the deployments to converge again, sorted by key (those never applied
            among them, reason :data:`NOT_APPLIED`).
        notes: lines for humans: checks that could not run, divergences that cannot be
            healed (the spec is gone: an orphan, which ``apply --prune`` destroys).
    """

    checked: int = 0
    diverged: list[Divergence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self, env: str) -> str:
        """One line: how many were checked, diverged, and never applied."""
        never = sum(1 for d in self.diverged if d.reason == NOT_APPLIED)
        line = (
            f"{self.checked} deployment(s) of {env} checked, {len(self.diverged) - never} "
            "diverged from the ledger"
        )
        return line + (f", {never} declared in Git and never applied" if never else "")


def _applied(record: LedgerRecord) -> bool:
    """Something was applied (and so can drift): a successful apply or recorded outputs."""
    return bool(record.lastAppliedRevision or record.outputs)


def _recorded_reason(record: LedgerRecord) -> str:
    """Why the record itself says it needs another attempt (``""``: it does not)."""
    if record.pending:
        p = record.pending
        return (
            f"{p.get('action', '?')} begun at {p.get('time', '?')} by {p.get('actor', '?')} "
            "did not finish"
        )
    ready = record.condition(READY) or {}
    if ready.get("status") == "False" and ready.get("reason") == TRANSIENT_FAILURE:
        return f"its last apply failed transiently: {ready.get('message', '')}"
    return ""


def check_live(
    config: Config,
    env: str,
    ledger: Ledger,
    engines: Engines,
    *,
    skip: frozenset[str] | set[str] = frozenset(),
) -> LiveCheck:
    """Check every live ledger record of ``env`` against what runs, and find the
    deployments of ``env`` the tree declares and the ledger never recorded (see the
    module doc).

    Args:
        config: repository configuration.
        env: the environment.
        ledger: the ledger (read only: nothing is written here).
        engines: the run's engines (the local engine's health check, the Pulumi engine's
            refresh preview).
        skip: deployment keys not to check (a ``--base`` apply converges them anyway, or
            destroys them).

    Returns:
        A :class:`LiveCheck`. A check that fails for one deployment (a refresh preview
        that errs, a spec file that cannot be parsed) becomes a note, never an exception.

    Raises:
        LedgerError: a record is corrupt.
    """
    out = LiveCheck()
    every = [r for r in ledger.all(include_destroyed=True) if r.environment == env]
    records = [r for r in every if not r.destroyed]
    candidates = [
        r
        for r in records
        if r.key not in skip
        and not r.suspended
        and not r.stalled
        and (_applied(r) or r.pending or r.condition(READY))
    ]
    local: LocalEngine | None = None
    strays: dict[str, list[dict]] = {}
    unchecked: list[str] = []
    for record in candidates:
        reason = _recorded_reason(record)
        if not reason and not _applied(record):
            continue  # never successfully applied: nothing live that could drift
        out.checked += 1
        if not reason and record.platform == "local":
            if local is None:
                engine = engines.for_platform("local")
                local = engine if isinstance(engine, LocalEngine) else LocalEngine(config)
                strays = local.without_record(env, records)
            health = local.health(record)
            if health != "Healthy":
                reason = health
            elif strays.get(record.key):
                reason = (
                    f"{len(strays[record.key])} server(s) of the deployment that no record "
                    "names are running"
                )
        elif not reason and record.platform in PROGRAMS:
            if not pulumi_available():
                unchecked.append(record.key)
                continue
            engine = engines.for_platform(record.platform)
            if not isinstance(engine, PulumiEngine):
                continue
            try:
                drift = engine.drift(record)
            except ModelopsError as exc:
                out.notes.append(f"{record.key}: drift check failed: {error_message(exc)}")
                continue
            if drift:
                counts = ", ".join(f"{n} {op}" for op, n in sorted(drift.items()))
                reason = f"a refresh of stack {record.key} shows drift ({counts})"
        if reason:
            out.diverged.append(Divergence.of(record, reason))
    if unchecked:
        out.notes.append(
            f"drift of {len(unchecked)} stack(s) not checked ({', '.join(unchecked)}): the "
            "`pulumi` CLI is not on PATH"
        )
    out.diverged.extend(unapplied(config, env, every, skip, out.notes))
    out.diverged.sort(key=lambda d: d.key)
    return out


def unapplied(
    config: Config,
    env: str,
    records: list[LedgerRecord],
    skip: frozenset[str] | set[str],
    notes: list[str],
) -> list[Divergence]:
    """The deployments of ``env`` that a spec in the tree declares and that were never
    applied (reason :data:`NOT_APPLIED`; see the module doc).

    Args:
        config: repository configuration (the specs directory).
        env: the environment.
        records: every ledger record of ``env``, destroyed ones included (a destroyed
            deployment is not "never applied").
        skip: deployment keys not to report.
        notes: where a spec file that cannot be parsed is reported (it is not checked;
            ``modelops validate`` says why).

    Returns:
        One :class:`Divergence` (``record`` ``None``, or a record with job history only)
        per deployment, the first spec file by path for a name declared twice. Each spec
        file is parsed once per content (:func:`~reconciler.spec.files.quick_load`: about
        1.5 ms of CPU per spec here).
    """
    known = {r.name: r for r in records}
    found: dict[str, Divergence] = {}
    unreadable: list[str] = []
    for path in discover(config):
        data = _quick(path, config)
        if data is None:
            unreadable.append(config.rel(path))
            continue
        name = spec_name(data)
        record = known.get(name)
        if (
            not name
            or name in found
            or f"{name}-{env}" in skip
            or env not in overlay_envs(data)
            or (record is not None and (record.destroyed or not record.never_attempted))
        ):
            continue
        found[name] = Divergence(name, env, NOT_APPLIED, config.rel(path), record)
    if unreadable:
        notes.append(
            f"{len(unreadable)} spec file(s) cannot be parsed, not checked for deployments "
            f"of {env} never applied ({', '.join(unreadable)}): `modelops validate` says why"
        )
    return list(found.values())


def heal_files(config: Config, env: str, check: LiveCheck) -> tuple[list[Path], dict[str, str]]:
    """The spec files to load for the divergences of ``check``, and the reason per key.

    A divergence whose spec file is gone, no longer has that name, or no longer declares
    ``env`` is not healed: a note says so (it is an orphan; ``apply --prune`` destroys
    it).

    Returns:
        ``(files, {deployment key: reason})``.
    """
    files: list[Path] = []
    reasons: dict[str, str] = {}
    by_name: dict[str, Path] | None = None
    for d in check.diverged:
        path = config.root / d.spec_file if d.spec_file else None
        if path is None or not path.is_file():
            # a record that never recorded its file, or a spec moved since: by name
            if by_name is None:
                by_name = _spec_files_by_name(config)
            path = by_name.get(d.name)
        data = _quick(path, config)
        if data is None or spec_name(data) != d.name or env not in overlay_envs(data):
            check.notes.append(
                f"{d.key} diverged ({d.reason}) but no spec in the tree declares it "
                f"(orphaned: `modelops apply --env {env} --prune` destroys it)"
            )
            continue
        if path not in files:
            files.append(path)
        reasons[d.key] = d.reason
    return files, reasons


def _quick(path: Path | None, config: Config) -> dict | None:
    """The quickly loaded spec at ``path`` (``None``: no path, unreadable or invalid),
    parsed once per content (kept on disk for the next process)."""
    if path is None:
        return None
    try:
        return quick_load(path.read_bytes(), quick_cache_dir(config))
    except OSError:
        return None


def _spec_files_by_name(config: Config) -> dict[str, Path]:
    """``{metadata.name: spec file}`` of every spec in the tree (quick loads)."""
    out: dict[str, Path] = {}
    for path in discover(config):
        name = spec_name(_quick(path, config))
        if name:
            out.setdefault(name, path)
    return out


def mark_healed(outcome: Outcome, reason: str, path: str) -> None:
    """Say on ``outcome`` that it is in the run because its live state diverged, or it
    was never applied (``outcome.change``: status ``diverged``, the spec ``path``, the
    reason)."""
    if reason == NOT_APPLIED:
        why = f"{NOT_APPLIED} (the apply of its merge died before recording, or never ran)"
        outcome.message = f"never applied before; {outcome.message}"
    else:
        why = f"live state diverged from the ledger record: {reason}"
        outcome.message = f"live state diverged ({reason}); {outcome.message}"
    outcome.change = {"status": DIVERGED, "path": path, "old_path": "", "reasons": [why]}
