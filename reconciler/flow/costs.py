"""The monthly cost of each planned deployment, before and after (``docs/cost.md``).

The plan renders every deployment once; :func:`estimate_rendered` prices that
DesiredState (:func:`reconciler.engine.cost.estimate`) and :func:`cost_change` puts the
before and after side by side for the plan writers (``Outcome.cost``) and for the policy
input (:func:`policy_input`, given to Rego as ``input.cost``). Nothing is rendered again
for the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic, ModelopsError
from reconciler.engine.cost import (
    CURRENCY,
    HOURS_PER_MONTH,
    CostError,
    Estimate,
    KubernetesRates,
    estimate,
    load_prices,
)
from reconciler.engine.render import DesiredState
from reconciler.flow.stages import render_live, state_dict
from reconciler.spec.model import Deployment
from reconciler.state.ledger import Ledger

#: The key of the estimate in the Rego ``input`` (policies/cost_*.rego, docs/cost.md).
POLICY_INPUT_KEY = "cost"


def estimate_rendered(
    state: DesiredState | dict | None, dep: Deployment | None, config: Config
) -> Estimate | None:
    """The estimate of a rendered (or recorded, as a dict) DesiredState; ``None`` for none.

    ``dep`` gives the serverless usage (``spec.cost.usage``) and the team; without it
    (a ledger record whose spec is gone) the team comes from the labels or tags and the
    usage is the stated default.

    Raises:
        CostError: a price that is not known (:func:`reconciler.engine.cost.estimate`).
        PriceSnapshotError: the shipped snapshot is malformed.
    """
    if state is None:
        return None
    if isinstance(state, dict):
        try:
            state = DesiredState.from_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CostError(
                "spec.target", f"the recorded state cannot be read ({type(exc).__name__}: {exc})"
            ) from None
    usage = dep.get("spec.cost.usage") if dep is not None else None
    team = dep.get("metadata.team") if dep is not None else None
    return estimate(state, load_prices(), KubernetesRates.from_config(config), usage, team)


def cost_diagnostic(dep: Deployment, exc: CostError) -> Diagnostic:
    """A cost that cannot be estimated, as a spec finding at the field it names."""
    return Diagnostic(dep.locate(exc.path), exc.path, f"{exc.message} [env {dep.env}]", code="cost")


_ZERO = {"expected": 0.0, "max": 0.0}


def cost_change(
    before: Estimate | None, after: Estimate | None, *, same: bool = False, note: str = ""
) -> dict:
    """Before → after of one deployment, JSON-ready (``Outcome.cost``).

    Args:
        before: the estimate of what is applied (ledger) or of the merge base; ``None``
            when there is none (a new deployment: the before is 0).
        after: the estimate of what the plan would apply; ``None`` for a deletion.
        same: the plan changes no resource: the difference is 0 by construction.
        note: why a side is missing (a price not known for the before side...).

    Returns:
        ``{"currency", "hours_per_month", "prices_date", "before", "after",
        "difference": {"expected", "max"}, "note"}``; ``before``/``after`` are
        :meth:`Estimate.to_dict` or ``None``; figures in USD per month.
    """
    b = before.to_dict() if before is not None else None
    a = after.to_dict() if after is not None else None
    if same and b is None:
        b = a

    def raw(est: Estimate | None) -> dict:
        return {"expected": est.expected, "max": est.max} if est is not None else _ZERO

    rb, ra = raw(before), raw(after)
    if same and after is not None:
        rb = ra
    # From the unrounded sums, then to cents (the rounded sides may differ by a cent).
    difference = {k: round(ra[k] - rb[k], 2) + 0.0 for k in ("expected", "max")}
    dated = after or before
    return {
        "currency": CURRENCY,
        "hours_per_month": HOURS_PER_MONTH,
        "prices_date": dated.prices_date if dated is not None else load_prices().publication_date,
        "before": b,
        "after": a,
        "difference": difference,
        "note": note,
    }


def policy_input(change: dict) -> dict:
    """The ``input.cost`` document policies read (``docs/cost.md``).

    ``{"currency", "prices_date", "monthly_usd": {"expected", "max"}, "before_monthly_usd":
    {"expected", "max"} | None, "increase_usd": {"expected", "max"}}``, USD per month,
    rounded to cents; ``before_monthly_usd`` is ``None`` for a new deployment (its whole
    cost is the increase).
    """
    after, before = change.get("after"), change.get("before")

    def rng(est):
        return {"expected": round(est["expected"], 2), "max": round(est["max"], 2)}

    return {
        "currency": change["currency"],
        "prices_date": change["prices_date"],
        "monthly_usd": rng(after) if after else {"expected": 0.0, "max": 0.0},
        "before_monthly_usd": rng(before) if before else None,
        "increase_usd": dict(change["difference"]),
    }


def estimate_pair(
    dep: Deployment,
    rendered: DesiredState,
    before_state: DesiredState | dict | None,
    config: Config,
    before_config: Config | None = None,
    before_dep: Deployment | None = None,
    *,
    same: bool = False,
) -> tuple[dict, CostError | None]:
    """(``cost_change`` dict, the head side's CostError or None) of one planned deployment.

    The head side's failure is returned for the caller to report as a finding; the
    before side's (a base that no longer prices) becomes a note, as the plan notes a
    base that does not render.
    """
    try:
        after = estimate_rendered(rendered, dep, config)
    except CostError as exc:
        return cost_change(None, None, note=f"cannot estimate: {exc.message}"), exc
    if same:
        return cost_change(after, after, same=True), None
    try:
        before = estimate_rendered(before_state, before_dep, before_config or config)
    except (CostError, ModelopsError) as exc:
        return cost_change(None, after, note=f"before: cannot estimate ({exc.message})"), None
    return cost_change(before, after), None


@dataclass
class Prepared:
    """One deployment rendered and priced before the policy check (the plan reuses it).

    Attributes:
        rendered: the DesiredState at the head without a build (``None`` if it failed).
        error: why it does not render (reported by the plan as before), else ``None``.
        old_state: the before side as a DesiredState dict (ledger or merge base), or
            ``None``; ``old_error``: why the merge base does not render, else ``None``.
        cost: :func:`cost_change` of the two; ``{}`` when the head does not render.
        cost_error: the head's :class:`CostError` (a finding), else ``None``.
    """

    rendered: DesiredState | None = None
    error: ModelopsError | None = None
    old_state: dict | None = None
    old_error: ModelopsError | None = None
    cost: dict | None = None
    cost_error: CostError | None = None


def prepare_one(
    dep: Deployment,
    old_state: dict | None,
    config: Config,
    *,
    old: Deployment | None = None,
    base_config: Config | None = None,
    same: bool = False,
) -> Prepared:
    """Render ``dep`` (as apply would, without a build) and price it against the before side.

    Args:
        dep: the deployment at the head.
        old_state: the before side as recorded (the ledger's ``desiredState``), or ``None``.
        config: the head's configuration.
        old, base_config: with ``old`` (the deployment at the merge base) the before side
            is rendered from it under ``base_config`` instead; a failure is kept in
            ``old_error``.
        same: the spec is unchanged since the base (``plan --all``): the before side is
            the head's own state, priced once.

    Never raises for a render or price failure (they are kept on the result); the ledger
    read may raise ``LedgerError`` (corrupt record).
    """
    out = Prepared(old_state=old_state)
    try:
        out.rendered = render_live(dep, None, config)
    except ModelopsError as exc:
        out.error = exc
        return out
    before: DesiredState | dict | None = old_state
    if old is not None and not same:
        try:
            before = render_live(old, None, base_config or config)
            out.old_state = state_dict(before)
        except ModelopsError as exc:
            out.old_error, before = exc, None
    out.cost, out.cost_error = estimate_pair(
        dep, out.rendered, before, config, base_config, old, same=same
    )
    return out


def deletion_cost(old_state: dict | None, config: Config, old: Deployment | None = None) -> dict:
    """:func:`cost_change` of a deployment planned for deletion (after: nothing)."""
    try:
        before = estimate_rendered(old_state, old, config)
    except (CostError, ModelopsError) as exc:
        return cost_change(None, None, note=f"before: cannot estimate ({exc.message})")
    return cost_change(before, None)


@dataclass
class CostTable:
    """``modelops cost --env ENV``: what is live (ledger) and what the specs say.

    Attributes:
        env: the environment.
        rows: one per deployment, sorted by team then deployment: ``{"deployment",
            "name", "team", "platform", "live", "specs", "difference"}``; ``live`` and
            ``specs`` are ``{"expected", "max"}`` (USD/month) or ``None`` (not applied /
            no spec); ``difference`` is specs minus live.
        teams: ``{team: {"live", "specs", "difference", "deployments"}}``.
        total: ``{"live", "specs", "difference", "deployments"}``.
        prices_date: the price snapshot's publication date.
        diagnostics: specs that could not be loaded, rendered or priced (exit 1).
        notes: live records that could not be priced (named, with why).
    """

    env: str
    rows: list[dict]
    teams: dict[str, dict]
    total: dict
    prices_date: str
    diagnostics: list[Diagnostic]
    notes: list[str]

    def to_dict(self) -> dict:
        """JSON-ready mapping of the table (USD per month of 730 h)."""
        return {
            "environment": self.env,
            "currency": CURRENCY,
            "hours_per_month": HOURS_PER_MONTH,
            "prices_date": self.prices_date,
            "deployments": self.rows,
            "teams": self.teams,
            "total": self.total,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "notes": list(self.notes),
        }


def _add(into: dict | None, est: dict | None) -> dict | None:
    if est is None:
        return into
    into = into or dict(_ZERO)
    return {k: round(into[k] + est[k], 2) for k in ("expected", "max")}


def _sum_rows(rows: list[dict]) -> dict:
    out = {"live": None, "specs": None, "deployments": len(rows)}
    for row in rows:
        out["live"] = _add(out["live"], row["live"])
        out["specs"] = _add(out["specs"], row["specs"])
    live, specs = out["live"] or _ZERO, out["specs"] or _ZERO
    out["difference"] = {k: round(specs[k] - live[k], 2) for k in ("expected", "max")}
    return out


def cost_table(config: Config, env: str, deployments: list[Deployment], diagnostics) -> CostTable:
    """Price what is live in ``env`` (its ledger records) and what ``deployments`` (the
    valid specs resolved for ``env``) would deploy, by deployment and by team.

    Args:
        config: repository configuration (state directory, Kubernetes rates).
        env: the environment.
        deployments: the specs' deployments in ``env`` (``load_all`` output, valid ones).
        diagnostics: the spec findings so far (extended with render and price failures).

    Raises:
        LedgerError: a corrupt ledger record.
        PriceSnapshotError: the shipped snapshot is malformed.
    """
    diags = list(diagnostics)
    notes: list[str] = []
    by_key: dict[str, dict] = {}

    def row(key: str, name: str, team: str, platform: str) -> dict:
        return by_key.setdefault(
            key,
            {
                "deployment": key,
                "name": name,
                "team": team,
                "platform": platform,
                "live": None,
                "specs": None,
            },
        )

    deps = {d.name: d for d in deployments if d.env == env}
    for dep in deps.values():
        try:
            est = estimate_rendered(render_live(dep, None, config), dep, config)
        except CostError as exc:
            diags.append(cost_diagnostic(dep, exc))
            continue
        except ModelopsError as exc:
            diags.extend(exc.diagnostics or [Diagnostic(dep.spec.locate(()), "", exc.message)])
            continue
        row(dep.key, dep.name, est.team, est.platform)["specs"] = {
            "expected": round(est.expected, 2),
            "max": round(est.max, 2),
        }
    for record in Ledger.of(config).all():
        if record.environment != env or not record.desiredState:
            continue
        try:
            est = estimate_rendered(record.desiredState, deps.get(record.name), config)
        except (CostError, ModelopsError) as exc:
            notes.append(f"{record.key}: the live state cannot be priced ({exc.message})")
            continue
        r = row(record.key, record.name, est.team, est.platform)
        r["team"] = r["team"] or est.team
        r["live"] = {"expected": round(est.expected, 2), "max": round(est.max, 2)}
    rows = sorted(by_key.values(), key=lambda r: (r["team"], r["deployment"]))
    for r in rows:
        live, specs = r["live"] or _ZERO, r["specs"] or _ZERO
        r["difference"] = {k: round(specs[k] - live[k], 2) for k in ("expected", "max")}
    teams = {}
    for team in sorted({r["team"] for r in rows}):
        teams[team] = _sum_rows([r for r in rows if r["team"] == team])
    return CostTable(
        env, rows, teams, _sum_rows(rows), load_prices().publication_date, diags, notes
    )


def policy_costs(deployments: list[Deployment], config: Config, report) -> dict[str, dict]:
    """``input.cost`` for ``apply``: each deployment rendered and priced against its ledger
    record (what is live), by deployment key, for :func:`~reconciler.flow.gates.gate`.

    A head that cannot be priced is a spec finding added to ``report.diagnostics`` (it
    blocks, as in the plan); a render failure is left to apply's own render.

    Raises:
        LedgerError: a corrupt ledger record.
    """
    ledger = Ledger.of(config)
    extra: dict[str, dict] = {}
    for dep in deployments:
        record = ledger.get(dep.name, dep.env)
        p = prepare_one(dep, record.desiredState if record else None, config)
        if p.cost_error is not None:
            report.diagnostics.append(cost_diagnostic(dep, p.cost_error))
        elif p.cost:
            extra[dep.key] = {POLICY_INPUT_KEY: policy_input(p.cost)}
    return extra
