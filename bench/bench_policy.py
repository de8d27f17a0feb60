"""Benchmark: 1,000 generated specs against the whole policy library.

Prints, side by side in the same run:
  * engine: modelops' engine (worker processes, one compiled bundle each), end to end
    through ``evaluate_deployments`` (includes worker start, compile, result objects,
    waivers, positions), with answer reuse (a policy is evaluated once per distinct value
    of the input paths it reads; the share of reused answers is printed) and without it
    (every policy on every spec: one bundle query per spec), plus per-spec latency
    (p50/p99) of ``PolicyEngine.evaluate`` (no reuse) on one worker;
  * naive: one ``Interpreter.query`` per rule per spec, in-process, no bundle (on a
    sample of NAIVE_SAMPLE specs: each query recompiles the library);
  * regopy's floor (:func:`floor`): one bundle query per spec with one-expression
    policies, 20 (the issue's minimum library) and as many as the library has, on one
    core: the bound for evaluating every policy on every spec.
The machine's load average is printed: other processes on the 2 cores slow every figure.
Target (issue 3): at least 500 specs/s on the 2-core machine.

Run: .venv/bin/python bench/bench_policy.py [N]
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.policy.check import evaluate_deployments  # noqa: E402
from reconciler.policy.engine import PolicyEngine  # noqa: E402
from reconciler.policy.library import load_library  # noqa: E402
from reconciler.policy.waivers import load_waivers  # noqa: E402
from reconciler.spec.loader import load_spec  # noqa: E402
from reconciler.spec.model import Deployment, Spec  # noqa: E402
from reconciler.spec.resolve import deep_merge  # noqa: E402

NAIVE_SAMPLE = 10  # specs for the naive loop (it takes seconds per spec)
FLOOR_SAMPLE = 300  # specs for regopy's floor (in-process, one core)


TEAMS = 16  # teams in the generated organisation


def generate(n: int, seed: int = 7) -> list[Deployment]:
    """``n`` deployments like a real repository's, one per spec, each in one environment.

    Derived from the example specs. Each has its own name, model (uri, sha256, version),
    reference data and training command (its own script). Each belongs to one of 16
    teams, and shares that team's owner, cost-center label, namespace, allowed callers,
    capture sink (``s3://capture-<team>/serving``: modelops writes under
    ``<sink>/<deployment>/<env>/``) and feature-store token secret. Resources, replica
    counts, capture retention, drift threshold and SLO come from a few common values.

    About a third carry at least one violation (public endpoint, too few replicas, a
    foreign registry, a secret value, a short capture retention).
    """
    rng = random.Random(seed)
    bases = [load_spec(p, ROOT) for p in sorted((ROOT / "specs").glob("*.yaml"))]
    sizes = [("250m", "512Mi", "1", "1Gi"), ("500m", "1Gi", "2", "2Gi"), ("2", "4Gi", "4", "8Gi")]
    out = []
    for i in range(n):
        base = rng.choice(bases)
        data = copy.deepcopy(base.data)
        name = f"{base.name}-{i}"
        team = f"team-{rng.randrange(TEAMS):02d}"
        meta = data["metadata"]
        meta.update(name=name, team=team, owner=f"{team}@example.com")
        meta["labels"] = {"cost-center": f"cc-{1000 + int(team[-2:])}"}
        body = data["spec"]
        envs = body.pop("environments")
        env = rng.choice(sorted(envs))
        body = deep_merge(body, envs.get(env) or {})
        model = body["model"]
        model["uri"] = f"s3://models-{team}/{name}/model.joblib"
        model["sha256"] = f"{rng.getrandbits(256):064x}"
        model["version"] = f"1.{rng.randrange(12)}.{rng.randrange(4)}"
        target = body["target"]
        if "namespace" in target:
            target["namespace"] = team
        if "resources" in target:
            req_cpu, req_mem, lim_cpu, lim_mem = rng.choice(sizes)
            target["resources"] = {
                "requests": {"cpu": req_cpu, "memory": req_mem},
                "limits": {"cpu": lim_cpu, "memory": lim_mem},
            }
        if "autoscaling" in target:
            low = rng.choice([2, 2, 3, 4])
            target["autoscaling"].update(min_replicas=low, max_replicas=low * rng.choice([2, 3]))
        if isinstance(body.get("exposure"), dict) and "allowed_namespaces" in body["exposure"]:
            body["exposure"]["allowed_namespaces"] = [team]
        if isinstance(body.get("serving", {}).get("slo"), dict):
            body["serving"]["slo"]["p99_latency_ms"] = rng.choice([100, 200, 300, 500])
        monitoring = body.get("monitoring")
        if isinstance(monitoring, dict):
            monitoring["reference"] = f"s3://features-{team}/{name}/reference.parquet"
            capture = monitoring.get("capture")
            if isinstance(capture, dict):
                capture["sink"] = f"s3://capture-{team}/serving"
                capture["retention_days"] = rng.choice([30, 60, 90, 180])
            if isinstance(monitoring.get("drift"), dict):
                monitoring["drift"]["threshold"] = rng.choice([0.2, 0.25, 0.3])
        retraining = body.get("retraining")
        if isinstance(retraining, dict) and isinstance(retraining.get("command"), list):
            retraining["command"] = ["python", f"train/{name}.py", "--data", f"s3://x/{name}"]
        body["secrets"] = [
            {
                "name": "FEATURE_STORE_TOKEN",
                "from": f"aws-secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:"
                f"secret:{team}-feature-store-token",
            }
        ]
        tweak = rng.random()
        if tweak < 0.07:
            body.setdefault("exposure", {})["public"] = True
        elif tweak < 0.14:
            body["target"].setdefault("autoscaling", {})["min_replicas"] = rng.choice([0, 1, "1"])
        elif tweak < 0.21:
            body["target"]["registry"] = "docker.io/someone"
        elif tweak < 0.28:
            body["secrets"] = [{"name": "DB_PASSWORD", "from": f"hunter{i}"}]
        elif tweak < 0.35:
            body.setdefault("monitoring", {}).setdefault("capture", {})["retention_days"] = 3
        data["spec"] = body
        spec = Spec(f"specs/{name}.yaml", base.path, data, {}, base.digest)
        out.append(Deployment(spec=spec, env=env, data=data))
    return out


def naive(library, deployments) -> tuple[float, list[float]]:
    """One fresh query per rule per spec, in-process: seconds and per-spec latencies."""
    import regopy

    interp = regopy.Interpreter()
    interp.add_data(library.data)
    for p in library.usable:
        interp.add_module(p.file, p.source)
    refs = [f"x := data.{p.package}.deny" for p in library.usable]
    lat = []
    start = time.perf_counter()
    for dep in deployments:
        t = time.perf_counter()
        interp.set_input(dep.policy_input())
        for ref in refs:
            out = interp.query(ref)
            assert out.ok()
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


def floor(data: dict, inputs: list[dict], n_rules: int) -> float:
    """regopy's own floor: specs/s on one core for ``n_rules`` one-expression policies.

    Each policy is ``deny contains {"msg": "m", "path": "p"} if input.environment == "x"``
    in its own package, bundled and read by one query exactly as the engine does
    (``set_input`` plus one bundle query per spec, in-process, no worker, no results). No
    real policy can be cheaper than this, so ``cores x`` this figure bounds any library
    of ``n_rules`` policies on this machine when every policy is evaluated on every spec
    (answer reuse skips most evaluations, so it can go past this bound).
    """
    import regopy

    from reconciler.policy.worker import _query

    interp = regopy.Interpreter()
    interp.add_data(data)
    for i in range(n_rules):
        interp.add_module(
            f"floor{i}.rego",
            f"package floor{i}\n"
            'deny contains {"msg": "m", "path": "p"} if input.environment == "x"\n',
        )
    fields = ", ".join(f'"F{i}": data.floor{i}.deny' for i in range(n_rules))
    bundle = interp.build(f"x := {{{fields}}}", [f"floor{i}/deny" for i in range(n_rules)])
    runner = regopy.Interpreter()
    for doc in inputs[:50]:  # warm-up: the first queries of a bundle run slower
        runner.set_input(doc)
        _query(runner, bundle, None)
    start = time.perf_counter()
    for doc in inputs:
        runner.set_input(doc)
        kind, _value = _query(runner, bundle, None)
        assert kind == "ok"
    return len(inputs) / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pol = ROOT / "policies"
    library = load_library(pol, pol / "organization.yaml", ROOT)
    known = {p.id: p.waivable for p in library.policies if p.id}
    waivers = load_waivers(pol / "waivers.yaml", ROOT, known, dt.date.today())
    deployments = generate(n)
    rules = len(library.usable)

    start = time.perf_counter()
    report = evaluate_deployments(library, waivers, deployments)
    bundled_s = time.perf_counter() - start
    c = report.counts()

    start = time.perf_counter()
    plain = evaluate_deployments(library, waivers, deployments, reuse=False)
    plain_s = time.perf_counter() - start
    assert [r.to_dict() for r in plain.results] == [r.to_dict() for r in report.results]

    with PolicyEngine(library.usable, library.data) as engine:
        engine.evaluate_many([(d.policy_input(fresh=False), d.key) for d in deployments])
        stats = dict(engine.stats)

    with PolicyEngine(library.usable, library.data, workers=1) as engine:
        lat = []
        for dep in deployments:
            t = time.perf_counter()
            engine.evaluate(dep.policy_input(), dep.key)
            lat.append(time.perf_counter() - t)

    # A fresh Interpreter.query recompiles the modules every time (hundreds of ms per
    # query with the whole library here), so the naive loop runs on a sample and its
    # rate is per spec of that sample.
    sample = deployments[: max(1, min(len(deployments), NAIVE_SAMPLE))]
    naive_s, naive_lat = naive(library, sample)
    naive_rate = len(sample) / naive_s

    floor_inputs = [d.policy_input(fresh=False) for d in deployments[:FLOOR_SAMPLE]]
    floors = {k: floor(library.data, floor_inputs, k) for k in sorted({20, rules})}

    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes")
    print("  on the machine slow every figure below)")
    print(
        f"policy bench: {n} specs x {rules} rules "
        f"({c['fail'] + c['warn']} violations, {c['error']} errors)"
    )
    print(f"{'':32}{'specs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'total s':>10}")
    print(f"{'engine (workers, answer reuse)':32}{n / bundled_s:>10.0f}{'':>20}{bundled_s:>10.2f}")
    print(
        f"{'engine, no reuse (1 query/spec)':32}{n / plain_s:>10.0f}"
        f"{pct(lat, 50) * 1e3:>10.2f}{pct(lat, 99) * 1e3:>10.2f}{plain_s:>10.2f}"
    )
    print(
        f"{f'naive (1 query/rule, {len(sample)} specs)':32}{naive_rate:>10.2f}"
        f"{pct(naive_lat, 50) * 1e3:>10.2f}{pct(naive_lat, 99) * 1e3:>10.2f}{naive_s:>10.2f}"
    )
    answers = stats["evaluated"] + stats["reused"]
    print(
        f"answer reuse: {stats['reused']} of {answers} policy answers reused "
        f"({100 * stats['reused'] / max(1, answers):.0f}%), {stats['evaluated']} evaluated "
        f"({stats['evaluated'] / n:.1f} per spec); same results with and without reuse"
    )
    print("  (p50/p99: one spec through PolicyEngine.evaluate, every policy, no reuse)")
    cores = os.cpu_count() or 1
    for k, rate in floors.items():
        print(
            f"regopy floor, {k} one-expression policies: {rate:.0f} specs/s per core, at most "
            f"{rate * cores:.0f} specs/s on {cores} cores (set_input + 1 bundle query per spec)"
        )
    target = 500
    verdict = "meets" if n / bundled_s >= target else "MISSES"
    print(
        f"target >= {target} specs/s end to end: {verdict} ({n / bundled_s:.0f} specs/s with "
        f"reuse, {n / plain_s:.0f} without; "
        f"speed-up over naive x{(n / bundled_s) / naive_rate:.0f})"
    )


if __name__ == "__main__":
    main()
