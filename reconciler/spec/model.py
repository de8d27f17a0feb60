"""Typed values that flow through the pipeline: :class:`Spec` and :class:`Deployment`.

A :class:`Spec` is one YAML file as loaded (with the position of every node); a
:class:`Deployment` is one spec resolved for one environment (base spec with the
``spec.environments.<env>`` overlay deep-merged over it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.diagnostics import Position
from reconciler.core.document import PathKey, format_path, get_path, parse_path

__all__ = ["Deployment", "PathKey", "Spec", "format_path", "get_path", "parse_path"]


class PackedPositions(Mapping):
    """The positions of one file, as a spec read back from the load cache has them:
    ``(line, col)`` per path, a :class:`Position` made when one is looked up.

    Unpickling a :class:`Position` per node of every spec was most of a warm
    ``plan --all``'s load-cache time (0.38 of 0.47 s for 1,000 specs; the positions are
    read only for diagnostics). Equal to the plain mapping it was packed from.
    """

    __slots__ = ("_file", "_packed")

    def __init__(self, file: str, packed: dict[PathKey, tuple[int, int]]) -> None:
        self._file = file
        self._packed = packed

    def __getitem__(self, key: PathKey) -> Position:
        line, col = self._packed[key]
        return Position(self._file, line, col)

    def __iter__(self) -> Iterator[PathKey]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __reduce__(self):
        return (PackedPositions, (self._file, self._packed))


@dataclass
class Spec:
    """One spec file as loaded.

    Attributes:
        file: display path, relative to the repository root (``specs/fraud.yaml``).
        path: absolute path on disk.
        data: the parsed document (plain dicts, lists and scalars).
        positions: path tuple → :class:`Position` of that node (for a mapping entry, the
            position of its key, so diagnostics point at the field's line); a
            :class:`PackedPositions` when read back from the load cache.
        digest: SHA-256 hex digest of the file's bytes.
    """

    file: str
    path: Path
    data: dict
    positions: Mapping[PathKey, Position] = field(default_factory=dict)
    digest: str = ""

    @property
    def name(self) -> str:
        """``metadata.name``, or ``""`` when missing or not a string."""
        name = get_path(self.data, "metadata.name", "")
        return name if isinstance(name, str) else ""

    @property
    def environments(self) -> list[str]:
        """The environment names under ``spec.environments``, in file order."""
        envs = get_path(self.data, "spec.environments", {})
        return [str(k) for k in envs] if isinstance(envs, dict) else []

    def __reduce__(self):
        """Pickled with its positions packed (:class:`PackedPositions`) when they all
        name this spec's file (the load cache, ``reconciler.spec.cache``)."""
        positions: Mapping = self.positions
        if isinstance(positions, dict) and all(p.file == self.file for p in positions.values()):
            positions = PackedPositions(
                self.file, {k: (p.line, p.col) for k, p in positions.items()}
            )
        return (Spec, (self.file, self.path, self.data, positions, self.digest))

    def locate(self, path: str | PathKey) -> Position:
        """Position of the deepest existing node along ``path`` (file-level if none)."""
        key = parse_path(path)
        for i in range(len(key), 0, -1):
            pos = self.positions.get(key[:i])
            if pos is not None:
                return pos
        return self.positions.get((), Position(self.file, 1, 1))


@dataclass
class Deployment:
    """One spec resolved for one environment.

    Attributes:
        spec: the source spec.
        env: environment name (``staging``, ``prod``...).
        data: the resolved document: ``apiVersion``, ``kind``, ``metadata`` and ``spec``
            with the overlay merged in and ``spec.environments`` removed.
    """

    spec: Spec
    env: str
    data: dict

    @property
    def name(self) -> str:
        """The deployment's name (``metadata.name``)."""
        return self.spec.name

    @property
    def key(self) -> str:
        """``<name>-<env>``: the ledger key and the Pulumi stack name."""
        return f"{self.name}-{self.env}"

    @property
    def platform(self) -> str:
        """``spec.target.platform`` after the overlay (``local``, ``kubernetes``...)."""
        return get_path(self.data, "spec.target.platform", "local")

    def get(self, path: str | PathKey, default: Any = None) -> Any:
        """Value at a dotted path of the resolved document (``spec.serving.mode``)."""
        return get_path(self.data, path, default)

    def policy_input(self, fresh: bool = True) -> dict:
        """The document policies see as ``input``: the resolved spec plus ``environment``.

        Args:
            fresh: True for a deep copy the caller may change; False for a shallow one
                that shares every nested value with :attr:`data` (read-only use, such as
                sending it to a policy worker: about 0.5 ms cheaper per deployment).
        """
        if not fresh:
            return {**self.data, "environment": self.env}
        doc = copy.deepcopy(self.data)
        doc["environment"] = self.env
        return doc

    def overlay_path(self, path: str | PathKey) -> PathKey | None:
        """Where ``path`` (in the resolved document) sits in the overlay, if under spec."""
        key = parse_path(path)
        if len(key) >= 1 and key[0] == "spec":
            return ("spec", "environments", self.env, *key[1:])
        return None

    def origin(self, path: str | PathKey) -> str:
        """``overlay`` if the value at ``path`` (or a parent) is from the overlay, else ``base``."""
        key = parse_path(path)
        over = self.overlay_path(key)
        if over is None:
            return "base"
        for i in range(len(key), 1, -1):
            if over[: i + 2] in self.spec.positions:
                return "overlay"
            if key[:i] in self.spec.positions:
                return "base"
        return "base"

    def locate(self, path: str | PathKey) -> Position:
        """Position in the spec file of the value at ``path`` of the resolved document.

        Values that came from the environment overlay point into the overlay
        (``spec.environments.<env>...``); others into the base spec. Falls back to the
        deepest parent that exists.
        """
        key = parse_path(path)
        over = self.overlay_path(key)
        for i in range(len(key), 0, -1):
            if over is not None and i >= 2:
                pos = self.spec.positions.get(over[: i + 2])
                if pos is not None:
                    return pos
            pos = self.spec.positions.get(key[:i])
            if pos is not None:
                return pos
        return self.spec.locate(())
