"""This repository's BentoML stores under ``<state_dir>/bentoml``: home, models, GC.

:func:`bentoml_env` points BentoML (in this process) at the state directory's home;
:func:`gc_bentos` deletes old Bentos; :func:`contents_digest` compares Bento contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler.build.artifact import BuildError
from reconciler.core.config import Config
from reconciler.core.digests import file_sha256
from reconciler.runtime.uris import bentoml_tag
from reconciler.spec.model import Deployment


def bentoml_home(config: Config) -> Path:
    """``<state_dir>/bentoml``: the BentoML home of this repository (created)."""
    home = config.state_dir / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextlib.contextmanager
def bentoml_env(config: Config) -> Iterator[Any]:
    """Point BentoML (in this process) at ``<state_dir>/bentoml`` for the block.

    Sets ``BENTOML_HOME``/``BENTOML_DO_NOT_TRACK`` in ``os.environ`` (for subprocesses such
    as ``bentoml containerize``) and overrides BentoML's stores, which it otherwise
    memoizes on first use, so that several state directories work in one process.

    Yields:
        the ``bentoml`` module.
    """
    home = bentoml_home(config)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    import bentoml  # heavy (about 1 s to import): only when the store is used
    from bentoml._internal.bento import BentoStore  # heavy: bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer  # heavy
    from bentoml._internal.models import ModelStore  # heavy: bentoml

    for sub in ("bentos", "models", "envs", "tmp"):
        (home / sub).mkdir(exist_ok=True)
    c = BentoMLContainer
    with contextlib.ExitStack() as stack:
        stack.enter_context(c.bentoml_home.patch(str(home)))
        stack.enter_context(c.bento_store_dir.patch(str(home / "bentos")))
        stack.enter_context(c.model_store_dir.patch(str(home / "models")))
        stack.enter_context(c.tmp_bento_store_dir.patch(str(home / "tmp")))
        stack.enter_context(c.env_store_dir.patch(str(home / "envs")))
        stack.enter_context(c.bento_store.patch(BentoStore(str(home / "bentos"))))
        stack.enter_context(c.tmp_bento_store.patch(BentoStore(str(home / "tmp"))))
        stack.enter_context(c.model_store.patch(ModelStore(str(home / "models"))))
        yield bentoml


def store_model_file(dep: Deployment, config: Config, uri: str) -> Path:
    """The model file of ``bentoml:<tag>`` in this repository's BentoML model store.

    Models saved with ``bentoml.<framework>.save_model`` keep one ``saved_model.*`` file;
    models modelops imported keep one ``model.*`` file. The tag may omit the version
    (``latest``).

    Raises:
        BuildError: tag not in the store, or no single model file in it.
    """
    field = "spec.model.uri"
    pos = dep.locate(field)
    tag = bentoml_tag(uri) or ""
    with bentoml_env(config) as bentoml:
        from bentoml.exceptions import BentoMLException  # heavy: bentoml

        try:
            stored = bentoml.models.get(tag)
        except BentoMLException as exc:
            raise BuildError(
                f"{pos}: {field}: model {tag!r} is not in the model store "
                f"{config.rel(bentoml_home(config) / 'models')} ({exc}); save it there with "
                "bentoml.<framework>.save_model under BENTOML_HOME=<state_dir>/bentoml"
            ) from None
        base = Path(stored.path)
    files = sorted(
        p for p in base.iterdir() if p.is_file() and p.name.startswith(("saved_model.", "model."))
    )
    files = [p for p in files if p.name != "model.yaml"]
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise BuildError(
            f"{pos}: {field}: model {tag!r} in the store has {len(files)} model files "
            f"({found}); expected exactly one saved_model.* or model.* file"
        )
    return files[0]


def import_model(bentoml: Any, tag: str, path: Path, cfg: dict) -> None:
    """Put the model file's bytes into the model store as ``tag`` (unless already there)."""
    from bentoml.exceptions import NotFound  # heavy: bentoml

    try:
        stored = Path(bentoml.models.get(tag).path_of(cfg["model_file"]))
        if stored.is_file() and file_sha256(stored) == cfg["model_sha256"]:
            return
        bentoml.models.delete(tag)  # altered or incomplete: import it again
    except NotFound:
        pass
    with bentoml.models.create(
        tag,
        labels={"modelops.deployment": cfg["deployment"]},
        metadata={"sha256": cfg["model_sha256"], "framework": cfg["framework"]},
    ) as model:
        shutil.copyfile(path, model.path_of(cfg["model_file"]))


def bento_exists(bentoml: Any, tag: str) -> bool:
    from bentoml.exceptions import NotFound  # heavy: bentoml

    try:
        bentoml.bentos.get(tag)
        return True
    except NotFound:
        return False


def contents_digest(bento_path: str | Path) -> str:
    """SHA-256 over a Bento directory's files (relative path + bytes), sorted by path.

    ``creation_time`` lines in ``bento.yaml`` and ``model.yaml`` are left out: BentoML
    stamps them on every build; everything else must be equal for equal inputs.
    """
    root = Path(bento_path)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        data = path.read_bytes()
        if path.name in ("bento.yaml", "model.yaml"):
            data = b"\n".join(
                line for line in data.splitlines() if not line.lstrip().startswith(b"creation_time")
            )
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def gc_bentos(config: Config, keep: int, *, protect: Iterable[str]) -> list[str]:
    """Delete old Bentos, keeping the ``keep`` newest per deployment and environment.

    Bentos are grouped by name and the ``modelops.env`` label (staging and prod Bentos of
    one spec share a name), newest first by creation time. Never removed: the tags in
    ``protect``. The GC does not read the ledger (the build stage is below the state):
    the caller passes the Bentos in use. Models that no remaining Bento refers to are
    deleted too (only models modelops imported, label ``modelops.deployment``).

    Args:
        config: repository configuration (the BentoML home under ``state_dir``).
        keep: Bentos to keep per deployment × environment (>= 0).
        protect: Bento tags (``name:version``) to keep whatever their age: every Bento
            tag the ledger records (``Ledger.bento_tags``: live deployments' Bentos) and
            what this run built or reused. Required, so that no caller forgets the
            ledger.

    Returns:
        the removed Bento tags (``name:version``), sorted.

    Raises:
        BuildError: ``keep`` is negative (nothing is deleted then).
    """
    if keep < 0:
        raise BuildError(f"gc: keep must be 0 or more, got {keep}")
    in_use = {str(t) for t in protect}
    removed: list[str] = []
    with bentoml_env(config) as bentoml:
        groups: dict[tuple[str, str], list] = {}
        for bento in bentoml.bentos.list():
            env = str((bento.info.labels or {}).get("modelops.env", ""))
            groups.setdefault((bento.tag.name, env), []).append(bento)
        for bentos in groups.values():
            bentos.sort(key=lambda b: b.info.creation_time, reverse=True)
            for bento in bentos[keep:]:
                if str(bento.tag) in in_use:
                    continue
                bentoml.bentos.delete(bento.tag)
                removed.append(str(bento.tag))
        if removed:
            referenced = set()
            for bento in bentoml.bentos.list():
                referenced.update(str(m.tag) for m in bento.info.all_models)
            for model in bentoml.models.list():
                if str(model.tag) not in referenced and model.info.labels.get(
                    "modelops.deployment"
                ):
                    bentoml.models.delete(model.tag)
    return sorted(removed)
