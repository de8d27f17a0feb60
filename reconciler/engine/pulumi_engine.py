"""The Pulumi engine: the Automation API with one inline program per deployment × environment.

* Stack ``<name>-<env>`` in project ``modelops``; the program is the same
  ``stacks/<platform>.py`` function the offline renderer runs under mocks.
* State backend: ``config.pulumi_backend`` (default ``file://<state_dir>/pulumi``;
  ``PULUMI_BACKEND_URL`` points a team at S3 or Pulumi Cloud). Secrets use the
  passphrase provider on self-managed backends: ``PULUMI_CONFIG_PASSPHRASE`` (or
  ``PULUMI_CONFIG_PASSPHRASE_FILE``) must be set.
* ``apply`` = refresh, preview, up. Engine events drive a progress display and become
  the same :class:`~reconciler.engine.plan.Plan` as the offline plan. The outputs are
  returned (:class:`~reconciler.engine.base.ApplyResult`); the engine writes no ledger.
* A stack locked by another update is reported as such, naming the stack; transient
  failures (throttling, timeouts, 5xx from the cloud) are retried with exponential
  backoff; ``destroy`` is explicit.

The ``pulumi`` CLI is a separate binary. Without it every operation stops with exit 2 and
a message that names it and says how to install it; ``render`` and ``plan`` work offline.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

from reconciler.core.config import Config
from reconciler.core.diagnostics import EXIT_APPLY_FAILED, EXIT_USAGE, ModelopsError
from reconciler.core.digests import json_sha256
from reconciler.core.progress import note
from reconciler.engine.base import ApplyResult, LiveRecord
from reconciler.engine.events import PlanCollector
from reconciler.engine.plan import Plan
from reconciler.engine.render import has_jobs, job_context, program_for, stable_image_of
from reconciler.spec.model import Deployment
from stacks.common import image_ref

PROJECT = "modelops"
ENGINE_VERSION = "pulumi/v1"
INSTALL_HINT = (
    "install it with `curl -fsSL https://get.pulumi.com | sh` (or see "
    "https://www.pulumi.com/docs/install/), then re-run"
)
# Substrings of errors worth retrying: cloud throttling, timeouts, transient 5xx.
TRANSIENT = (
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequests",
    "Rate exceeded",
    "connection reset",
    "i/o timeout",
    "TLS handshake timeout",
    "503 Service Unavailable",
    "502 Bad Gateway",
    "ServiceUnavailable",
    "InternalFailure",
)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 2.0


def pulumi_available() -> bool:
    """True when the ``pulumi`` CLI is on ``PATH`` (the Automation API needs it)."""
    return shutil.which("pulumi") is not None


def require_pulumi(action: str, what: str) -> None:
    """Stop with exit 2 when the ``pulumi`` CLI is missing.

    Raises:
        ModelopsError: (exit 2) naming the ``pulumi`` CLI and how to install it.
    """
    if not pulumi_available():
        raise ModelopsError(
            f"{action} of {what} needs the Pulumi CLI (`pulumi`), which is not on PATH; "
            f"{INSTALL_HINT}. `modelops render` and `modelops plan` work offline without it.",
            EXIT_USAGE,
        )


def default_progress() -> Callable[[str], None]:
    """Progress lines as notes of the one progress reporter
    (:func:`reconciler.core.progress.note`): the command renders them on a terminal and
    drops them in CI or a pipe (``reconciler.report.progress``)."""
    return note


def engine_digest(dep: Deployment, image: dict) -> str:
    """SHA-256 hex of what determines a stack: engine version, resolved spec, image."""
    doc = {"engine": ENGINE_VERSION, "deployment": dep.data, "env": dep.env, "image": image}
    return json_sha256(doc)


def is_transient(message: str) -> bool:
    """Whether an engine error looks transient (see :data:`TRANSIENT`)."""
    return any(t.lower() in message.lower() for t in TRANSIENT)


class PulumiEngine:
    """Drives the Automation API for cloud and cluster deployments (an :class:`Engine`).

    Args:
        config: repository configuration (backend URL, state directory).
        progress: called with one line per engine step; default
            :func:`default_progress` (the progress reporter: shown on a terminal, quiet
            in CI).
        retries: attempts for operations that fail transiently (default 3).
        backoff_s: first backoff in seconds, doubled after each failed attempt.
        sleep: the sleep function (tests pass a recorder).
    """

    def __init__(
        self,
        config: Config,
        progress: Callable[[str], None] | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.progress = progress if progress is not None else default_progress()
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.sleep = sleep

    # -- workspace -------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        backend = self.config.pulumi_backend
        env = {"PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        self_managed = not backend.startswith(("https://", "http://"))
        if self_managed and not (
            os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None
            or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
        ):
            raise ModelopsError(
                f"the Pulumi backend {backend} keeps secrets with a passphrase: set "
                "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) before apply",
                EXIT_USAGE,
            )
        if backend.startswith("file://"):
            os.makedirs(backend[len("file://") :], exist_ok=True)
        return env

    def stack(
        self,
        dep: Deployment,
        artifact=None,
        record: LiveRecord | None = None,
    ):
        """The ``<name>-<env>`` stack with the deployment's inline program (created if new).

        ``record`` (the deployment's last ledger record) gives the image the stable track
        runs (canary rollouts).

        Raises:
            ModelopsError: (exit 2) no ``pulumi`` CLI, no passphrase, platform without a
                program.
        """
        require_pulumi("this operation", dep.key)
        from pulumi import automation as auto  # heavy: the Pulumi SDK, only when a stack runs

        program = program_for(dep.platform)
        image = image_ref(dep, artifact)
        stable = stable_image_of(record.desiredState if record is not None else None)
        if stable == image.ref:
            stable = None  # as the renderer does: the stable track already runs this image
        env = self._env()
        opts = auto.LocalWorkspaceOptions(
            env_vars=env,
            project_settings=auto.ProjectSettings(
                name=PROJECT,
                runtime="python",
                backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"]),
            ),
            secrets_provider="passphrase"
            if not env["PULUMI_BACKEND_URL"].startswith("http")
            else None,
        )
        jobs = job_context(self.config) if has_jobs(dep) else None
        stack = auto.create_or_select_stack(
            stack_name=dep.key,
            project_name=PROJECT,
            program=lambda: program(
                *((dep, image, stable) if jobs is None else (dep, image, stable, jobs))
            ),
            opts=opts,
        )
        region = dep.get("spec.target.region")
        if dep.platform.startswith("aws-") and region:
            # The default AWS provider needs a region even though every resource sets one.
            stack.set_config("aws:region", auto.ConfigValue(value=str(region)))
        return stack

    def _run(self, what: str, dep_key: str, fn):
        """Run ``fn`` with retries for transient errors; map lock conflicts and failures."""
        from pulumi import automation as auto  # heavy: the Pulumi SDK, only when a stack runs

        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                return fn(), attempt
            except auto.ConcurrentUpdateError as exc:
                raise ModelopsError(
                    f"stack {dep_key} is locked by another update ({what} not started). Wait "
                    f"for it to finish; if it crashed, `pulumi cancel --stack {dep_key}` "
                    f"releases the lock. Engine said: {_tail(str(exc))}",
                    EXIT_APPLY_FAILED,
                ) from exc  # the cause marks it transient (flow/transient.py): never Stalled
            except auto.CommandError as exc:
                text = str(exc)
                if attempt < self.retries and is_transient(text):
                    if self.progress:
                        self.progress(
                            f"{what} of {dep_key}: transient error, retry {attempt + 1}/"
                            f"{self.retries} in {delay:.0f} s"
                        )
                    self.sleep(delay)
                    delay *= 2
                    continue
                raise ModelopsError(
                    f"{what} of {dep_key} failed: {_tail(text)}", EXIT_APPLY_FAILED
                ) from None
        raise AssertionError("unreachable")

    # -- operations ------------------------------------------------------------------------

    def preview(self, dep: Deployment, artifact=None, record: LiveRecord | None = None) -> Plan:
        """What ``up`` would change, computed by the engine against the live stack.

        Raises:
            ModelopsError: exit 2 without the CLI; exit 3 when the preview fails or the
                stack is locked.
        """
        stack = self.stack(dep, artifact, record)
        image = image_ref(dep, artifact).to_dict()
        collector = PlanCollector(dep.key, dep.platform, image, self.progress)
        self._run("preview", dep.key, lambda: stack.preview(on_event=collector, color="never"))
        return collector.plan()

    def apply(
        self, dep: Deployment, artifact, revision: str, record: LiveRecord | None = None
    ) -> ApplyResult:
        """Converge one deployment: refresh, preview, then up.

        Args:
            dep: the resolved deployment (a cloud or cluster platform).
            artifact: the built Bento (image reference), or ``None``.
            revision: the Git revision being applied.
            record: the deployment's last ledger record (the stable image of a canary).

        Returns:
            :class:`ApplyResult` with the outputs, the plan and the engine's digest.

        Raises:
            ModelopsError: exit 2 without the CLI or passphrase; exit 3 when the update
                fails or the stack is locked.
        """
        image = image_ref(dep, artifact).to_dict()
        stack = self.stack(dep, artifact, record)
        self._run("refresh", dep.key, lambda: stack.refresh(color="never"))
        preview = PlanCollector(dep.key, dep.platform, image, None)
        self._run("preview", dep.key, lambda: stack.preview(on_event=preview, color="never"))
        collector = PlanCollector(dep.key, dep.platform, image, self.progress)
        result, attempts = self._run(
            "up", dep.key, lambda: stack.up(on_event=collector, color="never")
        )
        outputs = {
            k: ("[secret]" if v.secret else v.value) for k, v in (result.outputs or {}).items()
        }
        summary = {
            getattr(k, "value", str(k)): int(v)
            for k, v in (result.summary.resource_changes or {}).items()
        }
        plan = collector.plan()
        changed = any(v for k, v in summary.items() if k != "same") if summary else not plan.empty
        message = f"{dep.key}: {plan.summary()} ({'applied' if changed else 'unchanged'})"
        return ApplyResult(
            changed,
            outputs,
            message,
            engine_digest(dep, image),
            plan=plan,
            summary=summary,
            attempts=attempts,
        )

    def existing_stack(self, key: str, action: str):
        """The recorded stack ``key`` with an empty program (its spec may be gone): what
        ``destroy`` and ``drift`` operate on, neither of which runs the program.

        Raises:
            ModelopsError: exit 2 without the CLI or passphrase; exit 3 when the stack
                cannot be selected.
        """
        require_pulumi(action, key)
        from pulumi import automation as auto  # heavy: the Pulumi SDK, only when a stack runs

        env = self._env()
        opts = auto.LocalWorkspaceOptions(
            env_vars=env,
            project_settings=auto.ProjectSettings(
                name=PROJECT,
                runtime="python",
                backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"]),
            ),
        )
        return auto.select_stack(
            stack_name=key, project_name=PROJECT, program=lambda: None, opts=opts
        )

    def drift(self, record: LiveRecord) -> dict[str, int]:
        """What a refresh of the recorded stack would change: the resources whose live
        state no longer matches the stack's state (changed or deleted outside Pulumi).

        A preview of the refresh (``pulumi refresh --preview-only``): nothing is written.

        Returns:
            ``{operation: resource count}`` for every operation other than ``same``
            (``{"update": 1, "delete": 1}``); ``{}`` when the live resources match.

        Raises:
            ModelopsError: exit 2 without the CLI or passphrase; exit 3 when the refresh
                preview fails or the stack is locked (transient: ``flow/transient.py``).
        """
        key = record.key
        stack = self.existing_stack(key, "the drift check")
        result, _ = self._run("refresh", key, lambda: stack.preview_refresh(color="never"))
        changes = getattr(result, "change_summary", None) or {}
        return {
            getattr(op, "value", str(op)): int(n)
            for op, n in changes.items()
            if getattr(op, "value", str(op)) != "same" and n
        }

    def destroy(self, record: LiveRecord) -> bool:
        """Destroy the stack of a ledger record (its spec may be gone) and remove the stack.

        Uses an empty program, so the engine deletes everything the stack holds.

        Returns:
            True.

        Raises:
            ModelopsError: exit 2 without the CLI; exit 3 on failure or a locked stack.
        """
        key = record.key
        stack = self.existing_stack(key, "destroy")
        self._run("destroy", key, lambda: stack.destroy(color="never"))
        stack.workspace.remove_stack(key)
        return True


def _tail(text: str, lines: int = 8) -> str:
    """The last ``lines`` non-empty lines of an engine error (stderr is long)."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
