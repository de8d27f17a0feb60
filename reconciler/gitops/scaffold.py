"""``modelops init``: scaffold a new spec repository.

Writes ``modelops.yaml``, ``specs/``, a copy of the policy library (``policies/``, with
its tests, waivers and organisation settings), the two GitHub workflows (pull request:
validate, policy check with SARIF upload, plan, one PR comment; push to main: apply) and
``.github/CODEOWNERS`` giving ``policies/`` and ``waivers.yaml`` to the security team.
Existing files are never overwritten; they are reported as kept.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import git

from reconciler.core.diagnostics import ModelopsError
from reconciler.core.version import installed

TEMPLATES = Path(__file__).parent / "templates"
#: (template file, destination path in the new repository)
FILES = (
    ("modelops.yaml", "modelops.yaml"),
    ("modelops-plan.yml", ".github/workflows/modelops-plan.yml"),
    ("modelops-apply.yml", ".github/workflows/modelops-apply.yml"),
    ("modelops-reconcile.yml", ".github/workflows/modelops-reconcile.yml"),
    ("modelops-monitor.yml", ".github/workflows/modelops-monitor.yml"),
    ("CODEOWNERS", ".github/CODEOWNERS"),
)
SPECS_README = """# Specs

One ModelDeployment per file (`*.yaml`). `modelops schema > modeldeployment.schema.json`
gives the JSON Schema for your editor; `modelops validate` checks them.
"""
GITIGNORE = ".modelops/\n"
#: In the workflow templates: the modelops version the action installs (and its tag).
VERSION_PLACEHOLDER = "@MODELOPS_VERSION@"
#: The version written when modelops runs from a source tree without an install.
FALLBACK_VERSION = "0.1.0"


def workflow_version() -> str:
    """The version the written workflows install: the installed modelops-gitops's, so
    CI runs what ``init`` ran with (:data:`FALLBACK_VERSION` from a bare source tree)."""
    found = installed()
    return found[1] if found else FALLBACK_VERSION


#: Where the policy library is in an installed wheel (``setup.py`` copies ``policies/``
#: there at build time).
PACKAGED_LIBRARY = Path(__file__).resolve().parents[1] / "library" / "policies"
#: Where it is in a source checkout (and so in an editable install).
CHECKOUT_LIBRARY = Path(__file__).resolve().parents[2] / "policies"


#: The example deployment: (template under templates/example/, destination).
EXAMPLE_TRAINER = ("train.py", "examples/iris/train.py")
EXAMPLE_SPEC = ("iris-classifier.yaml", "specs/iris-classifier.yaml")
EXAMPLE_README = ("README.md", "README.md")
#: What the example's training script writes beside itself (``examples/iris/``).
EXAMPLE_OUTPUTS = (
    "model.joblib",
    "model.json",
    "reference.parquet",
    "holdout.parquet",
    "request.json",
)
#: Seconds the example's training may take (it takes about 2 s of CPU).
EXAMPLE_TRAIN_TIMEOUT_S = 300


def policy_library() -> Path | None:
    """The policy library shipped with modelops: the wheel's copy
    (:data:`PACKAGED_LIBRARY`), else the checkout's ``policies/``
    (:data:`CHECKOUT_LIBRARY`); ``None`` when neither exists (a broken install)."""
    for candidate in (PACKAGED_LIBRARY, CHECKOUT_LIBRARY):
        if candidate.is_dir():
            return candidate
    return None


@dataclass
class InitResult:
    """What ``init`` did: root-relative paths ``written`` and ``kept`` (already there)."""

    root: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    git_initialised: bool = False  # True when init ran `git init` (no repository was there)


DEFAULT_PLATFORM_TEAM = "@YOUR-ORG/ml-platform"
DEFAULT_SECURITY_TEAM = "@YOUR-ORG/security"


def init_repository(
    dest: Path,
    security_team: str = DEFAULT_SECURITY_TEAM,
    platform_team: str = DEFAULT_PLATFORM_TEAM,
    example: bool = True,
) -> InitResult:
    """Scaffold a spec repository at ``dest`` (created if missing), ``git init`` it when it
    is not inside a Git work tree yet (branch ``main``; nothing is committed).

    Args:
        dest: the new repository's root.
        security_team: the GitHub team (``@org/team``) that owns ``policies/`` and
            ``waivers.yaml`` in CODEOWNERS.
        platform_team: the GitHub team that owns everything else in CODEOWNERS.
        example: also write the example deployment: ``examples/iris/train.py``, run
            once with this Python to write the model and its files beside it, and
            ``specs/iris-classifier.yaml`` pinning the model's SHA-256 (dev on the local
            target, prod on Kubernetes).

    Returns:
        An :class:`InitResult`.

    Raises:
        ModelopsError: (exit 2) ``security_team`` is not ``@org/team`` or ``@user``; the
            policy library cannot be found next to the installed package; ``dest`` is a
            file; the example's training script failed (its stderr is in the message).
    """
    for option, team in (("--security-team", security_team), ("--platform-team", platform_team)):
        if not team.startswith("@") or " " in team or len(team) < 2:
            raise ModelopsError(f"{option} {team!r}: expected a GitHub team like @acme/security")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ModelopsError(f"{dest} is a file; give a directory for the new spec repository")
    library = policy_library()
    if library is None:
        raise ModelopsError(
            f"the policy library is missing from the installed modelops package (looked in "
            f"{PACKAGED_LIBRARY} and {CHECKOUT_LIBRARY}); reinstall it: "
            "pip install --force-reinstall modelops-gitops"
        )
    result = InitResult(dest.resolve())
    dest.mkdir(parents=True, exist_ok=True)

    def write(rel: str, text: str) -> None:
        target = dest / rel
        if target.exists():
            result.kept.append(rel)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        result.written.append(rel)

    for template, rel in FILES:
        text = (TEMPLATES / template).read_text(encoding="utf-8")
        if template == "CODEOWNERS":
            text = text.replace("@SECURITY-TEAM", security_team)
            text = text.replace("@PLATFORM-TEAM", platform_team)
        text = text.replace(VERSION_PLACEHOLDER, workflow_version())
        write(rel, text)
    write("specs/README.md", SPECS_README)
    write(".gitignore", GITIGNORE)
    for src in sorted(library.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            rel = f"policies/{src.relative_to(library).as_posix()}"
            target = dest / rel
            if target.exists():
                result.kept.append(rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            result.written.append(rel)
    if example:
        _write_example(dest, result, write)
    result.git_initialised = _git_init(dest)
    return result


def _write_example(dest: Path, result: InitResult, write) -> None:
    """The example deployment: trainer, its outputs (by running it), and the spec."""
    dest = dest.resolve()  # the trainer runs with cwd=dest: a relative path would not do
    template, rel = EXAMPLE_TRAINER
    write(rel, (TEMPLATES / "example" / template).read_text(encoding="utf-8"))
    out = (dest / rel).parent
    if not (out / "model.joblib").exists():
        proc = subprocess.run(
            [sys.executable, str(dest / rel), "--out", str(out)],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TRAIN_TIMEOUT_S,
        )
        if proc.returncode != 0:
            raise ModelopsError(
                f"the example's training ({rel}) failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}; `modelops init --no-example` skips the example"
            )
        outputs = [f"{out.relative_to(dest).as_posix()}/{name}" for name in EXAMPLE_OUTPUTS]
        result.written.extend(outputs)
    digest = hashlib.sha256((out / "model.joblib").read_bytes()).hexdigest()
    template, rel = EXAMPLE_SPEC
    text = (TEMPLATES / "example" / template).read_text(encoding="utf-8")
    write(rel, text.replace("@MODEL_SHA256@", digest))
    template, rel = EXAMPLE_README
    write(rel, (TEMPLATES / "example" / template).read_text(encoding="utf-8"))


def _git_init(dest: Path) -> bool:
    """``git init -b main`` in ``dest`` unless it is already inside a Git work tree."""
    try:
        git.Repo(dest, search_parent_directories=True)
        return False
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        git.Repo.init(dest, initial_branch="main")
        return True
