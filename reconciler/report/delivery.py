"""Objects that let Argo CD or Flux sync a rendered tree: ``render --format
kustomize|argocd|flux``.

The tree ``render --out DIR`` writes (one ``<name>-<env>/`` per deployment, its
Kubernetes manifests under ``manifests/``) gains, per format:

* ``kustomize``: ``<name>-<env>/kustomization.yaml`` listing the manifests, for every
  Kubernetes deployment;
* ``argocd``: that, and an Argo CD ``Application`` per deployment in
  ``argocd/<env>/application-<name>.yaml`` (namespace ``argocd``; project ``default``; source: the
  repository, the branch and ``<name>-<env>``; destination: the cluster it runs in and the
  deployment's namespace; automated sync with prune and self-heal), with a
  ``kustomization.yaml`` listing them (``kubectl apply -k argocd/<env>``: app of apps);
* ``flux``: that, and in ``flux/<env>/`` a ``GitRepository`` ``modelops-<env>`` (namespace
  ``flux-system``) on the repository and branch (``gitrepository.yaml``), a Flux
  ``Kustomization`` per deployment on ``./<name>-<env>`` (prune, wait;
  ``kustomization-<name>.yaml``), and a ``kustomization.yaml`` listing them.

Deployments on other platforms (SageMaker, local) have no manifests and get none of
these. Object contracts and the choices: ``docs/gitops.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.yaml import dump_yaml

DELIVERY_FORMATS = ("kustomize", "argocd", "flux")
ARGOCD_NAMESPACE = "argocd"  # where Argo CD's install manifests put it
FLUX_NAMESPACE = "flux-system"  # where `flux bootstrap` / `flux install` put it
IN_CLUSTER = "https://kubernetes.default.svc"  # Argo CD's name for the cluster it runs in
FLUX_SOURCE_INTERVAL = "1m"  # how often Flux fetches the branch
FLUX_APPLY_INTERVAL = "10m"  # how often Flux re-applies (drift correction) without a change
FLUX_TIMEOUT = "5m"  # wait for the deployment's resources to be ready
KUSTOMIZATION = "kustomization.yaml"
# Flux's GitRepository takes http(s) and ssh URLs only (its CRD: spec.url pattern
# ^(http|https|ssh)://.*$); Git's scp-like form user@host:path is ssh://user@host/path.
_FLUX_URL = re.compile(r"^(http|https|ssh)://.*$")
_SCP_LIKE = re.compile(r"^(?P<user>[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!//).+)$")


def flux_url(url: str) -> str:
    """``url`` as Flux's GitRepository accepts it: http(s) and ssh URLs as they are, the
    scp-like ``git@github.com:acme/specs.git`` as ``ssh://git@github.com/acme/specs.git``.

    Raises:
        ValueError: any other URL (a local path, ``file://``, ``git://``), with why.
    """
    if _FLUX_URL.match(url):
        return url
    scp = _SCP_LIKE.match(url)
    if scp and "/" not in scp.group("host"):
        return f"ssh://{scp.group('user') or ''}{scp.group('host')}/{scp.group('path')}"
    raise ValueError(
        f"Flux fetches Git over http(s) or ssh only, and {url!r} is neither; give the URL the "
        "cluster can clone (--repo-url https://... or ssh://...)"
    )


def argocd_url(url: str) -> str:
    """``url`` if Argo CD can clone it: http(s), ssh or the scp-like
    ``git@github.com:acme/specs.git`` (Argo CD's repository URL forms).

    Raises:
        ValueError: a local path, ``file://`` or any other scheme, with why (a path of
            this machine means nothing to the cluster's repo server).
    """
    scp = _SCP_LIKE.match(url)
    if _FLUX_URL.match(url) or (scp and "/" not in scp.group("host")):
        return url
    raise ValueError(
        f"Argo CD clones Git over http(s) or ssh, and {url!r} is neither (a local path or "
        "file:// URL means nothing to the cluster's repo server); give the URL the cluster "
        "can clone (--repo-url https://... or git@host:org/repo.git)"
    )


@dataclass(frozen=True)
class Source:
    """Where Argo CD or Flux fetch the rendered tree from.

    Attributes:
        repo_url: the Git URL they clone (``https://github.com/acme/ml-specs.git``).
        branch: the branch holding the rendered tree (``rendered/prod``).
        path: the tree's directory inside that branch (``""``: its root).
        env: the environment rendered.
    """

    repo_url: str
    branch: str
    path: str
    env: str

    def dir_of(self, state) -> str:
        """The repository path of a deployment's directory (``<path>/<name>-<env>``)."""
        return f"{self.path.strip('/')}/{state.deployment}".lstrip("/")


def _labels(env: str, name: str | None = None) -> dict:
    labels = {"app.kubernetes.io/managed-by": "modelops", "modelops.dev/environment": env}
    if name:
        labels["app.kubernetes.io/name"] = name
    return labels


def kustomization(resources: list[str]) -> dict:
    """A ``kustomize.config.k8s.io/v1beta1`` Kustomization listing ``resources`` (paths
    relative to its directory), in order."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(resources),
    }


def namespace_of(state) -> str:
    """The Kubernetes namespace a rendered deployment runs in (``default`` when unset)."""
    return str(state.outputs.get("namespace") or "default")


def argocd_application(state, source: Source) -> dict:
    """The Argo CD ``Application`` (``argoproj.io/v1alpha1``) that syncs one deployment."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": state.deployment,
            "namespace": ARGOCD_NAMESPACE,
            "labels": _labels(source.env, state.name),
            # Deleting the Application deletes what it synced (Argo CD's cascading delete).
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": source.repo_url,
                "targetRevision": source.branch,
                "path": source.dir_of(state),
            },
            "destination": {"server": IN_CLUSTER, "namespace": namespace_of(state)},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


def flux_source_name(env: str) -> str:
    """The Flux ``GitRepository`` name of an environment's rendered branch."""
    return f"modelops-{env}"


def flux_git_repository(source: Source) -> dict:
    """The Flux ``GitRepository`` (``source.toolkit.fluxcd.io/v1``) of the rendered branch."""
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": flux_source_name(source.env),
            "namespace": FLUX_NAMESPACE,
            "labels": _labels(source.env),
        },
        "spec": {
            "interval": FLUX_SOURCE_INTERVAL,
            "url": flux_url(source.repo_url),
            "ref": {"branch": source.branch},
        },
    }


def flux_kustomization(state, source: Source) -> dict:
    """The Flux ``Kustomization`` (``kustomize.toolkit.fluxcd.io/v1``) that applies one
    deployment's directory."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": state.deployment,
            "namespace": FLUX_NAMESPACE,
            "labels": _labels(source.env, state.name),
        },
        "spec": {
            "interval": FLUX_APPLY_INTERVAL,
            "path": f"./{source.dir_of(state)}",
            "prune": True,
            "wait": True,
            "timeout": FLUX_TIMEOUT,
            "sourceRef": {"kind": "GitRepository", "name": flux_source_name(source.env)},
        },
    }


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(doc), encoding="utf-8")  # YAML 1.1 and 1.2 agree
    return path


def _fresh_dir(path: Path) -> None:
    """Remove the YAML files of an earlier render in ``path`` (objects of deployments that
    are gone must not linger)."""
    if path.is_dir():
        for old in path.glob("*.yaml"):
            old.unlink()


def write_delivery(states, out: Path, fmt: str, source: Source | None) -> list[Path]:
    """Write the ``fmt`` objects (module docstring) for ``states`` under ``out``, beside
    what ``write_state`` wrote there; returns the files written.

    Args:
        states: the rendered DesiredStates of one environment.
        out: the rendered tree's root.
        fmt: one of :data:`DELIVERY_FORMATS`.
        source: the repository and branch (needed for ``argocd`` and ``flux``).

    Raises:
        ValueError: an unknown format, or ``argocd``/``flux`` without a source.
    """
    if fmt not in DELIVERY_FORMATS:
        raise ValueError(f"unknown delivery format {fmt!r}")
    if fmt != "kustomize" and source is None:
        raise ValueError(f"{fmt} needs the repository and branch to sync from")
    cluster = [s for s in states if s.manifests()]
    written = []
    for state in cluster:
        mdir = out / state.deployment / "manifests"
        files = sorted(p.name for p in mdir.glob("*.yaml") if p.name != KUSTOMIZATION)
        doc = kustomization([f"manifests/{f}" for f in files])
        written.append(_write(out / state.deployment / KUSTOMIZATION, doc))
    if fmt == "argocd":
        adir = out / "argocd" / source.env
        _fresh_dir(adir)
        names = []
        for state in cluster:
            names.append(f"application-{state.name}.yaml")
            written.append(_write(adir / names[-1], argocd_application(state, source)))
        written.append(_write(adir / KUSTOMIZATION, kustomization(names)))
    elif fmt == "flux":
        fdir = out / "flux" / source.env
        _fresh_dir(fdir)
        names = ["gitrepository.yaml"]
        written.append(_write(fdir / names[0], flux_git_repository(source)))
        for state in cluster:
            names.append(f"kustomization-{state.name}.yaml")
            written.append(_write(fdir / names[-1], flux_kustomization(state, source)))
        written.append(_write(fdir / KUSTOMIZATION, kustomization(names)))
    return written
