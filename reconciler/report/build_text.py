"""Writers for ``modelops build``: one result line per deployment, then the summary.

A row is ``{"deployment", "status": "built"|"reused"|"failed", "seconds", "artifact"
(the Artifact's dict) | "error"}``.
"""

from __future__ import annotations


def row_text(row: dict) -> str:
    """The result line of one built or reused Bento (plus the image note when it says
    more than "not built without --image"), for stdout; ``""`` for a failed row."""
    if row["status"] == "failed":
        return ""
    art = row.get("artifact") or {}
    edge = art.get("edge")
    if edge:  # an edge bundle (docs/edge.md): no Bento, no image
        text = (
            f"{row['deployment']}: {row['status']} edge bundle {edge['bundle']} "
            f"({row['seconds']} s); model.onnx {edge['size_bytes']} bytes, p99 "
            f"{edge['p99_ms']} ms, parity max abs diff {edge['max_abs_diff']:.2g}\n"
        )
        return text + "".join(f"  {note}\n" for note in edge.get("notes") or [])
    image = f"{art['image']} ({'built' if art.get('image_built') else 'not built'})"
    text = (
        f"{row['deployment']}: {row['status']} {art['bento_tag']} "
        f"({row['seconds']} s); image {image}\n"
    )
    note = art.get("image_note", "")
    if note and not note.endswith("without --image)"):
        text += f"  {note}\n"
    return text


def row_failure(row: dict) -> str:
    """The line of a failed build (for stderr); ``""`` for a built or reused row."""
    if row["status"] != "failed":
        return ""
    return f"{row['deployment']}: failed ({row['seconds']} s): {row['error']}\n"


def summary(rows: list[dict], removed: list[str], env: str) -> str:
    """Counts of built, reused and failed builds, and the Bentos garbage-collected."""
    built = sum(r["status"] == "built" for r in rows)
    reused = sum(r["status"] == "reused" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    text = (
        f"build --env {env}: {built} built, {reused} reused (unchanged inputs), {failed} failed\n"
    )
    if removed:
        text += f"garbage-collected {len(removed)} Bento(s): {', '.join(removed)}\n"
    return text
