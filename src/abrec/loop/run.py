"""The optimisation loop: each round retrains on the feedback logged so far, screens the
candidates offline and off-policy, screens the best against the champion with interleaving,
confirms with a sequential A/B test and promotes the winner (see docs/statistics.md).

Everything online goes through the real service (`ServiceThread`, one per round with the
round's bundle) and the real store; the store outlives the rounds and holds every
experiment, version and event. After each round the report (`loop.json`, `loop.html`) is
rewritten, so an interrupted loop leaves the report of its completed rounds.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from abrec.data.splits import ProtocolSplit
from abrec.data.types import Interactions, ItemCatalog
from abrec.demo import decide
from abrec.experiment.analysis import ExperimentResults
from abrec.loop.config import LoopConfig
from abrec.loop.screen import OfflineScreen, OffPolicyScreen, off_policy_screen, offline_screen
from abrec.models.base import Recommender
from abrec.report.model import Decision
from abrec.simulate.online import OnlineOutcome, check, run_experiment
from abrec.simulate.population import Population
from abrec.simulate.runner import SimulationConfig
from abrec.simulate.scenario import experiment_spec
from abrec.stats.results import Interval, Num, OptNum, ToDictMixin
from abrec.store import EventStore, Impression

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class InterleavingScreen(ToDictMixin):
    """One candidate interleaved with the champion (the candidate is the treatment)."""

    candidate: str
    experiment: str
    units: int
    wins: int
    losses: int
    ties: int
    preference: Interval
    p_value: Num
    sequential_p: Num
    passed: bool
    stopped_by: str
    champion_ctr: OptNum = None


@dataclass(frozen=True)
class ABConfirmation(ToDictMixin):
    """The A/B test of the best screened candidate (treatment) against the champion."""

    experiment: str
    challenger: str
    units: int
    ctr_control: OptNum
    ctr_treatment: OptNum
    ctr_difference: Interval | None
    sequential_p: OptNum
    decision: Decision
    stopped_by: str
    promoted_version: int | None


@dataclass(frozen=True)
class RoundRecord(ToDictMixin):
    """Everything one round did and decided."""

    round: int
    champion_before: str
    champion_after: str
    train_interactions: int
    feedback_clicks: int
    offline: tuple[OfflineScreen, ...]
    off_policy: tuple[OffPolicyScreen, ...]
    screened_in: tuple[str, ...]
    screen_notes: tuple[str, ...]
    interleaving: tuple[InterleavingScreen, ...]
    ab: ABConfirmation | None
    promoted: bool
    evidence: str
    online_ctr: OptNum  # the champion arm of the A/B test, else its team in interleaving
    users_interleaving: int
    users_ab: int
    elapsed_s: Num

    @property
    def users(self) -> int:
        """Simulated users the round's decision cost (interleaving screens + A/B test)."""
        return self.users_interleaving + self.users_ab


@dataclass
class LoopResult:
    """The rounds completed, the final champion, and where the report is."""

    rounds: list[RoundRecord]
    champion: str
    interrupted: bool
    out_dir: Path
    store_url: str
    report: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "interrupted": self.interrupted,
            "store_url": self.store_url,
            "rounds": [r.to_dict() | {"users": r.users} for r in self.rounds],
            "config": self.config,
        }


# ----------------------------------------------------------------------------- data
def feedback_clicks(impressions: list[Impression]) -> list[tuple[str, str]]:
    """(unit, item) of every logged click, in time order."""
    return [
        (imp.unit_id, item)
        for imp in impressions
        for item, c in zip(imp.items, imp.clicked, strict=True)
        if c
    ]


def with_feedback(
    train: Interactions, clicks: list[tuple[str, str]], rating: float
) -> Interactions:
    """Training interactions plus each click as a positive interaction (rating `rating`,
    timestamped after the training period). Clicks of unknown users or items are dropped."""
    users = {str(u): j for j, u in enumerate(train.user_ids)}
    items = {str(i): j for j, i in enumerate(train.item_ids)}
    pairs = [(users[u], items[i]) for u, i in clicks if u in users and i in items]
    if not pairs:
        return train
    u_new, i_new = (np.asarray(c, dtype=train.user_idx.dtype) for c in zip(*pairs, strict=True))
    ratings = None
    if train.ratings is not None:
        ratings = np.r_[train.ratings, np.full(len(pairs), rating, dtype=train.ratings.dtype)]
    timestamps = None
    if train.timestamps is not None:
        start = train.timestamps.max() + 1 if len(train) else 0
        timestamps = np.r_[train.timestamps, start + np.arange(len(pairs))].astype(
            train.timestamps.dtype
        )
    return Interactions(
        np.r_[train.user_idx, u_new],
        np.r_[train.item_idx, i_new.astype(train.item_idx.dtype)],
        train.user_ids,
        train.item_ids,
        ratings=ratings,
        timestamps=timestamps,
    )


def _fit(
    cfg: LoopConfig, train: Interactions, items: ItemCatalog, encoder: Any
) -> dict[str, Recommender]:
    from abrec.offline.run import build_models

    models = build_models(cfg.run, encoder)
    for model in models.values():
        model.fit(train, items)
    return models


# ----------------------------------------------------------------------------- rounds
class _Loop:
    def __init__(self, cfg: LoopConfig, out_dir: Path, store_url: str, console: Console) -> None:
        from abrec.models.registry import needs_encoder
        from abrec.offline.run import build_encoder, load_data, make_split

        self.cfg, self.s, self.out, self.con = cfg, cfg.loop, out_dir, console
        self.store_url = store_url
        inter, self.items = load_data(cfg.run.dataset)
        self.split: ProtocolSplit = make_split(cfg.run, inter)
        self.population = Population.from_split(
            self.split.train, self.split.test, click_model=self.s.click_model, k=self.s.k,
            seed=self.s.seed,
        )  # fmt: skip
        self.encoder = (
            build_encoder(cfg.run.encoder, show_progress=False)
            if any(needs_encoder(m.kind) for m in cfg.run.models)
            else None
        )
        self.store = EventStore.from_url(store_url)
        self.store.create_schema()
        self.experiments: list[str] = []
        self.last_logged: list[str] = []
        self.served: dict[str, Recommender] = {}
        self.served_train: Interactions | None = None
        self.token = os.environ.get("ABREC_ADMIN_TOKEN") or secrets.token_urlsafe(24)

    def _impressions(self, ids: list[str]) -> list[Impression]:
        return [imp for e in ids for imp in self.store.impressions(e)]

    def _say(self, text: str) -> None:
        self.con.print(text, highlight=False)

    def round(self, r: int, champion: str) -> RoundRecord:
        t0 = time.perf_counter()
        s, con = self.s, self.con
        con.rule(f"[bold]Round {r}: champion {champion}")
        # 1. retrain on the training data plus the clicks logged so far
        clicks = feedback_clicks(self._impressions(self.experiments))
        train = with_feedback(self.split.train, clicks, s.feedback_rating)
        self._say(
            f"1. retrain: {len(self.split.train)} training interactions + {len(clicks)} clicks"
        )
        # 2a. off-policy screen of last round's fits on last round's logs
        off_policy: list[OffPolicyScreen] = []
        if self.served and self.served_train is not None:
            off_policy = off_policy_screen(
                self.served, self.served_train, self._impressions(self.last_logged), k=s.k,
                seed=s.seed,
            )  # fmt: skip
        # 2b. offline screen on a validation split carved from the training data
        offline, val_notes = self._offline(train, champion)
        screened, notes = self._screen(champion, offline, off_policy)
        notes = [*val_notes, *notes]
        for line in _screen_lines(offline, off_policy, screened):
            self._say(line)
        # fit every model on the whole training data for serving (and next round's OPE)
        served = _fit(self.cfg, train, self.items, self.encoder)
        bundle = self.out / f"round{r}" / "bundle"
        from abrec.offline.run import save_models

        save_models(served, train, bundle)
        self.served, self.served_train = served, train
        logged: list[str] = []
        inter_rows: list[InterleavingScreen] = []
        ab: ABConfirmation | None = None
        with self._service(bundle) as http:
            # 3. interleaving screen
            for j, cand in enumerate(screened):
                row = self._interleave(http, r, j, champion, cand)
                logged.append(row.experiment)
                inter_rows.append(row)
            passed = [x for x in inter_rows if x.passed]
            # 4. A/B confirmation of the most preferred candidate
            if passed:
                best = max(passed, key=lambda x: x.preference.estimate)
                ab = self._ab(http, r, champion, best.candidate)
                logged.append(ab.experiment)
        self.experiments.extend(logged)
        self.last_logged = logged
        promoted = ab is not None and ab.decision.winner == "treatment"
        after = ab.challenger if promoted and ab is not None else champion
        evidence = _evidence(inter_rows, ab, promoted)
        self._say(f"[bold]round {r}:[/] {evidence}")
        online = None
        if ab is not None:
            online = ab.ctr_treatment if promoted else ab.ctr_control
        else:  # the champion's team in the interleaving screens
            team = [x.champion_ctr for x in inter_rows if x.champion_ctr is not None]
            online = float(np.mean(team)) if team else None
        return RoundRecord(
            round=r,
            champion_before=champion,
            champion_after=after,
            train_interactions=len(train),
            feedback_clicks=len(clicks),
            offline=tuple(offline),
            off_policy=tuple(off_policy),
            screened_in=tuple(screened),
            screen_notes=tuple(notes),
            interleaving=tuple(inter_rows),
            ab=ab,
            promoted=promoted,
            evidence=evidence,
            online_ctr=online,
            users_interleaving=sum(x.units for x in inter_rows),
            users_ab=0 if ab is None else ab.units,
            elapsed_s=time.perf_counter() - t0,
        )

    def _offline(self, train: Interactions, champion: str) -> tuple[list[OfflineScreen], list[str]]:
        from abrec.evaluation.protocol import evaluate_models
        from abrec.offline.run import validation_protocol

        s = self.s
        val = validation_protocol(
            dataclasses.replace(self.split, train=train), self.cfg.run.protocol, self.cfg.run.seed
        )
        models = _fit(self.cfg, val.train, self.items, self.encoder)
        k = int(s.screen_metric.split("@")[1]) if "@" in s.screen_metric else 10
        result = evaluate_models(
            models, val, ks=(k,), baseline=champion, n_bootstrap=500, n_permutations=200,
            seed=self.cfg.run.seed, compute_auc=False,
        )  # fmt: skip
        cands = [n for n in models if n != champion]
        return offline_screen(result, champion, cands, s.screen_metric), [
            f"offline screen on {val.name} ({len(val.scored_users)} users)"
        ]

    def _screen(
        self, champion: str, offline: list[OfflineScreen], off_policy: list[OffPolicyScreen]
    ) -> tuple[list[str], list[str]]:
        """Candidates not significantly worse offline and not worse off-policy (when the logs
        support the estimate), best offline first, at most `screen_top`."""
        s = self.s
        notes: list[str] = []
        ope = {o.model: o for o in off_policy}
        keep = []
        for row in sorted(offline, key=lambda x: -float(x.mean)):
            if row.p_value < s.alpha and row.difference.estimate < 0:
                notes.append(f"{row.model}: significantly worse offline (p = {row.p_value:.2g})")
                continue
            mine, champ = ope.get(row.model), ope.get(champion)
            if (
                mine is not None
                and champ is not None
                and min(mine.support, champ.support) >= s.ope_min_support
                and mine.estimate.high < champ.estimate.estimate
            ):
                notes.append(
                    f"{row.model}: off-policy clicks/slot {mine.estimate.estimate:.4f} "
                    f"(CI upper {mine.estimate.high:.4f}) below the champion's "
                    f"{champ.estimate.estimate:.4f}"
                )
                continue
            keep.append(row.model)
        return keep[: s.screen_top], notes

    def _service(self, bundle: Path) -> Any:
        from abrec.serve.config import ServeConfig
        from abrec.serve.runner import ServiceThread

        cfg = ServeConfig.model_validate(
            {
                "store_url": self.store_url,
                "bundle": str(bundle.resolve()),
                "admin_token": self.token,
            }
        )
        return _Serving(ServiceThread(cfg), self.token)

    def _sim(self, exp_id: str, n: int) -> SimulationConfig:
        s = self.s
        return SimulationConfig(
            experiment=exp_id, n_users=n, sessions_mean=s.sessions_mean, k=s.k,
            concurrency=s.concurrency, seed=s.seed, click_model=s.click_model,
        )  # fmt: skip

    def _interleave(
        self, http: httpx.Client, r: int, j: int, champion: str, cand: str
    ) -> InterleavingScreen:
        s = self.s
        exp_id = f"loop-r{r}-il{j}-{cand}"[:128]
        spec = {
            "id": exp_id,
            "type": "interleaving",
            "variants": [
                {"name": "champion", "model": champion},
                {"name": "candidate", "model": cand},
            ],
            "alpha": s.alpha,
            "planned_units": s.interleaving_users,
        }
        users = self.population.sample(s.interleaving_users, seed=s.seed * 7919 + r * 101 + j)
        self._say(f"3. interleaving screen: {champion} vs {cand} ({len(users)} users)")
        out = run_experiment(
            http, spec, users, self._sim(exp_id, len(users)),
            stop_when=lambda res: res.interleaving is not None
            and res.interleaving.primary.sequential.decision == "reject",
            min_units=20, poll_s=s.poll_s, console=self.con, label=exp_id,
        )  # fmt: skip
        row = _interleaving_row(cand, out)
        shown = clicks = 0
        for imp in self.store.impressions(exp_id):
            for src, c in zip(imp.sources, imp.clicked, strict=True):
                if src == "champion":
                    shown, clicks = shown + 1, clicks + int(c)
        return dataclasses.replace(row, champion_ctr=clicks / shown if shown else None)

    def _ab(self, http: httpx.Client, r: int, champion: str, cand: str) -> ABConfirmation:
        s = self.s
        exp_id = f"loop-r{r}-ab-{cand}"[:128]
        spec = experiment_spec(exp_id, champion, cand, alpha=s.alpha, planned_units=s.ab_users)
        users = self.population.sample(s.ab_users, seed=s.seed * 7919 + r * 101 + 50)
        self._say(f"4. A/B confirmation: {champion} vs {cand} (up to {len(users)} users)")
        out = run_experiment(
            http, spec, users, self._sim(exp_id, len(users)),
            stop_when=_ab_decided, min_units=s.min_ab_units, poll_s=s.poll_s,
            console=self.con, label=exp_id,
        )  # fmt: skip
        decision = decide(out.results)
        version = None
        if decision.winner == "treatment":
            # 5. promote: move all new traffic to the winner (a new version, no restart)
            check(
                http.put(f"/v1/admin/experiments/{exp_id}/weights",
                         json={"weights": {"control": 0.0, "treatment": 1.0}}),
                f"promote {cand}",
            )  # fmt: skip
            version = _latest_version(self.store, exp_id)
        return _ab_row(cand, out, decision, version)


class _Serving:
    """`with` the service thread and an admin HTTP client on it."""

    def __init__(self, thread: Any, token: str) -> None:
        self.thread, self.token = thread, token
        self.http: httpx.Client | None = None

    def __enter__(self) -> httpx.Client:
        svc = self.thread.__enter__()
        self.http = httpx.Client(
            base_url=svc.url, timeout=60.0, headers={"Authorization": f"Bearer {self.token}"}
        )
        return self.http

    def __exit__(self, *exc: Any) -> None:
        if self.http is not None:
            self.http.close()
        self.thread.__exit__(*exc)


def _ab_decided(res: ExperimentResults) -> bool:
    comp = res.comparison()
    return (
        comp is not None
        and comp.sequential_ctr is not None
        and (comp.sequential_ctr.decision == "reject")
    )


def _latest_version(store: EventStore, exp_id: str) -> int:
    import sqlalchemy as sa

    t = store.experiments
    with store.engine.connect() as conn:
        v = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.id == exp_id)).scalar()
    return int(v or 0)


def _interleaving_row(cand: str, out: OnlineOutcome) -> InterleavingScreen:
    res = out.results.interleaving if out.results is not None else None
    if res is None:
        nan = float("nan")
        return InterleavingScreen(
            cand, out.experiment, out.units, 0, 0, 0, Interval(nan, nan, nan), nan, nan,
            False, out.stopped_by,
        )  # fmt: skip
    p = res.primary
    passed = p.sequential.decision == "reject" and p.preference.estimate > 0
    return InterleavingScreen(
        cand, out.experiment, res.n_units, p.wins, p.losses, p.ties, p.preference, p.p_value,
        p.sequential.p_value, passed, out.stopped_by,
    )  # fmt: skip


def _ab_row(
    cand: str, out: OnlineOutcome, decision: Decision, version: int | None
) -> ABConfirmation:
    res = out.results
    comp = res.comparison() if res is not None else None
    seq = comp.sequential_ctr if comp is not None else None

    def ctr(name: str) -> float | None:
        v = res.variant(name) if res is not None else None
        ctr = None if v is None else v.means.get("ctr")
        return None if ctr is None else float(ctr)

    return ABConfirmation(
        experiment=out.experiment,
        challenger=cand,
        units=out.units,
        ctr_control=ctr("control"),
        ctr_treatment=ctr("treatment"),
        ctr_difference=None if seq is None else seq.ci,
        sequential_p=None if seq is None else seq.p_value,
        decision=decision,
        stopped_by=out.stopped_by,
        promoted_version=version,
    )


def _evidence(inter: list[InterleavingScreen], ab: ABConfirmation | None, promoted: bool) -> str:
    if not inter:
        return "no candidate passed the offline/off-policy screen; champion kept"
    if ab is None:
        return "no candidate won its interleaving screen (always-valid sign test); champion kept"
    if promoted:
        return (
            f"{ab.challenger} won interleaving and the A/B test ({ab.decision.text}); promoted "
            f"(experiment {ab.experiment} version {ab.promoted_version})"
        )
    return f"{ab.challenger} won interleaving but not the A/B test ({ab.decision.verdict}); champion kept"


def _screen_lines(
    offline: list[OfflineScreen], off_policy: list[OffPolicyScreen], screened: list[str]
) -> list[str]:
    lines = ["2. screen (validation, paired over users vs the champion):"]
    for o in offline:
        mark = "→" if o.model in screened else " "
        lines.append(
            f"   {mark} {o.model:<16} {o.metric} {o.mean:.4f}  diff {o.difference.estimate:+.4f} "
            f"[{o.difference.low:+.4f}, {o.difference.high:+.4f}]  p = {o.p_value:.2g}"
        )
    for p in off_policy:
        lines.append(
            f"     off-policy {p.model:<16} clicks/slot {p.estimate.estimate:.4f} "
            f"[{p.estimate.low:.4f}, {p.estimate.high:.4f}] support {p.support}/{p.n_rows}"
        )
    return lines


def run_loop(
    cfg: LoopConfig,
    out_dir: str | Path,
    *,
    store_url: str | None = None,
    rounds: int | None = None,
    console: Console | None = None,
) -> LoopResult:
    """Run the loop (see the module docstring); Ctrl-C ends it after writing the report of
    the completed rounds (the running experiment is stopped first)."""
    from rich.console import Console

    from abrec.loop.report import write_loop_report

    con = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = store_url or f"sqlite:///{(out / 'events.db').resolve()}"
    loop = _Loop(cfg, out, url, con)
    champion = cfg.loop.champion
    result = LoopResult([], champion, False, out, url, config=cfg.model_dump(mode="json"))
    try:
        for r in range(1, (rounds or cfg.loop.rounds) + 1):
            rec = loop.round(r, champion)
            champion = rec.champion_after
            result.rounds.append(rec)
            result.champion = champion
            result.report = write_loop_report(out, result)
    except KeyboardInterrupt:
        result.interrupted = True
        con.print("[bold]interrupted:[/] the running experiment was stopped; writing the report")
    finally:
        loop.store.dispose()
    result.report = write_loop_report(out, result)
    return result


__all__ = [
    "ABConfirmation",
    "InterleavingScreen",
    "LoopResult",
    "RoundRecord",
    "feedback_clicks",
    "run_loop",
    "with_feedback",
]
