"""Which engine converges which platform: one table (:data:`ENGINES`)."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.core.config import Config
from reconciler.core.diagnostics import EXIT_USAGE, ModelopsError
from reconciler.engine.base import Engine
from reconciler.engine.edge import EdgeEngine
from reconciler.engine.local import LocalEngine
from reconciler.engine.pulumi_engine import PulumiEngine
from reconciler.engine.render import PROGRAMS

#: platform -> engine factory (called with the repository configuration): ``local`` runs
#: ``bentoml serve`` on loopback, ``edge`` publishes the bundle for devices, every
#: platform with a Pulumi program goes to the Automation API.
ENGINES: dict[str, Callable[[Config], Engine]] = {
    "local": LocalEngine,
    "edge": EdgeEngine,
    **dict.fromkeys(PROGRAMS, PulumiEngine),
}


def engine_factory(platform: str) -> Callable[[Config], Engine]:
    """The factory of the engine that converges ``platform``.

    Raises:
        ModelopsError: (exit 2) a platform no engine converges.
    """
    factory = ENGINES.get(platform)
    if factory is None:
        raise ModelopsError(
            f"platform {platform!r} has no engine; engines exist for {', '.join(sorted(ENGINES))}",
            EXIT_USAGE,
        )
    return factory
