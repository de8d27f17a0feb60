"""Schema patterns match the whole value (issue 16, item 9).

Python's ``$`` also matches before a final newline, so ``^[a-z]...$`` accepted
``"fraud-detector\\n"`` as a name (and the newline then reached stack names, labels and
file paths). The real loader and validator on a copy of the example specs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.config import load_config
from reconciler.spec.repo import load_all


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("name: fraud-detector", 'name: "fraud-detector\\n"', "metadata.name"),
        (
            "owner: payments-risk@example.com",
            'owner: "payments-risk@example.com\\n"',
            "metadata.owner",
        ),
        ("min_replicas: 3}", "min_replicas: 3, max_replicas: 10}", None),  # control: valid
    ],
)
def test_a_trailing_newline_does_not_pass_an_anchored_pattern(spec_repo, old, new, field):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, old, new)
    result = load_all(load_config(spec_repo))
    errors = [d for d in result.errors if d.position.file.endswith("fraud-detector.yaml")]
    if field is None:
        assert errors == [], [str(d) for d in errors]
        return
    assert [d.field for d in errors if d.field == field], [str(d) for d in result.diagnostics]
    assert errors[0].position.line > 0
