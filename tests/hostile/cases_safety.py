"""Hostile inputs of issue 16 (safety): paths out of the repository, retraining commands
the forbidden-forms list let through, an admin role in another case, a trailing newline
in a patterned value, and guard settings of the wrong type or range.

Guards read from the merge base and removed overlays need two Git revisions and are in
``tests/flow/test_plan_guards_from_base.py``; kills during apply in ``tests/faults/``.
"""

from __future__ import annotations

from hostile.base import CONFIG, CONFIG_TEXT, DIABETES, FRAUD, POLICY_PROD, VALIDATE_FRAUD, edit
from hostile.case import Case

SINK = "sink: .modelops/capture"
OUT_PATHS = [
    (SINK, "sink: ../somewhere", "spec.monitoring.capture.sink"),
    (SINK, "sink: /tmp/modelops-capture", "spec.monitoring.capture.sink"),
    (SINK, "sink: .modelops/../../x", "spec.monitoring.capture.sink"),
    (
        "reference: examples/fraud/reference.parquet",
        "reference: ../ref.parquet",
        "spec.monitoring.reference",
    ),
    (
        "reference: examples/fraud/reference.parquet",
        "reference: /etc/passwd",
        "spec.monitoring.reference",
    ),
    ("holdout: examples/fraud/holdout.parquet", "holdout: /etc/shadow", "spec.retraining.holdout"),
    (
        "holdout: examples/fraud/holdout.parquet",
        "holdout: examples/../../../h.parquet",
        "spec.retraining.holdout",
    ),
]
COMMAND = 'command: ["python", "examples/train.py", "fraud"]'
INLINE = [
    '["python", "-I", "-c", "import os"]',
    '["python", "-Ic", "import os"]',
    '["python3.11", "-c", "import os"]',
    '["/usr/bin/python3", "-c", "import os"]',
    '["perl", "-E", "system(1)"]',
    '["node", "-p", "1"]',
    '["ruby", "-eexec(1)"]',
    '["python", "-"]',
    '["env", "python", "examples/train.py"]',
    '["python", "/tmp/train.py"]',
]
ROLE = "instance_type: ml.m5.large"
ROLES = ["role/administratoraccess", "role/ADMINISTRATORACCESS", "role/Admin/x", "role/poweruser"]
BAD_GUARDS = ["max_delete_share: 7", 'max_delete_share: "0.5"', "max_delete_share: -1"]
BAD_GUARDS += ["max_delete_share: yes", "protected_environments: prod"]
# every row of the guard table (core/config.GUARDS): a value that would compare wrongly
BAD_GUARDS += ["stalled_after: 0", "stalled_after: 1.5", "guard_reviewers: alice"]
BAD_GUARDS += ["guard_reviewers: ['-alice']", "guard_reviewers: [{login: a}]"]


def cases() -> list[Case]:
    """Every safety case."""
    out = [
        Case(
            name=f"path-out-of-repo-{i}",
            klass="path-confinement",
            files={FRAUD: edit(FRAUD, old, new)},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=(field, "leaves the repository"),
        )
        for i, (old, new, field) in enumerate(OUT_PATHS)
    ]
    out += [
        Case(
            name=f"retraining-inline-{i}",
            klass="retraining-allowlist",
            files={FRAUD: edit(FRAUD, COMMAND, f"command: {argv}")},
            argv=POLICY_PROD,
            exit=1,
            contains=("MDL-022",),
        )
        for i, argv in enumerate(INLINE)
    ]
    out += [
        Case(
            name=f"admin-role-case-{i}",
            klass="role-case",
            files={
                DIABETES: edit(
                    DIABETES,
                    ROLE,
                    f"{ROLE}\n    service_account: "
                    f'{{role_arn: "arn:aws:iam::123456789012:{role}"}}',
                )
            },
            argv=POLICY_PROD,
            exit=1,
            contains=("MDL-021",),
        )
        for i, role in enumerate(ROLES)
    ]
    out += [
        Case(
            name="name-trailing-newline",
            klass="pattern-whole-value",
            files={FRAUD: edit(FRAUD, "name: fraud-detector", 'name: "fraud-detector\\n"')},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("metadata.name",),
        ),
        Case(
            name="owner-trailing-newline",
            klass="pattern-whole-value",
            files={
                FRAUD: edit(
                    FRAUD,
                    "owner: payments-risk@example.com",
                    'owner: "payments-risk@example.com\\n"',
                )
            },
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("metadata.owner",),
        ),
    ]
    out += [
        Case(
            name=f"guard-setting-{i}",
            klass="guard-setting",
            files={CONFIG: CONFIG_TEXT + f"{value}\n"},
            argv=POLICY_PROD,
            exit=2,
            positioned=False,
            contains=(CONFIG, value.split(":")[0]),
        )
        for i, value in enumerate(BAD_GUARDS)
    ]
    return out
