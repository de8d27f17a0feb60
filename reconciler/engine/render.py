"""The offline renderer: a deployment's DesiredState, computed under Pulumi's own mocks.

:func:`render` runs the target's program (``stacks/<platform>.py``) under
``pulumi.runtime.set_mocks`` and returns a normalised :class:`DesiredState` (sorted
resources, integral floats as ints, secrets as ``[secret]``, unknowns marked), cached
by :func:`render_key`. Normalisation rules and measurements: ``docs/engine.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import gc
import hashlib
import importlib
import importlib.util
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from reconciler.core import sealed
from reconciler.core.diagnostics import EXIT_FINDINGS, Diagnostic, ModelopsError
from reconciler.core.digests import json_sha256
from reconciler.core.git import spec_repository
from reconciler.spec.model import Deployment
from stacks.common import (
    DEFAULT_GIT_IMAGE,
    ImageRef,
    JobContext,
    StackError,
    image_ref,
    job_commands,
)

SCHEMA_VERSION = 1
LOCAL_TYPE = "modelops:local:BentoServer"
EDGE_TYPE = "modelops:edge:Bundle"
LOCAL_HOST = "127.0.0.1"  # local servers bind to loopback only (DESIGN.md, security model)
PROGRAMS = {
    "kubernetes": "stacks.kubernetes",
    "aws-sagemaker": "stacks.aws_sagemaker",
    "aws-serverless": "stacks.aws_serverless",
}
KIND_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "CronJob",
    "Ingress",
)
SECRET = "[secret]"
UNKNOWN = "[unknown]"

# Wire-format markers of the Pulumi Python SDK (pulumi/runtime/rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# Attributes a provider computes on create; the mocks answer them with a marker.
_COMPUTED = ("arn", "name", "id", "keyId", "url")


class RenderError(ModelopsError):
    """A deployment that cannot be rendered (exit 1: a finding about the spec).

    ``diagnostics`` name the file, line and field.
    """

    def __init__(self, message: str, diagnostics: list[Diagnostic]) -> None:
        super().__init__(message, EXIT_FINDINGS, diagnostics)


@dataclass(frozen=True)
class Resource:
    """One resource of a DesiredState.

    Attributes:
        type: Pulumi type token (``kubernetes:apps/v1:Deployment``,
            ``aws:sagemaker/endpoint:Endpoint``, ``modelops:local:BentoServer``).
        name: Pulumi logical name, unique per type within the stack.
        inputs: normalised inputs, in the provider's wire names (camelCase).
    """

    type: str
    name: str
    inputs: dict

    @property
    def kind(self) -> str:
        """The last part of the type token (``Deployment``)."""
        return self.type.rsplit(":", 1)[-1]

    def to_dict(self) -> dict:
        """``{"type", "name", "inputs"}``."""
        return {"type": self.type, "name": self.name, "inputs": json_copy(self.inputs)}


@dataclass
class DesiredState:
    """What a deployment × environment should look like, as data.

    Attributes:
        deployment: the key ``<name>-<env>`` (also the Pulumi stack name).
        name, environment, platform: of the deployment.
        image: :meth:`ImageRef.to_dict` (``ref``, ``built``, ``bento_tag``, ``digest``).
        resources: sorted by (type, name).
        outputs: the stack outputs as rendered (``url``, ``endpoint_name``...).
    """

    deployment: str
    name: str
    environment: str
    platform: str
    image: dict = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready mapping (what the ledger stores as ``desiredState``)."""
        return {
            "schemaVersion": SCHEMA_VERSION,
            "deployment": self.deployment,
            "name": self.name,
            "environment": self.environment,
            "platform": self.platform,
            "image": dict(self.image),
            "resources": [r.to_dict() for r in self.resources],
            "outputs": json_copy(self.outputs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> DesiredState:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelopsError: (exit 2) not a DesiredState mapping, or a newer schemaVersion.
        """
        if not isinstance(data, dict) or not isinstance(data.get("resources", []), list):
            raise ModelopsError("desired state is not a mapping with a list of resources")
        version = data.get("schemaVersion", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ModelopsError(
                f"desired state has schemaVersion {version!r}, newer than this modelops "
                f"understands ({SCHEMA_VERSION}); upgrade modelops"
            )
        resources = [
            Resource(str(r["type"]), str(r["name"]), dict(r.get("inputs") or {}))
            for r in data.get("resources", [])
        ]
        return cls(
            deployment=str(data.get("deployment", "")),
            name=str(data.get("name", "")),
            environment=str(data.get("environment", "")),
            platform=str(data.get("platform", "")),
            image=dict(data.get("image") or {}),
            resources=sorted(resources, key=lambda r: (r.type, r.name)),
            outputs=dict(data.get("outputs") or {}),
        )

    def get(self, type_: str, name: str) -> Resource | None:
        """The resource with this type token (or its last part, ``Deployment``) and name."""
        for r in self.resources:
            if r.name == name and (r.type == type_ or r.kind == type_):
                return r
        return None

    def of_kind(self, kind: str) -> list[Resource]:
        """Every resource whose type ends with ``kind`` (``CronJob``, ``Endpoint``)."""
        return [r for r in self.resources if r.kind == kind]

    def manifests(self) -> list[dict]:
        """Plain Kubernetes manifests (apiVersion, kind, metadata, then the rest) of the
        ``kubernetes:`` resources; ``[]`` for other platforms.

        Ordered for ``kubectl apply`` as Helm installs kinds (ServiceAccount, Service,
        Deployment, HPA, PodDisruptionBudget, NetworkPolicy, Ingress, CronJob), then by
        name.
        """
        out = []
        k8s = [r for r in self.resources if r.type.startswith("kubernetes:")]
        rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
        for r in sorted(k8s, key=lambda r: (rank.get(r.kind, len(rank)), r.name)):
            body = json_copy(r.inputs)
            manifest = {k: body.pop(k) for k in ("apiVersion", "kind", "metadata") if k in body}
            manifest.update(body)
            out.append(manifest)
        return out


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); several times faster than
    ``copy.deepcopy`` for DesiredState inputs."""
    return json.loads(json.dumps(value))


def normalise(value: Any) -> Any:
    """A value as the mocks returned it, made plain and stable (see the module docstring)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return UNKNOWN if value == _UNKNOWN_SENTINEL else value
    if isinstance(value, dict):
        sig = value.get(_SIG_KEY)
        if sig == _SECRET_SIG:
            return SECRET
        if sig == _RESOURCE_SIG:
            return f"[resource {value.get('urn', '')}]"
        if sig == _OUTPUT_SIG:
            if value.get("secret"):
                return SECRET
            return normalise(value["value"]) if "value" in value else UNKNOWN
        return {str(k): normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def computed_marker(type_: str, name: str, attr: str) -> str:
    """The placeholder for an attribute the provider computes: ``[unknown <type> <name>.<attr>]``.

    The plan uses it to follow references: when ``<type> <name>`` is replaced, every
    input holding its marker changes too.
    """
    return f"[unknown {type_} {name}.{attr}]"


class _Recorder:
    """Pulumi mocks that record every registration (in order, duplicates included)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def new_resource(self, args) -> tuple[str, dict]:
        """Record a registration; answer with an id and the resource's state (see below)."""
        self.records.append((args.typ, args.name, args.inputs))
        # Answer with the scalar inputs and markers for computed attributes only: echoing
        # the nested inputs back doubles the SDK's (de)serialisation work for nothing.
        state = {k: v for k, v in args.inputs.items() if isinstance(v, str | int | float | bool)}
        for attr in _COMPUTED:
            state.setdefault(attr, computed_marker(args.typ, args.name, attr))
        return computed_marker(args.typ, args.name, "id"), state

    def call(self, args) -> tuple[dict, None]:
        """Answer a data-source invoke with markers (its result needs the account)."""
        # Data-source lookups (default VPC, subnets) are only known against the account.
        token = args.token.rsplit(":", 1)[-1]
        return {"id": f"[unknown {token}.id]", "ids": [f"[unknown {token}.ids]"]}, None


_LOCK = threading.Lock()
_MOCKS_CLASS: type | None = None
_LOOP: asyncio.AbstractEventLoop | None = None


def _mocks_class() -> type:
    global _MOCKS_CLASS
    if _MOCKS_CLASS is None:
        import pulumi  # heavy (about 1 s): only when a render misses the cache

        class Mocks(_Recorder, pulumi.runtime.Mocks):
            """The recorder as a ``pulumi.runtime.Mocks`` (created after importing Pulumi)."""

        _MOCKS_CLASS = Mocks
    return _MOCKS_CLASS


@contextlib.contextmanager
def _without_source_positions():
    """Skip the SDK's per-resource stack walk while rendering.

    The Python SDK walks the whole Python stack for every resource to attach source
    positions for the Pulumi Cloud UI (``pulumi.runtime.resource._get_stack_trace``);
    measured here at about a third of a render's time, and the mocks discard it. The
    original function is restored afterwards (the Automation API path keeps it).
    """
    import pulumi.runtime.resource as sdk_resource  # heavy: pulumi, on a cache miss only

    original = getattr(sdk_resource, "_get_stack_trace", None)
    if original is None:  # a future SDK without it: nothing to skip
        yield
        return
    from pulumi.runtime.proto import source_pb2  # heavy: pulumi, on a cache miss only

    sdk_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = original


@contextlib.contextmanager
def _render_loop():
    """Make the renderer's own event loop the thread's current loop for one render.

    Pulumi's mocks create futures with ``asyncio.Future()``, which needs a current loop
    in the calling thread: there is none after ``asyncio.run`` (it leaves none set) nor
    in a thread other than the main one. Pulumi keeps state between renders (the root
    stack resource) whose futures belong to the loop they were made on, so every render
    uses the same loop, made once; it stays the thread's current loop afterwards.
    """
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    asyncio.set_event_loop(_LOOP)
    yield


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector during one render.

    A render allocates tens of thousands of short-lived futures and outputs; with the
    large object graph of pulumi-aws loaded, the collections they trigger cost about a
    sixth of a render's CPU time here. Collection resumes (if it was on) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _diagnostic(dep: Deployment, path: str, message: str) -> Diagnostic:
    return Diagnostic(dep.locate(path), path, f"{message} [env {dep.env}]", code="render")


def stable_image_of(desired_state: dict | None) -> str | None:
    """The image the stable track ran, from the DesiredState recorded at the last apply.

    Args:
        desired_state: the ledger record's ``desiredState`` (JSON form), or ``None``.

    Returns:
        ``None`` without a recorded DesiredState or when it has no ``stable_image``
        output.
    """
    if not desired_state:
        return None
    outputs = desired_state.get("outputs") or {}
    image = outputs.get("stable_image")
    return image if isinstance(image, str) and image else None


def program_for(platform: str):
    """The ``program(dep, image, stable_image=None)`` function of a platform's stack.

    Raises:
        ModelopsError: (exit 2) a platform without a Pulumi program (``local``, unknown).
    """
    module = PROGRAMS.get(platform)
    if module is None:
        raise ModelopsError(
            f"platform {platform!r} has no Pulumi program; programs exist for "
            f"{', '.join(sorted(PROGRAMS))}"
        )
    return importlib.import_module(module).program


def _render_local(dep: Deployment, image: ImageRef) -> DesiredState:
    batching = dep.get("spec.serving.batching") or {}
    inputs = {
        "bento_tag": image.bento_tag or f"{dep.name}:unbuilt",
        "host": LOCAL_HOST,
        "workers": int(dep.get("spec.serving.workers", 1)),
        "batching": normalise(copy.deepcopy(batching)),
    }
    return DesiredState(
        deployment=dep.key,
        name=dep.name,
        environment=dep.env,
        platform="local",
        image=image.to_dict(),
        resources=[Resource(LOCAL_TYPE, dep.name, inputs)],
        outputs={},
    )


def _render_edge(dep: Deployment, artifact) -> DesiredState:
    """One ``modelops:edge:Bundle`` resource: where the bundle goes, for which device, and
    which bundle (file name, SHA-256, model size in bytes; ``[unknown]`` until built).

    Latency is a measurement, not desired state: the plan shows it on the build line
    (:func:`reconciler.flow.stages.edge_budget_text`), before -> after."""
    built = dict(getattr(artifact, "edge", None) or {})
    inputs = {
        "destination": dep.get("spec.edge.destination", ""),
        "layout": dep.get("spec.edge.layout", "bundle"),
        "device": normalise(copy.deepcopy(dep.get("spec.target.device") or {})),
        "quantization": dep.get("spec.edge.quantization", "none"),
    }
    for key in ("bundle", "sha256", "size_bytes"):
        inputs[key] = built.get(key, UNKNOWN) if built else UNKNOWN
    return DesiredState(
        deployment=dep.key,
        name=dep.name,
        environment=dep.env,
        platform="edge",
        image={},
        resources=[Resource(EDGE_TYPE, dep.name, normalise(inputs))],
        outputs={},
    )


CACHE_ENTRIES = 4096  # renders kept in memory (a DesiredState is a few KiB of JSON):
# more than a full pass over 1,000 deployments reads, so a second pass is not read from disk
DISK_CACHE_ENTRIES = 2000  # renders kept under <state_dir>/cache/render/
_MEMORY: OrderedDict[str, str] = OrderedDict()  # key → DesiredState as JSON text


@functools.cache
def _code_digest(module: str) -> str:
    """SHA-256 of the renderer, the shared stack helpers, a program's module source and
    the installed Pulumi SDK versions: a change to any of them invalidates cached renders."""
    digest = hashlib.sha256()
    names = {__name__, "stacks.common", "stacks.aws_common", module}
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            digest.update(Path(spec.origin).read_bytes())
    for dist in ("pulumi", "pulumi-kubernetes", "pulumi-aws"):
        try:
            digest.update(f"{dist}=={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}==none".encode())
    return digest.hexdigest()


def has_jobs(dep: Deployment) -> bool:
    """Whether ``dep`` renders scheduled jobs (monitoring, retraining, batch)."""
    return bool(job_commands(dep)) or dep.get("spec.serving.mode") == "batch"


def job_context(config) -> JobContext:
    """What the scheduled jobs of this repository need in the cluster: ``jobs`` of
    ``modelops.yaml`` (the repository defaulting to :func:`spec_repository`) and the
    shared state URL. No revision: a job reads the revision to check out from its
    deployment's ledger record when it starts (``stacks/kubernetes.py``), so a commit
    that does not change a deployment does not change its manifests."""
    jobs = getattr(config, "jobs", None) or {}
    return JobContext(
        repository=jobs.get("repository") or spec_repository(config.root),
        credentials=jobs.get("credentials", ""),
        aws_credentials=jobs.get("aws_credentials", ""),
        state_url=getattr(config, "state_url", ""),
        git_image=jobs.get("git_image", DEFAULT_GIT_IMAGE),
    )


def render_key(
    dep: Deployment,
    image: ImageRef,
    stable: str | None,
    module: str,
    jobs: JobContext | None = None,
) -> str:
    """The cache key of a render: SHA-256 hex of everything the result depends on.

    The resolved deployment document, environment and key, the image, the stable
    image, the jobs' context, the program (``<module>.program``) and :func:`_code_digest`
    of its module.
    Computing it does not import the module, so a warm plan never loads Pulumi.
    """
    doc = {
        "schema": SCHEMA_VERSION,
        "deployment": dep.data,
        "env": dep.env,
        "key": dep.key,
        "image": image.to_dict(),
        "stable": stable,
        "jobs": jobs.to_dict() if jobs is not None else None,
        "program": f"{module}.program",
        "code": _code_digest(module),
    }
    return json_sha256(doc)


def _cache_dir(config) -> Path | None:
    return Path(config.state_dir) / "cache" / "render" if config is not None else None


def _cache_get(key: str, config) -> dict | None:
    text = _MEMORY.get(key)
    if text is not None:
        _MEMORY.move_to_end(key)
        return json.loads(text)
    folder = _cache_dir(config)
    if folder is None:
        return None
    blob = sealed.read(folder / f"{key}.json")  # only what modelops here wrote
    try:
        text = blob.decode("utf-8") if blob is not None else ""
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return None  # absent, unreadable or unsealed: render again (never the truth)
    _remember(key, text)
    return data


def _remember(key: str, text: str) -> None:
    _MEMORY[key] = text
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > CACHE_ENTRIES:
        _MEMORY.popitem(last=False)


def _cache_put(key: str, data: dict, config) -> None:
    text = json.dumps(data, sort_keys=True)
    _remember(key, text)
    folder = _cache_dir(config)
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        sealed.write(folder / f"{key}.json", text.encode("utf-8"))
        files = list(folder.glob("*.json"))
        if len(files) > DISK_CACHE_ENTRIES:  # keep the newest; a few KiB each
            files.sort(key=lambda f: f.stat().st_mtime)
            for old in files[: len(files) - DISK_CACHE_ENTRIES]:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only state directory only costs speed


def render(
    dep: Deployment,
    artifact=None,
    config=None,
    *,
    stable_image: str | None = None,
    cache: bool = True,
) -> DesiredState:
    """Render the DesiredState of one deployment × environment, offline.

    Args:
        dep: a valid resolved deployment (``load_all`` only returns valid ones).
        artifact: the built :class:`~reconciler.build.artifact.Artifact`, or ``None``:
            the image is then ``<registry>/<name>:unbuilt`` and marked not built.
        config: repository configuration; when given, renders are cached on disk under
            ``<state_dir>/cache/render/``.
        stable_image: the image the stable track runs (canary rollouts on Kubernetes:
            :func:`stable_image_of` the deployment's ledger record), ``None`` for none.
        cache: use the render cache (in memory, and on disk with a config). A render is
            a pure function of the resolved deployment, the image, the stable image and
            the code of the renderer, its stack program and the Pulumi SDKs; the cache
            key is the SHA-256 of all of these (:func:`render_key`).

    Returns:
        A :class:`DesiredState` whose resources are sorted by (type, name). Uncached,
        about 3-5 ms per declared resource on this machine; cached, well under 1 ms
        (``bench/bench_render.py``).

    Raises:
        RenderError: (exit 1) the spec asks for something the stack cannot render, or
            the program declared two resources with the same type and name.

    ``edge`` renders without Pulumi: one :data:`EDGE_TYPE` resource (:func:`_render_edge`).
        ModelopsError: (exit 2) unknown platform.
    """
    if dep.platform == "edge":
        return _render_edge(dep, artifact)
    image = image_ref(dep, artifact)
    if dep.platform == "local":
        return _render_local(dep, image)
    if dep.platform not in PROGRAMS:
        program_for(dep.platform)  # raises the error that lists the platforms
    stable = stable_image
    if stable == image.ref:
        stable = None  # the stable track already runs this image: same as a first rollout
    jobs = job_context(config) if config is not None and has_jobs(dep) else None
    key = render_key(dep, image, stable, PROGRAMS[dep.platform], jobs) if cache else ""
    if key:
        hit = _cache_get(key, config)
        if hit is not None:
            return DesiredState.from_dict(hit)
    state = _render_pulumi(dep, image, stable, program_for(dep.platform), jobs)
    if key:
        _cache_put(key, state.to_dict(), config)
        # the value a cache hit returns (its keys sorted): a render written out (render
        # --out, --commit) is the same bytes whether it was cached or not
        return DesiredState.from_dict(json.loads(_MEMORY[key]))
    return state


def _render_pulumi(
    dep: Deployment, image: ImageRef, stable: str | None, program, jobs: JobContext | None = None
) -> DesiredState:
    import pulumi  # heavy (about 1 s): only when a render misses the cache

    with _LOCK, _render_loop(), _without_source_positions(), _gc_paused():
        mocks = _mocks_class()()
        pulumi.runtime.set_mocks(mocks, project="modelops", stack=dep.key, preview=True)
        outputs: dict = {}

        async def collect(result: dict) -> None:
            # Per output: its value, or [secret] when it is a secret (apply would unwrap it).
            for key, value in (result or {}).items():
                out = pulumi.Output.from_input(value)
                known = await out.future(with_unknowns=True)
                outputs[key] = SECRET if await out.is_secret() else known

        def run():
            args = (dep, image, stable) if jobs is None else (dep, image, stable, jobs)
            return collect(program(*args))

        try:
            pulumi.runtime.test(run)()
        except StackError as exc:
            raise RenderError(
                f"cannot render {dep.key}: {exc.message}",
                [_diagnostic(dep, exc.path, exc.message)],
            ) from None
    seen: dict[tuple[str, str], int] = {}
    resources = []
    for typ, name, inputs in mocks.records:
        seen[(typ, name)] = seen.get((typ, name), 0) + 1
        resources.append(Resource(typ, name, normalise(inputs)))
    dups = sorted(k for k, n in seen.items() if n > 1)
    if dups:
        listed = ", ".join(f"{t} {n!r}" for t, n in dups)
        raise RenderError(
            f"the {dep.platform} program for {dep.key} declared duplicate resources: {listed}",
            [_diagnostic(dep, "metadata.name", f"duplicate resource names in the stack: {listed}")],
        )
    resources.sort(key=lambda r: (r.type, r.name))
    return DesiredState(
        deployment=dep.key,
        name=dep.name,
        environment=dep.env,
        platform=dep.platform,
        image=image.to_dict(),
        resources=resources,
        outputs=normalise(outputs),
    )
