"""MLflow model-registry URIs as a spec writes them in ``spec.model.uri``.

``models:/<name>@<alias>`` (an alias, resolved to a version at ``plan`` time and pinned)
and ``models:/<name>/<version>`` (a fixed version). The form is MLflow's own
("Model Registry" documentation: model URIs); other MLflow forms (``models:/<name>/latest``,
stages, model ids) are refused because they do not name one reviewable version.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MLFLOW_PREFIX = "models:/"
MLFLOW_FORM = "models:/<name>@<alias> or models:/<name>/<version> (a whole number)"
"""What a valid MLflow model URI looks like, for messages."""

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}"
_ALIAS_RE = re.compile(rf"models:/({_NAME})@([A-Za-z][A-Za-z0-9_\-]{{0,254}})")
_VERSION_RE = re.compile(rf"models:/({_NAME})/([1-9][0-9]{{0,17}})")


class MlflowUri(NamedTuple):
    """A parsed MLflow model URI.

    Attributes:
        name: the registered model's name.
        alias: the alias (``""`` for a fixed version).
        version: the version as text (``""`` for an alias).
    """

    name: str
    alias: str
    version: str

    def __str__(self) -> str:
        if self.alias:
            return f"{MLFLOW_PREFIX}{self.name}@{self.alias}"
        return f"{MLFLOW_PREFIX}{self.name}/{self.version}"


def is_mlflow_uri(uri: object) -> bool:
    """Whether ``uri`` is written with the ``models:/`` scheme (valid or not)."""
    return isinstance(uri, str) and uri.startswith(MLFLOW_PREFIX)


def mlflow_uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not a usable MLflow model URI (one sentence), or ``None``."""
    if not uri.startswith(MLFLOW_PREFIX):
        return "it does not start with models:/"
    if _ALIAS_RE.fullmatch(uri) or _VERSION_RE.fullmatch(uri):
        return None
    rest = uri[len(MLFLOW_PREFIX) :]
    if rest.endswith(("/latest", "/Production", "/Staging", "/None", "/Archived")):
        return "'latest' and stages do not name one version; pin an alias or a version"
    return "it names no registered model with an alias or a version"


def parse_mlflow_uri(uri: str) -> MlflowUri:
    """``models:/fraud@champion`` → ``MlflowUri("fraud", "champion", "")``.

    Raises:
        ValueError: the URI breaks :func:`mlflow_uri_problem`; the message says why and
            what a valid URI looks like.
    """
    problem = mlflow_uri_problem(uri)
    if problem:
        raise ValueError(
            f"{uri!r} is not a valid MLflow model URI: {problem}; expected {MLFLOW_FORM}"
        )
    if m := _ALIAS_RE.fullmatch(uri):
        return MlflowUri(m.group(1), m.group(2), "")
    m = _VERSION_RE.fullmatch(uri)
    assert m is not None  # checked by mlflow_uri_problem
    return MlflowUri(m.group(1), "", m.group(2))
