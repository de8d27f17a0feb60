"""`modelops init` and the workflow files."""

from __future__ import annotations

import re

import yaml
from support.cli import invoke
from support.repo import PROJECT

from reconciler.core.config import load_config
from reconciler.gitops.scaffold import TEMPLATES, VERSION_PLACEHOLDER, workflow_version

WORKFLOWS = (
    "modelops-plan.yml",
    "modelops-apply.yml",
    "modelops-reconcile.yml",
    "modelops-monitor.yml",
)
#: Names of values that are credentials: only ever a ${{ secrets.* }} reference (or the
#: job's own github.token), never a literal and never a vars.* value.
CREDENTIAL = re.compile(r"TOKEN|PASSWORD|PASSPHRASE|SECRET|ACCESS_KEY|KUBECONFIG")
REFERENCE = re.compile(r"\$\{\{ secrets\.[A-Z_]+( \|\| github\.token)? \}\}")


def test_init_scaffolds_a_spec_repository(tmp_path):
    dest = tmp_path / "new-repo"
    code, out, err = invoke(
        tmp_path, "init", str(dest), "--security-team", "@acme/appsec", "--no-example"
    )
    assert code == 0, err
    for rel in (
        "modelops.yaml",
        "specs/README.md",
        ".gitignore",
        ".github/workflows/modelops-plan.yml",
        ".github/workflows/modelops-apply.yml",
        ".github/workflows/modelops-reconcile.yml",
        ".github/workflows/modelops-monitor.yml",
        ".github/CODEOWNERS",
        "policies/waivers.yaml",
    ):
        assert (dest / rel).is_file(), rel
    assert list((dest / "policies").glob("*.rego")), "the policy library was copied"
    owners = (dest / ".github/CODEOWNERS").read_text()
    assert "/policies/                      @acme/appsec" in owners
    assert "/policies/waivers.yaml          @acme/appsec" in owners
    assert "/modelops.yaml                  @acme/appsec" in owners  # the guard settings
    config = load_config(dest)
    assert config.protected_environments == ["prod"] and config.max_delete_share == 0.5
    # a second run keeps what is there
    (dest / "modelops.yaml").write_text("stalled_after: 5\n")
    code, out, _ = invoke(tmp_path, "init", str(dest), "--no-example")
    assert code == 0 and "kept  modelops.yaml" in out
    # no example: the next step is a spec of one's own, not the example's commands
    assert "kept in" in out and "write a spec in specs/" in out and "apply --env dev" not in out
    assert (dest / "modelops.yaml").read_text() == "stalled_after: 5\n"


def test_init_rejects_a_bad_team(tmp_path):
    code, _, err = invoke(tmp_path, "init", str(tmp_path / "x"), "--security-team", "sec")
    assert code == 2 and "@acme/security" in err


def test_workflows_are_valid_yaml_and_the_examples_match_the_templates():
    for name in WORKFLOWS:
        template = (TEMPLATES / name).read_text()
        assert (PROJECT / ".github/workflows/examples" / name).read_text() == template
    plan = yaml.safe_load((TEMPLATES / "modelops-plan.yml").read_text())
    # PyYAML reads the key `on` as True
    triggers = plan[True]
    assert "pull_request" in triggers and "pull_request_target" not in triggers
    # a guard reviewer's review runs the plan again, which passes the reviews on
    assert triggers["pull_request_review"] == {"types": ["submitted", "dismissed"]}
    assert plan["permissions"] == {}  # every job asks for its own
    # the job that reads the pull request's specs and models holds no write token, and
    # leaves none in the checkout; the job that writes never checks the pull request out
    job = plan["jobs"]["plan"]
    assert job["runs-on"] == "ubuntu-latest"
    assert job["permissions"] == {"contents": "read", "pull-requests": "read"}
    checkout = next(s for s in job["steps"] if s.get("uses") == "actions/checkout@v4")
    assert checkout["with"]["persist-credentials"] is False
    steps = job["steps"]
    text = yaml.safe_dump(steps)
    assert "fetch-depth: 0" in text and "output: modelops-policy.sarif" in text
    assert "plan --base origin/" in text and "--format markdown" in text
    assert "guard-reviews: 'true'" in text
    assert "comment:" not in text and "sarif:" not in text
    keep = next(s for s in steps if s.get("uses") == "actions/upload-artifact@v4")
    assert keep["if"] == "always()" and "modelops-plan.md" in keep["with"]["path"]
    report = plan["jobs"]["report"]
    assert report["needs"] == "plan" and "always()" in report["if"]
    assert report["permissions"] == {
        "pull-requests": "write",
        "security-events": "write",
        "actions": "read",  # the artifact; SARIF upload in private repositories
    }
    uses = [s.get("uses", "") for s in report["steps"]]
    assert "actions/checkout@v4" not in uses and "actions/download-artifact@v4" in uses
    (post,) = [s for s in report["steps"] if s.get("uses", "").startswith("YOUR-ORG/modelops@")]
    assert "command" not in post["with"]  # nothing of the pull request runs here
    assert post["with"]["comment"] == "modelops-plan.md"
    assert post["with"]["sarif"] == "modelops-policy.sarif"
    assert "id-token" not in yaml.safe_dump(plan)  # no cloud credentials for a PR
    apply = yaml.safe_load((TEMPLATES / "modelops-apply.yml").read_text())
    assert apply[True]["push"]["branches"] == ["main"]
    assert apply["concurrency"]["cancel-in-progress"] is False
    assert "--prune" not in yaml.safe_dump(apply["jobs"]["prod"]["steps"])
    for name, job in apply["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, name
        uses = [s["uses"] for s in job["steps"] if "uses" in s]
        # the OIDC token is used: the AWS role is assumed before modelops runs
        aws = uses.index("aws-actions/configure-aws-credentials@v4")
        assert aws < next(i for i, u in enumerate(uses) if u.startswith("YOUR-ORG/modelops@"))
        # hosted runners keep nothing: the ledger and the lock are the shared S3 state
        assert apply["env"]["MODELOPS_STATE_URL"] == "${{ vars.MODELOPS_STATE_URL }}"
        (check,) = [s for s in job["steps"] if s.get("name", "").startswith("Shared state")]
        assert "MODELOPS_STATE_URL" in check["run"] and "exit 1" in check["run"], name
    heal = yaml.safe_load((TEMPLATES / "modelops-reconcile.yml").read_text())
    assert heal[True]["schedule"][0]["cron"] and heal["concurrency"]["cancel-in-progress"] is False
    assert heal["concurrency"]["group"] != apply["concurrency"]["group"]  # never replaces one
    for env, job in heal["jobs"].items():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, env
        (ours,) = [s for s in job["steps"] if s.get("uses", "").startswith("YOUR-ORG/modelops@")]
        assert ours["with"]["command"].startswith(f"reconcile --env {env} --once")
        assert any(s.get("name", "").startswith("Shared state") for s in job["steps"]), env
    test = yaml.safe_load((PROJECT / ".github/workflows/test.yml").read_text())
    assert "make test" in yaml.safe_dump(test["jobs"]["test"]["steps"])


def _envs(flow: dict):
    """Every ``env`` mapping of a workflow (top, job, step), with where it is."""
    yield "workflow", flow.get("env") or {}
    for name, job in flow["jobs"].items():
        yield name, job.get("env") or {}
        for step in job["steps"]:
            yield f"{name}: {step.get('name') or step.get('uses')}", step.get("env") or {}


def test_credentials_reach_the_jobs_by_reference_only_and_where_they_are_used():
    """MLflow (models:/ URIs), the forge token (retraining's pull request) and S3 (the OIDC
    role) reach the jobs that need them, as secrets/vars references, never literals."""
    flows = {name: yaml.safe_load((TEMPLATES / name).read_text()) for name in WORKFLOWS}
    for name, flow in flows.items():
        for where, env in _envs(flow):
            for key, value in env.items():
                if CREDENTIAL.search(key):
                    assert REFERENCE.fullmatch(str(value)), (name, where, key, value)
        assert "AWS_ACCESS_KEY_ID" not in (TEMPLATES / name).read_text(), name

    def ours(flow):
        return [
            s
            for job in flow["jobs"].values()
            for s in job["steps"]
            if s.get("uses", "").startswith("YOUR-ORG/modelops@")
        ]

    mlflow = "${{ vars.MLFLOW_TRACKING_URI }}"
    for name in ("modelops-apply.yml", "modelops-reconcile.yml", "modelops-monitor.yml"):
        for step in ours(flows[name]):  # they resolve and fetch models:/ URIs
            assert step["env"]["MLFLOW_TRACKING_URI"] == mlflow, name
            assert step["env"]["MLFLOW_TRACKING_TOKEN"] == "${{ secrets.MLFLOW_TRACKING_TOKEN }}"
    # a pull request's model files run in the plan job: the registry's read-only token only
    (plan_step,) = [
        s for s in ours(flows["modelops-plan.yml"]) if "plan" in s["with"].get("command", "")
    ]
    assert plan_step["env"] == {
        "MLFLOW_TRACKING_URI": mlflow,
        "MLFLOW_TRACKING_TOKEN": "${{ secrets.MLFLOW_READ_TOKEN }}",
    }
    assert "GITHUB_TOKEN" not in yaml.safe_dump(flows["modelops-plan.yml"])

    monitor = flows["modelops-monitor.yml"]
    assert monitor["permissions"] == {} and monitor[True]["schedule"]
    job = monitor["jobs"]["monitor"]
    assert job["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "id-token": "write",
    }
    (step,) = ours(monitor)
    pr_token = "${{ secrets.MODELOPS_PR_TOKEN || github.token }}"
    assert step["env"]["GITHUB_TOKEN"] == pr_token
    checkout = next(s for s in job["steps"] if s.get("uses") == "actions/checkout@v4")
    assert checkout["with"]["token"] == pr_token  # the push of the proposal branch
    uses = [s.get("uses", "") for s in job["steps"]]
    # S3 (state, capture, model store) through the OIDC role, assumed before modelops runs
    assert uses.index("aws-actions/configure-aws-credentials@v4") < uses.index(step["uses"])
    assert monitor["env"]["MODELOPS_STATE_URL"] == "${{ vars.MODELOPS_STATE_URL }}"
    assert any(s.get("name", "").startswith("Shared state") for s in job["steps"])
    # the hourly schedule monitors, the weekly one retrains, for each matrix entry
    crons = [c["cron"] for c in monitor[True]["schedule"]]
    (pick,) = [s for s in job["steps"] if s.get("id") == "job"]
    assert f'"{crons[1]}"' in pick["run"] and "retrain --reason schedule" in pick["run"]
    assert "command=monitor run" in pick["run"]
    assert step["with"]["command"] == (
        "${{ steps.job.outputs.command }} ${{ matrix.deployment }} --env ${{ matrix.env }}"
    )
    assert job["strategy"]["matrix"]["include"]


def test_the_workflows_init_writes_use_the_action_at_the_installed_version(tmp_path):
    code, _, err = invoke(tmp_path, "init", str(tmp_path / "repo"), "--no-example")
    assert code == 0, err
    version = workflow_version()
    for name in WORKFLOWS:
        text = (tmp_path / "repo" / ".github" / "workflows" / name).read_text()
        assert VERSION_PLACEHOLDER not in text
        flow = yaml.safe_load(text)
        uses = [s.get("uses", "") for job in flow["jobs"].values() for s in job["steps"]]
        ours = [s for job in flow["jobs"].values() for s in job["steps"] if "with" in s]
        ours = [s for s in ours if s.get("uses", "").startswith("YOUR-ORG/modelops@")]
        assert ours and all(s["uses"] == f"YOUR-ORG/modelops@v{version}" for s in ours)
        assert all(s["with"]["version"] == version for s in ours)
        majors = {u.split("@")[0]: u.split("@")[1] for u in uses if u and "YOUR-ORG" not in u}
        assert majors.get("actions/checkout") == "v4"


def test_the_action_installs_the_version_with_extras_and_reports_sarif_and_the_comment():
    action = yaml.safe_load((PROJECT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert {"version", "extras", "command", "sarif", "comment", "guard-reviews"} <= set(
        action["inputs"]
    )
    assert action["inputs"]["extras"]["default"] == "frameworks"
    steps = action["runs"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert "actions/setup-python@v5" in uses and "actions/cache@v4" in uses
    assert "github/codeql-action/upload-sarif@v3" in uses
    assert "actions/github-script@v7" in uses
    install = next(s for s in steps if s.get("name") == "Install modelops")
    assert "modelops-gitops" in install["run"] and "${{" not in install["run"]  # inputs via env
    for step in steps:  # no input reaches a shell script except through the environment
        assert "${{ inputs." not in step.get("run", ""), step.get("name")
    # without a command (the plan workflow's report job) nothing is installed or run:
    # only the files an earlier job wrote are uploaded and posted
    assert action["inputs"]["command"]["required"] is False
    for name in ("Install modelops", "modelops ${{ inputs.command }}"):
        step = next(s for s in steps if s.get("name") == name)
        assert "inputs.command != ''" in step["if"], name
    posting = [s for s in steps if s.get("uses") in ("actions/github-script@v7",)]
    assert all("inputs.command" not in s.get("if", "") for s in posting[-1:])


def test_init_runs_git_init_and_uses_one_placeholder(tmp_path):
    import git

    dest = tmp_path / "fresh"
    code, out, err = invoke(tmp_path, "init", str(dest), "--no-example")
    assert code == 0, err
    repo = git.Repo(dest)
    assert repo.active_branch.name == "main" and not repo.head.is_valid()  # nothing committed
    assert "ran   git init" in out
    owners = (dest / ".github/CODEOWNERS").read_text()
    assert "@YOUR-ORG/ml-platform" in owners and "@YOUR-ORG/security" in owners
    assert "your-org" not in owners  # one spelling: a case-sensitive replace catches all
    assert "replace YOUR-ORG in .github/CODEOWNERS" in out
    assert "Next: `cd " in out and "fresh`, then write a spec in specs/" in out  # elsewhere

    code, out, _ = invoke(
        tmp_path,
        "init",
        str(dest / "sub"),
        "--security-team",
        "@acme/appsec",
        "--platform-team",
        "@acme/ml",
        "--no-example",
    )
    assert code == 0 and "git init" not in out  # already inside a repository
    owners = (dest / "sub/.github/CODEOWNERS").read_text()
    assert "@acme/ml" in owners and "@acme/appsec" in owners
