"""Validation: JSON Schema (draft 2020-12) plus semantic checks, as diagnostics.

The schema file ``modeldeployment.schema.json`` beside this module is the truth for
the spec's shape. Semantic checks cover what a schema cannot say: names unique across
files, model files present with the digest the spec claims, overlays only for known
environments, paths that stay inside the repository, cron expressions that parse,
replica ranges, canary steps and SageMaker instance types.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.digests import file_sha256
from reconciler.core.document import PathKey, format_path, get_path
from reconciler.core.modeluri import MLFLOW_FORM, is_mlflow_uri, mlflow_uri_problem
from reconciler.policy.encoding import text_misread
from reconciler.runtime import request
from reconciler.runtime.uris import URI_SCHEMES, parse_s3_uri
from reconciler.spec import cron, modelcheck
from reconciler.spec.edge import edge_diagnostics
from reconciler.spec.model import Deployment, Spec
from reconciler.spec.paths import path_diagnostics
from reconciler.spec.rollout import rollout_diagnostics
from reconciler.spec.smoke import RequestFileError, read_request_file

SCHEMA_PATH = Path(__file__).with_name("modeldeployment.schema.json")

# SageMaker real-time instance families and sizes (AWS "Instance types for real-time
# inference" page); the set a spec may name.
SAGEMAKER_INSTANCE_TYPES = frozenset(
    f"ml.{family}.{size}"
    for family, sizes in {
        "t2": ["medium", "large", "xlarge", "2xlarge"],
        "m5": ["large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"],
        "m6i": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"],
        "c5": ["large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge"],
        "c6i": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"],
        "r5": ["large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"],
        "g4dn": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"],
        "g5": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge"],
        "p3": ["2xlarge", "8xlarge", "16xlarge"],
        "inf1": ["xlarge", "2xlarge", "6xlarge", "24xlarge"],
        "inf2": ["xlarge", "8xlarge", "24xlarge", "48xlarge"],
    }.items()
    for size in sizes
)


@functools.cache
def schema() -> dict:
    """The ModelDeployment JSON Schema as a dict (read once)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Draft202012Validator:
    # JSON Schema counts 2.0 as an integer; a YAML spec that writes `workers: 2.0` means a
    # float, and the float would reach the build digest and the stacks (a changed digest
    # for the same settings). Integers here are ints, as YAML reads `2`.
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = validators.extend(
        Draft202012Validator, {"pattern": _whole_value_pattern}, type_checker=checker
    )
    return strict(schema())


@functools.lru_cache(maxsize=256)
def _anchored(pattern: str) -> re.Pattern:
    r"""``pattern`` compiled so that a final ``$`` means the end of the value.

    Python's ``$`` also matches before a trailing newline, so ``^[a-z]+$`` accepted
    ``"name\n"``; JSON Schema's patterns are ECMA-262 regexes, where it does not. A final
    unescaped ``$`` becomes ``\Z``.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _whole_value_pattern(validator, pattern: str, instance, schema: dict):
    """The ``pattern`` keyword, with ``$`` anchoring at the end of the value
    (:func:`_anchored`); otherwise as jsonschema's own (a search, strings only)."""
    if validator.is_type(instance, "string") and not _anchored(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _describe(error: ValidationError) -> tuple[PathKey, str]:
    """The path to point at and a message that says what would be valid."""
    path = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # a key that fails its mapping's propertyNames: point at the key itself
        _, why = _describe_value(error)
        return (*path, error.instance), f"invalid key: {why}"
    return _describe_value(error)


def _describe_value(error: ValidationError) -> tuple[PathKey, str]:
    """:func:`_describe` of the value ``error`` is about."""
    path = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties":
        return _unknown_fields(error)[0]
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return path, f"missing required field {missing!r}"
    if validator == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        return path, f"{error.instance!r} is not allowed; expected one of {options}"
    if validator == "const":
        return path, f"{error.instance!r} is not allowed; expected {error.validator_value!r}"
    if validator == "type":
        expected = error.validator_value
        got = type(error.instance).__name__
        return path, f"expected {expected}, got {got} {error.instance!r}"
    if validator == "pattern":
        hint = error.schema.get("description", f"must match {error.validator_value}")
        return path, f"{error.instance!r} is not valid: {hint}"
    if validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "greater than",
            "exclusiveMaximum": "less than",
        }
        return (
            path,
            f"{error.instance!r} is out of range; "
            f"must be {words[validator]} {error.validator_value}",
        )
    if validator in {"minLength", "maxLength", "minItems", "maxItems"}:
        unit = "characters" if validator.endswith("Length") else "items"
        size = len(error.instance) if isinstance(error.instance, str | list) else "?"
        if validator.startswith("max"):
            shown = repr(error.instance)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return path, (
                f"{shown} is too long ({size} {unit}); "
                f"at most {error.validator_value} {unit} are allowed"
            )
        return path, (
            f"{error.instance!r} is too short; at least {error.validator_value} {unit} are required"
        )
    if validator == "propertyNames":
        return path, f"invalid key: {error.message}"
    if validator in {"anyOf", "oneOf"} and error.context:
        best = max(error.context, key=lambda e: len(tuple(e.absolute_path)))
        return _describe(best)
    if validator == "not" and isinstance(error.instance, str):
        return (
            path,
            f"{error.instance!r} is not valid: "
            f"{error.schema.get('description', 'not allowed here')}",
        )
    return path, error.message


def _unknown_fields(error: ValidationError) -> list[tuple[PathKey, str]]:
    """One (path, message) per unknown key of an ``additionalProperties`` error.

    jsonschema raises one error for a mapping with several unknown keys; each is reported
    at its own line, so one edit fixes them all.
    """
    path = tuple(error.absolute_path)
    allowed = sorted(error.schema.get("properties", {}))
    extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
    valid = ", ".join(allowed) if allowed else "none"
    return [
        ((*path, field), f"unknown field {field!r}; valid fields here: {valid}")
        for field in extra or ["?"]
    ]


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors to report for one schema error.

    An ``anyOf``/``oneOf`` error (an environment overlay is ``anyOf [overlay, null]``)
    carries the errors of every branch; the branch the value was meant for is the one
    whose errors reach deepest into it, and every error of that branch is reported (not
    only the first), as they would be outside an overlay.
    """
    if error.validator not in {"anyOf", "oneOf"} or not error.context:
        return [error]
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context:
        key = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(key, []).append(sub)
    best = max(branches.values(), key=lambda errs: max(len(tuple(e.absolute_path)) for e in errs))
    return [leaf for sub in best for leaf in _leaves(sub)]


def schema_diagnostics(doc: dict, locate: Callable[[PathKey], Position]) -> list[Diagnostic]:
    """Validate ``doc`` against the schema; one diagnostic per error, in document order.

    Args:
        doc: the document (a spec, or a resolved deployment without ``environments``).
        locate: maps a path tuple to the position to report.
    """
    out = []
    for error in _validator().iter_errors(doc):
        for leaf in _leaves(error):
            described = (
                _unknown_fields(leaf)
                if leaf.validator == "additionalProperties"
                else [_describe(leaf)]
            )
            for path, message in described:
                out.append(Diagnostic(locate(path), format_path(path), message, code="schema"))
    out.sort(key=lambda d: (d.position.line, d.position.col, d.field))
    return out


# a URI scheme (RFC 3986: letter, then letters, digits, + - .), then ':' and more: not
# a repository path (a Windows drive letter C:\ is one letter and is left to the path rules)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
AWS_PLATFORMS = ("aws-sagemaker", "aws-serverless")
# frameworks whose retraining candidates ``modelops retrain`` can score against the live
# model (reconciler/monitor/retrain.py: scikit-learn scorers)
RETRAIN_FRAMEWORKS = ("sklearn",)


#: the model sources the build fetches (reconciler/build/fetch.py), as messages name them
MODEL_SOURCES = "a repository path, bentoml:<tag>, s3://bucket/key or " + MLFLOW_FORM


def model_source_problem(uri: str) -> str | None:
    """Why the build cannot fetch the model URI ``uri`` (a sentence), or ``None`` for a
    repository path (checked elsewhere) and a well-formed ``bentoml:``, ``s3://`` or
    ``models:/`` URI."""
    if uri.startswith("bentoml:"):
        return None if uri[len("bentoml:") :].strip() else "bentoml: names no model tag"
    if uri.startswith("s3://"):
        try:
            _bucket, key = parse_s3_uri(uri)
        except ValueError as exc:
            return str(exc)
        return None if key else f"{uri!r} names a bucket, not the model object"
    if is_mlflow_uri(uri):
        problem = mlflow_uri_problem(uri)
        return f"{uri!r}: {problem}; expected {MLFLOW_FORM}" if problem else None
    if uri.startswith(URI_SCHEMES):
        scheme = uri.split(":", 1)[0]
        return f"{scheme}: model URIs are not fetched by the build; use {MODEL_SOURCES}"
    return None


def cluster_job_diagnostics(dep: Deployment) -> list[Diagnostic]:
    """What cannot work on a Kubernetes target, whose pods and scheduled jobs run in the
    cluster (``docs/engine.md``, "Jobs that run where they are rendered").

    - a capture sink that is a repository path: the serving pods' root filesystem is
      read-only and each pod's ``/tmp`` is its own, so the monitoring job (another pod)
      would never see a captured request: it must be ``s3://``;
    - a label sink that is a repository path while the monitoring job runs on a schedule:
      labels ingested on one machine never reach the job's checkout (labels are not
      committed): it must be ``s3://``.
    """
    if dep.platform != "kubernetes":
        return []
    out = []
    scheduled = bool(dep.get("spec.monitoring.schedule")) and (
        dep.get("spec.monitoring.enabled", True) is not False
    )
    sink = dep.get("spec.monitoring.capture.sink")
    capture_on = dep.get("spec.monitoring.capture.enabled", True) is not False
    checks = [("spec.monitoring.capture.sink", sink, capture_on, "captured requests")]
    labels = dep.get("spec.monitoring.labels.sink")
    checks.append(("spec.monitoring.labels.sink", labels, scheduled, "delayed labels"))
    for path, value, applies, what in checks:
        if applies and isinstance(value, str) and value and not value.startswith("s3://"):
            message = (
                f"{value!r} is a repository path, which cannot hold {what} on kubernetes: the "
                "pods have read-only root filesystems and the monitoring job runs in another "
                "pod from a fresh checkout; use s3://<bucket>/<prefix> (a repository path "
                "works for local targets)"
            )
            where = dep.locate(path)
            out.append(Diagnostic(where, path, f"{message} [env {dep.env}]", code="sink"))
    return out


def build_rule_diagnostics(dep: Deployment) -> list[Diagnostic]:
    """What build, apply or retrain would refuse, known from the spec alone.

    - ``spec.model.uri`` with a scheme the build cannot fetch (it fetches
      :data:`~reconciler.runtime.uris.URI_SCHEMES` and repository paths);
    - an AWS target capturing to a sink that is not ``s3://`` (the SageMaker data
      capture and the serverless capture write to S3 only: ``stacks/aws_common.py``);
      a Kubernetes target likewise (:func:`cluster_job_diagnostics`);
    - a ``retraining`` section on a framework whose candidates cannot be scored yet.
    """
    out = []

    def err(path: str, message: str, code: str) -> None:
        out.append(Diagnostic(dep.locate(path), path, f"{message} [env {dep.env}]", code=code))

    uri = dep.get("spec.model.uri")
    if isinstance(uri, str) and not uri.startswith(URI_SCHEMES) and _SCHEME.match(uri):
        scheme = uri.split(":", 1)[0]
        err(
            "spec.model.uri",
            f"{scheme}: is not a scheme the build can fetch; use {MODEL_SOURCES}",
            "uri",
        )
    elif isinstance(uri, str) and (problem := model_source_problem(uri)):
        err("spec.model.uri", problem, "uri")
    sink = dep.get("spec.monitoring.capture.sink")
    capture_on = dep.get("spec.monitoring.capture.enabled", True) is not False
    if dep.platform in AWS_PLATFORMS and capture_on and isinstance(sink, str) and sink:
        if not sink.startswith("s3://"):
            err(
                "spec.monitoring.capture.sink",
                f"{sink!r} is not an S3 URI; {dep.platform} captures to s3://<bucket>/<prefix> "
                "only (a repository directory works for local targets)",
                "capture-sink",
            )
    out.extend(cluster_job_diagnostics(dep))
    framework = dep.get("spec.model.framework", "sklearn")
    if isinstance(dep.get("spec.retraining"), dict) and framework not in RETRAIN_FRAMEWORKS:
        err(
            "spec.retraining",
            f"retraining scores candidates with scikit-learn scorers, so it supports framework "
            f"{', '.join(RETRAIN_FRAMEWORKS)} only, not {framework!r}; remove the retraining "
            "section or retrain outside modelops",
            "retraining",
        )
    return out


def model_load_diagnostics(dep: Deployment, config: Config) -> list[Diagnostic]:
    """Whether the build's loader can read the repository model file (``spec/modelcheck.py``).

    Only for a file that exists inside the repository (a missing one is reported above).
    A scikit-learn model (a pickle: loading runs code) is loaded only when
    ``spec.model.sha256`` is given and matches; the other frameworks' native files are
    loaded in a child process with a time-out. Verdicts are cached by file digest.
    """
    uri = dep.get("spec.model.uri")
    framework = dep.get("spec.model.framework", "sklearn")
    if not isinstance(uri, str) or uri.startswith(URI_SCHEMES) or _SCHEME.match(uri):
        return []
    if framework not in modelcheck.frameworks.PACKAGES:
        return []
    path = config.repo_path(uri)
    if path is None or not path.is_file():
        return []
    digest = file_sha256(path)
    want = dep.get("spec.model.sha256")
    if framework == "sklearn" and want != digest:
        return []  # never unpickle a file the spec does not pin (a mismatch is reported)
    task = dep.get("spec.model.task", "")
    problem = modelcheck.load_problem(
        framework,
        path,
        digest,
        task if isinstance(task, str) else "",
        config.state_dir,
        root=config.root,
    )
    if not problem:
        return []
    return [
        Diagnostic(
            dep.locate("spec.model.uri"),
            "spec.model.uri",
            f"{uri} {problem} [env {dep.env}]",
            code="model-load",
        )
    ]


#: Data files whose rows the monitoring and retraining jobs read by the signature's
#: feature columns (reconciler/monitor/data.py ``read_table``; retrain's holdout also has
#: ``target``).
DATA_FIELDS = ("spec.monitoring.reference", "spec.retraining.holdout")


def signature_feature_names(dep: Deployment) -> list[str] | None:
    """The feature columns the jobs read: ``signature.inputs.names``, else ``f0..f<n-1>``
    from a fixed last dimension of ``signature.inputs.shape``; None when neither is given
    (the monitoring jobs read features by this: ``reconciler.monitor.data.features_of``)."""
    names = dep.get("spec.model.signature.inputs.names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    shape = dep.get("spec.model.signature.inputs.shape")
    if isinstance(shape, list) and shape and isinstance(shape[-1], int) and shape[-1] > 0:
        return [f"f{i}" for i in range(shape[-1])]
    return None


def _table_columns(path: Path) -> list[str] | None:
    """The column names of a Parquet file (its footer only) or a CSV file (its header);
    None for another suffix or a file that cannot be read (reported where it is used)."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # heavy: only when a spec names a Parquet file

            return list(pq.read_schema(path).names)
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                return next(csv.reader(fh), [])
    except Exception:  # noqa: BLE001 - OSError, a bad CSV, pyarrow's errors for a bad footer
        return None
    return None


def data_column_diagnostics(dep: Deployment, config: Config) -> list[Diagnostic]:
    """A reference or holdout file that lacks feature columns of the signature: every
    scheduled monitoring run (or retraining) would fail on it, so validate says so.

    Only for repository files that exist (missing ones are reported elsewhere); the
    columns are read from the Parquet footer or the CSV header, never the rows.
    """
    features = signature_feature_names(dep)
    if not features:
        return []
    out = []
    for field in DATA_FIELDS:
        value = dep.get(field)
        if not isinstance(value, str) or _SCHEME.match(value):
            continue
        path = config.repo_path(value)
        if path is None or not path.is_file():
            continue
        columns = _table_columns(path)
        if columns is None:
            continue
        missing = [f for f in features if f not in set(columns)]
        if not missing:
            continue
        shown = ", ".join(missing[:5]) + (
            f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        )
        named = dep.get("spec.model.signature.inputs.names")
        hint = (
            "give spec.model.signature.inputs.names the file's feature columns "
            f"(it has: {', '.join(columns[:5])}{', ...' if len(columns) > 5 else ''})"
            if not named
            else "make the file's columns the signature's feature names"
        )
        out.append(
            Diagnostic(
                dep.locate(field),
                field,
                f"{value} lacks {len(missing)} feature column(s) of the model signature: "
                f"{shown}; {hint} [env {dep.env}]",
                code="data-columns",
            )
        )
    return out


SCHEDULE_FIELDS = (
    "spec.monitoring.schedule",
    "spec.retraining.schedule",
    "spec.serving.batch.schedule",
)


def schedule_diagnostics(dep: Deployment) -> list[Diagnostic]:
    """Each schedule checked in the dialect of the target it is rendered for.

    ``reconciler.spec.cron.check``: Kubernetes/local (day-of-week 0-6), EventBridge for
    the AWS targets (not both day fields, no day-of-week step); a schedule that never
    runs is an error, day-of-month with day-of-week (either-or) a warning.
    """
    platform = dep.get("spec.target.platform")
    dialect = cron.DIALECTS.get(platform if isinstance(platform, str) else "", cron.KUBERNETES)
    out = []
    for field in SCHEDULE_FIELDS:
        value = dep.get(field)
        if value is None:
            continue
        for finding in cron.check(value, dialect, platform if isinstance(platform, str) else None):
            where = f"{platform} target" if isinstance(platform, str) else "target"
            out.append(
                Diagnostic(
                    dep.locate(field),
                    field,
                    f"{finding.message} ({where}) [env {dep.env}]",
                    severity=finding.severity,
                    code="cron",
                )
            )
    return out


def _sensitive_field_diagnostics(dep: Deployment) -> list[Diagnostic]:
    """Entries of ``spec.data.sensitive_fields`` that name no signature feature.

    Capture redaction (``monitoring.capture.redact``) and the drift job select the
    sensitive columns by name among ``spec.model.signature.inputs.names``
    (``reconciler/runtime/service.py``, ``reconciler.monitor.data.features_of``):
    an entry that is not one of those names redacts nothing, and the feature it was meant
    to cover is captured as sent. Checked only when the signature gives ``names`` (without
    them, features are positional and have no names to match).

    Returns:
        One diagnostic (code ``sensitive-field``) per such entry, at the entry's file, line
        and column, naming the valid feature names.
    """
    fields = dep.get("spec.data.sensitive_fields")
    names = dep.get("spec.model.signature.inputs.names")
    if not (isinstance(fields, list) and isinstance(names, list) and names):
        return []
    known = [str(n) for n in names]
    out = []
    for i, entry in enumerate(fields):
        if isinstance(entry, str) and entry in known:
            continue
        path = f"spec.data.sensitive_fields.{i}"
        out.append(
            Diagnostic(
                dep.locate(path),
                path,
                f"{entry!r} is not a feature of spec.model.signature.inputs.names, so "
                f"capture would redact nothing for it; valid names: {', '.join(known)} "
                f"[env {dep.env}]",
                code="sensitive-field",
            )
        )
    return out


def semantic_diagnostics(dep: Deployment, config: Config) -> list[Diagnostic]:
    """Checks of one resolved deployment that the schema cannot express.

    Covers: model file present, inside the repo, and matching ``model.sha256``; smoke
    request files present and sendable (a JSON object with ``instances``,
    ``reconciler.spec.smoke.read_request_file``); cron expressions;
    ``min_replicas <= max_replicas``; canary steps ascending and ending at 100; the
    rollout rules (:func:`reconciler.spec.rollout.rollout_diagnostics`);
    SageMaker instance types; signature names matching the feature dimension; requests
    not above limits (CPU and memory); an ``s3://`` capture or label sink being a valid S3 URI;
    ``spec.data.sensitive_fields`` naming signature features
    (:func:`_sensitive_field_diagnostics`); the edge rules of ``target.platform: edge``
    (:func:`reconciler.spec.edge.edge_diagnostics`); warnings: more workers than CPUs,
    SLO alert targets in batch mode (no server, so no alert rule).
    """
    out: list[Diagnostic] = []

    def err(path: str, message: str, code: str = "semantic") -> None:
        out.append(Diagnostic(dep.locate(path), path, f"{message} [env {dep.env}]", code=code))

    uri = dep.get("spec.model.uri")
    if isinstance(uri, str) and not uri.startswith(URI_SCHEMES) and not _SCHEME.match(uri):
        model_path = config.repo_path(uri)
        if model_path is None:
            err(
                "spec.model.uri",
                f"{uri!r} leaves the repository or cannot be resolved (a symbolic link loop); "
                "use a path inside it",
                "path",
            )
        elif not model_path.is_file():
            err(
                "spec.model.uri",
                f"model file {uri!r} not found (looked in {config.rel(model_path)}); "
                "train the model or fix the path",
                "model-missing",
            )
        else:
            want = dep.get("spec.model.sha256")
            if isinstance(want, str):
                have = file_sha256(model_path)
                if have != want:
                    err(
                        "spec.model.sha256",
                        f"digest mismatch for {uri}: spec says {want}, file is {have}",
                        "model-digest",
                    )
    smoke_paths = []
    if isinstance(dep.get("spec.serving.smoke.request"), str):
        smoke_paths.append("spec.serving.smoke.request")
    for i, _ in enumerate(dep.get("spec.serving.smoke.requests", []) or []):
        smoke_paths.append(f"spec.serving.smoke.requests.{i}.request")
    for field in (*smoke_paths, "spec.retraining.output"):
        value = dep.get(field)
        if not isinstance(value, str):
            continue
        resolved = config.repo_path(value)
        if resolved is None:
            err(field, f"{value!r} leaves the repository; use a path inside it", "path")
        elif field != "spec.retraining.output" and not resolved.is_file():
            err(field, f"file {value!r} not found", "file-missing")
        elif field != "spec.retraining.output":
            # the body modelops smoke sends: the same rule as run_smoke
            status = dep.get(field.rsplit(".", 1)[0] + ".expect.status", 200)
            status = status if isinstance(status, int) else 200
            try:
                body = read_request_file(resolved, value, status)
            except RequestFileError as exc:
                err(field, str(exc), "smoke-request")
            else:
                inputs = dep.get("spec.model.signature.inputs")
                if 200 <= status < 300 and isinstance(inputs, dict):
                    # the service's own parser (rows as arrays or keyed by feature name):
                    # a body it would refuse with a 400 fails smoke at every apply
                    try:
                        signature = request.Signature(inputs)
                    except (KeyError, TypeError, ValueError):
                        signature = None  # an invalid signature: the schema reports it
                    try:
                        if signature is not None:
                            signature.parse(body)
                    except request.BadRequest as exc:
                        err(
                            field,
                            f"smoke request file {value}: the service would refuse it "
                            f"(HTTP 400): {exc}; the case expects HTTP {status}",
                            "smoke-request",
                        )
    for field in ("spec.monitoring.capture.sink", "spec.monitoring.labels.sink"):
        sink = dep.get(field)
        if isinstance(sink, str) and sink[:3].lower() == "s3:":
            try:
                parse_s3_uri(sink)
            except ValueError as exc:
                err(field, str(exc), "uri")
    out.extend(schedule_diagnostics(dep))
    out.extend(build_rule_diagnostics(dep))
    out.extend(model_load_diagnostics(dep, config))
    out.extend(data_column_diagnostics(dep, config))
    lo = dep.get("spec.target.autoscaling.min_replicas")
    hi = dep.get("spec.target.autoscaling.max_replicas")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        err("spec.target.autoscaling.min_replicas", f"min_replicas {lo} is above max_replicas {hi}")
    steps = dep.get("spec.target.rollout.steps")
    if isinstance(steps, list) and steps and all(isinstance(s, int) for s in steps):
        if steps != sorted(set(steps)) or steps[-1] != 100:
            err("spec.target.rollout.steps", f"{steps} must be strictly ascending and end at 100")
        step = dep.get("spec.target.rollout.step")
        if isinstance(step, int) and step >= len(steps):
            err("spec.target.rollout.step", f"step {step} is past the last of {len(steps)} steps")
    out.extend(rollout_diagnostics(dep))
    itype = dep.get("spec.target.instance_type")
    if isinstance(itype, str) and itype not in SAGEMAKER_INSTANCE_TYPES:
        err(
            "spec.target.instance_type",
            f"{itype!r} is not a SageMaker real-time instance type "
            "(e.g. ml.m5.large, ml.c5.xlarge, ml.g5.xlarge)",
        )
    shape = dep.get("spec.model.signature.inputs.shape")
    names = dep.get("spec.model.signature.inputs.names")
    if isinstance(shape, list) and isinstance(names, list) and shape and shape[-1] != -1:
        if len(names) != shape[-1]:
            err(
                "spec.model.signature.inputs.names",
                f"{len(names)} names for a last dimension of {shape[-1]}",
            )
    out.extend(_sensitive_field_diagnostics(dep))
    out.extend(edge_diagnostics(dep, config))
    out.extend(path_diagnostics(dep, config))
    for kind in ("cpu", "memory"):
        req = dep.get(f"spec.target.resources.requests.{kind}")
        lim = dep.get(f"spec.target.resources.limits.{kind}")
        if isinstance(req, str) and isinstance(lim, str):
            try:
                if parse_quantity(req) > parse_quantity(lim):
                    err(
                        f"spec.target.resources.requests.{kind}",
                        f"request {req} is above limit {lim}",
                    )
            except ValueError:
                pass
    workers = dep.get("spec.serving.workers")
    cpu_limit = dep.get("spec.target.resources.limits.cpu")
    if isinstance(workers, int) and isinstance(cpu_limit, str):
        try:
            cores = parse_quantity(cpu_limit)
        except ValueError:
            cores = None
        # BentoML's guidance is one worker per CPU; more workers than the container's CPU
        # limit only compete for it (each also holds its own copy of the model).
        if cores is not None and workers > max(1, math.ceil(cores)):
            out.append(
                Diagnostic(
                    dep.locate("spec.serving.workers"),
                    "spec.serving.workers",
                    f"{workers} workers for a CPU limit of {cpu_limit}: at most "
                    f"{max(1, math.ceil(cores))} can run at once; one worker per CPU is the "
                    f"usual setting [env {dep.env}]",
                    severity="warning",
                    code="workers",
                )
            )
    slo = dep.get("spec.serving.slo")
    alerting = sorted(k for k in ("max_error_rate", "min_throughput_rps") if k in (slo or {}))
    if dep.get("spec.serving.mode") == "batch" and alerting:
        # Alert rules watch a server's requests; a batch job serves none (stacks/kubernetes.py).
        out.append(
            Diagnostic(
                dep.locate(f"spec.serving.slo.{alerting[0]}"),
                f"spec.serving.slo.{alerting[0]}",
                f"serving.mode batch runs no server, so no alert rule is rendered for "
                f"serving.slo {', '.join(alerting)}; remove them or serve in realtime mode "
                f"[env {dep.env}]",
                severity="warning",
                code="slo-unused",
            )
        )
    return out


_SUFFIX = {
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(value: str) -> float:
    """A Kubernetes quantity as a float: CPU in cores, memory in bytes.

    Raises:
        ValueError: the string is not a quantity with a known suffix.
    """
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and value.endswith(suffix):
            return float(value[: -len(suffix)]) * _SUFFIX[suffix]
    return float(value)


def _non_finite(value, path: PathKey = ()):
    """Paths of NaN and infinite floats (YAML ``.nan``/``.inf``), which JSON Schema's
    minimum/maximum cannot reject: every comparison with NaN is false."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _unseen_text(value, path: PathKey = ()):
    """Strings (values and keys) that the policy engine cannot show to Rego as written:
    ``(path, message, severity)``. A NUL character would cut the string short (an error:
    never meant); a string wrapped in double quotes would be read without them (a
    warning: a policy that reads it reports an error): ``encoding.text_misread``."""
    if isinstance(value, str):
        misread = text_misread(value)
        if misread == "nul":
            yield path, "contains a NUL character; remove it", "error"
        elif misread == "quoted":
            yield (
                path,
                f"{value[:40]!r} is wrapped in double quotes, which the policy engine would"
                " read without them (policies that read it report an error); remove the quotes",
                "warning",
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unseen_text(key, (*path, key))
            yield from _unseen_text(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unseen_text(item, (*path, index))


def spec_diagnostics(spec: Spec, config: Config) -> list[Diagnostic]:
    """Schema diagnostics of the spec as written, plus overlay environment names,
    NaN/infinite numbers and text the policy engine cannot see as written."""
    out = schema_diagnostics(spec.data, spec.locate)
    for path, message, severity in _unseen_text(spec.data):
        out.append(
            Diagnostic(
                spec.locate(path), format_path(path), message, severity=severity, code="text"
            )
        )
    for path, value in _non_finite(spec.data):
        out.append(
            Diagnostic(
                spec.locate(path),
                format_path(path),
                f"{value} is not a number a deployment can use; give a finite value",
                code="schema",
            )
        )
    envs = get_path(spec.data, "spec.environments", {})
    if isinstance(envs, dict):
        for env in envs:
            if env not in config.environments:
                out.append(
                    Diagnostic(
                        spec.locate(("spec", "environments", env)),
                        f"spec.environments.{env}",
                        f"unknown environment {env!r}; known environments: "
                        f"{', '.join(config.environments)} (set them in modelops.yaml)",
                        code="environment",
                    )
                )
    return out


def duplicate_name_diagnostics(specs: Iterable[Spec]) -> list[Diagnostic]:
    """One diagnostic per spec whose ``metadata.name`` another file already uses."""
    seen: dict[str, Spec] = {}
    out = []
    for spec in sorted(specs, key=lambda s: s.file):
        if not spec.name:
            continue
        if spec.name in seen:
            out.append(
                Diagnostic(
                    spec.locate("metadata.name"),
                    "metadata.name",
                    f"name {spec.name!r} is already used by {seen[spec.name].file}; "
                    "names must be unique in the repository",
                    code="duplicate-name",
                )
            )
        else:
            seen[spec.name] = spec
    return out
