"""scripts/refresh_prices.py on small offer files in the AWS Price List bulk format.

The fixture files have the bulk format's shape (``publicationDate``, ``products`` by sku
with ``productFamily`` and ``attributes``, ``terms.OnDemand`` by sku and offer term with
``priceDimensions`` of ``pricePerUnit.USD`` and tiers by ``beginRange``), cut down to the
products the rules read plus decoys they must skip. No network.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reconciler.engine.cost import parse_prices

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "refresh_prices.py"
_spec = importlib.util.spec_from_file_location("refresh_prices", SCRIPT)
refresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh)


def _offer(service: str, date: str, products: list[tuple[str, dict, list[tuple[str, str]]]]):
    """An offer file: products as (family, attributes, [(beginRange, USD), ...])."""
    doc = {
        "formatVersion": "v1.0",
        "offerCode": service,
        "publicationDate": f"{date}T00:00:00Z",
        "products": {},
        "terms": {"OnDemand": {}},
    }
    for i, (family, attrs, tiers) in enumerate(products):
        sku = f"{service[:4].upper()}SKU{i:04d}"
        doc["products"][sku] = {"sku": sku, "productFamily": family, "attributes": attrs}
        dims = {
            f"{sku}.JRTCKXETXF.{j}": {
                "rateCode": f"{sku}.JRTCKXETXF.{j}",
                "unit": "Hrs",
                "beginRange": begin,
                "endRange": "Inf",
                "pricePerUnit": {"USD": usd},
            }
            for j, (begin, usd) in enumerate(tiers)
        }
        doc["terms"]["OnDemand"][sku] = {
            f"{sku}.JRTCKXETXF": {"offerTermCode": "JRTCKXETXF", "priceDimensions": dims}
        }
    return doc


def _region(folder: Path, region: str, m5: str, date: str = "2026-11-20") -> Path:
    folder.mkdir(parents=True)
    sm = [
        (
            "ML Instance",
            {"regionCode": region, "instanceName": "ml.m5.large", "component": "Hosting"},
            [("0", m5)],
        ),
        (
            "ML Instance",
            {"regionCode": region, "instanceName": "ml.g5.xlarge", "component": "Hosting"},
            [("0", "1.4080000000")],
        ),
        (
            "ML Instance",
            {"regionCode": region, "instanceName": "ml.m5.large", "component": "Processing"},
            [("0", m5)],
        ),
        # decoys: training prices, a notebook, a free-tier-only product
        (
            "ML Instance",
            {"regionCode": region, "instanceName": "ml.m5.large", "component": "Training"},
            [("0", "9.99")],
        ),
        (
            "ML Instance",
            {"regionCode": region, "instanceName": "ml.t3.medium", "component": "Notebook"},
            [("0", "0.05")],
        ),
        (
            "Serverless",
            {"regionCode": region, "usagetype": "USE1-ServerlessInf:Mem-2GB"},
            [("0", "0.0000400000")],
        ),
    ]
    cw = [
        (
            "Alarm",
            {"usagetype": "USE1-CW:AlarmMonitorUsage", "alarmType": "Standard"},
            [("0", "0"), ("10", "0.1000000000")],  # the first 10 are free: skipped
        ),
        ("Alarm", {"usagetype": "USE1-CW:HighResAlarmMonitorUsage"}, [("0", "0.30")]),
    ]
    events = [("Scheduler", {"usagetype": "USE1-Scheduler-Invocation"}, [("0", "0.0000010")])]
    kms = [("Encryption Key", {"usagetype": "USE1-KMS-Keys"}, [("0", "1.00")])]
    s3 = [
        (
            "Storage",
            {"usagetype": "USE1-TimedStorage-ByteHrs", "volumeType": "Standard"},
            [("0", "0.023"), ("51200", "0.022")],
        ),
        (
            "API Request",
            {"usagetype": "USE1-Requests-Tier1", "group": "S3-API-Tier1"},
            [("0", "0.000005")],
        ),
    ]
    for service, products in (
        ("AmazonSageMaker", sm),
        ("AmazonCloudWatch", cw),
        ("AWSEvents", events),
        ("awskms", kms),
        ("AmazonS3", s3),
    ):
        (folder / f"{service}.json").write_text(json.dumps(_offer(service, date, products)))
    return folder


def test_snapshot_from_bulk_files(tmp_path):
    a = _region(tmp_path / "a", "us-east-1", "0.1150000000", "2026-11-20")
    b = _region(tmp_path / "b", "eu-west-1", "0.1280000000", "2026-11-18")
    out = tmp_path / "aws.json"
    assert refresh.main(["--offers", str(a), "--offers", str(b), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    prices = parse_prices(doc)  # what the estimate reads accepts what the script writes
    assert prices.publication_date == "2026-11-18"  # the oldest file's date
    eu = prices.regions["eu-west-1"]
    assert eu["sagemaker_hosting"] == {"ml.g5.xlarge": 1.408, "ml.m5.large": 0.128}
    assert eu["sagemaker_processing"] == {"ml.m5.large": 0.128}
    assert eu["sagemaker_serverless"]["gb_second"] == pytest.approx(0.00002)
    assert eu["cloudwatch_alarm"] == {"standard_month": 0.1, "high_resolution_month": 0.3}
    assert eu["s3"]["storage_gb_month"] == 0.023
    assert prices.regions["us-east-1"]["sagemaker_hosting"]["ml.m5.large"] == 0.115


def test_a_missing_price_stops_the_script(tmp_path, capsys):
    a = _region(tmp_path / "a", "us-east-1", "0.115")
    kms = json.loads((a / "awskms.json").read_text())
    kms["products"] = {}
    (a / "awskms.json").write_text(json.dumps(kms))
    out = tmp_path / "aws.json"
    assert refresh.main(["--offers", str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "us-east-1" in err and "kms_key.key_month" in err
    assert not out.exists()
