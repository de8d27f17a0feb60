"""Helpers for the GitOps tests: real Git repositories in temp directories (no tests here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import git

PROJECT = Path(__file__).resolve().parents[1]


def small_spec(name: str, model: str = "models/a.joblib", extra: str = "", envs: str = "") -> str:
    """A minimal spec text (enough for change detection; not necessarily valid)."""
    return (
        "apiVersion: modelops/v1alpha1\nkind: ModelDeployment\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  model:\n    framework: sklearn\n    uri: {model}\n"
        "  serving:\n    smoke:\n      request: requests/req.json\n"
        f"{extra}"
        f"  environments:\n    staging: {{}}\n{envs}"
    )


class Repo:
    """A real Git repository with helpers to write, delete, move and commit files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git = git.Repo.init(root, initial_branch="main")
        with self.git.config_writer() as cw:
            cw.set_value("user", "name", "Test")
            cw.set_value("user", "email", "test@example.com")
            cw.set_value("commit", "gpgsign", "false")

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def commit(self, message: str) -> str:
        self.git.git.add("-A")
        self.git.index.commit(message)
        return self.git.head.commit.hexsha

    def mv(self, src: str, dst: str) -> None:
        (self.root / dst).parent.mkdir(parents=True, exist_ok=True)
        self.git.git.mv(src, dst)

    def rm(self, rel: str) -> None:
        self.git.git.rm("-q", rel)


def small_repo(tmp_path: Path) -> Repo:
    """Three small specs, two model files, a request, a policy, committed on main."""
    repo = Repo(tmp_path / "repo")
    repo.write("modelops.yaml", "state_dir: .modelops\n")
    repo.write(".gitignore", ".modelops/\n")
    repo.write("models/a.joblib", b"model-a-v1")
    repo.write("models/b.joblib", b"model-b-v1")
    repo.write("requests/req.json", '{"instances": [[1, 2]]}\n')
    repo.write("policies/p.rego", "package p\n")
    repo.write("policies/waivers.yaml", "waivers: []\n")
    repo.write("specs/alpha.yaml", small_spec("alpha"))
    repo.write("specs/beta.yaml", small_spec("beta", "models/b.joblib"))
    repo.write(
        "specs/gamma.yaml",
        small_spec(
            "gamma", "s3://bucket/m.joblib", envs="    prod:\n      model: {uri: models/b.joblib}\n"
        ),
    )
    repo.commit("initial specs")
    return repo


#: Smoke and SLO settings that a busy 2-core test machine meets: these tests are about
#: the GitOps bookkeeping, not about latency (bench_serving.py measures that).
RELAXED = (
    ("load: {requests: 200, concurrency: 8}", "load: {requests: 20, concurrency: 2}"),
    ("max_latency_ms: 20}", "max_latency_ms: 500}"),
    ("p99_latency_ms: 200}", "p99_latency_ms: 5000}"),
)


def example_repo(
    tmp_path: Path, keep: tuple[str, ...] = ("fraud-detector",), relaxed: bool = True
) -> Repo:
    """The project's example specs (only ``keep``), models, policies, committed.

    ``relaxed`` loosens the fraud spec's load test and SLO (see :data:`RELAXED`).
    """
    root = tmp_path / "repo"
    root.mkdir(parents=True)
    for name in ("examples", "policies"):
        shutil.copytree(PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "specs").mkdir()
    for name in keep:
        text = (PROJECT / "specs" / f"{name}.yaml").read_text()
        if relaxed:
            for a, b in RELAXED:
                text = text.replace(a, b)
        (root / "specs" / f"{name}.yaml").write_text(text)
    repo = Repo(root)
    repo.write("modelops.yaml", "state_dir: .modelops\n")
    repo.write(".gitignore", ".modelops/\n")
    repo.commit("example specs")
    return repo


def run_cli(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``modelops`` console script in ``root``."""
    exe = PROJECT / ".venv" / "bin" / "modelops"
    return subprocess.run(
        [str(exe), "--root", str(root), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "BENTOML_DO_NOT_TRACK": "True"},
    )


def invoke(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    """Run ``modelops --root ROOT ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from reconciler.cli import main

    capsys.readouterr()
    try:
        main(["--root", str(root), *args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out = capsys.readouterr()
    return code, out.out, out.err


def replace_in_file(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in the file at ``path`` by ``new``; ``old`` must be there."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
