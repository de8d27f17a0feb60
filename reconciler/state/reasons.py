"""Condition types, condition reasons and history actions of ledger records, as constants.

Flux's status conventions (``docs/state.md``): a condition has a type, a status
(``True``/``False``/``Unknown``), a CamelCase reason and a message.
"""

from __future__ import annotations

# -- condition types ----------------------------------------------------------------------
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# -- condition reasons --------------------------------------------------------------------
APPLY_SUCCEEDED = "ApplySucceeded"
APPLY_FAILED = "ApplyFailed"
ROLLBACK_SUCCEEDED = "RollbackSucceeded"
RESTORE_FAILED = "RestoreFailed"
RETRIES_EXHAUSTED = "RetriesExhausted"
# throttling, a dropped connection, a stack locked by another update: not the spec's
# fault, so it never counts toward Stalled (reconciler/flow/transient.py)
TRANSIENT_FAILURE = "TransientFailure"

# -- history actions ----------------------------------------------------------------------
APPLY = "apply"
ROLLBACK = "rollback"
DESTROY = "destroy"
MONITOR = "monitor"
QUALITY = "quality"
LABELS = "labels"
RETRAIN = "retrain"
CANARY = "canary"  # a local canary's step (its checks) or its verdict

# -- history results ----------------------------------------------------------------------
SUCCEEDED = "succeeded"
FAILED = "failed"
# a canary's verdict (history result of its last ``canary`` entry)
PROMOTED = "promoted"
ABORTED = "aborted"
