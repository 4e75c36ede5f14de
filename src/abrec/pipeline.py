"""Offline pipeline: TOML config -> data -> encoder -> models -> evaluation -> run folder.

Shared wiring for `abrec evaluate` and `abrec demo`. The config is validated by pydantic
(unknown keys and bad values raise `ConfigError` naming the key); every run writes
`per_user.parquet`, `summary.json` and `config.resolved.toml` into its run folder.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from abrec.errors import ConfigError
from abrec.models.registry import LM_KINDS

if TYPE_CHECKING:
    from rich.console import Console

    from abrec.data.splits import ProtocolSplit
    from abrec.data.types import Interactions, ItemCatalog
    from abrec.embed.encoder import TextEncoder
    from abrec.evaluation.protocol import EvaluationResult
    from abrec.models.base import Recommender

"""Model kinds that read item texts through the shared encoder (see models.registry)."""
PROTOCOLS = ("ml-small-temporal-v1", "temporal", "leave-last-one-out", "random")


# --------------------------------------------------------------------------- config models
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Where the data comes from: MovieLens latest-small, or your own files."""

    kind: Literal["movielens", "generic"] = "movielens"
    path: str | None = Field(
        default=None, description="movielens: folder holding ml-latest-small (default ABREC_DATA)"
    )
    n_tags: int = Field(default=5, ge=0, description="movielens: tags per movie in the item text")
    interactions: str | None = Field(default=None, description="generic: interactions CSV/Parquet")
    items: str | None = Field(default=None, description="generic: items CSV/Parquet")
    text_columns: list[str] | None = Field(default=None, description="generic: item text columns")

    @model_validator(mode="after")
    def _generic_needs_files(self) -> DatasetConfig:
        if self.kind == "generic" and (not self.interactions or not self.items):
            raise ValueError("kind = 'generic' needs both `interactions` and `items` file paths")
        return self


class ProtocolConfig(_Strict):
    """How train/test are split and which test events are relevant."""

    name: Literal["ml-small-temporal-v1", "temporal", "leave-last-one-out", "random"] = (
        "ml-small-temporal-v1"
    )
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    relevance_threshold: float = 4.0
    seed: int | None = Field(default=None, description="random split seed (default: run seed)")


class EncoderConfig(_Strict):
    """The language model that reads item texts."""

    model: str | None = Field(default=None, description="local model dir or name; None = MiniLM")
    batch_size: int = Field(default=64, ge=1)
    device: str = "cpu"
    cache_dir: str | None = None
    use_cache: bool = True


class ModelConfig(_Strict):
    """One model to train: display name, registry kind and constructor parameters."""

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluationConfig(_Strict):
    """Metrics, uncertainty and the baseline every model is compared with."""

    baseline: str | None = Field(default=None, description="model name; default the first")
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1)
    primary_metric: str = "ndcg@10"
    primary_test: Literal["ttest", "wilcoxon", "permutation"] = "permutation"
    n_bootstrap: int = Field(default=2000, ge=100)
    n_permutations: int = Field(default=10_000, ge=100)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    batch_size: int = Field(default=256, ge=1)
    diversity: bool = Field(default=True, description="intra-list diversity from the encoder")
    auc: bool = True

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError(f"every k must be >= 1, got {ks}")
        return sorted(set(ks))


class RunConfig(_Strict):
    """A whole offline evaluation run (the TOML file)."""

    name: str = "run"
    seed: int = 42
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_models(self) -> RunConfig:
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {dup}")
        base = self.evaluation.baseline
        if base is not None and base not in names:
            raise ValueError(
                f"evaluation.baseline {base!r} is not a model name; pick one of {names}"
            )
        metric, _, k = self.evaluation.primary_metric.partition("@")
        known = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "novelty", "diversity")
        if metric not in known or not k.isdigit() or int(k) not in self.evaluation.ks:
            raise ValueError(
                f"evaluation.primary_metric {self.evaluation.primary_metric!r} must be "
                f"'<metric>@k' with metric in {list(known)} and k in evaluation.ks {self.evaluation.ks}"
            )
        return self

    @property
    def baseline(self) -> str:
        """The baseline model name (the first model unless set)."""
        return self.evaluation.baseline or self.models[0].name


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see examples/movielens.toml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a config mapping; raises `ConfigError` naming every bad key."""
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass --config path/to/file.toml")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    cfg = parse_config(data, str(p))
    return _resolve_paths(cfg, p.parent)


def _resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Make relative dataset/encoder paths relative to the config file's folder."""

    def fix(value: str | None, must_exist: bool = False) -> str | None:
        if value is None:
            return None
        q = Path(value).expanduser()
        if q.is_absolute():
            return str(q)
        cand = (base / q).resolve()
        return str(cand) if (cand.exists() or must_exist) else value

    ds = cfg.dataset.model_copy(
        update={
            "path": fix(cfg.dataset.path),
            "interactions": fix(cfg.dataset.interactions, True),
            "items": fix(cfg.dataset.items, True),
        }
    )
    enc = cfg.encoder.model_copy(update={"model": fix(cfg.encoder.model)})
    return cfg.model_copy(update={"dataset": ds, "encoder": enc})


def config_to_toml(cfg: RunConfig) -> str:
    """Serialise a resolved config as TOML (None values are omitted)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    out: list[str] = []
    for key, val in data.items():
        if not isinstance(val, dict | list):
            out.append(f"{key} = {_toml_value(val)}")
    for key, val in data.items():
        if isinstance(val, dict):
            out.append(f"\n[{key}]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in val.items())
    for m in data["models"]:
        out.append("\n[[models]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in m.items() if k != "params")
        out.append(f"params = {_toml_value(m.get('params', {}))}")
    return "\n".join(out) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"cannot write non-finite number {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
        )
    raise ConfigError(f"cannot write {type(v).__name__} value {v!r} to TOML")


# --------------------------------------------------------------------------- building blocks
def load_data(cfg: DatasetConfig) -> tuple[Interactions, ItemCatalog]:
    """Load the configured dataset."""
    if cfg.kind == "movielens":
        from abrec.data.movielens import movielens_dataset

        return movielens_dataset(cfg.path, n_tags=cfg.n_tags)
    from abrec.data.generic import load_interactions

    assert cfg.interactions is not None and cfg.items is not None
    return load_interactions(cfg.interactions, cfg.items, text_columns=cfg.text_columns)


def make_split(cfg: RunConfig, inter: Interactions) -> ProtocolSplit:
    """Split interactions by the configured protocol."""
    from abrec.data import splits

    p = cfg.protocol
    if p.name == "ml-small-temporal-v1":
        return splits.ml_small_temporal_v1(inter)
    if p.name == "temporal":
        train, test = splits.temporal_user_split(inter, p.test_fraction)
    elif p.name == "leave-last-one-out":
        train, test = splits.leave_last_one_out(inter)
    else:
        seed = cfg.seed if p.seed is None else p.seed
        train, test = splits.random_split(inter, p.test_fraction, seed=seed)
    if test.ratings is None:
        # implicit data: every held-out event is relevant
        test = type(test)(
            test.user_idx, test.item_idx, test.user_ids, test.item_ids,
            ratings=np.ones(len(test), dtype=np.float32), timestamps=test.timestamps,
        )  # fmt: skip
        threshold = 1.0
    else:
        threshold = p.relevance_threshold
    return splits.protocol_split(train, test, threshold=threshold, name=p.name)


def build_encoder(cfg: EncoderConfig, show_progress: bool = True) -> TextEncoder:
    """The shared text encoder (its on-disk cache makes repeated encodes free)."""
    from abrec.embed.encoder import TextEncoder

    return TextEncoder(
        cfg.model,
        batch_size=cfg.batch_size,
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        show_progress=show_progress,
        use_cache=cfg.use_cache,
    )


def build_models(cfg: RunConfig, encoder: Any | None = None) -> dict[str, Recommender]:
    """Instantiate every configured model through `abrec.models.registry.build_model`."""
    from abrec.models import registry

    out: dict[str, Recommender] = {}
    for m in cfg.models:
        params = dict(m.params)
        if m.kind in LM_KINDS and encoder is not None and "encoder" not in params:
            params["encoder"] = encoder
        try:
            out[m.name] = registry.build_model(m.kind, **params)
        except ConfigError as exc:
            raise ConfigError(f"models {m.name!r} (kind {m.kind!r}): {exc}") from None
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"models {m.name!r} (kind {m.kind!r}): bad params {sorted(m.params)}: {exc}"
            ) from None
    return out


# --------------------------------------------------------------------------- the run
@dataclass
class RunOutput:
    """Everything a run produced (in memory and on disk)."""

    config: RunConfig
    result: EvaluationResult
    models: dict[str, Recommender]
    split: ProtocolSplit
    run_dir: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    lm_vs_cf: list[dict[str, Any]] = field(default_factory=list)


def default_run_dir(root: str | Path = "runs") -> Path:
    """`runs/<UTC timestamp>/` (a suffix is added if that folder exists)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{n}"
        n += 1
    return path


def run(
    cfg: RunConfig,
    output_dir: str | Path | None = None,
    *,
    write: bool = True,
    quiet: bool = False,
    console: Console | None = None,
    save_models_dir: str | Path | None = None,
) -> RunOutput:
    """Load data, split, encode, fit every model, evaluate and write the run folder."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from abrec.evaluation.protocol import evaluate_models

    con = console or Console(stderr=True, quiet=quiet)
    timings: dict[str, float] = {}

    def step(msg: str) -> None:
        if not quiet:
            con.print(f"[bold cyan]>[/] {msg}")

    t0 = time.perf_counter()
    step(f"loading dataset ({cfg.dataset.kind})")
    inter, items = load_data(cfg.dataset)
    split = make_split(cfg, inter)
    timings["load_split_s"] = time.perf_counter() - t0
    step(
        f"protocol {split.name}: {len(split.train):,} train / {len(split.test):,} test rows, "
        f"{len(split.scored_users):,} scored users, {int(np.asarray(split.cold_items).sum()):,} "
        "cold items"
    )

    needs_encoder = cfg.evaluation.diversity or any(m.kind in LM_KINDS for m in cfg.models)
    encoder = build_encoder(cfg.encoder, show_progress=not quiet) if needs_encoder else None
    item_emb: np.ndarray | None = None
    if encoder is not None:
        step(f"encoding {len(items):,} item texts with {encoder.name}")
        t = time.perf_counter()
        item_emb = np.asarray(encoder.encode([str(x) for x in items.text]), dtype=np.float32)
        timings["encode_s"] = time.perf_counter() - t

    models = build_models(cfg, encoder)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=con,
        disable=quiet,
        transient=False,
    )
    with progress:
        fit_task = progress.add_task("training models", total=len(models))
        for name, model in models.items():
            progress.update(fit_task, description=f"training {name}")
            t = time.perf_counter()
            model.fit(split.train, items)
            timings[f"fit_{name}_s"] = time.perf_counter() - t
            progress.advance(fit_task)
        progress.update(fit_task, description="training models")
        n_scored = len(split.scored_users)
        eval_task = progress.add_task("evaluating", total=n_scored * len(models))
        done: dict[str, int] = {}

        def on_batch(model: str, users_done: int, total: int) -> None:
            prev = done.get(model, 0)
            done[model] = users_done
            progress.update(eval_task, advance=users_done - prev, description=f"evaluating {model}")

        t = time.perf_counter()
        ev = cfg.evaluation
        result = evaluate_models(
            models,
            split,
            ks=ev.ks,
            item_embeddings=item_emb if ev.diversity else None,
            baseline=cfg.baseline,
            n_bootstrap=ev.n_bootstrap,
            n_permutations=ev.n_permutations,
            level=ev.confidence,
            seed=cfg.seed,
            batch_size=ev.batch_size,
            compute_auc=ev.auc,
            progress=on_batch,
        )
        timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result.info.update({f"time_{k}": v for k, v in timings.items()})

    out = RunOutput(cfg, result, models, split, None, timings=timings)
    out.lm_vs_cf = lm_vs_cf(cfg, result)
    if write:
        run_dir = Path(output_dir) if output_dir is not None else default_run_dir()
        out.run_dir = run_dir
        out.files = write_run(run_dir, cfg, result, out.lm_vs_cf)
    if save_models_dir is not None:
        out.files["models"] = save_models(models, split.train, save_models_dir)
    return out


def lm_vs_cf(cfg: RunConfig, result: EvaluationResult) -> list[dict[str, Any]]:
    """Best language-model model vs best other model on the primary metric, per slice.

    "Best" is by mean of the primary metric within each slice; each row carries both
    means, the difference and the three paired tests (Holm over this single comparison
    is the raw p-value). Empty when the run lacks either kind of model.
    """
    kinds = {m.name: m.kind for m in cfg.models}
    metric = cfg.evaluation.primary_metric
    lm = [n for n, k in kinds.items() if k in LM_KINDS]
    cf = [n for n, k in kinds.items() if k not in LM_KINDS]
    if not lm or not cf:
        return []
    rows: list[dict[str, Any]] = []
    for slice_ in ("all", "cold"):
        have = set(result.summary[result.summary["slice"] == slice_]["model"])
        lm_s, cf_s = [n for n in lm if n in have], [n for n in cf if n in have]
        if not lm_s or not cf_s:
            continue
        best_lm = max(lm_s, key=lambda n: result.value(n, metric, slice_))
        best_cf = max(cf_s, key=lambda n: result.value(n, metric, slice_))
        comp = result.compare(best_cf, [best_lm])
        hit = comp[(comp["metric"] == metric) & (comp["slice"] == slice_)]
        rows.extend(
            {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in hit.to_dict("records")
        )
    return rows


def write_run(
    run_dir: str | Path,
    cfg: RunConfig,
    result: EvaluationResult,
    head_to_head: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write `per_user.parquet`, `summary.json`, `comparisons.csv`, `config.resolved.toml`."""
    from abrec.stats.results import json_safe

    d = Path(run_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {d}: {exc}; pass --output DIR") from None
    files = {
        "per_user": d / "per_user.parquet",
        "summary": d / "summary.json",
        "comparisons": d / "comparisons.csv",
        "config": d / "config.resolved.toml",
    }
    per_user = result.per_user.copy()
    if per_user["user_id"].dtype == object:
        per_user["user_id"] = per_user["user_id"].astype(str)
    per_user.to_parquet(files["per_user"], index=False)
    summary = result.to_dict()
    summary["run"] = {
        "name": cfg.name,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "primary_metric": cfg.evaluation.primary_metric,
        "primary_test": cfg.evaluation.primary_test,
        "models": {m.name: {"kind": m.kind, "params": m.params} for m in cfg.models},
    }
    summary["lm_vs_cf"] = json_safe(head_to_head or [])
    files["summary"].write_text(json.dumps(summary, indent=2, allow_nan=False, default=str))
    result.comparisons.to_csv(files["comparisons"], index=False)
    files["config"].write_text(config_to_toml(cfg))
    return files


def save_models(models: Mapping[str, Recommender], train: Interactions, path: str | Path) -> Path:
    """Save fitted models as a `ModelBundle` the HTTP service can load."""
    from abrec.models.bundle import ModelBundle

    bundle = ModelBundle(models=dict(models), user_ids=train.user_ids, item_ids=train.item_ids)
    return bundle.save(path)


# --------------------------------------------------------------------------- presentation
def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def _fmt(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "—"


def _fmt_ci(cell: list[float] | None) -> str:
    if cell is None:
        return "—"
    mean, low, high = cell
    if not (_finite(low) and _finite(high)):
        return _fmt(mean)
    return f"{_fmt(mean)} ({_fmt(low)}–{_fmt(high)})"


def _fmt_p(p: Any) -> str:
    if not _finite(p):
        return "—"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def leaderboard_rows(
    result: EvaluationResult, metrics: list[str], slice_: str, test: str
) -> list[dict[str, Any]]:
    """Per model: [mean, ci_low, ci_high] per metric, lift and Holm p on the first metric."""
    s = result.summary[result.summary["slice"] == slice_]
    c = result.comparisons[result.comparisons["slice"] == slice_]
    primary = metrics[0]
    rows = []
    for model in dict.fromkeys(s["model"]):
        row: dict[str, Any] = {"model": model}
        for m in metrics:
            hit = s[(s["model"] == model) & (s["metric"] == m)]
            row[m] = (
                None
                if hit.empty
                else [float(x) for x in hit.iloc[0][["mean", "ci_low", "ci_high"]]]
            )
        comp = c[(c["model"] == model) & (c["metric"] == primary)]
        row["lift"] = None if comp.empty else float(comp.iloc[0]["lift"])
        row["p_holm"] = None if comp.empty else float(comp.iloc[0][f"p_{test}_holm"])
        row["n_users"] = int(s[s["model"] == model]["n_users"].max())
        rows.append(row)
    rows.sort(key=lambda r: -(r[primary][0] if r[primary] else -math.inf))
    return rows


def print_leaderboard(out: RunOutput, console: Console) -> None:
    """Rich tables: leaderboard with CIs, lift and Holm p; more metrics; cold-item slice."""
    from rich.table import Table

    res, ev = out.result, out.config.evaluation
    primary = ev.primary_metric
    k = primary.partition("@")[2]
    second = f"recall@{k}" if primary != f"recall@{k}" else f"ndcg@{k}"
    test_name = {"ttest": "t-test", "wilcoxon": "Wilcoxon", "permutation": "permutation"}[
        ev.primary_test
    ]
    pct = round(100 * res.level)
    base = res.baseline

    def label(model: str) -> str:
        return f"{model}*" if model == base else model

    for slice_, title in (
        ("all", f"Leaderboard — {res.protocol}, {res.info['n_scored_users']} users"),
        (
            "cold",
            f"Cold-item slice — {res.info['n_cold_scored_users']} users with relevant items "
            "never seen in training",
        ),
    ):
        rows = leaderboard_rows(res, [primary, second], slice_, ev.primary_test)
        if not rows:
            continue
        t = Table(title=title, title_justify="left", caption=f"* baseline: {base}")
        t.add_column("model", style="bold", no_wrap=True)
        t.add_column(f"{primary} ({pct}% CI)", justify="right")
        t.add_column(f"{second} ({pct}% CI)", justify="right")
        t.add_column(f"lift {primary}", justify="right")
        t.add_column(f"p {test_name} (Holm)", justify="right")
        for r in rows:
            lift = r["lift"]
            t.add_row(
                label(r["model"]),
                _fmt_ci(r[primary]),
                _fmt_ci(r[second]),
                f"{100 * lift:+.1f}%" if _finite(lift) else "—",
                _fmt_p(r["p_holm"]),
            )
        console.print(t)
        if slice_ == "all":
            extra = [
                m
                for m in (
                    f"map@{k}",
                    f"mrr@{k}",
                    f"hit_rate@{k}",
                    "auc",
                    f"coverage@{k}",
                    f"novelty@{k}",
                    f"diversity@{k}",
                )
                if m in res.metrics or m in set(res.summary["metric"])
            ]
            more = leaderboard_rows(res, [primary, *extra], "all", ev.primary_test)
            t2 = Table(title="More metrics (means)", title_justify="left")
            t2.add_column("model", style="bold", no_wrap=True)
            short = {"precision": "P", "hit_rate": "HR", "coverage": "Cov", "novelty": "Nov"}
            short |= {"diversity": "ILD", "map": "MAP", "mrr": "MRR", "auc": "AUC"}
            for m in extra:
                name, _, kk = m.partition("@")
                t2.add_column(short.get(name, name) + (f"@{kk}" if kk else ""), justify="right")
            for r in more:
                t2.add_row(label(r["model"]), *(_fmt(r[m][0]) if r[m] else "—" for m in extra))
            console.print(t2)
    test_col = f"p_{ev.primary_test}"
    for r in out.lm_vs_cf:
        console.print(
            f"{r['slice']} users: best language-model model {r['model']} vs best other model "
            f"{r['baseline']}: {primary} {_fmt(r['mean_model'], 4)} vs "
            f"{_fmt(r['mean_baseline'], 4)} (diff {r['diff']:+.4f}, p {test_name} "
            f"{_fmt_p(r[test_col])}, t-test {_fmt_p(r['p_ttest'])}, "
            f"Wilcoxon {_fmt_p(r['p_wilcoxon'])}, n={r['n_users']})",
            highlight=False,
            markup=False,
        )


__all__ = [
    "DatasetConfig",
    "EncoderConfig",
    "EvaluationConfig",
    "ModelConfig",
    "ProtocolConfig",
    "RunConfig",
    "RunOutput",
    "build_encoder",
    "build_models",
    "config_to_toml",
    "default_run_dir",
    "leaderboard_rows",
    "lm_vs_cf",
    "load_config",
    "load_data",
    "make_split",
    "parse_config",
    "print_leaderboard",
    "run",
    "save_models",
    "write_run",
]
