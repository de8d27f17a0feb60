"""Load one spec file into a :class:`~reconciler.spec.model.Spec`.

The bytes go through the one hardened YAML reader, :mod:`reconciler.core.yaml`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.yaml import YamlLoadError, display_path, load_yaml
from reconciler.spec.model import Spec


def load_spec(path: Path, root: Path | None = None, raw: bytes | None = None) -> Spec:
    """Load one spec file.

    Args:
        path: the spec's path on disk.
        root: the repository root, for display paths.
        raw: the file's bytes when already read (e.g. from a Git revision).

    Returns:
        A :class:`Spec` with positions and the SHA-256 digest of the bytes.

    Raises:
        YamlLoadError: see :func:`load_yaml`; also when the document is not a mapping
            or the file cannot be read.
    """
    file = display_path(path, root)
    if raw is None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise YamlLoadError(
                Diagnostic(Position(file), "", f"cannot read file: {exc.strerror}", code="yaml")
            ) from None
    data, positions = load_yaml(raw, file)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise YamlLoadError(
            Diagnostic(
                positions.get((), Position(file, 1, 1)),
                "",
                f"document is {kind}; expected a ModelDeployment mapping "
                "(apiVersion, kind, metadata, spec)",
                code="yaml",
            )
        )
    return Spec(
        file=file,
        path=Path(path),
        data=data,
        positions=positions,
        digest=hashlib.sha256(raw).hexdigest(),
    )
