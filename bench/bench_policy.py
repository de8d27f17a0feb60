"""Benchmark: 1,000 generated specs against the whole policy library.

Prints, side by side in the same run:
  * bundled: modelops' engine (worker processes, one compiled bundle each, one query per
    spec reading every policy's deny set), end to end through ``evaluate_deployments``
    (includes worker start, compile, result objects, waivers, positions), plus per-spec
    latency (p50/p99) of ``PolicyEngine.evaluate`` on one worker;
  * naive: one ``Interpreter.query`` per rule per spec, in-process, no bundle (on a
    sample of NAIVE_SAMPLE specs: each query recompiles the library);
  * regopy's floor (:func:`floor`): the same protocol with one-expression policies, 20
    (the issue's minimum library) and as many as the library has, on one core.
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


def generate(n: int, seed: int = 7) -> list[Deployment]:
    """``n`` deployments derived from the example specs with random variations.

    About a third carry at least one violation (public endpoint, too few replicas, a
    foreign registry, a secret value, a short capture retention).
    """
    rng = random.Random(seed)
    bases = [load_spec(p, ROOT) for p in sorted((ROOT / "specs").glob("*.yaml"))]
    out = []
    for i in range(n):
        base = rng.choice(bases)
        data = copy.deepcopy(base.data)
        data["metadata"]["name"] = f"{base.name}-{i}"
        body = data["spec"]
        envs = body.pop("environments")
        env = rng.choice(sorted(envs))
        body = deep_merge(body, envs.get(env) or {})
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
        spec = Spec(f"specs/{base.name}-{i}.yaml", base.path, data, {}, base.digest)
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
    of ``n_rules`` policies on this machine.
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
    print(f"{'':28}{'specs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'total s':>10}")
    print(
        f"{'bundled (workers, 1 query)':28}{n / bundled_s:>10.0f}"
        f"{pct(lat, 50) * 1e3:>10.2f}{pct(lat, 99) * 1e3:>10.2f}{bundled_s:>10.2f}"
    )
    print(
        f"{f'naive (1 query/rule, {len(sample)} specs)':28}{naive_rate:>10.2f}"
        f"{pct(naive_lat, 50) * 1e3:>10.2f}{pct(naive_lat, 99) * 1e3:>10.2f}{naive_s:>10.2f}"
    )
    cores = os.cpu_count() or 1
    for k, rate in floors.items():
        print(
            f"regopy floor, {k} one-expression policies: {rate:.0f} specs/s per core, at most "
            f"{rate * cores:.0f} specs/s on {cores} cores (set_input + 1 bundle query per spec)"
        )
    target = 500
    verdict = "meets" if n / bundled_s >= target else "MISSES"
    print(
        f"target >= {target} specs/s end to end: {verdict} ({n / bundled_s:.0f} specs/s; "
        f"speed-up over naive x{(n / bundled_s) / naive_rate:.0f})"
    )


if __name__ == "__main__":
    main()
