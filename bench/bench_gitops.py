"""Benchmark: a pull-request plan that changes one spec in a repository of 1,000 specs.

Builds a real Git repository in a temp directory with N specs (default 1,000; copies of
the fraud-detector example, Kubernetes in prod), commits them, changes one line of one
spec in a second commit, then measures in the same run:

* the PR plan: ``modelops plan --base <first> --env prod`` (change detection, load and
  validate the changed spec, name check against all specs, policies, render at base and
  head under Pulumi mocks, diff), in process and through the real CLI (with interpreter
  start-up and imports);
* the full plan: the same with ``--all`` (every spec validated, policed, rendered twice).

Target (issue 5): the PR plan under 3 s on this machine. Prints both and the ratio.

Cost (issue 18): the full plan prices every deployment (before and after) and gives the
estimate to the policies; the same full plan with the estimate switched off is the peer,
measured in the same run, and the estimate alone over the N rendered DesiredStates is
timed too. Target: under 1 s added for 1,000 deployments.

Scale of the full pass (issue 14 item 6): the full plan above, warm (render cache and
spec load cache filled by the first full plan), is the first figure; target < 5 s. The
second is one full self-heal pass with nothing to do: ``apply --env staging --base HEAD``
(what the merge workflow runs when a push changed nothing) and ``reconcile --env
staging`` over N live local deployments. One real ``bentoml serve`` is started and the N
ledger records (written by the status writer, as N applies would) all name it, because
N servers cannot run here: each record's check is the real one (process identity, then
``GET /livez``). The refresh preview of a Pulumi stack needs the CLI (not here) and is not
in this figure. Target < 10 s. Both beside the one-spec PR plan of the same run.

Usage: ``.venv/bin/python bench/bench_gitops.py [--specs N]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

print = partial(print, flush=True)  # noqa: A001 - progress shows while it runs
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def build_repo(root: Path, n: int) -> tuple[str, str]:
    """Write and commit ``n`` specs; returns (base sha, head sha) of the one-line change."""
    import git

    for name in ("examples", "policies"):
        shutil.copytree(PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    template = (PROJECT / "specs" / "fraud-detector.yaml").read_text()
    specs = root / "specs"
    specs.mkdir()
    for i in range(n):
        name = f"fraud-detector-{i:04d}"
        (specs / f"{name}.yaml").write_text(
            template.replace("name: fraud-detector", f"name: {name}")
        )
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    (root / ".gitignore").write_text(".modelops/\n")
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "bench")
        cw.set_value("user", "email", "bench@example.com")
    repo.git.add("-A")
    repo.index.commit(f"{n} specs")
    base = repo.head.commit.hexsha
    changed = specs / f"fraud-detector-{n // 2:04d}.yaml"
    changed.write_text(changed.read_text().replace("min_replicas: 3}", "min_replicas: 4}"))
    repo.git.add("-A")
    repo.index.commit("one spec: 4 replicas in prod")
    return base, repo.head.commit.hexsha


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its reaped children (the
    policy worker, git): unlike wall time, not inflated when other work shares the
    2 cores."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    w0, c0 = time.perf_counter(), cpu_s()
    result = fn()
    return result, time.perf_counter() - w0, cpu_s() - c0


def heal_pass(config, head: str, n: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of a self-heal pass with nothing to do over ``n`` live local
    deployments: ``apply --base HEAD`` and ``reconcile`` (see the module doc)."""
    from reconciler.build.bento import build
    from reconciler.build.serve import start_server, stop_server
    from reconciler.engine.base import ApplyResult
    from reconciler.flow.apply import apply
    from reconciler.flow.digests import inputs_digest
    from reconciler.flow.reconcile import reconcile
    from reconciler.spec.repo import load_all
    from reconciler.state import status
    from reconciler.state.ledger import Ledger

    deps = load_all(config, None, "staging").deployments
    assert len(deps) == n
    artifact = build(deps[0], config, revision=head)
    handle = start_server(artifact, config, timeout_s=300)
    try:
        outputs = {
            "url": handle.url,
            "port": handle.port,
            "pid": handle.pid,
            "pgid": handle.pgid,
            "bento_tag": handle.bento_tag,
            "server_id": handle.server_id,
            "process_started": handle.started,
        }
        ledger = Ledger.of(config)
        result = ApplyResult(True, outputs, "bench", "bench")
        for dep in deps:
            digest = inputs_digest(dep, config)
            status.applied(
                ledger,
                dep,
                result,
                revision=head,
                digest=digest,
                artifact=artifact,
                desired_state=None,
            )
        applied, apply_s, apply_cpu = timed(lambda: apply(config, "staging", base=head))
        assert applied.outcomes == [] and applied.exit_code == 0, applied.to_dict()
        healed, rec_s, rec_cpu = timed(lambda: reconcile(config, "staging"))
        assert healed.outcomes == [] and healed.exit_code == 0, healed.notes
        assert healed.notes[0].startswith(f"{n} deployment(s) of staging checked, 0 diverged")
    finally:
        stop_server(handle)
    return {"apply --base HEAD": (apply_s, apply_cpu), "reconcile": (rec_s, rec_cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=1000)
    args = parser.parse_args()

    from reconciler.core.config import load_config
    from reconciler.flow.plan import plan

    with tempfile.TemporaryDirectory(prefix="bench-gitops-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        t0 = time.perf_counter()
        base, head = build_repo(root, args.specs)
        built_s = time.perf_counter() - t0
        print(f"repository: {args.specs} specs, built and committed in {built_s:.1f} s")
        config = load_config(root)

        pr, cold_s, cold_cpu = timed(lambda: plan(config, "prod", base=base))
        assert len(pr.outcomes) == 1 and pr.exit_code == 0, pr.to_dict()
        assert pr.plans[0].summary() == "0 to create, 1 to update, 0 to replace, 0 to delete"
        _, pr_s, pr_cpu = timed(lambda: plan(config, "prod", base=base))

        exe = PROJECT / ".venv" / "bin" / "modelops"
        argv = [str(exe), "plan", "--base", base, "--env", "prod", "--format", "markdown"]
        cli, cli_s, cli_cpu = timed(
            lambda: subprocess.run(argv, cwd=root, capture_output=True, text=True)
        )
        assert cli.returncode == 0, cli.stderr

        full, all_s, all_cpu = timed(lambda: plan(config, "prod", base=base, all_specs=True))
        assert len(full.outcomes) == args.specs and full.exit_code == 0
        assert sum(not p.empty for p in full.plans) == 1
        assert all(o.cost.get("after") for o in full.outcomes)

        # The peer: the same full plan with the estimate switched off (no cost, no
        # input.cost), then the estimate alone over the rendered states.
        from reconciler.flow import costs
        from reconciler.flow.stages import render_live
        from reconciler.spec.repo import load_all

        real = costs.estimate_pair
        costs.estimate_pair = lambda *a, **k: ({}, None)
        try:
            bare, bare_s, bare_cpu = timed(lambda: plan(config, "prod", base=base, all_specs=True))
        finally:
            costs.estimate_pair = real
        assert not any(o.cost for o in bare.outcomes)
        # The first full plan rendered every spec (cold render cache); the peer ran warm:
        # compare it with a warm full plan with estimates.
        _, warm_s, warm_cpu = timed(lambda: plan(config, "prod", base=base, all_specs=True))
        # a new process: only the disk caches (spec loads, renders) are warm
        argv_all = [*argv[:-2], "--all", "--format", "json"]
        cli_all, cli_all_s, cli_all_cpu = timed(
            lambda: subprocess.run(argv_all, cwd=root, capture_output=True, text=True)
        )
        assert cli_all.returncode == 0, cli_all.stderr[-2000:]
        deps = [d for d in load_all(config, None, "prod").deployments]
        states = [(d, render_live(d, None, config)) for d in deps]
        _, est_s, est_cpu = timed(
            lambda: [costs.estimate_pair(d, s, None, config, same=True) for d, s in states]
        )

        heal = heal_pass(config, head, args.specs)

    load = os.getloadavg()[0]
    print(f"head: {head[:12]}, one line changed in one spec; load average {load:.1f} on 2 cores")
    rows = [
        ("PR plan, first in the process (SDK imports)", cold_s, cold_cpu, 1),
        ("PR plan, warm (imports done)", pr_s, pr_cpu, 1),
        ("PR plan through the CLI (process start-up)", cli_s, cli_cpu, 1),
        ("full plan (--base --all), first (cold caches)", all_s, all_cpu, args.specs),
        ("full plan (--base --all), warm caches", warm_s, warm_cpu, args.specs),
        ("full plan through the CLI (disk caches warm)", cli_all_s, cli_all_cpu, args.specs),
    ]
    print(f"{'plan':<46} {'wall s':>8} {'CPU s':>8} {'deployments':>12}")
    for label, secs, cpu, n in rows:
        print(f"{label:<46} {secs:8.2f} {cpu:8.2f} {n:>12}")
    print(
        f"ratio full (warm caches) / PR (warm): {warm_s / pr_s:.0f}x wall, "
        f"{warm_cpu / pr_cpu:.0f}x CPU; full / PR via CLI: {warm_s / cli_s:.0f}x wall"
    )
    print(
        f"cost: full plan (warm render cache) {warm_s:.2f} s wall / {warm_cpu:.2f} s CPU with "
        f"estimates, {bare_s:.2f} s / {bare_cpu:.2f} s without (peer, same run): "
        f"{warm_s - bare_s:+.2f} s wall, {warm_cpu - bare_cpu:+.2f} s CPU "
        f"({warm_cpu / bare_cpu:.2f}x CPU); the estimates alone for {len(states)} "
        f"deployments: {est_s:.2f} s wall, {est_cpu:.2f} s CPU"
    )
    added = max(warm_cpu - bare_cpu, est_cpu)
    verdict = "met" if added < 1.0 else "MISSED"
    print(f"target: estimating {len(states)} deployments adds < 1 s: {verdict} ({added:.2f} s CPU)")
    verdict = "met" if cli_all_s < 5.0 else "MISSED"
    print(
        f"full plan in a new process (the CLI; disk caches warm: spec loads, parsed specs, "
        f"renders) {cli_all_s:.2f} s wall / {cli_all_cpu:.2f} s CPU beside the same plan "
        f"warm in this process {warm_s:.2f} s / {warm_cpu:.2f} s: "
        f"{cli_all_cpu / warm_cpu:.1f}x CPU; < 5 s: {verdict}"
    )
    verdict = "met" if warm_s < 5.0 else "MISSED"
    print(
        f"target: full plan over {args.specs} deployments < 5 s (warm caches): {verdict} "
        f"({warm_s:.2f} s wall, {warm_cpu:.2f} s CPU; {warm_cpu / pr_cpu:.0f}x the PR plan's "
        f"CPU; wall time counts the other work on this machine, CPU time does not)"
    )
    for label, (secs, cpu) in heal.items():
        verdict = "met" if secs < 10.0 else "MISSED"
        print(
            f"target: full self-heal pass ({label}) over {args.specs} deployments, nothing "
            f"to do, < 10 s: {verdict} ({secs:.2f} s wall, {cpu:.2f} s CPU; "
            f"{cpu / pr_cpu:.0f}x the PR plan's CPU)"
        )
    for label, secs, cpu in (("warm", pr_s, pr_cpu), ("via CLI", cli_s, cli_cpu)):
        verdict = "met" if secs < 3.0 else "MISSED"
        print(f"target: PR plan < 3 s ({label}): {verdict} ({secs:.2f} s wall, {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
