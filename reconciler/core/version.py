"""Which modelops is installed: distribution name and version (``importlib.metadata``)."""

from __future__ import annotations

from importlib import metadata

#: Distribution names this package has been published under, newest first. A candidate
#: counts only when its ``modelops`` console script is ours (PyPI's ``modelops`` is an
#: unrelated package).
DISTRIBUTIONS = ("modelops-gitops", "modelops")
ENTRY_POINT = "reconciler.cli:main"


def installed() -> tuple[str, str] | None:
    """``(distribution name, version)`` of the installed distribution whose ``modelops``
    console script is :data:`ENTRY_POINT`, or ``None`` when modelops runs from a source
    tree without an install."""
    for name in DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if any(ep.value == ENTRY_POINT for ep in dist.entry_points):
            return str(dist.metadata["Name"]), str(dist.version)
    return None
