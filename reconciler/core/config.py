"""Repository configuration: ``modelops.yaml`` at the spec repository's root.

Every key is optional (``specs``, ``policies``, ``state_dir``, ``state_url``,
``environments``, ``protected_environments``, ``pulumi_backend``, ``organization``...);
``--state-dir`` or ``MODELOPS_STATE_DIR`` override ``state_dir``, ``MODELOPS_STATE_URL``
overrides ``state_url``. Defaults and details: ``docs/core.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.core.diagnostics import Diagnostic, ModelopsError, Position
from reconciler.core.yaml import YamlLoadError, load_yaml
from reconciler.runtime.uris import S3_FORM, s3_uri_problem

CONFIG_FILE = "modelops.yaml"
DEFAULT_ENVIRONMENTS = ["dev", "staging", "prod"]
#: USD per hour of requested vCPU, GiB of memory and GPU on Kubernetes: OpenCost's
#: defaults (its ``configs/default.json``: CPU 0.031611, RAM 0.004237, GPU 0.95).
#: ``modelops.yaml`` ``kubernetes_rates`` overrides any of them; ``gpu_hour: null`` says
#: no GPU rate is known (a GPU request is then an error, never priced at zero).
DEFAULT_KUBERNETES_RATES: dict = {
    "cpu_hour": 0.031611,
    "memory_gib_hour": 0.004237,
    "gpu_hour": 0.95,
}
_KEYS = {
    "specs",
    "policies",
    "state_dir",
    "environments",
    "protected_environments",
    "pulumi_backend",
    "organization",
    "max_delete_share",
    "stalled_after",
    "guard_reviewers",
    "kubernetes_rates",
    "state_url",
    "jobs",
}
#: ``jobs`` settings: how the scheduled jobs rendered for a cluster reach the spec
#: repository (``docs/engine.md``, "Jobs that run where they are rendered").
JOB_KEYS = ("repository", "credentials", "aws_credentials", "git_image")


@dataclass
class Config:
    """Where things are, and the repository-wide settings.

    Attributes:
        root: the spec repository's root (absolute).
        specs_dir, policies_dir, state_dir: absolute directories.
        environments: the environments a spec may have overlays for.
        protected_environments: environments where destroying needs an explicit flag.
        pulumi_backend: Pulumi state backend URL (``file://<state_dir>/pulumi`` default).
        organization: the organisation settings file that policies read as ``data``.
        max_delete_share: the largest share (0..1) of deployments one run may delete
            without ``--allow-mass-delete``.
        stalled_after: consecutive failed applies after which a deployment is stalled.
        guard_reviewers: GitHub logins whose approving review of a pull request approves
            loosening a guard setting (``docs/flow.md``, "Approving a guard change").
        kubernetes_rates: ``{"cpu_hour", "memory_gib_hour", "gpu_hour"}`` in USD
            (:data:`DEFAULT_KUBERNETES_RATES` for what the file does not set; ``gpu_hour``
            ``None``: no GPU rate), for cost estimates (``docs/cost.md``).
        jobs: ``{"repository", "credentials", "aws_credentials", "git_image"}`` (strings,
            each optional): the spec repository's clone URL the scheduled jobs check out,
            a ``k8s:<secret>/<key>`` reference to its token or deploy key (Kubernetes
            jobs), an ``aws-secretsmanager:<secret ARN>`` reference to its token (the
            jobs EventBridge starts on AWS; HTTPS URLs), the checkout image.
        state_url: ``s3://bucket/prefix`` holding the ledger and the lock (shared state
            for CI runners thrown away after each job), or ``""``: the state directory.
            The state directory still holds the caches, the BentoML home and logs.
    """

    root: Path
    specs_dir: Path
    policies_dir: Path
    state_dir: Path
    environments: list[str] = field(default_factory=lambda: list(DEFAULT_ENVIRONMENTS))
    protected_environments: list[str] = field(default_factory=lambda: ["prod"])
    pulumi_backend: str = ""
    organization: Path | None = None
    max_delete_share: float = 0.5
    stalled_after: int = 3
    guard_reviewers: list[str] = field(default_factory=list)
    kubernetes_rates: dict = field(default_factory=lambda: dict(DEFAULT_KUBERNETES_RATES))
    state_url: str = ""
    jobs: dict = field(default_factory=dict)

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the root when inside it (for messages), else as given."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def repo_path(self, value: str) -> Path | None:
        """Resolve a repository-relative path from a spec; ``None`` if it leaves the root
        or cannot be resolved (a symbolic link loop, a NUL character)."""
        try:
            candidate = (self.root / value).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        try:
            candidate.relative_to(self.root)
        except ValueError:
            return None
        return candidate


#: A GitHub login (``alice``, ``octo-cat``): letters, digits, single hyphens inside.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
#: An environment name is a DNS-1123 label (RFC 1123), as the spec schema requires of the
#: overlay keys under ``spec.environments``: it becomes part of resource names.
_ENV_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


_PATH_KEYS = ("specs", "policies", "state_dir", "organization", "pulumi_backend", "state_url")
STATE_URL_ENV = "MODELOPS_STATE_URL"
_K8S_SECRET = re.compile(r"k8s:[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9_.-]+")
#: A Secrets Manager secret by ARN (the form of spec.secrets' ``aws-secretsmanager:`` refs).
AWS_SECRET = re.compile(
    r"aws-secretsmanager:arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"
    r"[A-Za-z0-9/_+=.@-]+"
)


def _check_values(raw: dict, positions: dict) -> None:
    """Refuse a setting of the wrong type or out of range, at its line in ``modelops.yaml``.

    Paths are non-empty strings; ``max_delete_share`` is a share from 0 to 1 (the guard's
    limit on deletes, ``docs/flow.md``); ``stalled_after`` a whole number of failed applies,
    at least 1. A guard setting that compares wrongly (``"x"``, ``7``, ``-1``) must not
    loosen the guard, so it is an error, not a default.

    Raises:
        ModelopsError: (exit 2) ``modelops.yaml:LINE:COL: KEY: ...`` saying what is valid.
    """

    def fail(key: str, message: str) -> None:
        pos = positions.get((key,), Position(CONFIG_FILE, 1, 1))
        raise ModelopsError(str(Diagnostic(pos, key, message, code="config")))

    for key in _PATH_KEYS:
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            fail(key, f"expected a non-empty path (a string), got {raw[key]!r}")
    for key in ("environments", "protected_environments"):
        bad = [v for v in raw.get(key, []) if not _ENV_NAME.fullmatch(v)]
        if bad:
            fail(
                key,
                f"{', '.join(map(repr, bad))}: an environment name is a DNS-1123 label "
                "(lower-case letters, digits and inner '-', at most 63 characters, e.g. "
                "prod or eu-staging), as spec.environments overlays must be",
            )
    if "state_url" in raw and (problem := state_url_problem(raw["state_url"])):
        fail("state_url", problem)
    jobs = raw.get("jobs", {})
    if not isinstance(jobs, dict) or set(jobs) - set(JOB_KEYS):
        fail("jobs", f"expected a mapping of {', '.join(JOB_KEYS)}, got {jobs!r}")
    for key, value in jobs.items():
        if not (isinstance(value, str) and value.strip()):
            fail("jobs", f"{key}: expected a non-empty string, got {value!r}")
    creds = jobs.get("credentials", "")
    if creds and not _K8S_SECRET.fullmatch(creds):
        fail(
            "jobs",
            "credentials: expected a Kubernetes secret reference k8s:<secret>/<key> (the "
            "secret holding the token or deploy key; never the value itself)",
        )
    aws_creds = jobs.get("aws_credentials", "")
    if aws_creds and not AWS_SECRET.fullmatch(aws_creds):
        fail(
            "jobs",
            "aws_credentials: expected a Secrets Manager reference aws-secretsmanager:"
            "arn:aws:secretsmanager:<region>:<account>:secret:<name> (the secret holding "
            "the token; never the value itself)",
        )
    if aws_creds and jobs.get("repository", "").startswith(("git@", "ssh://")):
        fail(
            "jobs",
            "aws_credentials: the jobs on AWS fetch over HTTPS with a token; repository "
            f"{jobs['repository']!r} is an SSH URL (give its https:// URL)",
        )
    if urlsplit(jobs.get("repository", "")).password:
        fail("jobs", "repository: a URL with a password or token in it; use jobs.credentials")
    share = raw.get("max_delete_share", 0.5)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        fail(
            "max_delete_share",
            f"expected a share from 0 to 1 (0.5: at most half of an environment's "
            f"deployments deleted at once), got {share!r}",
        )
    stalled = raw.get("stalled_after", 3)
    if isinstance(stalled, bool) or not isinstance(stalled, int) or stalled < 1:
        fail(
            "stalled_after",
            f"expected a whole number of consecutive failed applies, at least 1, got {stalled!r}",
        )
    reviewers = raw.get("guard_reviewers", [])
    if not isinstance(reviewers, list) or not all(
        isinstance(r, str) and _LOGIN.fullmatch(r) for r in reviewers
    ):
        fail(
            "guard_reviewers",
            f"expected a list of GitHub logins (letters, digits and inner hyphens, "
            f"e.g. [alice, octo-cat]), got {reviewers!r}",
        )
    rates = raw.get("kubernetes_rates", {})
    if not isinstance(rates, dict):
        fail("kubernetes_rates", f"expected a mapping of {', '.join(DEFAULT_KUBERNETES_RATES)}")
    for key, value in rates.items():
        if key not in DEFAULT_KUBERNETES_RATES:
            fail(
                "kubernetes_rates",
                f"unknown rate {key!r}; rates (USD per hour): "
                f"{', '.join(DEFAULT_KUBERNETES_RATES)}",
            )
        if value is None and key == "gpu_hour":
            continue  # no GPU rate known: a GPU request is then an error
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            pos = positions.get(("kubernetes_rates", key))
            if pos is not None:
                positions[("kubernetes_rates",)] = pos
            fail(
                "kubernetes_rates",
                f"{key}: expected USD per hour, a finite number of at least 0, got {value!r}",
            )


@dataclass(frozen=True)
class GuardSetting:
    """A ``modelops.yaml`` setting that guards a change (``docs/flow.md``, "Guards from
    the merge base").

    Attributes:
        key: the setting's name in ``modelops.yaml`` (and the :class:`Config` field).
        default: its value when the file does not set it.
        stricter: ``(a, b) -> value``: the stricter of two values.
        loosens: ``(base, head) -> bool``: ``head`` is less strict than ``base``.
        meaning: what the setting guards, for messages and docs.
    """

    key: str
    default: object
    stricter: Callable[[object, object], object]
    loosens: Callable[[object, object], bool]
    meaning: str


def _union(a: list[str], b: list[str]) -> list[str]:
    """Every name of either, in order of first mention."""
    return list(dict.fromkeys([*a, *b]))


def _folded(names: list[str]) -> set[str]:
    """GitHub logins compared as GitHub does: case-insensitively."""
    return {n.casefold() for n in names}


#: The settings that guard a change, one row each: a pull request is planned (and merged
#: by ``apply --base``) under the stricter of the merge base's and its own values, each
#: one it changes is listed for security review, and one it loosens blocks until an
#: approved review (``docs/flow.md``). ``stalled_after``: a lower count stops retrying a
#: failing apply sooner. ``guard_reviewers``: a reviewer the head adds cannot approve the
#: change that adds them (only those of both revisions approve). Not here, because they
#: are not repository settings: the lock time-out (``--lock-timeout``, code default) and
#: the longest waiver (``policy/waivers.py: MAX_WAIVER_DAYS``); the policy set and the
#: organisation settings are read from the merge base as a whole (``flow/policy_set.py``).
GUARDS: tuple[GuardSetting, ...] = (
    GuardSetting(
        "max_delete_share",
        0.5,
        min,
        lambda base, head: head > base,
        "the largest share of an environment's deployments one change may delete",
    ),
    GuardSetting(
        "protected_environments",
        ["prod"],
        _union,
        lambda base, head: bool(set(base) - set(head)),
        "environments where destroying needs --allow-destroy-protected",
    ),
    GuardSetting(
        "stalled_after",
        3,
        min,
        lambda base, head: head > base,
        "consecutive failed applies before a deployment is stalled (no more retries)",
    ),
    GuardSetting(
        "guard_reviewers",
        [],
        lambda a, b: [r for r in a if r.casefold() in _folded(b)],
        lambda base, head: bool(_folded(head) - _folded(base)),
        "who may approve loosening a guard setting by an approving pull-request review",
    ),
)
GUARD_SETTINGS = tuple(g.key for g in GUARDS)


def state_url_problem(url: str) -> str | None:
    """Why ``url`` cannot hold the shared state, or None: it must be ``s3://bucket/prefix``
    (the only shared store; a local directory is ``state_dir``)."""
    if not url.startswith("s3://"):
        return (
            f"expected s3://<bucket>/<prefix> (shared state on S3), got {url!r}; a local "
            "directory is state_dir"
        )
    problem = s3_uri_problem(url)
    return f"{url!r} is not a valid S3 URI: {problem}; expected {S3_FORM}" if problem else None


def _parse(data: bytes, name: str) -> tuple[dict, dict]:
    """``(settings, positions)`` of a ``modelops.yaml``'s bytes, checked.

    Raises:
        ModelopsError: (exit 2) not valid YAML, not a mapping, unknown keys, values of
            the wrong type or out of range (at their line).
    """
    try:
        raw, positions = load_yaml(data, name)
    except YamlLoadError as exc:
        raise ModelopsError(str(exc.diagnostic)) from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ModelopsError(f"{name}: expected a mapping of settings")

    def at(key: str) -> str:  # file:line:col of a top-level key, as diagnostics show it
        pos = positions.get((key,), Position(name, 1, 1))
        return f"{pos.file}:{pos.line}:{pos.col}"

    unknown = [k for k in raw if k not in _KEYS]  # in file order, as parsed
    if unknown:
        raise ModelopsError(
            f"{at(unknown[0])}: unknown setting(s) {', '.join(map(str, unknown))}; "
            f"valid settings: {', '.join(sorted(_KEYS))}"
        )
    for key in ("environments", "protected_environments"):
        if key in raw and not (
            isinstance(raw[key], list) and all(isinstance(v, str) for v in raw[key])
        ):
            raise ModelopsError(f"{at(key)}: {key}: expected a list of environment names")
    if raw:
        _check_values(raw, positions)
    return raw, positions


def guard_settings(data: bytes | None, name: str = CONFIG_FILE) -> dict:
    """The :data:`GUARDS` of one revision's ``modelops.yaml`` (``None``: no file).

    Returns:
        ``{key: value}`` for every :data:`GUARD_SETTINGS` key (``max_delete_share``
        float 0..1, ``protected_environments`` and ``guard_reviewers`` lists of names,
        ``stalled_after`` int >= 1), defaults for what the file does not set.

    Raises:
        ModelopsError: (exit 2) the file is invalid (see :func:`load_config`); ``name``
            says which revision's file in the message.
    """
    raw = _parse(data, name)[0] if data is not None else {}
    out = {}
    for guard in GUARDS:
        value = raw.get(guard.key, guard.default)
        out[guard.key] = list(value) if isinstance(value, list) else value
    out["max_delete_share"] = float(out["max_delete_share"])
    return out


def stricter_guards(a: dict, b: dict) -> dict:
    """The stricter of two :func:`guard_settings`, setting by setting (:data:`GUARDS`)."""
    return {g.key: g.stricter(a[g.key], b[g.key]) for g in GUARDS}


def loosened(base: dict, head: dict) -> list[str]:
    """The :data:`GUARD_SETTINGS` that ``head`` makes less strict than ``base``."""
    return [g.key for g in GUARDS if g.loosens(base[g.key], head[g.key])]


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding modelops.yaml or .git; else start."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).is_file() or (candidate / ".git").exists():
            return candidate
    return here


def load_config(root: Path | None = None, state_dir: Path | str | None = None) -> Config:
    """Read ``modelops.yaml`` (if any) and apply defaults and environment overrides.

    Args:
        root: repository root; found from the working directory when ``None``.
        state_dir: explicit state directory (``--state-dir``); beats ``MODELOPS_STATE_DIR``
            and the file.

    Raises:
        ModelopsError: (exit 2) the file is not valid YAML, not a mapping, has unknown
            keys or values of the wrong type.
    """

    root = find_root(root)
    raw: dict = {}
    positions: dict = {}
    path = root / CONFIG_FILE
    if path.is_file():
        raw, positions = _parse(path.read_bytes(), CONFIG_FILE)
    state = state_dir or os.environ.get("MODELOPS_STATE_DIR") or raw.get("state_dir", ".modelops")
    state_path = (root / state).resolve()
    policies = (root / raw.get("policies", "policies")).resolve()
    org = raw.get("organization")
    org_path = (root / org).resolve() if org else policies / "organization.yaml"
    specs = (root / raw.get("specs", "specs")).resolve()
    for key, where in (("specs", specs), ("policies", policies), ("organization", org_path)):
        if not where.is_relative_to(root.resolve()):
            pos = positions.get((key,), Position(CONFIG_FILE, 1, 1))
            raise ModelopsError(
                str(
                    Diagnostic(
                        pos,
                        key,
                        f"{raw.get(key)!r} resolves to {where}, outside the repository "
                        f"{root}: specs, policies and organisation settings are reviewed "
                        "in this repository's pull requests, so they must live in it "
                        "(a path inside the repository, no link leading out)",
                        code="config",
                    )
                )
            )
    state_url = os.environ.get(STATE_URL_ENV) or raw.get("state_url", "")
    if os.environ.get(STATE_URL_ENV) and (problem := state_url_problem(state_url)):
        raise ModelopsError(f"{STATE_URL_ENV}: {problem}")
    backend = os.environ.get("PULUMI_BACKEND_URL") or raw.get("pulumi_backend") or ""
    if not backend and state_url:  # Pulumi's own S3 backend, beside the shared state
        backend = f"{state_url.rstrip('/')}/pulumi"
    if not backend:
        backend = f"file://{state_path / 'pulumi'}"
    return Config(
        root=root,
        specs_dir=specs,
        policies_dir=policies,
        state_dir=state_path,
        environments=list(raw.get("environments", DEFAULT_ENVIRONMENTS)),
        protected_environments=list(raw.get("protected_environments", ["prod"])),
        pulumi_backend=backend,
        organization=org_path,
        max_delete_share=float(raw.get("max_delete_share", 0.5)),
        stalled_after=int(raw.get("stalled_after", 3)),
        guard_reviewers=list(raw.get("guard_reviewers", [])),
        kubernetes_rates=_rates(raw.get("kubernetes_rates") or {}),
        state_url=state_url.rstrip("/"),
        jobs=dict(raw.get("jobs") or {}),
    )


def _rates(given: dict) -> dict:
    """The Kubernetes rates: ``given`` (checked by ``_check_values``) over the defaults."""
    return {**DEFAULT_KUBERNETES_RATES, **given}
