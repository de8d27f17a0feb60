"""The applied revision of one deployment, for a job starting in a cluster.

``python -m reconciler.state.applied NAME ENV FILE`` writes the deployment's
``lastAppliedRevision`` (from the ledger: the shared ``MODELOPS_STATE_URL`` state) to
``FILE``: the first init container of a rendered CronJob runs it in the model image, and
the checkout init container then fetches exactly that revision of the spec repository
(``stacks/kubernetes.py``). Reading it when the job starts, rather than writing it into
the manifest, keeps a commit that does not change a deployment from changing its
manifests.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.state.ledger import Ledger

_REVISION = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # a full SHA-1 or SHA-256 commit id


def applied_revision(ledger: Ledger, name: str, env: str) -> str:
    """The commit ``name`` × ``env`` was last applied at (``-dirty`` removed).

    Raises:
        ModelopsError: (exit 2) no record, destroyed, never applied, or a revision that
            is not a commit id (a run outside Git): the message names the deployment.
    """
    record = ledger.get(name, env)
    if record is None or record.destroyed or not record.lastAppliedRevision:
        raise ModelopsError(
            f"{name}-{env} has no applied revision in the ledger {ledger.where(name, env)}: "
            "apply it first (the job checks out the revision it was applied at)"
        )
    revision = record.lastAppliedRevision.removesuffix("-dirty")
    if not _REVISION.fullmatch(revision):
        raise ModelopsError(
            f"{name}-{env} was applied at {revision!r}, not a Git commit id; apply it from "
            "a Git checkout of the spec repository"
        )
    return revision


def main(argv: list[str] | None = None) -> int:
    """``NAME ENV FILE``: write the applied revision to FILE; exit 0, or 2 with a message."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m reconciler.state.applied NAME ENV FILE", file=sys.stderr)
        return 2
    name, env, out = args
    try:
        config = load_config(Path(tempfile.gettempdir()))
        revision = applied_revision(Ledger.of(config), name, env)
        Path(out).write_text(revision + "\n", encoding="utf-8")
    except ModelopsError as exc:
        print(f"modelops: {exc.message}", file=sys.stderr)
        return 2
    print(f"{name}-{env}: applied at {revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
