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

Records that are destroyed, never applied or never successfully applied (nothing live to
drift) are not checked, nor are held (rollback) or stalled ones (they wait for a spec
change) except for a local server that is not healthy: its router is restored when the
recorded server still runs, and the pass reports it;
``edge`` bundles have no live process to check.

Git can also hold a deployment that modelops never made run: a spec in the tree declares
an overlay for the environment, and the ledger has no record of it (or only the job
history of a monitoring run, no apply attempt): the apply job of the merge that added it
died before recording anything, or never ran. Argo CD calls such an application
``OutOfSync`` and syncs it; :func:`unapplied` finds them (reason :data:`NOT_APPLIED`) and
they are converged like the others. A record that was destroyed is not one of them: a
deliberate ``modelops destroy`` is not undone by a self-heal pass.

Git can also have moved on without the environment: a merge whose apply job was skipped,
cancelled or never reached this environment (prod ``needs: staging``, and staging
failed), and later merges' ``--base`` applies only look at their own changes. The
ledger keeps the inputs digest of what its last successful apply made live
(``lastAppliedDigest``: the resolved spec, the environment and the bytes of every file
it names, :func:`~reconciler.flow.digests.inputs_digest`); :func:`out_of_sync` compares
it with the digest of the spec in the tree resolved for the environment, not a revision
string (a commit that does not touch the deployment does not make it out of date).
Argo CD calls a difference ``OutOfSync`` and syncs it; so does the pass (reason
:data:`OUT_OF_SYNC`), except for a deployment held by a rollback while the spec still has
the digest it was held at, one stalled at that digest, and one whose last attempt failed
at that digest (the spec's fault: it is retried when the spec changes). ``status`` shows
every difference (:func:`head_digests`, :func:`sync_reason`).

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
from reconciler.flow.digests import inputs_digest
from reconciler.flow.run import Outcome
from reconciler.flow.stages import Engines, error_message
from reconciler.gitops.changes import overlay_envs
from reconciler.spec.files import quick_cache_dir, quick_load, spec_name
from reconciler.spec.repo import discover, load_files
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.reasons import READY, TRANSIENT_FAILURE

#: ``Outcome.change["status"]`` of a deployment in a run because its live state diverged.
DIVERGED = "diverged"
#: The reason of a deployment a spec in the tree declares and that was never applied.
NOT_APPLIED = "NotApplied: declared in Git, never applied"
#: The reason (its first word) of a deployment whose spec in the tree, resolved for its
#: environment, differs from what its last successful apply recorded.
OUT_OF_SYNC = "OutOfSync"


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
        """One line: how many were checked, diverged, out of sync and never applied."""
        never = sum(1 for d in self.diverged if d.reason == NOT_APPLIED)
        behind = sum(1 for d in self.diverged if d.reason.startswith(OUT_OF_SYNC))
        line = (
            f"{self.checked} deployment(s) of {env} checked, "
            f"{len(self.diverged) - never - behind} diverged from the ledger"
        )
        if behind:
            line += f", {behind} out of sync with Git (the spec differs from what was applied)"
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
        # a held or stalled local server is still checked: a router that died is restored
        # (apply_one does, before it leaves the deployment alone) and the pass reports it
        and (r.platform == "local" or (not r.suspended and not r.stalled))
        and (_applied(r) or r.pending or r.condition(READY))
    ]
    local: LocalEngine | None = None
    strays: dict[str, list[dict]] = {}
    unchecked: list[str] = []
    for record in candidates:
        reason = "" if record.suspended or record.stalled else _recorded_reason(record)
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
            elif record.suspended or record.stalled:
                continue  # serving, and left alone until its spec changes
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
    found = {d.key for d in out.diverged}
    out.diverged.extend(out_of_sync(config, env, records, set(skip) | found, out.notes))
    out.diverged.extend(unapplied(config, env, every, skip, out.notes))
    out.diverged.sort(key=lambda d: d.key)
    return out


def sync_reason(record: LedgerRecord, digest: str) -> str:
    """Why what is live for ``record`` is not the spec in the tree (inputs digest
    ``digest``, resolved for the record's environment), or ``""`` when it is (or the
    deployment is held by a rollback while the spec still has the digest it was held at).

    The reason starts with :data:`OUT_OF_SYNC`: ``"OutOfSync: HEAD differs from the
    applied revision 3f2a9c1d0e4b"``, or ``"... from what was applied (never applied
    successfully)"``.
    """
    if record.suspended and record.suspended.get("headDigest") == digest:
        return ""
    if record.applied_digest == digest:
        return ""
    if not record.lastAppliedRevision and not record.applied_digest:
        return f"{OUT_OF_SYNC}: HEAD differs from what was applied (never applied successfully)"
    applied = record.lastAppliedRevision[:12] or "(uncommitted)"
    return f"{OUT_OF_SYNC}: HEAD differs from the applied revision {applied}"


def head_digests(
    config: Config, env: str | None, records: list[LedgerRecord], notes: list[str]
) -> dict[str, tuple[str, str]]:
    """The inputs digest of each of ``records``' deployments as the spec in the tree
    resolves it.

    Args:
        config: repository configuration.
        env: only records of this environment (``None``: every environment).
        records: ledger records (destroyed ones and those never attempted are skipped).
        notes: where specs with errors are reported (not checked: ``modelops validate``
            says why).

    Returns:
        ``{deployment key: (inputs digest, spec file relative to the root)}`` for every
        record whose name a valid spec in the tree declares with an overlay for its
        environment. The specs are loaded through the load cache (validated once per
        content); each digest reads the files the spec names.
    """
    wanted = {
        r.key: r
        for r in records
        if not r.destroyed and not r.never_attempted and (env is None or r.environment == env)
    }
    if not wanted:
        return {}
    names = {r.name for r in wanted.values()}
    files: list[Path] = []
    for path in discover(config):
        data = _quick(path, config)
        if (
            data is not None
            and spec_name(data) in names
            and (env is None or env in overlay_envs(data))
            and path not in files
        ):
            files.append(path)
    if not files:
        return {}
    loaded = load_files(config, files, None if env is None else [env])
    out: dict[str, tuple[str, str]] = {}
    for dep in loaded.deployments:
        if dep.key in wanted and dep.key not in out:
            out[dep.key] = (inputs_digest(dep, config), dep.spec.file)
    if invalid := loaded.invalid_files():
        notes.append(
            f"{len(invalid)} spec file(s) with errors not compared with the ledger "
            f"({', '.join(sorted(invalid))}): `modelops validate` says why"
        )
    return out


def out_of_sync(
    config: Config,
    env: str,
    records: list[LedgerRecord],
    skip: frozenset[str] | set[str],
    notes: list[str],
) -> list[Divergence]:
    """The deployments of ``env`` whose spec in the tree differs from what their last
    successful apply recorded (reason from :func:`sync_reason`; see the module doc for
    those left alone: held, stalled, or failed at that digest).

    Args:
        config: repository configuration.
        env: the environment.
        records: the ledger records of ``env`` (destroyed ones are skipped).
        skip: deployment keys not to report (the caller converges or destroys them).
        notes: where specs that cannot be compared are reported.

    Returns:
        One :class:`Divergence` per deployment, with the spec file in the tree.
    """
    digests = head_digests(config, env, [r for r in records if r.key not in skip], notes)
    out: list[Divergence] = []
    for record in records:
        if record.key not in digests:
            continue
        digest, file = digests[record.key]
        if record.lastAttemptedDigest == digest and (record.failures or record.stalled):
            continue  # the last attempt of this very spec failed: retried when it changes
        reason = sync_reason(record, digest)
        if reason:
            out.append(Divergence(record.name, env, reason, file, record))
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
    elif reason.startswith(OUT_OF_SYNC):
        why = (
            f"{reason}: the spec in the tree, resolved for {outcome.env}, is not what its "
            "last successful apply recorded (an apply of a change was skipped or failed)"
        )
        outcome.message = f"out of sync with Git ({reason}); {outcome.message}"
    else:
        why = f"live state diverged from the ledger record: {reason}"
        outcome.message = f"live state diverged ({reason}); {outcome.message}"
    outcome.change = {"status": DIVERGED, "path": path, "old_path": "", "reasons": [why]}
