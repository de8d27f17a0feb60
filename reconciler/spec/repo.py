"""Find, load and resolve the specs of a repository (or the ones named on the command line)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic, ModelopsError, Position
from reconciler.core.yaml import YamlLoadError
from reconciler.spec.cache import LoadCache
from reconciler.spec.loader import load_spec
from reconciler.spec.model import Deployment, Spec
from reconciler.spec.resolve import resolve
from reconciler.spec.validate import duplicate_name_diagnostics, spec_diagnostics

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadResult:
    """Specs loaded from disk, their deployments, and every diagnostic found.

    Attributes:
        specs: every spec that parsed (valid or not).
        deployments: resolved deployments of the specs without errors (one per spec ×
            environment, or only the requested environment).
        diagnostics: all findings, in file order.
    """

    specs: list[Spec] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics with severity ``error``."""
        return [d for d in self.diagnostics if d.severity == "error"]

    def invalid_files(self) -> set[str]:
        """Files that have at least one error."""
        return {d.position.file for d in self.errors}


def discover(config: Config, targets: list[str] | None = None) -> list[Path]:
    """Spec files to load.

    Args:
        config: repository configuration (``specs_dir`` is the default place).
        targets: files, directories or spec names (``metadata.name``); empty means all.

    Raises:
        ModelopsError: (exit 2) a target is neither an existing path nor a known name.
    """

    def in_dir(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())

    if not targets:
        return in_dir(config.specs_dir) if config.specs_dir.is_dir() else []
    files: list[Path] = []
    names: list[str] = []
    for target in targets:
        path = Path(target)
        if not path.is_absolute() and not path.exists():
            path = config.root / target
        if path.is_dir():
            files.extend(in_dir(path))
        elif path.is_file():
            files.append(path.resolve())
        else:
            names.append(target)
    if names:
        by_name = {}
        for candidate in in_dir(config.specs_dir) if config.specs_dir.is_dir() else []:
            try:
                by_name.setdefault(load_spec(candidate, config.root).name, candidate)
            except YamlLoadError:
                continue
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ModelopsError(
                f"no spec file or spec named {', '.join(missing)} "
                f"(looked in {config.rel(config.specs_dir)}/)"
            )
        files.extend(by_name[n] for n in names)
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def load_all(
    config: Config, targets: list[str] | None = None, env: str | None = None
) -> LoadResult:
    """Load, validate and resolve specs.

    Args:
        config: repository configuration.
        targets: see :func:`discover`.
        env: resolve only this environment; ``None`` resolves every environment.

    Returns:
        A :class:`LoadResult`. Deployments are only made for specs whose base document
        passed schema validation; a deployment with errors is left out of
        ``deployments`` (its diagnostics are kept).

    Raises:
        ModelopsError: (exit 2) an unknown environment or target.
    """
    if env is not None and env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    result = load_files(config, discover(config, targets), None if env is None else [env])
    if targets and config.specs_dir.is_dir():
        # Names must be unique across the whole specs directory, not only the files asked for.
        asked = {s.path.resolve() for s in result.specs}
        others = []
        for path in discover(config):
            if path.resolve() not in asked:
                try:
                    others.append(load_spec(path, config.root))
                except YamlLoadError:
                    continue
        if others:
            _drop_duplicate_names(result, [*result.specs, *others])
            _finish(result)
    return result


def load_files(config: Config, files: list[Path], envs: list[str] | None = None) -> LoadResult:
    """Load, validate and resolve exactly ``files`` (no repository scan).

    Args:
        config: repository configuration.
        files: spec files to load.
        envs: environments to resolve; ``None`` resolves each spec's own environments.

    Returns:
        A :class:`LoadResult`; names are checked for duplicates among ``files`` only
        (:func:`load_all` with targets also checks them against the rest of the
        repository; the PR plan uses the fast ``gitops.changes.name_conflicts``).
    """
    result = LoadResult()
    cache = LoadCache(config, envs)
    inside = config.root.resolve()
    for path in files:
        real = Path(path).resolve()
        if not real.is_relative_to(inside):
            try:  # where the link is, not where it leads
                shown = Path(path).absolute().relative_to(config.root).as_posix()
            except ValueError:
                shown = str(path)
            result.diagnostics.append(
                Diagnostic(
                    Position(shown, 1, 1),
                    "",
                    f"spec file resolves to {real}, outside the repository: a spec is "
                    "reviewed in this repository's pull requests, so it must live in it "
                    "(replace the link by the file)",
                    code="path",
                )
            )
            continue
        try:
            raw = Path(path).read_bytes()
        except OSError:
            raw = None  # load_spec reports it
        file = str(real.relative_to(inside))  # display_path(path, root), resolved above
        hit = cache.get(raw, file) if raw is not None else None
        if hit is not None:
            spec, diagnostics, deployments = hit
            result.specs.append(spec)
            result.diagnostics.extend(diagnostics)
            result.deployments.extend(deployments)
            continue
        try:
            spec = load_spec(path, config.root, raw)
        except YamlLoadError as exc:
            result.diagnostics.append(exc.diagnostic)
            continue
        result.specs.append(spec)
        diagnostics, deployments = _validate_and_resolve(spec, config, envs)
        result.diagnostics.extend(diagnostics)
        result.deployments.extend(deployments)
        if raw is not None:
            cache.put(raw, file, spec.data, (spec, diagnostics, deployments))
    _drop_duplicate_names(result, result.specs)
    _finish(result)
    return result


def _validate_and_resolve(
    spec: Spec, config: Config, envs: list[str] | None
) -> tuple[list[Diagnostic], list[Deployment]]:
    """The diagnostics of ``spec`` and its deployments for ``envs`` (each spec's own
    environments when ``None``) that have no error."""
    diagnostics = spec_diagnostics(spec, config)
    deployments: list[Deployment] = []
    if _has_error(diagnostics):
        return diagnostics, deployments
    for name in spec.environments if envs is None else envs:
        dep, diags = resolve(spec, name, config)
        diagnostics = diagnostics + diags
        if dep is not None and not _has_error(diags):  # warnings do not block
            deployments.append(dep)
    return diagnostics, deployments


def _has_error(diags: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)


def _drop_duplicate_names(result: LoadResult, specs: list[Spec]) -> None:
    """Report the loaded specs whose name another of ``specs`` uses; drop their deployments."""
    loaded = {s.file for s in result.specs}
    seen = {(d.position, d.message) for d in result.diagnostics}
    dups = [
        d
        for d in duplicate_name_diagnostics(specs)
        if d.position.file in loaded and (d.position, d.message) not in seen
    ]
    if dups:
        result.diagnostics.extend(dups)
        bad = {d.position.file for d in dups}
        result.deployments = [d for d in result.deployments if d.spec.file not in bad]


def _finish(result: LoadResult) -> None:
    result.diagnostics = _merge_env_duplicates(result.diagnostics)
    result.diagnostics.sort(key=lambda d: (d.position.file, d.position.line, d.position.col))


_ENV_TAG = re.compile(r" \[env ([^\]]+)\]$")


def _merge_env_duplicates(diags: list[Diagnostic]) -> list[Diagnostic]:
    """One diagnostic per place and message, naming every environment it occurs in.

    A value in the base spec that is wrong in every environment would otherwise be
    reported once per environment; the merged message ends in ``[env staging, prod]``.
    """
    merged: dict[tuple, tuple[Diagnostic, list[str]]] = {}
    for diag in diags:
        match = _ENV_TAG.search(diag.message)
        base = diag.message[: match.start()] if match else diag.message
        key = (diag.position, diag.field, base, diag.severity, diag.code)
        envs = match.group(1).split(", ") if match else []
        if key in merged:
            merged[key][1].extend(e for e in envs if e not in merged[key][1])
        else:
            merged[key] = (diag, list(envs))
    out = []
    for (position, field_, base, severity, code), (_, envs) in merged.items():
        message = f"{base} [env {', '.join(envs)}]" if envs else base
        out.append(Diagnostic(position, field_, message, severity, code))
    return out
