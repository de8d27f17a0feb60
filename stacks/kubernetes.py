"""Kubernetes stack: a model served on a cluster (``spec.target.platform: kubernetes``).

``program(dep, image, stable_image=None) -> dict`` (``stacks.common``): Deployment(s),
Service, autoscaler, disruption budget, NetworkPolicy, Ingress only when public;
CronJobs for batch, monitoring and retraining. Resources and the canary split:
``docs/engine.md``.
"""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s

from reconciler.spec.model import Deployment
from stacks.common import (
    BENTO_UID,
    DEFAULT_PORT,
    ENDPOINT_LABEL,
    HEALTH_PATHS,
    LIVENESS_PATH,
    METRICS_PATH,
    READINESS_PATH,
    REQUEST_DURATION_METRIC,
    REQUEST_TOTAL_METRIC,
    STATUS_LABEL,
    ImageRef,
    JobContext,
    StackError,
    canary_weight,
    is_secret_reference,
    job_commands,
    k8s_name,
    label_value,
    recommended_labels,
    reject_fields,
    runtime_env,
    secret_source,
)
from stacks.rollouts import (
    HASH_LABEL,
    ROLLOUTS_API,
    STABLE_URL_ENV,
    argo_managed,
    rollout_note,
    rollout_spec,
    template_name,
    template_spec,
)

RESTRICTED_DATA = frozenset({"pii", "phi", "pci"})
CRONJOB_NAME_LIMIT = 52  # CronJob names: 52 characters (Job name suffix)
INGRESS_CONTROLLER_NAMESPACE = "ingress-nginx"  # admitted by the NetworkPolicy when public
# Prometheus, as the Prometheus Operator runs it: kube-prometheus installs it in the
# namespace "monitoring", and the operator labels every Prometheus pod
# app.kubernetes.io/name=prometheus. The NetworkPolicy admits those pods to the serving port.
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
PROMETHEUS_API = "monitoring.coreos.com/v1"
SCRAPE_INTERVAL = "30s"
# SLO alert rules: rates over 5 minutes (ten scrapes at 30 s), firing after the condition
# held for 5 minutes (10 for the throughput floor, which a quiet minute should not trip).
RULE_WINDOW = "5m"
RULE_FOR = "5m"
THROUGHPUT_RULE_FOR = "10m"
# Scheduled jobs (CronJobs for monitoring, retraining, batch): the deadline of one run when
# the spec gives none (retraining.timeout_s), and how late a missed start may still run.
JOB_DEADLINE_S = 3600
JOB_STARTING_DEADLINE_S = 300
# A job container's requests and limits when spec.target.resources gives none: the
# monitoring job (Evidently on 100k rows took 4 s and well under 1 GiB here, DESIGN.md).
JOB_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}
# The checkout init container: git only.
CHECKOUT_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
WORKSPACE = "/workspace"  # the emptyDir the checkout is written to (read-only for the job)
CHECKOUT_DIR = f"{WORKSPACE}/repo"
GIT_SECRET_DIR = "/etc/modelops-git"  # the deploy key (SSH URLs), mounted read-only
# The applied-revision init container (the model image, which holds modelops): reads the
# deployment's lastAppliedRevision from the shared state into the workspace.
REVISION_FILE = f"{WORKSPACE}/REVISION"
REVISION_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "512Mi"},
}
# The checkout init container's script: fixed text, every value comes from its environment
# (no spec or configuration value is ever put into shell text). A shallow fetch of one
# revision (``git clone --depth 1`` of a commit, which `clone --revision` does only from
# git 2.49): init, add the remote, fetch that revision at depth 1, check it out detached.
# The revision is the one the applied-revision init container wrote, else (no shared
# state) the remote's default branch. A token goes in an HTTP Authorization header
# (GitHub's x-access-token form); a deploy key through GIT_SSH_COMMAND with the secret's
# known_hosts (no trust on first use).
CHECKOUT_SCRIPT = """set -eu
export HOME="$MODELOPS_WORKSPACE/.home"
mkdir -p "$HOME"
revision=HEAD
if [ -f "$MODELOPS_WORKSPACE/REVISION" ]; then revision=$(cat "$MODELOPS_WORKSPACE/REVISION"); fi
git init -q "$MODELOPS_WORKSPACE/repo"
cd "$MODELOPS_WORKSPACE/repo"
git remote add origin "$MODELOPS_SPEC_REPOSITORY"
if [ -n "${MODELOPS_GIT_TOKEN:-}" ]; then
  auth=$(printf 'x-access-token:%s' "$MODELOPS_GIT_TOKEN" | base64 | tr -d '\\n')
  set -- -c "http.extraHeader=Authorization: Basic $auth"
fi
git "$@" fetch -q --depth 1 origin "$revision"
git checkout -q --detach FETCH_HEAD
rm -rf "$HOME"
"""


def _ref(value: str) -> dict:
    """``k8s:<secret>/<key>`` → the secret name and key."""
    body = value[len("k8s:") :]
    secret, _, key = body.partition("/")
    return {"name": secret, "key": key}


def secret_env(dep: Deployment) -> list[dict]:
    """Container ``env`` entries for ``spec.secrets``: always ``secretKeyRef``, never values.

    ``k8s:<secret>/<key>`` references that Secret directly. Any other source
    (``aws-secretsmanager:``, ``aws-ssm:``, ``vault:``) is read from the Secret
    ``<name>-secrets`` under the variable's name, which an external secrets operator
    fills from the source (the references are listed in the Deployment's
    ``modelops.dev/secret-sources`` annotation, :func:`secret_sources`).

    Raises:
        StackError: a ``k8s:`` value that is not a ``k8s:<secret>/<key>`` reference
            (:func:`stacks.common.is_secret_reference`); the value itself is not repeated
            in the message, as it may be the secret.
    """
    out = []
    for i, item in enumerate(dep.get("spec.secrets") or []):
        src = item.get("from")
        if isinstance(src, str) and src.startswith("k8s:"):
            if not is_secret_reference(src):
                raise StackError(
                    f"spec.secrets.{i}.from",
                    "must be k8s:<secret>/<key> with a Kubernetes Secret name and a key, e.g. "
                    "k8s:db-credentials/password (the value is not shown: it is not a "
                    "secret reference)",
                )
            ref = _ref(src)
        else:
            ref = {"name": k8s_name(dep.name, "secrets"), "key": item["name"]}
        out.append({"name": item["name"], "valueFrom": {"secretKeyRef": ref}})
    return out


def secret_sources(dep: Deployment) -> dict[str, str]:
    """``{variable name: source}`` for the ``modelops.dev/secret-sources`` annotation.

    Only secret-store references are written; any other ``from`` value (a literal secret
    pasted into the spec, which MDL-017 blocks at plan and apply) is replaced by
    :data:`stacks.common.NOT_A_SECRET_REFERENCE`, so render output never carries it.
    """
    return {str(s["name"]): secret_source(s.get("from")) for s in dep.get("spec.secrets") or []}


def _resources(dep: Deployment) -> dict:
    out: dict = {}
    for kind in ("requests", "limits"):
        spec = dep.get(f"spec.target.resources.{kind}") or {}
        values = {k: str(spec[k]) for k in ("cpu", "memory") if k in spec}
        if spec.get("gpu"):
            values["nvidia.com/gpu"] = str(spec["gpu"])
        if values:
            out[kind] = values
    return out


def _security(dep: Deployment) -> tuple[dict, dict]:
    """(pod securityContext, container securityContext): restricted by default."""
    sc = dep.get("spec.target.security_context") or {}
    non_root = sc.get("run_as_non_root", True)
    pod = {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": non_root}
    if non_root:
        pod.update({"runAsUser": BENTO_UID, "runAsGroup": BENTO_UID, "fsGroup": BENTO_UID})
    container = {
        "allowPrivilegeEscalation": sc.get("allow_privilege_escalation", False),
        "readOnlyRootFilesystem": sc.get("read_only_root_filesystem", True),
        "privileged": sc.get("privileged", False),
        "runAsNonRoot": non_root,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _pod_spec(dep: Deployment, sa_name: str, container: dict, restart: str | None = None) -> dict:
    pod_sc, _ = _security(dep)
    spec = {
        "serviceAccountName": sa_name,
        "automountServiceAccountToken": bool(
            dep.get("spec.target.service_account.automount_token", False)
        ),
        "securityContext": pod_sc,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if restart:
        spec["restartPolicy"] = restart
    return spec


def _container(dep: Deployment, image: str, name: str, port: int, args=None) -> dict:
    _, c_sc = _security(dep)
    plain = runtime_env(dep, None)
    # The root filesystem is read-only: everything that writes goes to the /tmp emptyDir
    # (BentoML keeps its Prometheus multiprocess directory under BENTOML_HOME; the Bento
    # itself is served from its path in the image).
    plain.update({"HOME": "/tmp", "BENTOML_HOME": "/tmp/bentoml"})
    if args is not None:
        plain["MODELOPS_STATE_DIR"] = "/tmp/modelops"
    env = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    env.extend(secret_env(dep))
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "securityContext": c_sc,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    resources = _resources(dep)
    if resources:
        container["resources"] = resources
    if args is not None:
        container["command"] = args
    else:
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        container["readinessProbe"] = {
            "httpGet": {"path": READINESS_PATH, "port": "http"},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        }
        container["livenessProbe"] = {
            "httpGet": {"path": LIVENESS_PATH, "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        }
    return container


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a canary at ``weight`` percent of ``total`` replicas.

    canary = max(1, round(total × weight / 100)); stable keeps at least one replica, so
    the total grows by one when needed (1 replica at 10 % → 1 stable + 1 canary).
    """
    total = max(total, 1)
    canary = max(1, round(total * weight / 100))
    stable = max(1, total - canary)
    return stable, canary


def program(
    dep: Deployment,
    image: ImageRef,
    stable_image: str | None = None,
    jobs: JobContext | None = None,
) -> dict:
    """Declare the Kubernetes resources of ``dep`` (see the module docstring).

    Args:
        dep: resolved deployment with ``spec.target.platform: kubernetes``.
        image: the image to roll out.
        stable_image: the image the stable Deployment ran at the last apply (``None`` on
            the first rollout); used only during a canary rollout.
        jobs: what the scheduled jobs need to run in the cluster (the spec repository,
            revision, Git credentials reference, shared state URL); ``None``: the jobs get
            no checkout (:func:`_cronjob`).

    Returns:
        Stack outputs: ``namespace``, ``service``, ``url`` (cluster-internal), ``image``,
        ``stable_image``, ``canary_weight`` (percent), ``public_url`` when an Ingress exists.

    Raises:
        StackError: serving.mode serverless, public exposure of pii/phi/pci data,
            bad secret references, batch mode without ``serving.batch.schedule``.
    """
    name = dep.name
    ns = dep.get("spec.target.namespace") or "default"
    port = int(dep.get("spec.target.port") or DEFAULT_PORT)
    mode = dep.get("spec.serving.mode", "realtime")
    outputs: dict = {"namespace": ns, "image": image.ref}
    reject_fields(
        dep,
        {
            "spec.target.instance_type": "it names a SageMaker instance type; size pods with "
            "target.resources",
            "spec.target.serverless": "it configures platform aws-serverless",
        },
    )
    if dep.get("spec.target.rollout.strategy") == "blue-green":
        raise StackError(
            "spec.target.rollout.strategy",
            "blue-green is not available on kubernetes; use canary (stable and canary "
            "Deployments behind one Service) or rolling",
        )
    if mode == "serverless":
        raise StackError(
            "spec.serving.mode",
            "serverless serving runs on platform aws-serverless or local; on kubernetes use "
            "realtime (with autoscaling) or batch",
        )

    def meta(res_name: str, component: str, extra: dict | None = None) -> dict:
        labels = recommended_labels(dep, image, component)
        m = {"name": res_name, "namespace": ns, "labels": labels}
        if extra:
            m["annotations"] = extra
        return m

    sa_name = dep.get("spec.target.service_account.name") or name
    sa_meta = meta(sa_name, "serving")
    role_arn = dep.get("spec.target.service_account.role_arn")
    if role_arn:
        sa_meta["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    k8s.core.v1.ServiceAccount(
        name,
        metadata=sa_meta,
        automount_service_account_token=bool(
            dep.get("spec.target.service_account.automount_token", False)
        ),
    )

    sources = secret_sources(dep)
    annotations = {"modelops.dev/bento-tag": image.bento_tag or "unbuilt"}
    if sources:
        annotations["modelops.dev/secret-sources"] = json.dumps(sources, sort_keys=True)

    if mode == "batch":
        batch = dep.get("spec.serving.batch") or {}
        if not batch.get("schedule"):
            raise StackError(
                "spec.serving.batch.schedule",
                "batch mode needs serving.batch.schedule (a 5-field cron, e.g. '0 2 * * *')",
            )
        argv = ["modelops", "batch", name, "--env", dep.env]
        for key in ("input", "output"):
            if batch.get(key):
                argv += [f"--{key}", str(batch[key])]
        _cronjob(dep, image, sa_name, "batch", batch["schedule"], argv, meta, ns, jobs)
    else:
        _realtime(dep, image, stable_image, sa_name, port, meta, annotations, outputs)

    for kind, (schedule, argv) in sorted(job_commands(dep).items()):
        _cronjob(dep, image, sa_name, kind, schedule, argv, meta, ns, jobs)
    return outputs


def _realtime(dep, image, stable_image, sa_name, port, meta, annotations, outputs) -> None:
    name = dep.name
    ns = dep.get("spec.target.namespace") or "default"
    auto = dep.get("spec.target.autoscaling")
    min_r = int((auto or {}).get("min_replicas", 1))
    max_r = int((auto or {}).get("max_replicas", max(min_r, 1)))
    # A canary with analysis, or an experiment: Argo Rollouts walks the steps in the
    # cluster (stacks/rollouts.py); otherwise each step is a commit (replica split below).
    argo = argo_managed(dep)
    weight = 100 if argo else canary_weight(dep)
    canary = weight < 100 and stable_image is not None and stable_image != image.ref
    outputs["canary_weight"] = weight if canary else 100
    outputs["stable_image"] = stable_image if canary else image.ref
    if argo:
        outputs["rollout_note"] = rollout_note(dep)
    if canary:
        stable_n, canary_n = replica_split(max(min_r, 2), weight)
    else:
        stable_n, canary_n = max(min_r, 1), 0

    selector = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": label_value(dep.key),
    }

    def deployment(res_name: str, track: str, img: str, replicas: int | None) -> dict:
        labels = {**meta(res_name, "serving")["labels"], "modelops.dev/track": track}
        match = {**selector, "modelops.dev/track": track}
        container = _container(dep, img, "server", port)
        if argo and "agreement" in (dep.get("spec.target.rollout.analysis.metrics") or {}):
            # the new version's pods compare a sample of their answers with the stable
            # pods' (runtime/signals.py); Argo Rollouts points this Service at them
            stable_url = f"http://{k8s_name(name, 'stable')}.{ns}.svc.cluster.local/predict"
            container["env"].append({"name": STABLE_URL_ENV, "value": stable_url})
        spec = {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": match},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": dict(annotations)},
                "spec": {
                    **_pod_spec(dep, sa_name, container),
                    "terminationGracePeriodSeconds": 30,
                    # Spread replicas over zones and nodes where the cluster allows it.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": key,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": match},
                        }
                        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                    ],
                },
            },
        }
        if replicas is not None:
            spec["replicas"] = replicas
        m = meta(res_name, "serving", dict(annotations))
        m["labels"]["modelops.dev/track"] = track
        k8s.apps.v1.Deployment(res_name, metadata=m, spec=spec)
        return match

    if argo:
        # The Deployment holds the pod template at zero replicas; the Rollout runs the pods
        # (workloadRef), with the stable and canary Services Argo Rollouts narrows to each
        # ReplicaSet. With an HPA the Rollout leaves `replicas` to the autoscaler.
        match = deployment(name, "rollout", image.ref, 0)
        for track in ("stable", "canary"):
            svc_meta = meta(k8s_name(name, track), "serving")
            svc_meta["labels"]["modelops.dev/track"] = track
            k8s.core.v1.Service(
                k8s_name(name, track),
                metadata=svc_meta,
                spec={
                    "type": "ClusterIP",
                    "selector": dict(match),
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
                    ],
                },
            )
        analysed = bool(dep.get("spec.target.rollout.analysis.metrics"))
        k8s.apiextensions.CustomResource(
            name,
            api_version=ROLLOUTS_API,
            kind="Rollout",
            metadata=meta(name, "serving"),
            spec=rollout_spec(
                dep,
                match,
                k8s_name(name, "stable"),
                k8s_name(name, "canary"),
                None if auto else stable_n,
                analysed,
            ),
        )
        if analysed:
            k8s.apiextensions.CustomResource(
                template_name(dep),
                api_version=ROLLOUTS_API,
                kind="AnalysisTemplate",
                metadata=meta(template_name(dep), "monitoring"),
                spec=template_spec(dep, ns, name),
            )
    else:
        # With an HPA the stable Deployment leaves `replicas` to the autoscaler.
        stable_track = stable_image if canary else image.ref
        deployment(name, "stable", stable_track, None if auto else stable_n)
    if canary:
        deployment(k8s_name(name, "canary"), "canary", image.ref, canary_n)

    k8s.core.v1.Service(
        name,
        metadata=meta(name, "serving"),
        spec={
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    )
    outputs["service"] = name
    outputs["url"] = f"http://{name}.{ns}.svc.cluster.local"

    if auto:
        hpa_min = max(stable_n, 1)
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name,
            metadata=meta(name, "serving"),
            spec={
                "scaleTargetRef": (
                    {"apiVersion": ROLLOUTS_API, "kind": "Rollout", "name": name}
                    if argo
                    else {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
                ),
                "minReplicas": hpa_min,
                "maxReplicas": max(hpa_min, max_r - canary_n),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": int(auto.get("target_cpu_utilization", 70)),
                            },
                        },
                    }
                ],
            },
        )
    if min_r >= 2:
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=meta(name, "serving"),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        )

    public = bool(dep.get("spec.exposure.public", False))
    classification = dep.get("spec.data.classification")
    if public and classification in RESTRICTED_DATA:
        raise StackError(
            "spec.exposure.public",
            f"data classification {classification!r} may not be exposed publicly; "
            "set exposure.public to false (no Ingress is rendered for pii, phi or pci data)",
        )
    allowed = list(dep.get("spec.exposure.allowed_namespaces") or [])
    if public:
        allowed.append(INGRESS_CONTROLLER_NAMESPACE)
    ingress_rules = []
    if allowed:
        ingress_rules.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/metadata.name",
                                    "operator": "In",
                                    "values": sorted(set(allowed)),
                                }
                            ]
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    rules = slo_rules(dep, ns, name)
    analysed = argo and bool(dep.get("spec.target.rollout.analysis.metrics"))
    if rules or analysed:
        _service_monitor(ns, name, meta, selector, argo)
    if rules:
        k8s.apiextensions.CustomResource(
            k8s_name(name, "slo"),
            api_version=PROMETHEUS_API,
            kind="PrometheusRule",
            metadata=meta(k8s_name(name, "slo"), "monitoring"),
            spec={"groups": [{"name": f"{name}.slo", "rules": rules}]},
        )
    if rules or analysed:
        ingress_rules.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}
                        },
                        "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    if argo and "agreement" in (dep.get("spec.target.rollout.analysis.metrics") or {}):
        # the new version's pods send their comparison copies to the stable pods
        ingress_rules.append(
            {
                "from": [{"podSelector": {"matchLabels": dict(selector)}}],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    k8s.networking.v1.NetworkPolicy(
        name,
        metadata=meta(name, "serving"),
        spec={
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": ingress_rules,
        },
    )
    if public:
        host = dep.get("spec.exposure.host") or f"{name}.example.com"
        spec: dict = {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": name, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ]
        }
        if dep.get("spec.exposure.tls", True):
            spec["tls"] = [{"hosts": [host], "secretName": k8s_name(name, "tls")}]
        k8s.networking.v1.Ingress(name, metadata=meta(name, "serving"), spec=spec)
        scheme = "https" if dep.get("spec.exposure.tls", True) else "http"
        outputs["public_url"] = f"{scheme}://{host}"


def _service_monitor(ns: str, name: str, meta, selector: dict, argo: bool = False) -> None:
    """A ServiceMonitor: Prometheus scrapes ``/metrics`` on the Service's ``http`` port of
    every replica (stable and canary) every :data:`SCRAPE_INTERVAL`.

    Under Argo Rollouts only the main Service is selected (the stable and canary Services
    carry ``modelops.dev/track`` and cover the same pods) and each series gets the pod's
    ``rollouts-pod-template-hash``, which the analysis queries select the new pods by.
    """
    spec: dict = {
        "selector": {"matchLabels": dict(selector)},
        "namespaceSelector": {"matchNames": [ns]},
    }
    if argo:
        spec["selector"]["matchExpressions"] = [
            {"key": "modelops.dev/track", "operator": "DoesNotExist"}
        ]
        spec["podTargetLabels"] = [HASH_LABEL]
    k8s.apiextensions.CustomResource(
        name,
        api_version=PROMETHEUS_API,
        kind="ServiceMonitor",
        metadata=meta(name, "monitoring"),
        spec={
            **spec,
            "endpoints": [
                {
                    "port": "http",
                    "path": METRICS_PATH,
                    "interval": SCRAPE_INTERVAL,
                    "scheme": "http",
                }
            ],
        },
    )


def slo_rules(dep: Deployment, ns: str, service: str) -> list[dict]:
    """Prometheus alerting rules for ``spec.serving.slo`` (``[]`` when it sets no target).

    Over BentoML's request metrics of the pods behind ``service`` in ``ns`` (the
    ``namespace`` and ``service`` labels the Prometheus Operator adds to every scraped
    series), health checks left out (``endpoint`` not one of
    :data:`stacks.common.HEALTH_PATHS`: the kubelet's probes are not traffic), each rate
    over :data:`RULE_WINDOW`:

    * ``ModelopsLatencySLO``: p99 of ``bentoml_service_request_duration_seconds`` (the
      histogram's buckets, ``histogram_quantile``; seconds) above ``p99_latency_ms`` / 1000
      for :data:`RULE_FOR`;
    * ``ModelopsErrorRateSLO``: the share of requests answered 5xx above
      ``max_error_rate`` (0-1) for :data:`RULE_FOR`; no requests → no alert;
    * ``ModelopsThroughputSLO``: requests per second below ``min_throughput_rps`` for
      :data:`THROUGHPUT_RULE_FOR`; no series at all counts as 0 req/s.

    Labels: ``severity`` (critical for latency and errors, warning for throughput),
    ``deployment``, ``environment``; annotations ``summary`` and ``description``.
    """
    slo = dep.get("spec.serving.slo") or {}
    health = "|".join(HEALTH_PATHS)
    match = f'namespace="{ns}",service="{service}",{ENDPOINT_LABEL}!~"{health}"'
    total = f"sum(rate({REQUEST_TOTAL_METRIC}{{{match}}}[{RULE_WINDOW}]))"
    labels = {"deployment": dep.name, "environment": dep.env}
    rules = []
    if slo.get("p99_latency_ms") is not None:
        ms = float(slo["p99_latency_ms"])
        rules.append(
            {
                "alert": "ModelopsLatencySLO",
                "expr": (
                    "histogram_quantile(0.99, sum by (le) (rate("
                    f"{REQUEST_DURATION_METRIC}_bucket{{{match}}}[{RULE_WINDOW}]))) "
                    f"> {ms / 1000:g}"
                ),
                "for": RULE_FOR,
                "labels": {"severity": "critical", **labels},
                "annotations": {
                    "summary": f"{dep.key}: p99 latency above its SLO of {ms:g} ms",
                    "description": "p99 request latency over "
                    + RULE_WINDOW
                    + " is {{ $value | humanizeDuration }}",
                },
            }
        )
    if slo.get("max_error_rate") is not None:
        share = float(slo["max_error_rate"])
        errors = (
            f'sum(rate({REQUEST_TOTAL_METRIC}{{{match},{STATUS_LABEL}=~"5.."}}[{RULE_WINDOW}]))'
        )
        rules.append(
            {
                "alert": "ModelopsErrorRateSLO",
                "expr": f"({errors} / {total}) > {share:g}",
                "for": RULE_FOR,
                "labels": {"severity": "critical", **labels},
                "annotations": {
                    "summary": f"{dep.key}: 5xx share above its SLO of {share:.2%}",
                    "description": "share of requests answered 5xx over "
                    + RULE_WINDOW
                    + " is {{ $value | humanizePercentage }}",
                },
            }
        )
    if slo.get("min_throughput_rps") is not None:
        rps = float(slo["min_throughput_rps"])
        rules.append(
            {
                "alert": "ModelopsThroughputSLO",
                "expr": f"({total} or vector(0)) < {rps:g}",
                "for": THROUGHPUT_RULE_FOR,
                "labels": {"severity": "warning", **labels},
                "annotations": {
                    "summary": f"{dep.key}: fewer than {rps:g} requests per second",
                    "description": "requests per second over "
                    + RULE_WINDOW
                    + " is {{ $value | humanize }}",
                },
            }
        )
    return rules


def _applied_revision(dep: Deployment, image: str, container: dict) -> dict:
    """The init container that writes the deployment's applied revision (its ledger
    record in the shared state) to :data:`REVISION_FILE`, in the model image with the job
    container's environment and credentials (the service account)."""
    return {
        "name": "applied-revision",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python",
            "-m",
            "reconciler.state.applied",
            dep.name,
            dep.env,
            REVISION_FILE,
        ],
        "env": container["env"],
        "resources": REVISION_RESOURCES,
        "securityContext": container["securityContext"],
        "workingDir": "/tmp",
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "workspace", "mountPath": WORKSPACE},
        ],
    }


def _checkout(jobs: JobContext) -> tuple[dict, list[dict]]:
    """The init container that checks the spec repository out at the applied revision into
    the workspace emptyDir, and the volumes it needs besides the workspace.

    Credentials are references only: a token (HTTPS) as an env ``secretKeyRef``, a deploy
    key (SSH) as the secret mounted read-only (mode 0400) with its ``known_hosts``.
    """
    env = [
        {"name": "MODELOPS_WORKSPACE", "value": WORKSPACE},
        {"name": "MODELOPS_SPEC_REPOSITORY", "value": jobs.repository},
    ]
    mounts = [{"name": "workspace", "mountPath": WORKSPACE}]
    volumes: list[dict] = []
    if jobs.credentials:
        ref = _ref(jobs.credentials)
        if jobs.ssh:
            volumes.append(
                {
                    "name": "git-credentials",
                    "secret": {
                        "secretName": ref["name"],
                        "defaultMode": 0o400,
                        "items": [
                            {"key": ref["key"], "path": "key"},
                            {"key": "known_hosts", "path": "known_hosts"},
                        ],
                    },
                }
            )
            mounts.append(
                {"name": "git-credentials", "mountPath": GIT_SECRET_DIR, "readOnly": True}
            )
            ssh = (
                f"ssh -i {GIT_SECRET_DIR}/key -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={GIT_SECRET_DIR}/known_hosts"
            )
            env.append({"name": "GIT_SSH_COMMAND", "value": ssh})
        else:
            env.append({"name": "MODELOPS_GIT_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return {
        "name": "checkout",
        "image": jobs.git_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", CHECKOUT_SCRIPT],
        "env": env,
        "resources": CHECKOUT_RESOURCES,
        "volumeMounts": mounts,
    }, volumes


#: git's credential helper for a token in ``$GITHUB_TOKEN`` (the secret reference's value,
#: read when git asks: the manifest holds no secret): GitHub's user for a token.
GIT_TOKEN_HELPER = '!f() { echo username=x-access-token; echo "password=$GITHUB_TOKEN"; }; f'


def _push_credentials(container: dict, checkout: dict) -> None:
    """Give the retraining container what it needs to push its proposal and open the
    pull request: the checkout's token as ``GITHUB_TOKEN`` (the forge API) with git's
    credential helper reading it, or the checkout's deploy key (SSH: its mount and
    ``GIT_SSH_COMMAND``). The training command itself never sees them
    (``reconciler.monitor.command`` withholds ``GITHUB_TOKEN`` and ``GIT_CONFIG_*``)."""
    for item in checkout["env"]:
        if item["name"] == "MODELOPS_GIT_TOKEN":
            container["env"] += [
                {"name": "GITHUB_TOKEN", "valueFrom": item["valueFrom"]},
                {"name": "GIT_CONFIG_COUNT", "value": "1"},
                {"name": "GIT_CONFIG_KEY_0", "value": "credential.helper"},
                {"name": "GIT_CONFIG_VALUE_0", "value": GIT_TOKEN_HELPER},
            ]
        elif item["name"] == "GIT_SSH_COMMAND":
            container["env"].append(dict(item))
    for mount in checkout["volumeMounts"]:
        if mount["name"] == "git-credentials":
            container["volumeMounts"].append(dict(mount))


def _cronjob(dep, image, sa_name, kind, schedule, argv, meta, ns, jobs=None) -> None:
    """A CronJob running ``argv`` in the model image on ``schedule`` (UTC).

    Runs never overlap (``concurrencyPolicy: Forbid``); a start missed by more than
    :data:`JOB_STARTING_DEADLINE_S` is skipped; a run is stopped after
    ``retraining.timeout_s`` (retrain) or :data:`JOB_DEADLINE_S`. The container keeps a
    read-only root filesystem (writes go to the ``/tmp`` emptyDir: state caches, BentoML
    home) and has requests and limits (:data:`JOB_RESOURCES` when the spec sets none).
    Credentials come from the service account (IRSA's role annotation on EKS) and secret
    references, never literal values. With ``jobs.repository``, init containers read the
    deployment's applied revision from the shared state ``jobs.state_url`` (where the job
    also records) and check the spec repository out at it into a ``/workspace``
    emptyDir, mounted read-only as the job's working directory (writable for retraining,
    which also gets the checkout's credential to push its proposal: :func:`_push_credentials`).
    """
    res_name = k8s_name(dep.name, kind, CRONJOB_NAME_LIMIT)
    container = _container(dep, image.ref, kind, 0, args=argv)
    if "limits" not in container.get("resources", {}):
        container["resources"] = {**JOB_RESOURCES, **container.get("resources", {})}
    pod = _pod_spec(dep, sa_name, container, restart="Never")
    if jobs is not None and jobs.state_url:
        container["env"].append({"name": "MODELOPS_STATE_URL", "value": jobs.state_url})
    container["env"].sort(key=lambda e: e["name"])
    if jobs is not None and jobs.repository:
        init, volumes = _checkout(jobs)
        init["securityContext"] = container["securityContext"]
        first = [_applied_revision(dep, image.ref, container)] if jobs.state_url else []
        pod["initContainers"] = [*first, init]
        pod["volumes"] += [{"name": "workspace", "emptyDir": {"sizeLimit": "1Gi"}}, *volumes]
        container["workingDir"] = CHECKOUT_DIR
        # retraining commits its proposal on a branch and pushes it: its checkout is
        # writable and it gets the same credential the checkout used (other jobs only read)
        container["volumeMounts"].append(
            {"name": "workspace", "mountPath": WORKSPACE, "readOnly": kind != "retrain"}
        )
        if kind == "retrain":
            _push_credentials(container, init)
            container["env"].sort(key=lambda e: e["name"])
    timeout = dep.get("spec.retraining.timeout_s") if kind == "retrain" else None
    job_spec: dict = {
        "backoffLimit": 2,
        "activeDeadlineSeconds": int(timeout or JOB_DEADLINE_S),
        "template": {
            "metadata": {"labels": meta(res_name, kind)["labels"]},
            "spec": pod,
        },
    }
    k8s.batch.v1.CronJob(
        res_name,
        metadata=meta(res_name, kind),
        spec={
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": JOB_STARTING_DEADLINE_S,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": job_spec},
        },
    )


__all__ = ["program", "replica_split", "secret_env", "secret_sources", "slo_rules"]
