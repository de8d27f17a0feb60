"""Rebuild the price snapshot (reconciler/engine/prices/aws.json) from AWS Price List bulk files.

AWS publishes one offer file per service and region (the Price List Bulk API):

    https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/<service>/current/<region>/index.json

for the services AmazonSageMaker, AmazonCloudWatch, AWSEvents (EventBridge Scheduler),
awskms and AmazonS3. Each is JSON: ``publicationDate``, ``products`` (sku -> {sku,
productFamily, attributes}) and ``terms.OnDemand`` (sku -> offer term -> priceDimensions
-> {unit, beginRange, endRange, pricePerUnit: {USD}}). Download them (``curl -o``) into one
directory per region, named ``<service>.json``, then:

    python scripts/refresh_prices.py --offers DIR/us-east-1 --offers DIR/eu-west-1 \\
        [--out reconciler/engine/prices/aws.json]

The rules that pick a price from a file are :data:`RULES` (one per snapshot key); where
tiers exist, the first tier with a price above zero is taken (the free tier is left out:
an estimate is for a workload, not an account). A price a rule does not find stops the
script with the rule and the region named: it never writes a zero for a price it did not
read. The snapshot's ``publication_date`` is the oldest ``publicationDate`` of the files.
No network access: the script only reads the files given (docs/cost.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "reconciler" / "engine" / "prices" / "aws.json"


class RefreshError(Exception):
    """A file that cannot be read or a price a rule did not find."""


def _on_demand(offer: dict, sku: str) -> list[dict]:
    """The priceDimensions of a product's on-demand terms, lowest ``beginRange`` first."""
    dims: list[dict] = []
    for term in ((offer.get("terms") or {}).get("OnDemand") or {}).get(sku, {}).values():
        dims.extend((term.get("priceDimensions") or {}).values())
    return sorted(dims, key=lambda d: float(d.get("beginRange", 0) or 0))


def _first_paid(offer: dict, sku: str) -> float | None:
    """USD per unit of the first tier with a price above zero; ``None`` when none."""
    for dim in _on_demand(offer, sku):
        usd = float((dim.get("pricePerUnit") or {}).get("USD", "0") or 0)
        if usd > 0:
            return usd
    return None


def _products(offer: dict, family: str | None = None, **attrs: str):
    """(sku, attributes) of the products whose attributes match the given regexes."""
    for sku, product in (offer.get("products") or {}).items():
        if family is not None and product.get("productFamily") != family:
            continue
        a = product.get("attributes") or {}
        if all(re.fullmatch(rx, str(a.get(k, ""))) for k, rx in attrs.items()):
            yield sku, a


def instance_prices(offer: dict, component: str) -> dict[str, float]:
    """SageMaker USD per instance-hour by ``instanceName`` for a component (``Hosting``,
    ``Processing``), products of family ``ML Instance``."""
    out: dict[str, float] = {}
    for sku, a in _products(offer, "ML Instance", component=component):
        name = a.get("instanceName", "")
        price = _first_paid(offer, sku)
        if re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", name) and price is not None:
            out[name] = price
    return dict(sorted(out.items()))


def serverless_gb_second(offer: dict) -> float:
    """SageMaker Serverless Inference USD per GB-second: the per-second price of a memory
    size (usage type ``...ServerlessInf:Mem-<N>GB``) divided by N (the prices are linear)."""
    rates = []
    for sku, a in _products(offer, usagetype=r".*ServerlessInf.*Mem-[0-9]+GB.*"):
        gb = int(re.search(r"Mem-([0-9]+)GB", a["usagetype"]).group(1))
        price = _first_paid(offer, sku)
        if price is not None and gb:
            rates.append(price / gb)
    if not rates:
        raise RefreshError("no SageMaker Serverless Inference (ServerlessInf Mem-<N>GB) price")
    return min(rates)


def _one(offer: dict, what: str, **match: str) -> float:
    family = match.pop("family", None)
    for sku, _a in _products(offer, family, **match):
        price = _first_paid(offer, sku)
        if price is not None:
            return price
    raise RefreshError(f"no price for {what} (rule {family} {match})")


# Snapshot section and key -> (service file, how to read it).
RULES = {
    ("cloudwatch_alarm", "standard_month"): (
        "AmazonCloudWatch",
        {"family": "Alarm", "usagetype": r".*AlarmMonitorUsage", "alarmType": "Standard"},
    ),
    ("cloudwatch_alarm", "high_resolution_month"): (
        "AmazonCloudWatch",
        {"family": "Alarm", "usagetype": r".*HighResAlarmMonitorUsage"},
    ),
    ("eventbridge_scheduler", "invocation"): (
        "AWSEvents",
        {"usagetype": r".*Scheduler-Invocation.*"},
    ),
    ("kms_key", "key_month"): ("awskms", {"usagetype": r".*KMS-Keys"}),
    ("s3", "storage_gb_month"): (
        "AmazonS3",
        {"family": "Storage", "volumeType": "Standard", "usagetype": r".*TimedStorage-ByteHrs"},
    ),
    ("s3", "put_request"): (
        "AmazonS3",
        {"family": "API Request", "group": "S3-API-Tier1", "usagetype": r".*Requests-Tier1"},
    ),
}


def read_offer(path: Path) -> dict:
    """One offer file.

    Raises:
        RefreshError: unreadable, not JSON, or without ``products`` and ``terms``.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RefreshError(f"{path}: not a readable JSON offer file ({exc})") from None
    if not isinstance(doc, dict) or "products" not in doc or "terms" not in doc:
        raise RefreshError(f"{path}: not an offer file (no products/terms)")
    return doc


def region_prices(folder: Path) -> tuple[str, dict, str]:
    """(region, price sections, publicationDate) from one region's offer files.

    Raises:
        RefreshError: a missing file or a price not found.
    """
    offers = {}
    for service in ("AmazonSageMaker", "AmazonCloudWatch", "AWSEvents", "awskms", "AmazonS3"):
        offers[service] = read_offer(folder / f"{service}.json")
    sm = offers["AmazonSageMaker"]
    regions = {a.get("regionCode") for _s, a in _products(sm) if a.get("regionCode")}
    if len(regions) != 1:
        raise RefreshError(f"{folder}: expected the offer file of one region, found {regions}")
    region = regions.pop()
    hosting = instance_prices(sm, "Hosting")
    processing = instance_prices(sm, "Processing")
    if not hosting or not processing:
        raise RefreshError(f"{region}: no SageMaker Hosting or Processing instance prices")
    sections: dict = {
        "sagemaker_hosting": hosting,
        "sagemaker_processing": processing,
        # Serverless Inference has no per-request fee (compute per ms, data per GB).
        "sagemaker_serverless": {"gb_second": serverless_gb_second(sm), "request": 0.0},
    }
    for (section, key), (service, rule) in RULES.items():
        try:
            price = _one(offers[service], f"{section}.{key}", **dict(rule))
        except RefreshError as exc:
            raise RefreshError(f"{region}: {exc}") from None
        sections.setdefault(section, {})[key] = price
    dates = sorted(str(o.get("publicationDate", ""))[:10] for o in offers.values())
    return region, sections, dates[0]


def build_snapshot(folders: list[Path]) -> dict:
    """The snapshot document (the format :func:`reconciler.engine.cost.parse_prices` reads)."""
    regions, dates = {}, []
    for folder in folders:
        region, sections, date = region_prices(folder)
        regions[region] = sections
        dates.append(date)
    return {
        "schema_version": 1,
        "currency": "USD",
        "publication_date": min(dates),
        "source": "AWS Price List bulk files (offers/v1.0/aws/<service>/current/<region>/"
        "index.json), on-demand prices, read by scripts/refresh_prices.py",
        "regions": dict(sorted(regions.items())),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the snapshot; exit 2 with the reason when a file or price is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        doc = build_snapshot(args.offers)
    except RefreshError as exc:
        print(f"refresh_prices: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(doc['regions'])} region(s), as of {doc['publication_date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
