"""Hostile YAML: duplicate keys, YAML 1.1/1.2 disagreements, alias bombs, encodings,
document shapes, in specs and in every side file modelops reads (one YAML reader)."""

from __future__ import annotations

import re

from hostile.base import (
    CONFIG,
    CONFIG_TEXT,
    FRAUD,
    ORGANIZATION,
    POLICY_PROD,
    VALIDATE_FRAUD,
    WAIVERS,
    bomb,
    edit,
    text,
)
from hostile.case import Case

_KEY_LINE = re.compile(r"^(\s*)([a-z_]+):")
# plain scalars that YAML 1.1 (PyYAML) and 1.2 (kubectl, Argo CD) read differently
YAML11_FORMS = [
    "0755",
    "08",
    "1:30",
    "1_000",
    "0b11",
    "0o17",
    "7e3",
    "1.5E3",
    "no",
    "on",
    "off",
    "yes",
]
# fields whose example value is replaced by each form
YAML11_FIELDS = {
    "workers: 2": "spec.serving.workers",
    "max_batch_size: 64": "spec.serving.batching.max_batch_size",
    "cost-center: cc-1234": "metadata.labels.cost-center",
}


def _duplicate_keys() -> list[Case]:
    """Every other block-mapping key line of the fraud spec written twice."""
    lines = text(FRAUD).splitlines(keepends=True)
    out = []
    keys = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    for index in keys[::2]:
        line = lines[index]
        match = _KEY_LINE.match(line)
        dup = [*lines[: index + 1], line, *lines[index + 1 :]]
        out.append(
            Case(
                name=f"duplicate-key-line-{index + 1}-{match.group(2)}",
                klass="yaml-duplicate-key",
                files={FRAUD: "".join(dup)},
                argv=VALIDATE_FRAUD,
                exit=1,
                contains=(f"{FRAUD}:{index + 2}:", f"duplicate key '{match.group(2)}'"),
            )
        )
    return out


def _yaml11() -> list[Case]:
    out = []
    for old, field in YAML11_FIELDS.items():
        key = old.split(":")[0]
        for form in YAML11_FORMS:
            out.append(
                Case(
                    name=f"yaml11-{key}-{form}",
                    klass="yaml-1.1-vs-1.2",
                    files={FRAUD: edit(FRAUD, old, f"{key}: {form}")},
                    argv=VALIDATE_FRAUD,
                    exit=1,
                    contains=(field, "YAML 1.1", "quoted"),
                )
            )
    return out


def _merge_keys() -> list[Case]:
    """A '<<' merge followed by an explicit override is valid YAML, not a duplicate."""
    variants = {
        "limits-over-requests": "requests: &req {cpu: 500m, memory: 1Gi}\n"
        '      limits: {<<: *req, cpu: "2", memory: 2Gi}',
        "override-before-merge": "requests: &req {cpu: 500m, memory: 1Gi}\n"
        '      limits: {cpu: "2", memory: 2Gi, <<: *req}',
        "merge-list": "requests: &req {cpu: 500m, memory: 1Gi}\n"
        '      limits: {<<: [*req], cpu: "2", memory: 2Gi}',
    }
    old = 'requests: {cpu: 500m, memory: 1Gi}\n      limits: {cpu: "2", memory: 2Gi}'
    return [
        Case(
            name=f"merge-{name}",
            klass="yaml-merge-override",
            files={FRAUD: edit(FRAUD, old, new)},
            argv=VALIDATE_FRAUD,
            exit=0,
            positioned=False,
            contains=("ok",),
        )
        for name, new in variants.items()
    ]


def _shapes() -> list[Case]:
    spec = text(FRAUD)
    raw: dict[str, tuple[str | bytes, str]] = {
        "invalid-utf8": (
            spec.encode().replace(b"payments-risk@", b"payments-\xff\xfe@", 1),
            "UTF-8",
        ),
        "latin1": (spec.replace("30 features", "30 caractéristiques").encode("latin-1"), "UTF-8"),
        "tab-indent": (
            spec.replace("  name: fraud-detector", "\tname: fraud-detector"),
            "YAML forbids tabs for indentation; use spaces",
        ),
        "tab-after-dash": (
            spec.replace("    - name: FEATURE_STORE_TOKEN", "    -\tname: FEATURE_STORE_TOKEN", 1),
            "YAML forbids tabs for indentation",
        ),
        "two-documents": (spec + "---\napiVersion: modelops/v1alpha1\n", "YAML"),
        "empty": ("", "empty"),
        "only-comment": ("# nothing here\n", "empty"),
        "a-list": ("- a\n- b\n", "list"),
        "a-scalar": ("fraud-detector\n", "str"),
        "bool-key": (
            spec.replace("kind: ModelDeployment", "kind: ModelDeployment\nyes: 1"),
            "bool",
        ),
        "int-key": (spec.replace("kind: ModelDeployment", "kind: ModelDeployment\n1: one"), "int"),
        "null-key": (
            spec.replace("kind: ModelDeployment", "kind: ModelDeployment\n~: one"),
            "quote it",
        ),
        "unclosed-flow": (spec.replace("[10, 50, 100]", "[10, 50, 100"), "YAML syntax error"),
        "bad-date": (spec.replace('version: "1.0.0"', "version: 2027-02-30"), "timestamp"),
        "python-tag": (
            spec.replace("mode: realtime", "mode: !!python/object/apply:os.system [id]"),
            "not allowed",
        ),
    }
    return [
        Case(
            name=f"shape-{name}",
            klass="yaml-shape",
            files={FRAUD: body},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=(needle,),
        )
        for name, (body, needle) in raw.items()
    ]


def _bombs() -> list[Case]:
    spec = text(FRAUD)
    out = [
        Case(
            name=f"alias-bomb-spec-{depth}x{width}",
            klass="yaml-alias-bomb",
            files={
                FRAUD: spec.replace("spec:\n", f"x-bomb:\n{bomb(depth, width, '  ')}spec:\n", 1)
            },
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("through YAML aliases",),
        )
        for depth, width in ((9, 6), (12, 4), (6, 10))
    ]
    waivers = text(WAIVERS) + "x-bomb:\n" + bomb(indent="  ")
    out.append(
        Case(
            "alias-bomb-waivers",
            "yaml-alias-bomb",
            {WAIVERS: waivers},
            POLICY_PROD,
            1,
            contains=(WAIVERS, "through YAML aliases"),
        )
    )
    org = text(ORGANIZATION) + "x-bomb:\n" + bomb(indent="  ")
    out.append(
        Case(
            "alias-bomb-organization",
            "yaml-alias-bomb",
            {ORGANIZATION: org},
            POLICY_PROD,
            1,
            contains=(ORGANIZATION, "through YAML aliases"),
        )
    )
    out.append(
        Case(
            "alias-bomb-config",
            "yaml-alias-bomb",
            {CONFIG: CONFIG_TEXT + bomb()},
            ("validate",),
            2,
            contains=(CONFIG, "through YAML aliases"),
        )
    )
    rego = "policies/auth_required.rego"
    meta = "".join(f"# {line}\n" for line in bomb().splitlines())
    out.append(
        Case(
            "alias-bomb-policy-metadata",
            "yaml-alias-bomb",
            {rego: edit(rego, "# METADATA\n", "# METADATA\n" + meta)},
            POLICY_PROD,
            1,
            contains=(rego, "through YAML aliases"),
        )
    )
    return out


def _side_files() -> list[Case]:
    """Duplicate keys and YAML 1.1 values in the files beside the specs."""
    out = []
    for key in ("state_dir", "specs", "policies", "max_delete_share"):
        value = {"max_delete_share": "0.5"}.get(key, ".modelops" if key == "state_dir" else key)
        out.append(
            Case(
                f"config-duplicate-{key}",
                "side-file-duplicate-key",
                {CONFIG: f"{key}: {value}\nenvironments: [dev, staging, prod]\n{key}: {value}\n"},
                ("validate",),
                2,
                contains=(f"{CONFIG}:3:1", "duplicate key"),
            )
        )
    for form in ("0755", "1:30", "1_000", "no"):
        out.append(
            Case(
                f"config-yaml11-{form}",
                "yaml-1.1-vs-1.2",
                {CONFIG: f"state_dir: .modelops\nmax_delete_share: {form}\n"},
                ("validate",),
                2,
                contains=(CONFIG, "YAML 1.1"),
            )
        )
    entry = (
        "  - policy: MDL-024\n    deployment: fraud-detector\n"
        "    deployment: diabetes-progression\n"
        "    reason: r\n    approver: a@example.com\n    ticket: T-1\n    expires: 2099-01-01\n"
    )
    out.append(
        Case(
            "waivers-duplicate-deployment",
            "side-file-duplicate-key",
            {WAIVERS: text(WAIVERS).replace("waivers: []\n", "waivers:\n" + entry)},
            POLICY_PROD,
            1,
            contains=(WAIVERS, "duplicate key 'deployment'"),
        )
    )
    out.append(
        Case(
            "waivers-duplicate-top",
            "side-file-duplicate-key",
            {WAIVERS: text(WAIVERS) + "waivers: []\n"},
            POLICY_PROD,
            1,
            contains=(WAIVERS, "duplicate key 'waivers'"),
        )
    )
    org = text(ORGANIZATION)
    out.append(
        Case(
            "organization-duplicate-key",
            "side-file-duplicate-key",
            {
                ORGANIZATION: org.replace(
                    "  production_environments: [prod]\n",
                    "  production_environments: [prod]\n  production_environments: []\n",
                )
            },
            POLICY_PROD,
            1,
            contains=(ORGANIZATION, "duplicate key 'production_environments'"),
        )
    )
    for rego, key in (
        ("policies/auth_required.rego", "enforcement"),
        ("policies/prod_monitoring.rego", "severity"),
        ("policies/resources_set.rego", "id"),
    ):
        body = text(rego)
        match = re.search(rf"^#   {key}: .*\n", body, re.M)
        assert match, (rego, key)
        dup = body[: match.end()] + f"#   {key}: advisory\n" + body[match.end() :]
        out.append(
            Case(
                f"policy-metadata-duplicate-{key}",
                "side-file-duplicate-key",
                {rego: dup},
                POLICY_PROD,
                1,
                contains=(rego, f"duplicate key '{key}'"),
            )
        )
    return out


def cases() -> list[Case]:
    """Every YAML case."""
    return [*_duplicate_keys(), *_yaml11(), *_merge_keys(), *_shapes(), *_bombs(), *_side_files()]
