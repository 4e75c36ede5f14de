"""The whole loop in one call: offline evaluation, service, simulated A/B test, decision, report.

`run_demo(DemoOptions(...))` is what `abrec demo` runs:

1. offline: `abrec.offline.run.run` on the demo config (MovieLens latest-small, protocol
   ml-small-temporal-v1, bundled MiniLM; embeddings cached on disk), leaderboard printed,
   fitted models saved as a `ModelBundle` in the run folder;
2. online: the real service (`ServiceThread`, SQLite store in the run folder) on a free
   loopback port; the experiment is created and started through the admin API;
3. simulated users (`abrec.simulate`) request recommendations and click; the demo polls
   `/v1/experiments/{id}/results` and displays the server's running always-valid CTR test
   (intersection of the per-look intervals, running-minimum p-value); it stops early when
   the server's sequential decision is "reject", else at the planned sample;
4. decision (SRM, CTR lift, CUPED, guardrails) printed, and the typed
   `abrec.report.DemoReport` written as `report.html` + `results.json` by `abrec.report`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from abrec import fmt
from abrec.errors import AbrecError
from abrec.experiment.analysis import ExperimentResults
from abrec.experiment.spec import ExperimentSpec
from abrec.report.model import (
    Agreement,
    Decision,
    DemoReport,
    InterleavingSection,
    LeaderboardRow,
    Look,
    OfflineComparison,
    OfflineSection,
    RunInfo,
    SimulationInfo,
)
from abrec.simulate.click_model import ClickModel
from abrec.simulate.online import check, fetch_results
from abrec.simulate.population import Population
from abrec.simulate.runner import SimulationConfig, SimulationProgress, Simulator
from abrec.simulate.scenario import experiment_spec
from abrec.stats import EffectResult, Interval

if TYPE_CHECKING:
    from rich.console import Console

    from abrec.offline.config import RunConfig
    from abrec.offline.run import RunOutput
    from abrec.simulate.online import OnlineOutcome

EXPERIMENT_ID = "demo-ctr"
INTERLEAVING_ID = "demo-interleaving"
FALLBACK_MODEL = "popularity"
"""What the service answers with for an experiment it cannot serve (kept in the bundle)."""

#: The champion's fine-tuning settings (`abrec.train.TrainConfig` keys), as in
#: `examples/finetune.toml` and `examples/lm_vs_cf.toml`.
FINETUNE_RECIPE: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 5e-5,
    "warmup_ratio": 0.1,
    "max_examples_per_user": 10,
    "max_seq_length": 64,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "dropout": 0.1,
    "freeze_layers": 3,
    "patience": 1,
    "restore_best": True,
    "val_users": 300,
    "n_negatives": 99,
}

#: Offline config of the demo (same schema as `abrec evaluate --config`).
DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "seed": 42,
    "dataset": {"kind": "movielens", "n_tags": 5},
    "protocol": {"name": "ml-small-temporal-v1"},
    "evaluation": {
        "baseline": "ltr_cf",
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
        {"name": "ltr_cf", "kind": "ltr_cf", "params": {"n_cf": 200}},
        {
            "name": "ltr_ft_drop_cb2",
            "kind": "ltr",
            "params": {
                "n_cf": 200,
                "n_lm": 50,
                "seed": 42,
                "cf_dropout": 0.2,
                "cold_boost": 2.0,
                "finetune": FINETUNE_RECIPE,
            },
        },
    ],
}
"""Every model the demo can serve; a run fits and evaluates only the two it serves. The
defaults are the language-model champion chosen on the validation split (`ltr_ft_drop_cb2`:
the re-ranker on fine-tuned MiniLM with CF masking and a cold-item prior) against
the best collaborative model there (`ltr_cf`): README, "Language model vs collaborative
filtering"; `examples/lm_vs_cf.toml` holds the same models."""


#: Storage of the served EASE-family weights (`abrec.models.compact`): float16 and the 500
#: entries of largest |value| per row. k was chosen on a validation split of the training
#: period; `benchmarks/bench_compact.py` measures size and NDCG@10 against dense float32.
COMPACT_WEIGHTS: dict[str, Any] = {"storage_dtype": "float16", "prune_top_k": 500}
COMPACT_KINDS = frozenset({"ease", "text_ease", "l3ae", "ltr", "ltr_cf"})
"""Model kinds whose item-item weights take `storage_dtype` and `prune_top_k`."""


def compact_config(cfg: RunConfig, settings: dict[str, Any] | None = None) -> RunConfig:
    """`cfg` with `settings` (default `COMPACT_WEIGHTS`) on every EASE-family model; a key a
    model sets itself is kept."""
    settings = COMPACT_WEIGHTS if settings is None else settings
    models = [
        m.model_copy(update={"params": {**settings, **m.params}}) if m.kind in COMPACT_KINDS else m
        for m in cfg.models
    ]
    return cfg.model_copy(update={"models": models})


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
    control_model: str = "ltr_cf"
    treatment_model: str = "ltr_ft_drop_cb2"
    finetune: bool = False
    sessions_mean: float = 5.0
    k: int = 10
    concurrency: int = 6
    poll_s: float = 2.0
    min_units: int = 100
    keep_bundle: bool = False
    interleaving: bool = True
    compact: bool = True
    click_model: ClickModel = field(default_factory=ClickModel)


def look_at(results: ExperimentResults | None, elapsed_s: float) -> Look | None:
    """The server's running always-valid CTR test at this poll; None while it has none.

    The server's ``sequential_ctr`` is already the running result over entry-ordered looks
    (intersected confidence sequences, running-minimum p-value); the demo only displays it.
    """
    comp = results.comparison() if results is not None else None
    if results is None or comp is None or comp.sequential_ctr is None:
        return None
    return Look(
        elapsed_s=elapsed_s,
        units=sum(v.n for v in results.variants),
        exposures=round(sum(v.totals.get("exposures", 0.0) for v in results.variants)),
        clicks=round(sum(v.totals.get("clicks", 0.0) for v in results.variants)),
        sequential=comp.sequential_ctr,
        variant=comp.treatment,
    )


@dataclass
class DemoResult:
    """What the demo produced."""

    run_dir: Path
    report_path: Path
    report: DemoReport
    timings: dict[str, float]

    @property
    def decision(self) -> Decision:
        """The decision shown in the report (always set by the demo)."""
        assert self.report.decision is not None
        return self.report.decision

    @property
    def analysis(self) -> ExperimentResults | None:
        """The service's final results (None when it had none)."""
        return self.report.online


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
    from abrec.offline.config import load_config, parse_config

    if path is not None:
        return load_config(path)
    return parse_config(DEMO_CONFIG, "abrec.demo.DEMO_CONFIG")


def served_config(cfg: RunConfig, opts: DemoOptions) -> RunConfig:
    """`cfg` with only the models the two arms serve (control first) and the service's fallback
    (`FALLBACK_MODEL`, when the config has it); the offline baseline is the control."""
    names = [m.name for m in cfg.models]
    for needed in (opts.control_model, opts.treatment_model):
        if needed not in names:
            raise DemoError(
                f"model {needed!r} is not in the offline config (it has {names}); "
                "add it to [[models]] or pick another with --control/--treatment"
            )
    by_name = {m.name: m for m in cfg.models}
    keep = (opts.control_model, opts.treatment_model, FALLBACK_MODEL)
    served = [by_name[n] for n in dict.fromkeys(keep) if n in by_name]
    # compare offline against the model the control arm serves, so the report can put
    # the offline difference next to the online lift for the same pair of models; the
    # head-to-head names the served treatment (when it reads texts) as the LM champion
    from abrec.models.registry import needs_encoder

    treatment = by_name[opts.treatment_model]
    champion = treatment.name if needs_encoder(treatment.kind) else None
    evaluation = cfg.evaluation.model_copy(
        update={"baseline": opts.control_model, "champion": champion}
    )
    return cfg.model_copy(update={"models": served, "evaluation": evaluation})


def without_missing_finetune(
    cfg: RunConfig, opts: DemoOptions
) -> tuple[RunConfig, DemoOptions, list[str]]:
    """Served models whose fine-tuned encoder is not cached run on frozen vectors instead.

    Fine-tuning MiniLM on the training period takes about 15-35 minutes on 2 CPU cores, so
    the demo trains only with `--finetune`; otherwise such a model is served with the bundled
    MiniLM as is, renamed `<name>_frozen`, and the returned notes say so. A cached encoder
    (from an earlier `--finetune` demo or `abrec evaluate --config examples/lm_vs_cf.toml`)
    is used as is.
    """
    from abrec.data.splits import PROTOCOL_VALIDATION
    from abrec.models.registry import config_class
    from abrec.models.tuning import tuned_encoder_cached
    from abrec.offline.run import load_data, make_split

    tuned = [m for m in cfg.models if m.params.get("finetune") is not None]
    if not tuned:
        return cfg, opts, []
    inter, items = load_data(cfg.dataset)
    split = make_split(cfg, inter)
    models, notes, renamed = [], [], {}
    for m in cfg.models:
        if m.params.get("finetune") is None:
            models.append(m)
            continue
        params = {"validation": PROTOCOL_VALIDATION[cfg.protocol.name], **m.params}
        mcfg = config_class(m.kind).model_validate(params)
        if tuned_encoder_cached(mcfg, split.train, items, m.kind):
            notes.append(f"{m.name}: fine-tuned encoder found in the cache (trained earlier)")
            models.append(m)
        elif opts.finetune:
            notes.append(f"{m.name}: fine-tuning the encoder now (--finetune; cached afterwards)")
            models.append(m)
        else:
            frozen = m.model_copy(
                update={
                    "name": f"{m.name}_frozen",
                    "params": {k: v for k, v in m.params.items() if k != "finetune"},
                }
            )
            renamed[m.name] = frozen.name
            notes.append(
                f"{frozen.name}: {m.name} on the frozen bundled MiniLM (its fine-tuned encoder "
                "is not cached; `abrec demo --finetune` trains it first, about 15-35 min on 2 "
                "CPU cores)"
            )
            models.append(frozen)
    opts = dataclasses.replace(
        opts,
        control_model=renamed.get(opts.control_model, opts.control_model),
        treatment_model=renamed.get(opts.treatment_model, opts.treatment_model),
    )
    champion = cfg.evaluation.champion
    evaluation = cfg.evaluation.model_copy(
        update={
            "baseline": opts.control_model,
            "champion": renamed.get(champion, champion) if champion else None,
        }
    )
    return cfg.model_copy(update={"models": models, "evaluation": evaluation}), opts, notes


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the whole loop and write the report (see the module docstring)."""
    from rich.console import Console

    from abrec.offline.present import print_leaderboard
    from abrec.offline.run import default_run_dir, run
    from abrec.report import write_report

    con = console or Console()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    run_dir = Path(opts.output) if opts.output is not None else default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg, opts, notes = without_missing_finetune(served_config(demo_config(opts.config), opts), opts)
    if opts.compact:
        cfg = compact_config(cfg)

    # 1. offline ------------------------------------------------------------------------
    con.rule("[bold]1. Offline evaluation")
    for note in notes:
        con.print(f"[bold]models:[/] {note}", highlight=False)
    off = run(
        cfg,
        run_dir / "offline",
        quiet=opts.quiet,
        console=con,
        save_models_dir=run_dir / "bundle",
    )
    print_leaderboard(off, con)
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
        # the served models hold EASE weights (compact by default, ~1 GB dense); the
        # resolved config and the seed reproduce them, so the run folder keeps them only
        # when asked to
        shutil.rmtree(run_dir / "bundle", ignore_errors=True)

    # 4. decision + report ----------------------------------------------------------------
    analysis, looks = online.analysis, online.looks
    # an early stop is decided on the server's result at the stopping time (the always-valid
    # guarantee holds there); sessions in flight at the stop still add data to the final
    # analysis, whose running result is a different (later) look
    decision = decide(online.decisive, aa=opts.aa)
    timings["total_s"] = time.perf_counter() - t0
    report = build_report(
        offline_section(off),
        analysis,
        looks,
        decision,
        spec=spec,
        progress=online.progress,
        opts=opts,
        store_url=online.store_url,
        stopped_by=online.stopped_by,
        timings=timings,
        model_notes=notes,
    )
    if online.interleaving is not None:
        stop = stopping_look(report)
        ab_units = stop.units if stop is not None else _units(analysis)
        section = interleaving_section(online.interleaving, decision, ab_units, stop is not None)
        report = dataclasses.replace(report, interleaving=section)
    path = write_report(run_dir, report)
    print_decision(con, report)
    con.print(f"Report: {path}\nResults: {run_dir / 'results.json'}")
    return DemoResult(run_dir, path, report, timings)


@dataclass
class OnlineRun:
    """The online part of the demo: final results, the decisive poll, the polls, counts."""

    analysis: ExperimentResults | None  # after the stop (sessions in flight included)
    decisive: ExperimentResults | None  # what the decision is made on
    looks: list[Look]
    progress: SimulationProgress
    store_url: str
    stopped_by: str
    interleaving: OnlineOutcome | None = None


def _run_online(
    run_dir: Path,
    spec: dict[str, Any],
    users: list[Any],
    sim_cfg: SimulationConfig,
    opts: DemoOptions,
    con: Console,
) -> OnlineRun:
    """Start the service, run and monitor the simulated experiment, stop it, fetch results."""
    from abrec.serve.config import ADMIN_TOKEN_ENV, ServeConfig
    from abrec.serve.runner import ServiceThread

    token = os.environ.get(ADMIN_TOKEN_ENV) or secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {token}"}
    db = (run_dir / "events.db").resolve()
    store_url = f"sqlite:///{db}"
    serve_cfg = ServeConfig.model_validate(
        {
            "store_url": store_url,
            "bundle": str((run_dir / "bundle").resolve()),
            "fallback_model": FALLBACK_MODEL,
            "admin_token": token,
        }
    )
    with (
        ServiceThread(serve_cfg) as svc,
        httpx.Client(base_url=svc.url, timeout=60.0, headers=headers) as http,
    ):
        if not opts.quiet:
            con.print(f"service on {svc.url}  (store {store_url})")
        check(http.post("/v1/admin/experiments", json=spec), "create experiment")
        check(http.post(f"/v1/admin/experiments/{spec['id']}/start"), "start")
        sim = Simulator(svc.url, users, sim_cfg)
        con.print(
            f"{len(users)} simulated users, {len(sim.plan)} planned sessions, "
            f"{sim_cfg.concurrency} concurrent clients; "
            f"variants: control={spec['variants'][0]['model']}, "
            f"treatment={spec['variants'][1]['model']}"
        )
        watched = _watch(http, spec["id"], sim, opts, con)
        check(http.post(f"/v1/admin/experiments/{spec['id']}/stop"), "stop")
        analysis = fetch_results(http, spec["id"])
        last = look_at(analysis, time.perf_counter() - watched.start)
        inter = _interleave(http, spec, users, sim_cfg, opts, con) if opts.interleaving else None
    return OnlineRun(
        analysis=analysis,
        decisive=watched.decisive or analysis,
        looks=[*watched.looks, *([last] if last is not None else [])],
        progress=watched.progress,
        store_url=store_url,
        stopped_by=watched.stopped_by,
        interleaving=inter,
    )


def interleaving_spec(ab_spec: dict[str, Any], seed: str) -> dict[str, Any]:
    """A team-draft interleaving experiment of the A/B test's two models."""
    return {
        "id": INTERLEAVING_ID,
        "type": "interleaving",
        "seed": seed,
        "variants": [{"name": v["name"], "model": v["model"]} for v in ab_spec["variants"]],
        "alpha": ab_spec.get("alpha", 0.05),
        "planned_units": ab_spec.get("planned_units"),
    }


def _interleave(
    http: httpx.Client,
    ab_spec: dict[str, Any],
    users: list[Any],
    sim_cfg: SimulationConfig,
    opts: DemoOptions,
    con: Console,
) -> OnlineOutcome:
    """The same pair and users in an interleaving experiment, stopped when its always-valid
    sign test decides (after `opts.min_units` units)."""
    from abrec.simulate.online import run_experiment

    spec = interleaving_spec(ab_spec, f"{INTERLEAVING_ID}-{opts.seed}")
    con.rule("[bold]Interleaving screen of the same pair (team-draft)")
    return run_experiment(
        http,
        spec,
        users,
        sim_cfg.model_copy(update={"experiment": INTERLEAVING_ID}),
        stop_when=lambda res: (
            res.interleaving is not None
            and res.interleaving.primary.sequential.decision == "reject"
        ),
        min_units=opts.min_units,
        poll_s=opts.poll_s,
        console=None if opts.quiet else con,
        label="interleaving",
    )


def interleaving_section(
    inter: OnlineOutcome, report_decision: Decision, ab_units: int, ab_decided: bool
) -> InterleavingSection:
    """The interleaving verdict (treatment = the A/B test's treatment) beside the A/B one."""
    res = inter.results.interleaving if inter.results is not None else None
    decided = res is not None and res.primary.sequential.decision == "reject"
    if res is None:
        verdict = "no verdict: no unit clicked yet"
    elif decided:
        p = res.primary
        better = p.treatment if p.preference.estimate > 0 else p.control
        verdict = (
            f"{better} preferred: {p.wins} wins / {p.losses} losses / {p.ties} ties, "
            f"preference {p.preference.estimate:+.3f} "
            f"{fmt.interval(p.preference.low, p.preference.high, _f)}, "
            f"always-valid p = {_g(p.sequential.p_value)}"
        )
    else:
        p = res.primary
        verdict = (
            f"no preference: {p.wins} wins / {p.losses} losses / {p.ties} ties, "
            f"always-valid p = {_g(p.sequential.p_value)}"
        )
    return InterleavingSection(
        experiment=inter.experiment,
        method="team_draft",
        result=res,
        units=inter.units,
        decided=decided,
        verdict=verdict,
        stopped_by=inter.stopped_by,
        ab_units=ab_units,
        ab_decided=ab_decided,
        ab_verdict=report_decision.verdict,
    )


@dataclass
class _Watched:
    """What watching the simulation produced: the polls, how it ended, the sim's counts."""

    looks: list[Look]
    stopped_by: str
    decisive: ExperimentResults | None  # the poll whose "reject" stopped the run early
    progress: SimulationProgress
    start: float


def _watch(
    http: httpx.Client, exp_id: str, sim: Simulator, opts: DemoOptions, con: Console
) -> _Watched:
    """Run the simulation in a thread; poll the server's results every `poll_s`, display
    its sequential test and stop the simulation at the first poll that says "reject"."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["progress"] = sim.run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="abrec-sim", daemon=True)
    start = time.perf_counter()
    looks: list[Look] = []
    stopped_by, decisive = "planned sample reached", None
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
            polled = fetch_results(http, exp_id)
            look = look_at(polled, time.perf_counter() - start)
            if look is not None:
                looks.append(look)
            p = sim.progress()
            progress.update(task, completed=p.sessions_done, status=_status(p, look))
            stops = look is not None and look.decision == "reject" and not sim.stopped
            if look is not None and stops and look.units >= opts.min_units:
                stopped_by, decisive = "sequential test decided", polled
                looks[-1] = dataclasses.replace(look, decisive=True)
                sim.stop()
        p = sim.progress()
        progress.update(task, completed=p.sessions_done, status=_status(p, None))
    if "error" in outcome:
        raise DemoError(f"simulation failed: {outcome['error']}") from outcome["error"]
    return _Watched(looks, stopped_by, decisive, outcome["progress"], start)


def _status(p: SimulationProgress, look: Look | None) -> str:
    s = f"units {p.units_seen}  clicks {p.clicks}"
    if look is not None:
        s += f"  CTR diff {_f(look.estimate)} CS [{_f(look.low)}, {_f(look.high)}]"
    return s


# ----------------------------------------------------------------------------- decision
def decide(results: ExperimentResults | None, *, aa: bool = False) -> Decision:
    """Decision from the SRM check, the server's running sequential test and the guardrails.

    Only the always-valid sequential test can declare a winner (the demo peeks after
    every poll, so a fixed-horizon p-value would not be valid); an SRM alarm blocks
    any decision; a failed guardrail blocks shipping the treatment.
    """
    comp = results.comparison() if results is not None else None
    seq = comp.sequential_ctr if comp is not None else None
    label = "A/A test: " if aa else ""
    if results is not None and results.srm is not None and results.srm.mismatch:
        return Decision(
            None,
            f"{label}no decision: sample-ratio mismatch",
            f"SRM p = {results.srm.p_value:.2g} < {results.srm.threshold:g}; "
            "fix assignment/logging first.",
        )
    if comp is None or seq is None:
        return Decision(
            None,
            f"{label}no winner: not enough data",
            "the sequential test needs clicks and exposures in both arms; run more users.",
        )
    failed = [g.metric for g in comp.guardrails if not g.passed]
    cs = fmt.interval(seq.ci.low, seq.ci.high, _f)
    if seq.decision == "reject":
        better = "treatment" if seq.ci.low > 0 else "control"
        if better == "treatment" and failed:
            return Decision(
                None,
                f"{label}treatment has a higher CTR, but guardrails failed: {failed}",
                f"always-valid CI for the CTR difference {cs}; do not ship.",
            )
        return Decision(
            better,
            f"{label}{better} wins on click-through rate",
            f"always-valid 95% CI for CTR(treatment) - CTR(control) {cs} excludes 0; "
            f"always-valid p = {_g(seq.p_value)}.",
        )
    return Decision(
        None,
        f"{label}no winner: no significant CTR difference",
        f"always-valid 95% CI for CTR(treatment) - CTR(control) {cs} contains 0 "
        f"(always-valid p = {_g(seq.p_value)}).",
    )


# ----------------------------------------------------------------------------- report
def offline_section(off: RunOutput) -> OfflineSection:
    """Leaderboard (slice 'all', best primary metric first) and paired comparisons."""
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
                cells[m] = Interval(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))
        board.append(LeaderboardRow(str(model), cells))

    def primary_mean(row: LeaderboardRow) -> float:
        ci = row.metrics.get(primary)
        return ci.estimate if ci is not None and math.isfinite(ci.estimate) else 0.0

    board.sort(key=lambda b: -primary_mean(b))
    c = res.comparisons
    c = c[(c["slice"] == "all") & (c["metric"] == primary)]
    comparisons = tuple(
        OfflineComparison(
            model=str(r["model"]),
            baseline=str(r["baseline"]),
            metric=primary,
            difference=Interval(float(r["diff"]), float(r["diff_low"]), float(r["diff_high"])),
            p_value=float(r[f"p_{test}_holm"]),
            test=f"paired {test}, Holm",
        )
        for r in c.to_dict("records")
    )
    n_scored = res.info.get("n_scored_users")
    return OfflineSection(
        primary_metric=primary,
        baseline=str(res.baseline),
        leaderboard=tuple(board),
        comparisons=comparisons,
        protocol=str(res.protocol),
        n_scored_users=None if n_scored is None else int(n_scored),
    )


def agreement(
    offline: OfflineSection,
    online: ExperimentResults | None,
    *,
    control_model: str,
    treatment_model: str,
) -> tuple[Agreement, ...]:
    """The offline difference of the treatment model against the control model next to the
    online CTR lift of the treatment arm (empty when the service has no CTR test).

    In an A/A test (the same model in both arms) the offline difference is exactly 0; when
    the offline baseline is not the control model it is unknown (None).
    """
    comp = online.comparison() if online is not None else None
    ctr = next((t for t in comp.tests if t.metric == "ctr"), None) if comp is not None else None
    if comp is None or ctr is None or not isinstance(ctr.result, EffectResult):
        return ()
    off: Interval | None = None
    if treatment_model == control_model:
        off = Interval(0.0, 0.0, 0.0)
    elif offline.baseline == control_model:
        cmp = offline.comparison(treatment_model)
        off = None if cmp is None else cmp.difference
    return (
        Agreement(
            variant=comp.treatment,
            offline_metric=offline.primary_metric,
            offline=off,
            online_metric="ctr",
            online=ctr.result.relative,
        ),
    )


def build_report(
    offline: OfflineSection,
    analysis: ExperimentResults | None,
    looks: list[Look],
    decision: Decision,
    *,
    spec: dict[str, Any],
    progress: SimulationProgress,
    opts: DemoOptions,
    store_url: str,
    stopped_by: str,
    timings: dict[str, float],
    model_notes: Sequence[str] = (),
) -> DemoReport:
    """The typed report of a demo run (rendered to report.html, dumped to results.json)."""
    exp = ExperimentSpec.model_validate(spec)
    control_model = exp.variants[0].model
    treatment_model = exp.variants[1].model
    title = f"abrec demo: {control_model} (control) vs {treatment_model} (treatment)"
    return DemoReport(
        title=("A/A " if opts.aa else "") + title,
        decision=decision,
        run=RunInfo(
            mode="A/A" if opts.aa else "A/B",
            experiment=exp.id,
            control_model=control_model,
            treatment_model=treatment_model,
            simulated_users=progress.units_seen,
            sessions_done=progress.sessions_done,
            sessions_planned=progress.sessions_planned,
            stopped_by=stopped_by,
            seed=opts.seed,
            store=store_url,
            offline_s=timings.get("offline_s"),
            online_s=timings.get("online_s"),
            model_notes=tuple(model_notes),
        ),
        offline=offline,
        online=analysis,
        timeline=tuple(looks),
        agreement=agreement(
            offline, analysis, control_model=control_model, treatment_model=treatment_model
        ),
        simulation=SimulationInfo(
            progress=progress,
            click_model=opts.click_model,
            sessions_mean=opts.sessions_mean,
            k=opts.k,
        ),
        spec=exp,
        timings=dict(timings),
    )


def _units(results: ExperimentResults | None) -> int:
    return 0 if results is None else int(sum(v.n for v in results.variants))


def stopping_look(report: DemoReport) -> Look | None:
    """The poll whose server result stopped the test early (None when it ran to the end)."""
    return next((look for look in report.timeline if look.decisive), None)


def print_decision(con: Console, report: DemoReport) -> None:
    """The decision block printed at the end of the demo."""
    from rich.table import Table

    con.rule("[bold]3. Decision")
    on = report.online
    comp = on.comparison() if on is not None else None
    if on is not None:
        table = Table(title="Assignment and outcomes", title_justify="left")
        for col in ("variant", "model", "units", "exposures", "clicks", "CTR"):
            table.add_column(col, justify="left" if col in ("variant", "model") else "right")
        for v in on.variants:
            table.add_row(
                v.variant,
                str(v.model),
                str(v.n),
                fmt.num(round(v.totals.get("exposures", 0.0))),
                fmt.num(round(v.totals.get("clicks", 0.0))),
                fmt.num(v.means.get("ctr"), 4, fixed=True),
            )
        con.print(table)
    if on is not None and on.srm is not None:
        srm = on.srm
        ok = "[green]OK[/]" if not srm.mismatch else "[bold red]MISMATCH[/]"
        con.print(f"SRM check: {ok} (chi2 = {srm.chi2:.3f}, p = {srm.p_value:.3g})")
    ctr = next((t for t in comp.tests if t.metric == "ctr"), None) if comp is not None else None
    if ctr is not None and isinstance(ctr.result, EffectResult):
        r = ctr.result
        con.print(
            f"CTR lift (treatment vs control): {_pct(r.relative.estimate)} "
            f"{fmt.interval(r.relative.low, r.relative.high, _pct)} 95% CI, "
            f"fixed-horizon p = {_g(r.p_value)} (Holm {_g(ctr.p_value_holm)}); "
            f"absolute {_f(r.absolute.estimate)} {fmt.interval(r.absolute.low, r.absolute.high, _f)}"
        )
    if report.run is not None:
        run = report.run
        con.print(
            f"Stopped: {run.stopped_by} ({run.sessions_done} / {run.sessions_planned} sessions)"
        )
    stop = stopping_look(report)
    if stop is not None:
        st = stop.sequential
        con.print(
            f"Sequential at the stop ({stop.units} units, {st.looks_tested} looks): CTR "
            f"difference CI {fmt.interval(st.ci.low, st.ci.high, _f)}, p = {_g(st.p_value)}"
        )
    seq = comp.sequential_ctr if comp is not None else None
    if seq is not None:
        con.print(
            f"Sequential{' after the stop' if stop is not None else ''} (always-valid, "
            f"{seq.looks_tested} looks, one per {seq.look_every} units in entry order): "
            f"CTR difference CI {fmt.interval(seq.ci.low, seq.ci.high, _f)}, "
            f"p = {_g(seq.p_value)}"
        )
    cuped = comp.cuped_clicks_per_unit if comp is not None else None
    if cuped is not None:
        rel = cuped.relative
        con.print(
            f"CUPED clicks/unit: lift {_pct(rel.estimate)} {fmt.interval(rel.low, rel.high, _pct)}"
            f", p = {_g(cuped.p_value)}; variance reduction {_pct(cuped.variance_reduction)}"
        )
    for g in comp.guardrails if comp is not None else ():
        status = "[green]pass[/]" if g.passed else "[bold red]FAIL[/]"
        con.print(
            f"Guardrail {g.metric}: {status} (difference {_f(g.estimate)}, always-valid CI "
            f"{fmt.interval(g.low, g.high, _f)})"
        )
    for a in report.agreement:
        off = a.offline or Interval(math.nan, math.nan, math.nan)
        con.print(
            f"Offline {a.offline_metric} difference {_f(off.estimate)} "
            f"{fmt.interval(off.low, off.high, _f)}  vs  online CTR lift "
            f"{_pct(a.online.estimate)} {fmt.interval(a.online.low, a.online.high, _pct)}"
        )
    d = report.decision
    if d is not None:
        style = "bold green" if d.winner else "bold yellow"
        con.print(f"[{style}]Decision: {d.verdict}[/] — {d.text}")
    il = report.interleaving
    if il is not None:
        con.print(f"[bold]Interleaving (team-draft, same pair):[/] {il.verdict}", highlight=False)
        con.print(
            f"Users needed: A/B {il.ab_units} ({'decided' if il.ab_decided else 'no verdict'}), "
            f"interleaving {il.units} ({'decided' if il.decided else 'no verdict'}; "
            f"{il.stopped_by})",
            highlight=False,
        )


def _pct(x: Any) -> str:
    return fmt.pct(x)


def _f(x: Any) -> str:
    return fmt.num(x, signed=True, fixed=True)


def _g(x: Any) -> str:
    return fmt.num(x, 3)


__all__ = [
    "COMPACT_WEIGHTS",
    "DEMO_CONFIG",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "agreement",
    "build_report",
    "compact_config",
    "decide",
    "look_at",
    "offline_section",
    "parse_click_model",
    "run_demo",
]
