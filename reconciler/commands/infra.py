"""``modelops render``: the DesiredState of each deployment, computed offline.

Writes one DesiredState per deployment × environment (JSON or YAML) and, for
Kubernetes targets, one plain manifest per resource, ready for ``kubectl apply -f``;
``--format kustomize|argocd|flux`` adds the objects that let Kustomize, Argo CD or Flux
apply them (``reconciler.report.delivery``), and ``--commit BRANCH`` commits the rendered
tree to an environment branch (``reconciler.gitops.rendered``). Only valid deployments
are rendered: any spec diagnostic stops the command with exit 1 before anything is
written; a branch that cannot take the tree stops it with exit 2, before rendering.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import EnvOption, TargetsArg, console, err_console, get_config
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, ModelopsError
from reconciler.core.git import dirty_paths, open_repo, require_repo
from reconciler.engine.render import RenderError
from reconciler.flow.stages import render_live
from reconciler.gitops.rendered import check_branch, commit_tree
from reconciler.report.delivery import (
    DELIVERY_FORMATS,
    Source,
    argocd_url,
    flux_url,
    write_delivery,
)
from reconciler.report.desired_state import RENDER_FORMATS, dump, write_state
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all


def render_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Directory to write into (default: print to stdout)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="json or yaml (the DesiredState files), or kustomize, argocd or flux (json "
            "files plus a kustomization.yaml per deployment, and Argo CD Applications or Flux "
            "objects); the last three need --out or --commit.",
        ),
    ] = "json",
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            metavar="BRANCH",
            help="Commit the rendered tree of the whole environment as one commit on this "
            "existing branch (the working tree stays as it is).",
        ),
    ] = None,
    repo_url: Annotated[
        str | None,
        typer.Option(
            "--repo-url",
            help="Git URL Argo CD or Flux fetch the rendered tree from (default: the "
            "repository's `origin` remote).",
        ),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            help="Branch Argo CD or Flux track (default: the --commit branch).",
        ),
    ] = None,
    repo_path: Annotated[
        str,
        typer.Option(
            "--repo-path",
            help="Directory of the rendered tree inside that branch (default: its root).",
        ),
    ] = "",
    allow_unbuilt: Annotated[
        bool,
        typer.Option(
            "--allow-unbuilt",
            help="With --commit: commit even when images are tagged 'unbuilt' (render builds "
            "nothing; Argo CD or Flux would deploy pods that cannot pull them).",
        ),
    ] = False,
) -> None:
    """Render each deployment's DesiredState offline (Pulumi mocks); manifests for Kubernetes;
    Kustomize, Argo CD or Flux objects around them; optionally commit it all to a branch.

    Exit 1 when a spec is invalid or cannot be rendered (nothing is written then),
    2 on usage errors (also: a --commit branch that does not exist, is checked out, or has
    unrelated history, or, without --allow-unbuilt, a deployment whose image would be
    committed tagged 'unbuilt'; nothing is written then).
    """
    formats = (*RENDER_FORMATS, *DELIVERY_FORMATS)
    if fmt not in formats:
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: {', '.join(formats)}")
    delivery = fmt in DELIVERY_FORMATS
    if commit is not None and out is not None:
        raise ModelopsError("--commit writes the rendered tree to a branch; leave out --out")
    if commit is not None and targets:
        raise ModelopsError(
            "--commit renders the whole environment (a deployment left out would be deleted "
            "from the branch); name no deployments"
        )
    config = get_config()
    source = _source(config.root, fmt, out, commit, repo_url, branch, repo_path, env)
    if commit is not None:
        repo = require_repo(config.root, "render --commit")
        check_branch(repo, commit)
        dirty = dirty_paths(repo, config.root)
        if dirty:
            raise ModelopsError(
                "render --commit records HEAD as the source of the rendered tree, and the "
                f"working tree has uncommitted changes ({', '.join(dirty[:5])}"
                f"{', ...' if len(dirty) > 5 else ''}); commit or stash them first"
            )
    result = load_all(config, targets, env)
    if result.errors:
        err_console.print(
            render_diagnostics("text", result.diagnostics, tool="modelops-render").rstrip(),
            markup=False,
        )
        err_console.print(
            f"render: {len(result.errors)} error(s) in the specs; nothing rendered", markup=False
        )
        raise typer.Exit(EXIT_FINDINGS)
    states, failures = [], []
    for dep in result.deployments:
        try:
            states.append(render_live(dep, None, config))
        except RenderError as exc:
            failures.extend(exc.diagnostics)
    if failures:
        err_console.print(
            render_diagnostics("text", failures, tool="modelops-render").rstrip(), markup=False
        )
        err_console.print(f"render: {len(failures)} deployment(s) cannot be rendered", markup=False)
        raise typer.Exit(EXIT_FINDINGS)
    if not states:
        err_console.print(f"no deployments for environment {env!r}", markup=False)
        raise typer.Exit(EXIT_OK)
    state_fmt = "json" if delivery else fmt
    unbuilt = [s.deployment for s in states if s.image.get("ref") and not s.image.get("built")]
    if commit is not None and unbuilt and not allow_unbuilt:
        raise ModelopsError(
            f"render --commit writes the branch Argo CD or Flux sync, and {len(unbuilt)} "
            f"deployment(s) would be committed with images tagged 'unbuilt' ("
            f"{', '.join(unbuilt)}): render renders offline and builds nothing, so their "
            "pods could not pull an image. Pass --allow-unbuilt to commit the tree anyway "
            "(a preview, or when your pipeline sets the images); nothing was committed"
        )
    if commit is not None:
        with tempfile.TemporaryDirectory(prefix="modelops-tree-") as tmp:
            _write_tree(states, Path(tmp), state_fmt, fmt, source)
            message = f"modelops render --env {env} --format {fmt}: {len(states)} deployment(s)"
            new = commit_tree(config.root, commit, Path(tmp), message)
        if new is None:
            console.print(f"{commit} already holds this render: nothing committed", markup=False)
        else:
            console.print(f"committed {new[:12]} to {commit}", markup=False)
    elif out is None:
        data = [s.to_dict() for s in states]
        console.print(dump(data, fmt).rstrip(), markup=False)
    else:
        _write_tree(states, out if out.is_absolute() else Path.cwd() / out, state_fmt, fmt, source)
    err_console.print(
        "rendered offline under Pulumi mocks (no cloud or cluster contacted); images not "
        "built are tagged 'unbuilt'",
        markup=False,
    )
    raise typer.Exit(EXIT_OK)


def _below(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when below it (as the user reads the tree)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _write_tree(states, out: Path, state_fmt: str, fmt: str, source: Source | None) -> None:
    """The DesiredStates and manifests under ``out``, then the ``fmt`` objects; one line
    per deployment."""
    for state in states:
        files = write_state(state, out, state_fmt)
        manifests = len(files) - 1
        extra = f" and {manifests} manifest(s)" if manifests else ""
        console.print(
            f"{state.deployment}: {len(state.resources)} resource(s) → "
            f"{files[0].parent}{'/' if extra else ''}{extra}",
            markup=False,
        )
    if fmt in DELIVERY_FORMATS:
        files = write_delivery(states, out, fmt, source)
        names = ", ".join(sorted(_below(f, out) for f in files))
        console.print(f"{fmt}: {names} (beside the manifests above) → {out}", markup=False)
        others = [s.deployment for s in states if not s.manifests()]
        if others:
            console.print(
                f"{fmt}: not for {', '.join(others)} (no Kubernetes manifests: applied by "
                "`modelops apply`)",
                markup=False,
            )


def _source(root, fmt, out, commit, repo_url, branch, repo_path, env) -> Source | None:
    """Where Argo CD or Flux fetch the tree from (``None`` for other formats), after
    checking every option the format needs at once.

    Raises:
        ModelopsError: (exit 2) every missing or unusable option in one message: no
            ``--out``/``--commit`` for a format that writes files; for ``argocd``/``flux``
            no branch (``--branch`` or ``--commit``), no URL (``--repo-url`` or an
            ``origin`` remote), or a URL the cluster cannot clone (a local path).
    """
    problems = []
    if fmt in DELIVERY_FORMATS and out is None and commit is None:
        problems.append("--out DIR or --commit BRANCH (where the files are written)")
    if fmt not in ("argocd", "flux"):
        if problems:
            raise ModelopsError(f"--format {fmt} writes files: give {problems[0]}")
        return None
    tool = "Argo CD" if fmt == "argocd" else "Flux"
    if not (branch or commit):
        problems.append(f"--branch BRANCH or --commit BRANCH (the branch {tool} tracks)")
    url, origin = repo_url, False
    repo = open_repo(root)
    if not url and repo is not None and "origin" in [r.name for r in repo.remotes]:
        url, origin = next(iter(repo.remotes.origin.urls), None), True
    if not url:
        problems.append(
            f"--repo-url URL (the Git URL {tool} fetches the rendered tree from; the "
            "repository has no `origin` remote to take it from)"
        )
    else:
        try:
            url = flux_url(url) if fmt == "flux" else argocd_url(url)
        except ValueError as exc:
            where = "the `origin` remote's URL: " if origin else ""
            problems.append(f"--repo-url URL ({where}{exc})")
    if problems:
        raise ModelopsError(f"--format {fmt} needs: " + "; ".join(problems))
    return Source(url, str(branch or commit), repo_path, env)
