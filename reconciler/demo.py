"""``make demo``: the main job on the bundled examples, with no cloud and no credentials.

Runs, on this repository (state in ``.modelops/``), the commands a team would run, and
prints each one before it runs:

1. train both example models (deterministic) and check the digests against the committed
   model files the specs pin;
2. ``modelops validate`` and ``modelops policy report``;
3. ``modelops apply --env staging``: validate → police → build the Bentos → serve them
   locally on loopback → smoke test → record in the ledger;
4. a real prediction from the live fraud endpoint, then ``modelops smoke`` (SLO check);
5. ``modelops plan --env prod``: what production would get (rendered offline);
   5b. ``modelops plan --env staging --build examples/edge/fraud-edge.yaml``: one edge
   bundle (ONNX export, parity, size and latency budget; ``docs/edge.md``);
6. a pull request in a throw-away clone: a one-line change between two commits and the
   plan ``modelops plan --base … --head …`` prints for it;
7. the monitoring loop: shifted traffic → ``modelops monitor run`` detects drift →
   ``modelops retrain`` proposes a new model on a Git branch (in the clone); unshifted
   traffic → no drift;
8. ``modelops destroy --env staging`` so that nothing is left running.

Exits non-zero when a step that must succeed fails; the servers are stopped in every case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.rule import Rule

from reconciler.core.digests import file_sha256
from reconciler.monitor.traffic import send_traffic, shifted
from reconciler.runtime.capture import SYNTHETIC_HEADER

ROOT = Path(__file__).resolve().parents[1]
console = Console(highlight=False, soft_wrap=True)
MODELOPS = [sys.executable, "-m", "reconciler"]
EDGE_SPEC = "examples/edge/fraud-edge.yaml"


class DemoError(Exception):
    """A demo step that had to succeed failed."""


def step(title: str) -> None:
    """Print a section rule."""
    console.print()
    console.print(Rule(f"[bold]{title}", align="left"))


def run(
    args: list[str], *, cwd: Path = ROOT, expect: tuple[int, ...] = (0,), show: str = ""
) -> str:
    """Run a command, echo it and its output; raise :class:`DemoError` on an unexpected code."""
    shown = show or " ".join(["modelops", *args[len(MODELOPS) :]] if args[:3] == MODELOPS else args)
    console.print(f"[cyan]$ {shown}[/]")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "COLUMNS": "120"}
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        console.print(out, markup=False)
    console.print(f"[dim](exit {proc.returncode}, {time.perf_counter() - started:.1f} s)[/]")
    if proc.returncode not in expect:
        raise DemoError(f"`{shown}` exited {proc.returncode}, expected {expect}")
    return proc.stdout


def modelops(*args: str, cwd: Path = ROOT, expect: tuple[int, ...] = (0,)) -> str:
    """Run ``modelops ARGS`` in ``cwd``."""
    return run([*MODELOPS, *args], cwd=cwd, expect=expect)


def train_and_check() -> None:
    """Train both models into the state dir and compare them with the committed files.

    Training is deterministic (fixed seed), but a pickle's bytes depend on the
    scikit-learn, numpy and joblib versions (``shared/DESIGN.md``): equal digests are
    reported as such; otherwise the two models are compared by their predictions on the
    whole bundled data set (equal labels; regression outputs equal to float32 rounding,
    relative 1e-5), and the demo stops when those differ.
    """
    import joblib  # heavy: only this step loads models

    sys.path.insert(0, str(ROOT / "examples"))
    from train import bundled  # the example's training script, on sys.path only now

    out = ROOT / ".modelops" / "demo" / "train"
    run([sys.executable, "examples/train.py", "all", "--out", str(out)])
    for model in ("fraud", "diabetes"):
        fresh_path = out / model / "model.joblib"
        committed_path = ROOT / "examples" / model / "model.joblib"
        fresh, committed = file_sha256(fresh_path), file_sha256(committed_path)
        if fresh == committed:
            console.print(f"{model}: trained digest {fresh[:12]}… matches the committed model")
            continue
        data = bundled(model)
        x = data.drop(columns=["target"]).to_numpy()
        # float32 features: a regression's outputs may differ in the last bits of float32
        same = np.allclose(
            joblib.load(fresh_path).predict(x), joblib.load(committed_path).predict(x), rtol=1e-5
        )
        if not same:
            raise DemoError(
                f"{model}: the trained model predicts differently from the committed one"
            )
        console.print(
            f"{model}: trained model predicts as the committed one on all {len(x)} rows "
            f"(digest {fresh[:12]}… vs {committed[:12]}…: the pickle's bytes depend on the "
            "scikit-learn/numpy/joblib versions)"
        )


def predict() -> None:
    """Send the sample request to the live fraud endpoint and print the prediction."""
    record = json.loads((ROOT / ".modelops" / "ledger" / "fraud-detector-staging.json").read_text())
    url = record["outputs"]["url"].rstrip("/") + "/predict"
    body = (ROOT / "examples" / "fraud" / "request.json").read_bytes()
    console.print(f"[cyan]$ curl -s -X POST {url} -d @examples/fraud/request.json[/]")
    # the demo's own request is synthetic: answered, never captured (docs/runtime.md)
    headers = {"Content-Type": "application/json", SYNTHETIC_HEADER: "demo"}
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    console.print(json.dumps(answer), markup=False)


def edge_bundle() -> None:
    """Build the edge bundle of ``examples/edge/fraud-edge.yaml`` (``plan --build``: export,
    parity, budget, bundle, nothing published) and show its manifest."""
    modelops("plan", "--env", "staging", "--build", EDGE_SPEC)
    bundles = sorted((ROOT / ".modelops" / "edge" / "fraud-edge-staging").glob("*.tar.gz"))
    if not bundles:
        raise DemoError("plan --build wrote no edge bundle")
    newest = max(bundles, key=lambda p: p.stat().st_mtime)
    manifest = json.loads((newest.with_suffix("").with_suffix("") / "manifest.json").read_text())
    console.print(f"bundle {newest.relative_to(ROOT)} ({newest.stat().st_size} bytes):")
    for key in ("converter", "quantization", "device", "files"):
        console.print(f"  {key}: {json.dumps(manifest[key], sort_keys=True)}", markup=False)


def make_pr_clone(workdir: Path) -> Path:
    """Clone this repository's HEAD and commit a one-line spec change on top."""
    clone = workdir / "spec-repo"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], show=f"git clone . {clone}")
    spec = clone / "specs" / "fraud-detector.yaml"
    text = spec.read_text()
    spec.write_text(
        text.replace("autoscaling: {min_replicas: 3}", "autoscaling: {min_replicas: 4}")
    )
    git = ["git", "-C", str(clone), "-c", "user.name=Demo", "-c", "user.email=demo@example.com"]
    run([*git, "commit", "--quiet", "-am", "fraud-detector: 4 replicas minimum in prod"])
    run(["git", "-C", str(clone), "diff", "HEAD~1", "--stat"])
    return clone


def labelled_recent_data(clone: Path) -> Path:
    """Commit "labelled traffic from after the shift" to the clone; return the training file.

    Stands in for what a team collects once ground truth arrives: the training rows and
    the holdout rows, both moved by the same deliberate shift as the demo's traffic
    (:func:`reconciler.monitor.traffic.shifted`), labels kept. The spec's retraining
    holdout is pointed at the shifted holdout, so the candidate and the live model are
    judged on data like today's traffic, and no holdout row is ever trained on.
    """
    from sklearn.model_selection import train_test_split  # heavy: only this step needs it

    sys.path.insert(0, str(ROOT / "examples"))
    from train import SEED, bundled  # the example's training script, on sys.path only now

    full = bundled("fraud")
    train_rows, _ = train_test_split(
        full, test_size=0.25, random_state=SEED, stratify=full["target"]
    )
    holdout = pd.read_parquet(clone / "examples" / "fraud" / "holdout.parquet")
    recent = pd.concat([train_rows, shifted(train_rows, seed=11)], ignore_index=True)
    data = clone / "examples" / "fraud"
    recent.to_parquet(data / "recent-training.parquet", index=False)
    shifted(holdout, seed=13).to_parquet(data / "recent-holdout.parquet", index=False)
    spec = clone / "specs" / "fraud-detector.yaml"
    spec.write_text(
        spec.read_text().replace(
            "holdout: examples/fraud/holdout.parquet",
            "holdout: examples/fraud/recent-holdout.parquet",
        )
    )
    git = ["git", "-C", str(clone), "-c", "user.name=Demo", "-c", "user.email=demo@example.com"]
    run(["git", "-C", str(clone), "add", "-A"])
    run([*git, "commit", "--quiet", "-m", "fraud: labelled traffic from after the shift"])
    return data / "recent-training.parquet"


def _traffic(rows, copies: int = 6, seed: int = 3):
    """``copies`` passes over ``rows`` in a fixed random order (a stand-in for live traffic)."""
    stacked = np.tile(rows, (copies, 1))
    return stacked[np.random.default_rng(seed).permutation(len(stacked))]


def monitoring_loop(clone: Path) -> None:
    """Shifted traffic → drift → retraining branch; unshifted traffic → no drift."""

    record = json.loads((ROOT / ".modelops" / "ledger" / "fraud-detector-staging.json").read_text())
    url = record["outputs"]["url"]
    reference = pd.read_parquet(ROOT / "examples" / "fraud" / "reference.parquet")
    capture = ROOT / ".modelops" / "capture" / "fraud-detector" / "staging"
    shutil.rmtree(capture, ignore_errors=True)
    rows = _traffic(shifted(reference, seed=7).to_numpy(dtype="float32"))
    sent = send_traffic(url, rows)
    console.print(f"sent {sent} requests of deliberately shifted traffic to {url}")
    time.sleep(1.5)  # capture is written off the request path
    modelops("monitor", "run", "fraud-detector", "--env", "staging", "--no-retrain", expect=(1,))
    training = labelled_recent_data(clone)
    rel = training.relative_to(clone)
    modelops(
        "retrain", "fraud-detector", "--env", "staging", "--training-data", str(rel), cwd=clone
    )
    branches = run(
        ["git", "-C", str(clone), "for-each-ref", "--format=%(refname:short)",
         "refs/heads/modelops/retrain"]
    ).split()  # fmt: skip
    if not branches:
        raise DemoError("retraining proposed no branch")
    run(["git", "-C", str(clone), "log", "--oneline", "-3", branches[-1]])
    run(["git", "-C", str(clone), "diff", "HEAD", branches[-1], "--", "specs"])
    shutil.rmtree(capture, ignore_errors=True)
    rows = _traffic(reference.to_numpy(dtype="float32"))
    sent = send_traffic(url, rows)
    console.print(f"sent {sent} requests of unshifted traffic (a new capture window)")
    time.sleep(1.5)
    modelops("monitor", "run", "fraud-detector", "--env", "staging", "--no-retrain")


def main() -> int:
    """Run the demo; returns the process exit code."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="modelops-demo-"))
    code = 0
    try:
        step("1. Train the example models (deterministic, seconds)")
        train_and_check()
        step("2. Validate the specs and review the policies")
        modelops("validate")
        modelops("policy", "report")
        step("3. Apply the staging environment: build the Bentos and serve them locally")
        modelops("apply", "--env", "staging")
        modelops("status")
        step("4. A real prediction from the live endpoint, and the SLO check")
        predict()
        modelops("smoke", "fraud-detector", "--env", "staging")
        step("5. What production would get: the prod plan, computed offline")
        modelops("plan", "--env", "prod")
        step("5b. An edge bundle: the fraud model as ONNX, parity proven, size and latency budget")
        edge_bundle()
        step("6. A pull request: plan for a one-line change between two commits")
        clone = make_pr_clone(workdir)
        modelops("plan", "--base", "HEAD~1", "--head", "HEAD", "--env", "prod", cwd=clone)
        step("7. Monitoring: drift on shifted traffic, retraining proposed through Git")
        monitoring_loop(clone)
    except DemoError as exc:
        console.print(f"[red]demo failed: {exc}[/]")
        code = 1
    finally:
        step("8. Clean up: stop the local servers")
        try:
            modelops("destroy", "--env", "staging", "--yes")
        except DemoError as exc:
            console.print(f"[red]{exc}[/]")
            code = code or 1
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"\ndemo finished in {time.perf_counter() - started:.0f} s (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
