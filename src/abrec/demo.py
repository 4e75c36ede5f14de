"""The whole loop in one call: offline evaluation, service, simulated A/B test, decision, report.

`run_demo(DemoOptions(...))` is what `abrec demo` runs:

1. offline: `abrec.pipeline.run` on the demo config (MovieLens latest-small, protocol
   ml-small-temporal-v1, bundled MiniLM; embeddings cached on disk), leaderboard printed,
   fitted models saved as a `ModelBundle` in the run folder;
2. online: the real service (`ServiceThread`, SQLite store in the run folder) on a free
   loopback port; the experiment is created and started through the admin API;
3. simulated users (`abrec.simulate`) request recommendations and click; the demo polls
   `/v1/experiments/{id}/results` and keeps the running always-valid confidence sequence
   (intersection of the per-look intervals, running-minimum p-value); it stops early when
   the sequential test rejects, else at the planned sample;
4. decision (SRM, CTR lift, CUPED, guardrails) printed and `report.html` + `results.json`
   written by `abrec.report`.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from abrec import fmt
from abrec.errors import AbrecError
from abrec.experiment.analysis import ExperimentResults
from abrec.simulate.click_model import ClickModel
from abrec.simulate.population import Population
from abrec.simulate.runner import SimulationConfig, SimulationProgress, Simulator
from abrec.simulate.scenario import experiment_spec
from abrec.stats import EffectResult

if TYPE_CHECKING:
    from rich.console import Console

    from abrec.pipeline import RunConfig, RunOutput

EXPERIMENT_ID = "demo-ctr"

#: Offline config of the demo (same schema as `abrec evaluate --config`).
DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "seed": 42,
    "dataset": {"kind": "movielens", "n_tags": 5},
    "protocol": {"name": "ml-small-temporal-v1"},
    "evaluation": {
        "baseline": "ease",
        "ks": [10],
        "primary_metric": "ndcg@10",
        "primary_test": "permutation",
        "n_bootstrap": 1000,
        "n_permutations": 2000,
        "diversity": False,
        "auc": False,
    },
    "models": [
        {"name": "popularity", "kind": "popularity"},
        {"name": "ease", "kind": "ease", "params": {"lambda_": 500.0}},
        {"name": "lm", "kind": "lm"},
        {"name": "hybrid", "kind": "hybrid"},
    ],
}


class DemoError(AbrecError, RuntimeError):
    """The demo could not complete (the message says which stage and why)."""


@dataclass
class DemoOptions:
    """Knobs of `abrec demo` (defaults = the documented demo)."""

    output: Path | None = None
    aa: bool = False
    users: int | None = None
    seed: int = 0
    quiet: bool = False
    config: Path | None = None
    control_model: str = "ease"
    treatment_model: str = "hybrid"
    sessions_mean: float = 5.0
    k: int = 10
    concurrency: int = 6
    poll_s: float = 2.0
    min_units: int = 100
    keep_bundle: bool = False
    click_model: ClickModel = field(default_factory=ClickModel)


@dataclass
class Look:
    """One poll of the running experiment: the server's sequential CTR result and the counts."""

    elapsed_s: float
    units: int
    exposures: int
    clicks: int
    estimate: float
    low: float
    high: float
    p_value: float
    decision: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "variant": "treatment"}


def look_at(results: ExperimentResults | None, elapsed_s: float) -> Look | None:
    """The server's running always-valid CTR test at this poll; None while it has none.

    The server's ``sequential_ctr`` is already the running result over entry-ordered looks
    (intersected confidence sequences, running-minimum p-value); the demo only displays it.
    """
    comp = results.comparison() if results is not None else None
    seq = comp.sequential_ctr if comp is not None else None
    if results is None or seq is None:
        return None
    return Look(
        elapsed_s=elapsed_s,
        units=sum(v.n for v in results.variants),
        exposures=int(sum(v.totals.get("exposures", 0.0) for v in results.variants)),
        clicks=int(sum(v.totals.get("clicks", 0.0) for v in results.variants)),
        estimate=seq.estimate,
        low=seq.ci.low,
        high=seq.ci.high,
        p_value=seq.p_value,
        decision=seq.decision,
    )


@dataclass
class DemoResult:
    """What the demo produced."""

    run_dir: Path
    report: Path
    results: dict[str, Any]
    decision: dict[str, Any]
    timings: dict[str, float]
    analysis: ExperimentResults | None = None


def parse_click_model(pairs: list[str]) -> ClickModel:
    """A `ClickModel` from `name=value` strings (unknown names or bad values raise)."""
    from pydantic import ValidationError

    from abrec.errors import ConfigError, format_validation_error

    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--click {pair!r}: expected name=number, e.g. --click eta=1.0")
    try:
        return ClickModel.model_validate(values)
    except ValidationError as exc:
        msgs = format_validation_error(exc, what="--click")
        raise ConfigError(
            f"--click: {msgs} (parameters: {', '.join(ClickModel.model_fields)})"
        ) from None


def demo_config(path: Path | None) -> RunConfig:
    """The offline run config: `path` if given, else `DEMO_CONFIG`."""
    from abrec import pipeline

    if path is not None:
        return pipeline.load_config(path)
    return pipeline.parse_config(DEMO_CONFIG, "abrec.demo.DEMO_CONFIG")


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the whole loop and write the report (see the module docstring)."""
    from rich.console import Console

    from abrec import pipeline
    from abrec.report import write_report

    con = console or Console()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    run_dir = Path(opts.output) if opts.output is not None else pipeline.default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(opts.config)
    # compare offline against the model the control arm serves, so the report can put
    # the offline difference next to the online lift for the same pair of models
    cfg = cfg.model_copy(
        update={"evaluation": cfg.evaluation.model_copy(update={"baseline": opts.control_model})}
    )
    names = [m.name for m in cfg.models]
    for needed in {opts.control_model, opts.treatment_model}:
        if needed not in names:
            raise DemoError(
                f"model {needed!r} is not in the offline config (it has {names}); "
                "add it to [[models]] or pick another with --control/--treatment"
            )

    # 1. offline ------------------------------------------------------------------------
    con.rule("[bold]1. Offline evaluation")
    off = pipeline.run(
        cfg,
        run_dir / "offline",
        quiet=opts.quiet,
        console=con,
        save_models_dir=run_dir / "bundle",
    )
    pipeline.print_leaderboard(off, con)
    timings["offline_s"] = time.perf_counter() - t0

    # 2./3. online ------------------------------------------------------------------------
    con.rule("[bold]2. Online A/B test with simulated users" + (" (A/A)" if opts.aa else ""))
    population = Population.from_split(
        off.split.train, off.split.test, click_model=opts.click_model, k=opts.k, seed=opts.seed
    )
    users = population.sample(opts.users, seed=opts.seed)
    sim_cfg = SimulationConfig(
        experiment=EXPERIMENT_ID,
        n_users=len(users),
        sessions_mean=opts.sessions_mean,
        k=opts.k,
        concurrency=opts.concurrency,
        seed=opts.seed,
        click_model=opts.click_model,
    )
    spec = experiment_spec(
        EXPERIMENT_ID,
        opts.control_model,
        opts.treatment_model,
        aa=opts.aa,
        seed=f"{EXPERIMENT_ID}-{opts.seed}",
        planned_units=len(users),
    )
    t1 = time.perf_counter()
    online = _run_online(run_dir, spec, users, sim_cfg, opts, con)
    timings["online_s"] = time.perf_counter() - t1
    if not opts.keep_bundle:
        # the served models are ~650 MB of dense EASE weights; the resolved config and
        # the seed reproduce them, so the run folder keeps them only when asked to
        shutil.rmtree(run_dir / "bundle", ignore_errors=True)

    # 4. decision + report ----------------------------------------------------------------
    analysis: ExperimentResults | None = online["analysis"]
    looks: list[Look] = online["looks"]
    decision = decide(analysis, aa=opts.aa)
    timings["total_s"] = time.perf_counter() - t0
    results = build_results(
        off,
        analysis,
        looks,
        decision,
        spec=spec,
        progress=online["progress"],
        opts=opts,
        store_url=online["store_url"],
        stopped_by=online["stopped_by"],
        timings=timings,
    )
    report = write_report(run_dir, results)
    print_decision(con, results)
    con.print(f"Report: {report}\nResults: {run_dir / 'results.json'}")
    return DemoResult(run_dir, report, results, decision, timings, analysis)


def _run_online(
    run_dir: Path,
    spec: dict[str, Any],
    users: list[Any],
    sim_cfg: SimulationConfig,
    opts: DemoOptions,
    con: Console,
) -> dict[str, Any]:
    """Start the service, run and monitor the simulated experiment, stop it, fetch results."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from abrec.serve.config import ADMIN_TOKEN_ENV, ServeConfig
    from abrec.serve.runner import ServiceThread

    token = os.environ.get(ADMIN_TOKEN_ENV) or secrets.token_urlsafe(24)
    os.environ[ADMIN_TOKEN_ENV] = token  # read by create_app
    headers = {"Authorization": f"Bearer {token}"}
    db = (run_dir / "events.db").resolve()
    store_url = f"sqlite:///{db}"
    serve_cfg = ServeConfig.model_validate(
        {
            "store_url": store_url,
            "bundle": str((run_dir / "bundle").resolve()),
            "fallback_model": "popularity",
        }
    )
    looks: list[Look] = []
    with ServiceThread(serve_cfg) as svc, httpx.Client(base_url=svc.url, timeout=60.0) as http:
        if not opts.quiet:
            con.print(f"service on {svc.url}  (store {store_url})")
        _check(http.post("/v1/admin/experiments", json=spec, headers=headers), "create experiment")
        _check(http.post(f"/v1/admin/experiments/{spec['id']}/start", headers=headers), "start")
        sim = Simulator(svc.url, users, sim_cfg)
        con.print(
            f"{len(users)} simulated users, {len(sim.plan)} planned sessions, "
            f"{sim_cfg.concurrency} concurrent clients; "
            f"variants: control={spec['variants'][0]['model']}, "
            f"treatment={spec['variants'][1]['model']}"
        )
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["progress"] = sim.run()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="abrec-sim", daemon=True)
        start = time.perf_counter()
        stopped_by = "planned sample reached"
        progress = Progress(
            TextColumn("[bold]sessions"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=con,
            disable=opts.quiet,
        )
        with progress:
            task = progress.add_task("sim", total=len(sim.plan), status="starting")
            thread.start()
            while thread.is_alive():
                thread.join(timeout=opts.poll_s)
                look = look_at(_results(http, spec["id"]), time.perf_counter() - start)
                if look is not None:
                    looks.append(look)
                p = sim.progress()
                progress.update(task, completed=p.sessions_done, status=_status(p, look))
                if (
                    look is not None
                    and look.decision == "reject"
                    and look.units >= opts.min_units
                    and not sim.stopped
                ):
                    stopped_by = "sequential test decided"
                    sim.stop()
            p = sim.progress()
            progress.update(task, completed=p.sessions_done, status=_status(p, None))
        if "error" in outcome:
            raise DemoError(f"simulation failed: {outcome['error']}") from outcome["error"]
        _check(http.post(f"/v1/admin/experiments/{spec['id']}/stop", headers=headers), "stop")
        analysis = _results(http, spec["id"])
        last = look_at(analysis, time.perf_counter() - start)
        if last is not None:
            looks.append(last)
    return {
        "analysis": analysis,
        "looks": looks,
        "progress": outcome["progress"],
        "store_url": store_url,
        "stopped_by": stopped_by,
    }


def _check(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise DemoError(f"{what}: the service answered {resp.status_code}: {resp.text[:300]}")
    data = resp.json()
    return data if isinstance(data, dict) else {"items": data}


def _results(http: httpx.Client, exp_id: str) -> ExperimentResults | None:
    resp = http.get(f"/v1/experiments/{exp_id}/results")
    if resp.status_code == 409:  # not analysable yet (no data)
        return None
    _check(resp, "results")
    return ExperimentResults.parse(resp.content)


def _status(p: SimulationProgress, look: Look | None) -> str:
    s = f"units {p.units_seen}  clicks {p.clicks}"
    if look is not None:
        s += f"  CTR diff {_f(look.estimate)} CS [{_f(look.low)}, {_f(look.high)}]"
    return s


# ----------------------------------------------------------------------------- decision
def decide(results: ExperimentResults | None, *, aa: bool = False) -> dict[str, Any]:
    """Decision from the SRM check, the server's running sequential test and the guardrails.

    Only the always-valid sequential test can declare a winner (the demo peeks after
    every poll, so a fixed-horizon p-value would not be valid); an SRM alarm blocks
    any decision; a failed guardrail blocks shipping the treatment.
    """
    comp = results.comparison() if results is not None else None
    seq = comp.sequential_ctr if comp is not None else None
    label = "A/A test: " if aa else ""
    if results is not None and results.srm is not None and results.srm.mismatch:
        return {
            "winner": None,
            "verdict": f"{label}no decision: sample-ratio mismatch",
            "text": (
                f"SRM p = {results.srm.p_value:.2g} < {results.srm.threshold:g}; "
                "fix assignment/logging first."
            ),
        }
    if comp is None or seq is None:
        return {
            "winner": None,
            "verdict": f"{label}no winner: not enough data",
            "text": "the sequential test needs clicks and exposures in both arms; run more users.",
        }
    failed = [g.metric for g in comp.guardrails if not g.passed]
    cs = f"[{_f(seq.ci.low)}, {_f(seq.ci.high)}]"
    if seq.decision == "reject":
        better = "treatment" if seq.ci.low > 0 else "control"
        if better == "treatment" and failed:
            return {
                "winner": None,
                "verdict": f"{label}treatment has a higher CTR, but guardrails failed: {failed}",
                "text": f"always-valid CI for the CTR difference {cs}; do not ship.",
            }
        return {
            "winner": better,
            "verdict": f"{label}{better} wins on click-through rate",
            "text": (
                f"always-valid 95% CI for CTR(treatment) - CTR(control) {cs} excludes 0; "
                f"always-valid p = {_g(seq.p_value)}."
            ),
        }
    return {
        "winner": None,
        "verdict": f"{label}no winner: no significant CTR difference",
        "text": (
            f"always-valid 95% CI for CTR(treatment) - CTR(control) {cs} contains 0 "
            f"(always-valid p = {_g(seq.p_value)})."
        ),
    }


# ----------------------------------------------------------------------------- results dict
def offline_section(off: RunOutput) -> dict[str, Any]:
    """Leaderboard (slice 'all') and paired comparisons for the report."""
    res = off.result
    primary = off.config.evaluation.primary_metric
    test = off.config.evaluation.primary_test
    s = res.summary[res.summary["slice"] == "all"]
    k = primary.partition("@")[2]
    metrics = [m for m in (primary, f"recall@{k}", f"map@{k}", f"mrr@{k}") if m in set(s["metric"])]
    board = []
    for model in dict.fromkeys(s["model"]):
        cells = {}
        for m in metrics:
            row = s[(s["model"] == model) & (s["metric"] == m)]
            if not row.empty:
                r = row.iloc[0]
                cells[m] = {"estimate": r["mean"], "low": r["ci_low"], "high": r["ci_high"]}
        board.append({"model": model, "metrics": cells})
    board.sort(key=lambda b: -(b["metrics"].get(primary, {}).get("estimate") or 0.0))
    comparisons = []
    c = res.comparisons
    c = c[(c["slice"] == "all") & (c["metric"] == primary)]
    for r in c.to_dict("records"):
        comparisons.append(
            {
                "model": r["model"],
                "baseline": r["baseline"],
                "metric": primary,
                "estimate": r["diff"],
                "low": r["diff_low"],
                "high": r["diff_high"],
                "p_value": r[f"p_{test}_holm"],
                "test": f"paired {test}, Holm",
            }
        )
    return {
        "primary_metric": primary,
        "baseline": res.baseline,
        "protocol": res.protocol,
        "leaderboard": board,
        "comparisons": comparisons,
        "n_scored_users": res.info.get("n_scored_users"),
    }


def online_section(results: ExperimentResults | None) -> dict[str, Any]:
    """The report's online section from the server's typed results."""
    if results is None:
        return {}
    effects, guards, seqs = [], [], []
    for comp in results.comparisons:
        t = comp.treatment
        for mt in comp.tests:
            assert isinstance(mt.result, EffectResult)
            effects.append(_effect(t, mt.result, mt.p_value_holm))
        if comp.cuped_clicks_per_unit is not None:
            effects.append(_effect(t, comp.cuped_clicks_per_unit, None))
        seq = comp.sequential_ctr
        if seq is not None:
            seqs.append(
                {
                    "variant": t,
                    "metric": seq.metric or "ctr",
                    "estimate": seq.estimate,
                    "low": seq.ci.low,
                    "high": seq.ci.high,
                    "p_value": seq.p_value,
                    "decision": seq.decision,
                }
            )
        for g in comp.guardrails:
            guards.append({"variant": t, **g.to_dict()})
    variants = [
        {
            "name": v.variant,
            "model": v.model,
            "weight": v.weight,
            "units": v.n,
            **{k: int(x) for k, x in v.totals.items()},
            "ctr": v.means.get("ctr"),
        }
        for v in results.variants
    ]
    return {
        "experiment": results.experiment,
        "status": results.status,
        "control": results.control,
        "variants": variants,
        "srm": None if results.srm is None else results.srm.to_dict(),
        "effects": effects,
        "sequential": seqs,
        "guardrails": guards,
        "notes": list(results.notes),
    }


def _effect(variant: str, r: EffectResult, p_holm: float | None) -> dict[str, Any]:
    return {
        "variant": variant,
        "metric": r.metric,
        "method": r.method,
        "control_mean": r.control_mean,
        "treatment_mean": r.treatment_mean,
        "estimate": r.absolute.estimate,
        "low": r.absolute.low,
        "high": r.absolute.high,
        "relative": r.relative.estimate,
        "relative_low": r.relative.low,
        "relative_high": r.relative.high,
        "p_value": r.p_value,
        "p_adjusted": p_holm,
        "variance_reduction": r.variance_reduction,
    }


def build_results(
    off: RunOutput,
    analysis: ExperimentResults | None,
    looks: list[Look],
    decision: dict[str, Any],
    *,
    spec: dict[str, Any],
    progress: SimulationProgress,
    opts: DemoOptions,
    store_url: str,
    stopped_by: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The report/results.json payload (schema in `abrec.report.html`)."""
    control_model = spec["variants"][0]["model"]
    treatment_model = spec["variants"][1]["model"]
    offline = offline_section(off)
    online = online_section(analysis)
    agreement = []
    comp = analysis.comparison() if analysis is not None else None
    ctr = next((c for c in comp.tests if c.metric == "ctr"), None) if comp is not None else None
    off_cmp = next(
        (c for c in offline["comparisons"] if c["model"] == treatment_model),
        None,
    )
    if ctr is not None:
        assert isinstance(ctr.result, EffectResult)
        rel = ctr.result.relative
        if treatment_model == control_model:
            off_est: dict[str, Any] = {"estimate": 0.0, "low": 0.0, "high": 0.0}
        elif off_cmp is not None and offline["baseline"] == control_model:
            off_est = off_cmp
        else:
            off_est = {}
        agreement.append(
            {
                "variant": "treatment",
                "offline_metric": offline["primary_metric"],
                "offline_estimate": off_est.get("estimate"),
                "offline_low": off_est.get("low"),
                "offline_high": off_est.get("high"),
                "online_metric": "ctr",
                "online_estimate": rel.estimate,
                "online_low": rel.low,
                "online_high": rel.high,
            }
        )
    title = f"abrec demo: {control_model} (control) vs {treatment_model} (treatment)"
    return {
        "title": ("A/A " if opts.aa else "") + title,
        "meta": {
            "mode": "A/A" if opts.aa else "A/B",
            "experiment": spec["id"],
            "control model": control_model,
            "treatment model": treatment_model,
            "simulated users": progress.units_seen,
            "sessions (done / planned)": f"{progress.sessions_done} / {progress.sessions_planned}",
            "stopped by": stopped_by,
            "seed": opts.seed,
            "store": store_url,
            "offline time (s)": round(timings.get("offline_s", math.nan), 1),
            "online time (s)": round(timings.get("online_s", math.nan), 1),
        },
        "decision": decision,
        "offline": offline,
        "online": online,
        "timeline": [look.to_dict() for look in looks],
        "agreement": agreement,
        "sequential_running": {
            "low": looks[-1].low if looks else None,
            "high": looks[-1].high if looks else None,
            "p_value": looks[-1].p_value if looks else None,
            "looks": len(looks),
            "rejected": bool(looks) and looks[-1].decision == "reject",
        },
        "simulation": {
            **progress.to_dict(),
            "click_model": opts.click_model.model_dump(),
            "sessions_mean": opts.sessions_mean,
            "k": opts.k,
        },
        "spec": spec,
        "analysis": None if analysis is None else analysis.to_dict(),
        "timings": timings,
    }


def print_decision(con: Console, results: dict[str, Any]) -> None:
    """The decision block printed at the end of the demo."""
    from rich.table import Table

    con.rule("[bold]3. Decision")
    on = results["online"]
    table = Table(title="Assignment and outcomes", title_justify="left")
    for col in ("variant", "model", "units", "exposures", "clicks", "CTR"):
        table.add_column(col, justify="left" if col in ("variant", "model") else "right")
    for v in on["variants"]:
        table.add_row(
            str(v.get("name")),
            str(v.get("model")),
            str(v.get("units")),
            str(v.get("exposures")),
            str(v.get("clicks")),
            fmt.num(v.get("ctr"), 4, fixed=True),
        )
    con.print(table)
    srm = on.get("srm") or {}
    if srm:
        ok = "[green]OK[/]" if not srm.get("mismatch") else "[bold red]MISMATCH[/]"
        con.print(
            f"SRM check: {ok} (chi2 = {srm.get('chi2', 0):.3f}, p = {srm.get('p_value', 1):.3g})"
        )
    eff = {(e["metric"], e["method"]): e for e in on["effects"]}
    ctr_e = next((e for (m, _), e in eff.items() if m == "ctr"), None)
    if ctr_e is not None:
        con.print(
            f"CTR lift (treatment vs control): {_pct(ctr_e['relative'])} "
            f"[{_pct(ctr_e['relative_low'])}, {_pct(ctr_e['relative_high'])}] 95% CI, "
            f"fixed-horizon p = {_g(ctr_e['p_value'])} (Holm {_g(ctr_e['p_adjusted'])}); "
            f"absolute {_f(ctr_e['estimate'])} [{_f(ctr_e['low'])}, {_f(ctr_e['high'])}]"
        )
    con.print(
        f"Stopped: {results['meta'].get('stopped by')} ({results['meta'].get('sessions (done / planned)')} sessions)"
    )
    run = results.get("sequential_running") or {}
    con.print(
        f"Sequential (always-valid, {len(results.get('timeline') or [])} looks): CTR difference CI "
        f"[{_f(run.get('low'))}, {_f(run.get('high'))}], p = {_g(run.get('p_value'))}"
    )
    cuped = next((e for e in on["effects"] if e.get("variance_reduction") is not None), None)
    if cuped is not None:
        con.print(
            f"CUPED clicks/unit: lift {_pct(cuped['relative'])} "
            f"[{_pct(cuped['relative_low'])}, {_pct(cuped['relative_high'])}], p = {_g(cuped['p_value'])}; "
            f"variance reduction {_pct(cuped['variance_reduction'])}"
        )
    for g in on.get("guardrails") or []:
        status = "[green]pass[/]" if g.get("passed") else "[bold red]FAIL[/]"
        con.print(
            f"Guardrail {g.get('metric')}: {status} "
            f"(difference {_f(g.get('estimate'))}, always-valid CI "
            f"[{_f(g.get('low'))}, {_f(g.get('high'))}])"
        )
    for a in results.get("agreement") or []:
        con.print(
            f"Offline {a['offline_metric']} difference {_f(a['offline_estimate'])} "
            f"[{_f(a['offline_low'])}, {_f(a['offline_high'])}]  vs  online CTR lift "
            f"{_pct(a['online_estimate'])} [{_pct(a['online_low'])}, {_pct(a['online_high'])}]"
        )
    d = results["decision"]
    style = "bold green" if d.get("winner") else "bold yellow"
    con.print(f"[{style}]Decision: {d['verdict']}[/] — {d['text']}")


def _pct(x: Any) -> str:
    return fmt.pct(x)


def _f(x: Any) -> str:
    return fmt.num(x, signed=True, fixed=True)


def _g(x: Any) -> str:
    return fmt.num(x, 3)


__all__ = [
    "DEMO_CONFIG",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "Look",
    "build_results",
    "decide",
    "look_at",
    "offline_section",
    "online_section",
    "parse_click_model",
    "run_demo",
]
