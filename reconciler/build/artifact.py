"""The value the build stage hands to the engines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from reconciler.core.diagnostics import ModelopsError


@dataclass(frozen=True)
class Artifact:
    """A built Bento for one deployment (or, for ``target.platform: edge``, an edge bundle).

    Attributes:
        bento_tag: BentoML tag ``<name>:<version>``; the version is derived from ``digest``.
        digest: SHA-256 hex of the build inputs (model file bytes, the spec's model and
            serving sections, the service template, framework version); equal digest ⇒
            same Bento.
        image: container image reference (``<registry>/<name>:<version>``), built or not.
        image_built: whether an image was actually built and pushed (needs Docker).
        bento_path: directory of the built Bento in the BentoML store ('' when remote).
        reused: True when the build cache already had this Bento.
        model_sha256: SHA-256 hex of the model file itself.
        model_tag: tag of the model in the BentoML model store (``<name>-model:<sha[:16]>``).
        framework: ``spec.model.framework`` the Bento serves with.
        image_note: what happened to the image (built, pushed, or why it was not built).
        edge: for an edge bundle (``bento_tag`` empty, ``digest`` the tarball's SHA-256):
            :meth:`reconciler.build.edge_bundle.EdgeBuild.summary` (bundle name, paths,
            converter, quantization, size in bytes, p50/p99 in ms, parity); else ``{}``.
        model_source: where the model came from
            (:meth:`reconciler.build.fetch.ModelSource.to_dict`: ``uri``, ``kind``,
            ``resolved`` (``models:/<name>/<version>`` for an MLflow alias), ``version``,
            ``sha256``); ``{}`` for an edge bundle or a record written before.
    """

    bento_tag: str
    digest: str
    image: str = ""
    image_built: bool = False
    bento_path: str = ""
    reused: bool = False
    model_sha256: str = ""
    model_tag: str = ""
    framework: str = ""
    image_note: str = ""
    edge: dict = field(default_factory=dict)
    model_source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready mapping (for the ledger and machine output)."""
        return asdict(self)


def artifact_of(data: dict | None) -> Artifact | None:
    """The :class:`Artifact` a ledger record stored (:meth:`Artifact.to_dict`), or ``None``
    when there is none or it has neither a Bento tag nor a digest (unknown keys are ignored)."""
    if not isinstance(data, dict) or not (data.get("bento_tag") or data.get("digest")):
        return None
    known = {f.name for f in fields(Artifact)}
    return Artifact(**{k: v for k, v in data.items() if k in known})


class BuildError(ModelopsError):
    """The build of a deployment failed; the message names the file or field.

    Exit code 2 (a configuration problem), like other :class:`ModelopsError`.
    """
