"""The ledger: what is live, per deployment × environment (``docs/state.md``).

One JSON file per record under ``<state_dir>/ledger/<name>-<env>.json``, written
atomically; Flux's status field names. A corrupt record, or one from a newer modelops,
raises :class:`LedgerError` and is never overwritten. Destroyed records keep their
history (:meth:`LedgerRecord.record_destroyed`). Only ``reconciler.state.status`` writes.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.state.backend import (
    ABSENT,
    LocalBackend,
    StateBackend,
    StateWriteError,
    open_backend,
    replace_atomically,
)
from reconciler.state.reasons import (
    APPLY,
    APPLY_FAILED,
    APPLY_SUCCEEDED,
    DESTROY,
    FAILED,
    READY,
    RETRIES_EXHAUSTED,
    ROLLBACK,
    ROLLBACK_SUCCEEDED,
    STALLED,
    SUCCEEDED,
    TRANSIENT_FAILURE,
)

SCHEMA_VERSION = 1
HISTORY_LIMIT = 100
#: History actions that make a destroyed deployment managed again (they clear
#: ``LedgerRecord.destroyed``); ``monitor`` and ``retrain`` entries do not.
REVIVING_ACTIONS = (APPLY, ROLLBACK)


class LedgerError(ModelopsError):
    """A ledger file that cannot be trusted (corrupt, or from a newer version); exit 2."""


def actor() -> str:
    """Who is acting: ``$GITHUB_ACTOR`` in GitHub Actions, else ``user@host``."""
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Condition:
    """A Flux-style status condition.

    Attributes:
        type: ``Ready``, ``Reconciling`` or ``Stalled``.
        status: ``True``, ``False`` or ``Unknown``.
        reason: a CamelCase reason (``ApplySucceeded``, ``ApplyFailed``, ``ServerExited``).
        message: a sentence for humans.
        lastTransitionTime: ISO 8601 UTC.
    """

    type: str
    status: str
    reason: str = ""
    message: str = ""
    lastTransitionTime: str = field(default_factory=now_iso)  # noqa: N815 - Flux's name


@dataclass
class LedgerRecord:
    """What modelops last did to one deployment × environment.

    Attributes:
        name, environment: the deployment and environment (file ``<name>-<env>.json``).
        platform: target platform at the last apply.
        specFile: spec file path, relative to the repository root.
        lastAppliedRevision: Git revision of the last successful apply ('' if none).
        lastAttemptedRevision: Git revision of the last apply attempt.
        lastGoodRevision: the revision before the current one that applied successfully.
        inputsDigest: digest of everything that determined the last successful apply
            (resolved spec, model digest, artifact); equal digest means no change.
        artifact: ``{"bento_tag", "digest", "image", ...}`` of the applied build.
        desiredState: the DesiredState (JSON form) that was applied, for offline plans.
        outputs: engine outputs (``url``, ``port``, ``pid`` for local; endpoint names...).
        conditions: list of :class:`Condition` dicts.
        failures: consecutive failed applies (reset on success).
        drift: the last drift result from ``modelops monitor run`` (or ``{}``).
        quality: the last quality result (labels joined to predictions, CBPE, KPI,
            verdict) from ``modelops monitor run`` (or ``{}``).
        lastAttemptedDigest: inputs digest of the last apply attempt (successful or not);
            a stalled deployment is retried only when its digest differs from this one.
        lastAppliedDigest: the flow's inputs digest
            (:func:`reconciler.flow.digests.inputs_digest`) of the last successful apply
            or rollback, what is live; the self-heal pass compares the spec at HEAD with
            it (``OutOfSync``). ``""`` before it was recorded: see :attr:`applied_digest`.
        suspended: ``{}``, or after ``modelops rollback``: ``{"reason": "rollback",
            "revision", "headDigest", "since", "revert"}``. While the spec at head still
            has digest ``headDigest``, ``apply`` leaves the deployment alone (so a merge
            that does not touch it cannot undo the rollback); any change to its spec or
            inputs in Git lifts the suspension.
        history: newest last; at most :data:`HISTORY_LIMIT` entries of
            ``{"time", "actor", "action", "revision", "result", "message", "artifact"}``;
            ``action`` is ``apply``, ``rollback``, ``destroy``, ``monitor``, ``quality``,
            ``labels`` or ``retrain``.
        destroyed: ``{}`` while the deployment is managed; after a destroy
            (:meth:`record_destroyed`): ``{"time", "actor", "revision",
            "lastAppliedRevision", "artifact"}``: when and by whom, the Git revision
            modelops ran at, and what was live until then. Cleared by the next
            ``apply`` or ``rollback`` history entry (:data:`REVIVING_ACTIONS`).
        pending: ``{}``, or an action begun and not yet confirmed: ``{"action": "apply" |
            "destroy", "time", "actor", "revision", "artifact"}``, written (through
            ``state/status.py``) before a server is started or stopped and cleared when
            the outcome is recorded. A record still pending was interrupted (the
            process was killed): the next run stops the deployment's servers that no
            record names and records what it did (``docs/state.md``).
    """

    name: str
    environment: str
    platform: str = ""
    specFile: str = ""  # noqa: N815
    lastAppliedRevision: str = ""  # noqa: N815
    lastAttemptedRevision: str = ""  # noqa: N815
    lastGoodRevision: str = ""  # noqa: N815
    inputsDigest: str = ""  # noqa: N815
    artifact: dict = field(default_factory=dict)
    desiredState: dict = field(default_factory=dict)  # noqa: N815
    outputs: dict = field(default_factory=dict)
    conditions: list = field(default_factory=list)
    failures: int = 0
    drift: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    lastAttemptedDigest: str = ""  # noqa: N815
    lastAppliedDigest: str = ""  # noqa: N815
    suspended: dict = field(default_factory=dict)
    destroyed: dict = field(default_factory=dict)
    pending: dict = field(default_factory=dict)
    schemaVersion: int = SCHEMA_VERSION  # noqa: N815

    @property
    def key(self) -> str:
        """``<name>-<environment>``."""
        return f"{self.name}-{self.environment}"

    def condition(self, type_: str) -> dict | None:
        """The condition of the given type, or ``None``."""
        return next((c for c in self.conditions if c.get("type") == type_), None)

    def set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        """Set a condition; the transition time changes only when the status changes."""
        old = self.condition(type_)
        new = asdict(Condition(type_, status, reason, message))
        if old is not None and old.get("status") == status:
            new["lastTransitionTime"] = old.get("lastTransitionTime", new["lastTransitionTime"])
        self.conditions = [c for c in self.conditions if c.get("type") != type_] + [new]

    def add_history(
        self, action: str, revision: str, result: str, message: str = "", **extra: Any
    ) -> None:
        """Append a history entry (who, when, what, revision, result), keeping the newest.

        An ``apply`` or ``rollback`` entry (:data:`REVIVING_ACTIONS`), successful or
        not, makes a destroyed record managed again: ``destroyed`` is cleared.
        """
        if action in REVIVING_ACTIONS:
            self.destroyed = {}
        entry = {
            "time": now_iso(),
            "actor": actor(),
            "action": action,
            "revision": revision,
            "result": result,
            "message": message,
            **extra,
        }
        self.history = [*self.history, entry][-HISTORY_LIMIT:]

    @property
    def never_attempted(self) -> bool:
        """No apply was ever attempted (no conditions, outputs, artifact, pending action
        or revision): the record holds only the history of monitoring or labels jobs."""
        return not (
            self.conditions
            or self.outputs
            or self.artifact
            or self.pending
            or self.lastAttemptedRevision
            or self.lastAppliedRevision
        )

    @property
    def applied_digest(self) -> str:
        """The inputs digest of what is live: :attr:`lastAppliedDigest`, or for a record
        written before that field existed, :attr:`lastAttemptedDigest` when that attempt
        succeeded (an applied revision and no failure since); ``""`` when unknown."""
        if self.lastAppliedDigest:
            return self.lastAppliedDigest
        if self.lastAppliedRevision and not self.failures:
            return self.lastAttemptedDigest
        return ""

    @property
    def stalled(self) -> bool:
        """True when the ``Stalled`` condition is ``True``."""
        cond = self.condition(STALLED)
        return bool(cond and cond.get("status") == "True")

    @property
    def stalled_reason(self) -> str:
        """The ``Stalled`` condition's message when stalled, else ``""``."""
        cond = self.condition(STALLED)
        return cond.get("message", "") if cond and cond.get("status") == "True" else ""

    def record_success(
        self,
        revision: str,
        digest: str,
        *,
        action: str = APPLY,
        message: str = "",
        artifact: dict | None = None,
        outputs: dict | None = None,
        desired_state: dict | None = None,
        platform: str = "",
        spec_file: str = "",
        **extra: Any,
    ) -> None:
        """Record a successful apply (or rollback) of ``revision`` with inputs ``digest``.

        ``lastGoodRevision`` becomes the previous ``lastAppliedRevision`` when that one
        differs (the revision to go back to); failures reset to 0; ``Ready`` is True and
        ``Stalled`` is removed. ``extra`` goes into the history entry (``smoke``...).
        """
        if self.lastAppliedRevision and self.lastAppliedRevision != revision:
            self.lastGoodRevision = self.lastAppliedRevision
        self.lastAppliedRevision = revision
        self.lastAttemptedRevision = revision
        self.inputsDigest = digest
        self.lastAttemptedDigest = digest
        if platform:
            self.platform = platform
        if spec_file:
            self.specFile = spec_file
        if artifact is not None:
            self.artifact = artifact
        if outputs is not None:
            self.outputs = outputs
        if desired_state is not None:
            self.desiredState = desired_state
        self.failures = 0
        reason = ROLLBACK_SUCCEEDED if action == ROLLBACK else APPLY_SUCCEEDED
        self.set_condition(READY, "True", reason, message or f"{action} of {revision} succeeded")
        self.conditions = [c for c in self.conditions if c.get("type") != STALLED]
        self.add_history(
            action,
            revision,
            SUCCEEDED,
            message,
            artifact=(artifact or {}).get("bento_tag", ""),
            **extra,
        )

    def record_failure(
        self,
        revision: str,
        digest: str,
        message: str,
        *,
        stalled_after: int = 3,
        action: str = APPLY,
        platform: str = "",
        spec_file: str = "",
        transient: bool = False,
    ) -> None:
        """Record a failed apply; what was applied before stays recorded as applied.

        Consecutive failures with the same inputs ``digest`` are counted; a new digest
        starts the count again at 1 (the spec or an input changed). At
        ``stalled_after`` failures the ``Stalled`` condition becomes True with the cause
        (``config.stalled_after``, Flux's notion of a reconciliation that gave up).

        A ``transient`` failure (throttling, network, another update holding the stack:
        :mod:`reconciler.flow.transient`) is recorded with reason ``TransientFailure``
        and changes neither the count nor ``Stalled``: the next run retries it.
        """
        if platform and not self.platform:
            self.platform = platform
        if spec_file:
            self.specFile = spec_file
        if transient:
            self.lastAttemptedRevision = revision
            self.set_condition(
                READY, "False", TRANSIENT_FAILURE, f"{message} (transient: retried next run)"
            )
            self.add_history(action, revision, FAILED, f"transient: {message}")
            return
        self.failures = self.failures + 1 if self.lastAttemptedDigest == digest else 1
        self.lastAttemptedRevision = revision
        self.lastAttemptedDigest = digest
        self.set_condition(READY, "False", APPLY_FAILED, message)
        if self.failures < stalled_after:  # a new digest starts again: no longer stalled
            self.conditions = [c for c in self.conditions if c.get("type") != STALLED]
        else:
            self.set_condition(
                STALLED,
                "True",
                RETRIES_EXHAUSTED,
                f"{self.failures} consecutive failed applies with the same inputs; last: "
                f"{message}. Change the spec or one of its inputs to retry.",
            )
        self.add_history(action, revision, FAILED, message)

    def record_destroyed(self, revision: str, reason: str = "") -> None:
        """Record that the deployment was torn down, keeping the record and its history.

        Appends a ``destroy`` history entry (time, actor, ``revision``, result
        ``succeeded``, a message such as ``destroyed (modelops destroy); was live at
        3f2a9c1d0e4b (fraud-detector:abc)``, plus the ``lastAppliedRevision`` and
        ``artifact`` bento tag that were live), sets :attr:`destroyed` to ``{"time", "actor",
        "revision", "lastAppliedRevision", "artifact"}`` and clears what described the
        live deployment: revisions, digests, artifact, outputs, DesiredState, drift,
        suspension, conditions and the failure count (so nothing reads as live, and a
        later apply starts fresh). ``name``, ``environment``, ``platform`` and
        ``specFile`` stay, as the last known values.

        Args:
            revision: the Git revision modelops ran at (``""`` outside a repository).
            reason: why or by what (``modelops destroy``, ``spec deleted, --prune``), for
                the history message.
        """
        was = self.lastAppliedRevision
        tag = (self.artifact or {}).get("bento_tag", "")
        if was:
            live = f"was live at {was[:12]}" + (f" ({tag})" if tag else "")
        elif tag:  # applied from a repository without a commit: no revision to name
            live = f"was live as {tag} (applied from uncommitted specs: no Git revision)"
        else:
            live = "never applied"
        message = f"destroyed ({reason}); {live}" if reason else f"destroyed; {live}"
        self.add_history(
            DESTROY, revision, SUCCEEDED, message, artifact=tag, lastAppliedRevision=was
        )
        entry = self.history[-1]
        self.destroyed = {
            "time": entry["time"],
            "actor": entry["actor"],
            "revision": revision,
            "lastAppliedRevision": was,
            "artifact": tag,
        }
        self.lastAppliedRevision = self.lastAttemptedRevision = self.lastGoodRevision = ""
        self.inputsDigest = self.lastAttemptedDigest = self.lastAppliedDigest = ""
        self.artifact, self.desiredState, self.outputs = {}, {}, {}
        self.drift, self.suspended, self.quality = {}, {}, {}
        self.conditions = []
        self.failures = 0

    def to_dict(self) -> dict:
        """JSON-ready mapping of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> LedgerRecord:
        """Build a record from its JSON mapping.

        Raises:
            LedgerError: a newer ``schemaVersion``, missing name/environment, or a field of
                the wrong JSON type (the message names the file and the field).
        """
        version = data.get("schemaVersion", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise LedgerError(
                f"{source}: ledger record has schemaVersion {version!r}, newer than this "
                f"modelops understands ({SCHEMA_VERSION}); upgrade modelops. The file was "
                "left untouched."
            )
        known = {f for f in cls.__dataclass_fields__}
        if not isinstance(data.get("name"), str) or not isinstance(data.get("environment"), str):
            raise LedgerError(
                f"{source}: ledger record lacks name or environment; file left untouched"
            )
        fields = {k: v for k, v in data.items() if k in known}
        if (wrong := wrong_json_type(cls, fields)) is not None:
            key, expected = wrong
            raise LedgerError(
                f"{source}: ledger record field {key!r} is of type {type(fields[key]).__name__}, "
                f"expected a {expected}; inspect it, then remove or restore the file. modelops "
                "did not overwrite it."
            )
        for key in ("conditions", "history"):
            if not all(isinstance(item, dict) for item in fields.get(key, [])):
                raise LedgerError(
                    f"{source}: ledger record field {key!r} holds an entry that is not an "
                    "object; inspect it, then remove or restore the file. modelops did not "
                    "overwrite it."
                )
        # the local engine's process identity (Pulumi's outputs may carry floats)
        for key in ("pid", "pgid", "port") if fields.get("platform") == "local" else ():
            value = fields.get("outputs", {}).get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise LedgerError(
                    f"{source}: ledger record field 'outputs.{key}' is {value!r}, expected a "
                    "whole number; inspect it, then remove or restore the file. modelops did "
                    "not overwrite it."
                )
        return cls(**fields)


#: Field annotation of a state-file dataclass -> (the JSON value's Python type, its name).
_JSON_TYPES: dict[str, tuple[type, str]] = {
    "str": (str, "string"),
    "dict": (dict, "JSON object"),
    "list": (list, "JSON list"),
    "int": (int, "whole number"),
}


def wrong_json_type(cls: type, fields: dict) -> tuple[str, str] | None:
    """The first of ``fields`` whose JSON type is not the one dataclass ``cls`` declares.

    For the state files (ledger records, the lock), whose dataclass fields are annotated
    ``str``, ``int``, ``dict`` or ``list``; a bool is not a whole number.

    Returns:
        ``(field, expected type name)``, or ``None`` when every field has its type.
    """
    for key, value in fields.items():
        kind, name = _JSON_TYPES[str(cls.__dataclass_fields__[key].type)]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return key, name
    return None


def write_json_atomically(target: Path, doc: dict) -> None:
    """Write ``doc`` as JSON to ``target``: temp file in the same directory, fsync, rename,
    fsync of the directory. A crash leaves the old file or the new one, never half of one.

    Raises:
        StateWriteError: (exit 2) the directory cannot be created or written (full,
            read-only, no permission): named in the message; the temp file is removed and
            ``target`` left as it was.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(target, json_bytes(doc))
    except OSError as exc:
        raise StateWriteError(target.parent, exc) from None


def json_bytes(doc: dict) -> bytes:
    """The stored form of a state document: indented, sorted keys, a final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


class Ledger:
    """The set of ledger records, one document ``ledger/<name>-<env>.json`` each, in the
    state directory or the shared ``s3://`` state (:mod:`reconciler.state.backend`).

    A record written after it was read by this ``Ledger`` is written conditionally on the
    version read (S3 ``If-Match``; ``If-None-Match: *`` when there was none): when another
    writer changed it meanwhile, :meth:`put` raises
    :class:`~reconciler.state.backend.StateConflict` and writes nothing. A record never
    read here is written as it is.

    Args:
        state_dir: the state directory (created on first write; the default backend).
        backend: where the records are (default: ``LocalBackend(state_dir)``).
    """

    def __init__(self, state_dir: Path, backend: StateBackend | None = None) -> None:
        self.dir = Path(state_dir) / "ledger"
        self.backend = backend or LocalBackend(Path(state_dir))
        self._seen: dict[str, str] = {}  # key -> version tag read (ABSENT: none was there)

    @classmethod
    def of(cls, config: Config) -> Ledger:
        """The ledger of a repository: ``config.state_url`` when set, else its state
        directory.

        Raises:
            ModelopsError: (exit 2) ``state_url`` is not a valid ``s3://`` URI.
        """
        return cls(config.state_dir, open_backend(config))

    @staticmethod
    def key(name: str, env: str) -> str:
        """The backend key of one record."""
        return f"ledger/{name}-{env}.json"

    def path(self, name: str, env: str) -> Path:
        """The file of one record in the state directory (local backend)."""
        return self.dir / f"{name}-{env}.json"

    def where(self, name: str, env: str) -> str:
        """Where one record is, for messages (a path or an ``s3://`` URI)."""
        return self.backend.describe(self.key(name, env))

    def get(self, name: str, env: str) -> LedgerRecord | None:
        """The record of ``name`` × ``env``, or ``None`` when none was written.

        A destroyed record is returned too (``record.destroyed`` is set; nothing in it
        is live): its history is what ``modelops history`` shows and what a later
        apply continues.

        Raises:
            LedgerError: the file is corrupt or from a newer version.
            StateStoreError: the shared state cannot be read.
        """
        return self._read(self.key(name, env))

    def _read(self, key: str) -> LedgerRecord | None:
        stored = self.backend.read(key)
        self._seen[key] = stored.etag if stored is not None else ABSENT
        if stored is None:
            return None
        where = self.backend.describe(key)
        try:
            data = json.loads(stored.data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LedgerError(
                f"{where}: ledger record is corrupt ({exc}); inspect it, then remove or "
                "restore it. modelops did not overwrite it."
            ) from None
        if not isinstance(data, dict):
            raise LedgerError(f"{where}: ledger record is not a JSON object; file left untouched")
        return LedgerRecord.from_dict(data, where)

    def put(self, record: LedgerRecord) -> None:
        """Write a record atomically; conditionally when this ledger read it (see above).

        Raises:
            StateConflict: another writer changed the record since it was read here;
                nothing was written (read it again and redo the change).
            StateWriteError | StateStoreError: (exit 2) the state cannot be written.
        """
        key = self.key(record.name, record.environment)
        etag = self.backend.write(key, json_bytes(record.to_dict()), expect=self._seen.get(key))
        self._seen[key] = etag

    def last_retraining(self, name: str, env: str) -> dict | None:
        """The newest completed retraining run (``retrain/<name>-<env>/last-completed.json``),
        or ``None`` when none was recorded or it cannot be read as a JSON object. Kept
        beside the ledger because a record's history is capped (100 entries), which an
        hourly drift job fills in four days, shorter than a weekly cooldown."""
        stored = self.backend.read(f"retrain/{name}-{env}/last-completed.json")
        try:
            entry = json.loads(stored.data.decode("utf-8")) if stored else None
        except (UnicodeDecodeError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def put_last_retraining(self, name: str, env: str, entry: dict) -> None:
        """Replace the newest completed retraining run (see :meth:`last_retraining`)."""
        self.backend.write(f"retrain/{name}-{env}/last-completed.json", json_bytes(entry))

    def pin(self, name: str, env: str) -> dict | None:
        """The model pin of ``name`` × ``env`` (``pins/<name>-<env>.json``: the remote model
        the last ``plan`` showed, ``{"uri", "kind", "resolved", "version", "sha256",
        "revision", "time"}``), which ``apply`` deploys and nothing else; ``None`` when no
        plan pinned one or it cannot be read as a JSON object (a pin only narrows what
        apply may deploy)."""
        stored = self.backend.read(f"pins/{name}-{env}.json")
        try:
            data = json.loads(stored.data.decode("utf-8")) if stored else None
        except (UnicodeDecodeError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put_pin(self, name: str, env: str, pin: dict) -> None:
        """Replace the model pin of ``name`` × ``env`` (see :meth:`pin`); written by
        ``reconciler.state.status.model_planned`` only."""
        self.backend.write(f"pins/{name}-{env}.json", json_bytes(pin))

    def delete(self, name: str, env: str) -> bool:
        """Remove a record and its history; returns whether one existed.

        ``modelops destroy`` does not use this: it keeps the history
        (:meth:`LedgerRecord.record_destroyed`).
        """
        self._seen.pop(self.key(name, env), None)
        return self.backend.delete(self.key(name, env))

    def all(self, *, include_destroyed: bool = False) -> list[LedgerRecord]:
        """Every managed record, sorted by name then environment.

        Destroyed records (``record.destroyed`` set) are left out unless
        ``include_destroyed``: status, orphan detection, ``--prune`` and ``destroy``
        work on what is live.

        Raises:
            LedgerError: any record is corrupt or from a newer version.
            StateStoreError: the shared state cannot be listed or read.
        """
        keys = [k for k in self.backend.keys("ledger/") if k.endswith(".json")]
        records = [r for k in keys if (r := self._read(k))]
        if not include_destroyed:
            records = [r for r in records if not r.destroyed]
        return sorted(records, key=lambda r: (r.name, r.environment))

    def bento_tags(self) -> set[str]:
        """The Bento tags (``artifact.bento_tag``) of every live record: the Bentos in use,
        which garbage collection keeps (``reconciler.build.store.gc_bentos``).

        Raises:
            LedgerError: a record is corrupt or from a newer version (collect nothing).
        """
        tags = set()
        for record in self.all():
            art = record.artifact or {}
            tag = art.get("bento_tag") if isinstance(art, dict) else getattr(art, "bento_tag", "")
            if tag:
                tags.add(str(tag))
        return tags
