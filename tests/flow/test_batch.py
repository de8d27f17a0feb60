"""``modelops batch`` on the real fraud model and its real holdout data.

The scoring run is a real ``python -m reconciler`` process; the refusals call the same
entry point in this process (``support.cli.invoke``).
"""

from __future__ import annotations

import pandas as pd
import pytest
from support.cli import invoke, run_cli


def test_scores_holdout_with_the_real_model(spec_repo):
    out = spec_repo / "out" / "scores.parquet"
    proc = run_cli(
        spec_repo, "batch", "fraud-detector", "--env", "prod",
        "--input", "examples/fraud/holdout.parquet", "--output", "out/scores.parquet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "scored 143 row(s)" in proc.stdout
    scores = pd.read_parquet(out)
    holdout = pd.read_parquet(spec_repo / "examples/fraud/holdout.parquet")
    assert len(scores) == len(holdout)
    accuracy = (scores["prediction"].to_numpy() == holdout["target"].to_numpy()).mean()
    assert accuracy > 0.9
    assert ((scores["probability_0"] + scores["probability_1"]) - 1).abs().max() < 1e-6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--input", "examples/fraud/nope.parquet", "--output", "o.csv"], "not found"),
        (["--input", "examples/diabetes/holdout.parquet", "--output", "o.csv"], "lacks"),
        (["--input", "s3://bucket/in.parquet", "--output", "o.csv"], "needs AWS credentials"),
        (["--input", "examples/fraud/holdout.parquet", "--output", "o.txt"], ".parquet or .csv"),
        ([], "needs an input and an output"),
    ],
)
def test_bad_input_is_a_clear_error(spec_repo, args, needle):
    proc = invoke(spec_repo, "batch", "fraud-detector", "--env", "prod", *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tampered_model_is_not_loaded(spec_repo):
    model = spec_repo / "examples/fraud/model.joblib"
    model.write_bytes(model.read_bytes() + b"x")
    proc = invoke(
        spec_repo, "batch", "fraud-detector", "--env", "prod",
        "--input", "examples/fraud/holdout.parquet", "--output", "o.csv",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "digest mismatch" in proc.stderr


def test_model_on_s3_is_fetched_digest_checked_and_scores(spec_repo, fake_s3, monkeypatch):
    """spec.model.uri on S3 (moto's server, a fake): fetched into the cache, checked
    against spec.model.sha256, then scored; other bytes under the key are refused."""
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(spec_repo / "cache"))
    fake_s3.create_bucket(Bucket="models")
    model = (spec_repo / "examples/fraud/model.joblib").read_bytes()
    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=model)
    spec = spec_repo / "specs/fraud-detector.yaml"
    spec.write_text(
        spec.read_text().replace(
            "uri: examples/fraud/model.joblib", "uri: s3://models/fraud/model.joblib"
        )
    )
    args = ["--input", "examples/fraud/holdout.parquet", "--output", "out/s3.csv"]
    proc = invoke(spec_repo, "batch", "fraud-detector", "--env", "prod", *args)
    assert proc.returncode == 0, proc.stderr
    assert "scored 143 row(s)" in proc.stdout

    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=model + b"x")
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(spec_repo / "cache2"))  # nothing cached
    proc = invoke(spec_repo, "batch", "fraud-detector", "--env", "prod", *args)
    assert proc.returncode == 2
    assert "model s3://models/fraud/model.joblib has sha256" in proc.stderr
