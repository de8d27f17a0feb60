"""A REAL MLflow model registry for the tests: MLflow's own SQLAlchemy store on SQLite.

No server: ``MlflowClient`` talks to the SQLite file in-process through the same store
code an MLflow server runs (``mlflow.store.model_registry.sqlalchemy_store``). Model
versions point at ``file://`` artifact directories, as a registry's artifact store would.
Creating the database runs MLflow's migrations (several seconds), so it is made once per
test session (per xdist worker): tests register models under names of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Registry:
    """The session's registry.

    Attributes:
        uri: ``sqlite:///<path>``: the value of ``MLFLOW_TRACKING_URI`` for code under test.
        root: where model version files are kept (``<root>/<name>/<version>/``).
        client: an ``MlflowClient`` of it.
    """

    uri: str
    root: Path
    client: Any

    def register(self, name: str, model_file: Path, *, extra: dict | None = None) -> str:
        """Register ``model_file`` as the next version of ``name``; returns the version.

        ``extra`` writes more files beside it (``{"MLmodel": "..."}``), as ``mlflow``'s
        model logging does.
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException:
            pass  # registered by an earlier call
        count = len(self.client.search_model_versions(f"name='{name}'"))
        folder = self.root / name / str(count + 1)
        folder.mkdir(parents=True)
        shutil.copyfile(model_file, folder / model_file.name)
        for rel, text in (extra or {}).items():
            (folder / rel).write_text(text)
        mv = self.client.create_model_version(name, source=folder.as_uri())
        return str(mv.version)

    def alias(self, name: str, alias: str, version: str) -> None:
        """Point ``name@alias`` at ``version`` (moving it if it exists)."""
        self.client.set_registered_model_alias(name, alias, version)


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory) -> Iterator[Registry]:
    """A real MLflow registry on SQLite (see the module docstring), once per session."""
    from mlflow import MlflowClient  # heavy (about 2 s): only the registry tests need it

    base = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{base / 'registry.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    yield Registry(uri, base / "models", client)
