"""What a new user expects of the command line: ``--version``, shell completion, help
that never cuts an option name, wide untruncated output in CI, and ``modelops logs``.

All in this process through the console script's entry point (``support.cli.invoke``);
the log files are real files written the way the local engine's server writes them.
"""

from __future__ import annotations

import io
import json
import re
from importlib import metadata

import click
import pytest
import typer.main
from support.cli import invoke

from reconciler.cli import app, version
from reconciler.commands import logs
from reconciler.commands.options import MIN_HELP_COLUMNS, WIDE_COLUMNS, help_width
from reconciler.core.config import load_config
from reconciler.runtime import frameworks
from reconciler.state.ledger import Ledger, LedgerRecord


def test_version_names_the_installed_distribution():
    # the slow, exhaustive way; a venv that was reinstalled under the new name may hold
    # both the old and the new distribution of this package
    dists = metadata.packages_distributions()["reconciler"]
    code, out, _ = invoke(None, "--version")
    assert code == 0
    assert out.strip() == version() in {f"{d} {metadata.version(d)}" for d in dists}
    name = out.split()[0]
    assert any(ep.name == "modelops" for ep in metadata.distribution(name).entry_points)


def test_shell_completion_is_offered():
    code, out, _ = invoke(None, "--help")
    assert code == 0 and "--install-completion" in out and "--show-completion" in out
    assert "<bool>" not in out and "--version" in out  # flags show no value type
    code, out, _ = invoke(None, "--show-completion", "bash")
    assert code == 0
    assert "_MODELOPS_COMPLETE" in out or "complete" in out


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


def _long_options(cmd: click.Command) -> list[str]:
    return [o for p in cmd.params for o in p.opts if o.startswith("--")]


def test_no_help_cuts_an_option_name_on_an_80_column_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root):
        code, out, _ = invoke(None, *path, "--help")
        assert code == 0, path
        assert "…" not in out, (path, out)
        assert "<bool>" not in out, (path, out)  # a flag takes no value
        for option in _long_options(cmd):
            assert re.search(rf"{re.escape(option)}\b", out), (path, option)
            checked += 1
    assert checked > 50  # every command's options were looked at


def test_help_and_tables_are_wide_without_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert help_width(io.StringIO()) == WIDE_COLUMNS
    monkeypatch.setenv("COLUMNS", "60")
    assert help_width(io.StringIO()) == MIN_HELP_COLUMNS


@pytest.fixture
def record(spec_repo):
    """Write a ledger record of fraud-detector × dev in ``spec_repo``'s state directory."""

    def write(platform: str, **outputs) -> LedgerRecord:
        config = load_config(spec_repo)
        rec = LedgerRecord("fraud-detector", "dev", platform=platform)
        rec.record_success("a" * 40, "d", outputs=outputs)
        Ledger(config.state_dir).put(rec)
        return rec

    return write


def test_logs_prints_the_last_lines_of_a_local_server_log(spec_repo, record):
    config = load_config(spec_repo)
    log = config.state_dir / "logs" / "fraud-detector-dev.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(200)))
    record("local", log=config.rel(log))
    code, out, _ = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev", "--tail", "3")
    assert code == 0 and out == "line 197\nline 198\nline 199\n"
    code, out, _ = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev")
    assert out.splitlines() == [f"line {i}" for i in range(150, 200)]  # default: 50
    code, out, _ = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev", "-n", "0")
    assert len(out.splitlines()) == 200


def test_logs_errors_name_what_is_missing(spec_repo, record):
    code, _, err = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev")
    assert code == 2 and "no deployment 'fraud-detector' recorded in environment 'dev'" in err
    record("local", log=".modelops/logs/gone.log")
    code, _, err = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev")
    assert code == 2 and "no server log at .modelops/logs/gone.log" in err
    assert "Traceback" not in err


def test_logs_of_cluster_targets_print_the_command_to_run(spec_repo, record):
    record("kubernetes", namespace="ml")
    code, out, _ = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev", "--follow")
    assert code == 0
    assert (
        "kubectl logs --namespace ml --selector app.kubernetes.io/instance=fraud-detector-dev "
        "--all-containers --prefix --tail=50 --follow"
    ) in out
    record("aws-sagemaker", endpoint_name="fraud-detector-dev", region="eu-west-1")
    code, out, _ = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev")
    assert code == 0
    assert (
        "aws logs tail /aws/sagemaker/Endpoints/fraud-detector-dev --region eu-west-1 --since 1h"
    ) in out
    record("edge")
    code, _, err = invoke(spec_repo, "logs", "fraud-detector", "--env", "dev")
    assert code == 2 and "has no log for it" in err


def test_follow_prints_appended_lines_and_rereads_a_truncated_file(tmp_path):
    path = tmp_path / "server.log"
    path.write_bytes(b"old 1\nold 2\n")
    written: list[bytes] = []
    steps = iter(
        [
            lambda: path.open("ab").write(b"new 3\n"),
            lambda: path.write_bytes(b"fresh\n"),  # a new server truncated the log
            None,
        ]
    )

    def stop() -> bool:  # called only when a read found nothing new: act, then go on
        step = next(steps)
        if step is None:
            return True
        step()
        return False

    with path.open("rb") as fh:
        written.append(logs.tail_bytes(fh, 1))
        logs.follow(fh, written.append, stop, poll_s=0)
    assert b"".join(written) == b"old 2\nnew 3\nfresh\n"


def test_a_missing_framework_package_names_the_extra_and_the_command(monkeypatch):
    real = metadata.version

    def version(dist: str) -> str:  # as if lightgbm and torch were not installed
        if dist in ("lightgbm", "torch"):
            raise metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(frameworks.importlib.metadata, "version", version)
    with pytest.raises(frameworks.FrameworkError) as exc:
        frameworks.distribution("lightgbm")
    assert "install modelops' 'frameworks' extra: pip install 'modelops-gitops[frameworks]'" in (
        str(exc.value)
    )
    with pytest.raises(frameworks.FrameworkError) as exc:
        frameworks.distribution("pytorch")
    assert str(exc.value).endswith("; pip install torch")


def test_status_shows_the_model_version_the_applied_bento_serves(spec_repo, tmp_path):
    """The version comes from the built Bento's modelops.json (a directory written here
    in the build's layout); without it, the model file's digest prefix."""
    config = load_config(spec_repo)
    bento = tmp_path / "bento"
    (bento / "src").mkdir(parents=True)
    (bento / "src" / "modelops.json").write_text('{"model_version": "2.3.1"}')
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    artifact = {"bento_tag": "fraud-detector:1", "model_sha256": "ab" * 32}
    rec.record_success("a" * 40, "d", artifact={**artifact, "bento_path": str(bento)})
    Ledger(config.state_dir).put(rec)
    code, out, err = invoke(spec_repo, "status", "--env", "prod", "--format", "json")
    assert code == 0, err
    rows = {r["deployment"]: r for r in json.loads(out)}
    row = rows["fraud-detector-prod"]
    assert row["model"] == "2.3.1" and row["applied_at"] == rec.history[-1]["time"]
    # the other specs of the repository declare prod too and were never applied
    assert {k: r["model"] for k, r in rows.items() if k != row["deployment"]} == {
        "diabetes-progression-prod": "-",
        "fraud-scorer-serverless-prod": "-",
    }
    (bento / "src" / "modelops.json").unlink()
    code, out, _ = invoke(spec_repo, "status", "--env", "prod", "--format", "json")
    assert json.loads(out)[1]["model"] == "ab" * 6


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "--env", "dev"),
        ("plan", "--env", "prod"),
        ("status",),
        ("policy", "check"),
        ("reconcile", "--env", "dev", "--once"),
        ("destroy", "--env", "dev", "--yes"),
    ],
    ids=lambda a: " ".join(a),
)
def test_a_directory_that_is_not_a_spec_repository_is_refused_untouched(tmp_path, args):
    # no modelops.yaml, no specs/: apply said "nothing to apply" and exited 0, and a
    # .modelops state directory appeared wherever it was run
    code, out, err = invoke(tmp_path, *args)
    assert code == 2, out + err
    assert f"{tmp_path} is not a modelops spec repository" in err
    assert "modelops init" in err and "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []
