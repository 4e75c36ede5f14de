"""The offline run: data -> split -> encoder -> models -> evaluation -> run folder.

Shared wiring for `abrec evaluate` and `abrec demo`. Every run writes `per_user.parquet`,
`summary.json`, `comparisons.csv` and `config.resolved.toml` into its run folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from abrec.errors import ConfigError
from abrec.jsonsafe import json_safe
from abrec.models.registry import needs_encoder
from abrec.offline.config import (
    DatasetConfig,
    EncoderConfig,
    ModelConfig,
    ProtocolConfig,
    RunConfig,
    config_to_toml,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from abrec.data.splits import ProtocolSplit
    from abrec.data.types import Interactions, ItemCatalog
    from abrec.embed.encoder import TextEncoder
    from abrec.evaluation.protocol import ChunkRunner, EvaluationResult
    from abrec.models.base import Recommender


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
    """Split interactions by the run config's protocol (its validation split when
    `protocol.evaluate_on` is "validation")."""
    split = split_protocol(cfg.protocol, cfg.seed, inter)
    if cfg.protocol.evaluate_on == "validation":
        split = validation_protocol(split, cfg.protocol, cfg.seed)
    return split


def validation_protocol(split: ProtocolSplit, p: ProtocolConfig, seed: int) -> ProtocolSplit:
    """The protocol's validation split: carved from its TRAINING period with the protocol's
    kind and share (`abrec.data.splits.validation_split`); the test period is dropped.

    Models fitted on it tune themselves on a split carved from this smaller training part, so
    a choice made on it never reads the test period.
    """
    from abrec.data import splits

    fit, val = splits.validation_split(
        split.train, p.name, p.test_fraction, seed if p.seed is None else p.seed
    )
    if p.name == splits.PROTOCOL_NAME:
        threshold = splits.RELEVANCE_THRESHOLD
    else:
        threshold = 1.0 if val.ratings is None else p.relevance_threshold
    if val.ratings is None:
        val = type(val)(
            val.user_idx, val.item_idx, val.user_ids, val.item_ids,
            ratings=np.ones(len(val), dtype=np.float32), timestamps=val.timestamps,
        )  # fmt: skip
    return splits.protocol_split(fit, val, threshold=threshold, name=f"{p.name}:validation")


def split_protocol(p: ProtocolConfig, seed: int, inter: Interactions) -> ProtocolSplit:
    """Split interactions by protocol `p` (`seed` drives the random protocol unless it sets one)."""
    from abrec.data import splits

    if p.name == splits.PROTOCOL_NAME:
        return splits.ml_small_temporal_v1(inter)
    if p.name == "temporal":
        train, test = splits.temporal_user_split(inter, p.test_fraction)
    elif p.name == "leave-last-one-out":
        train, test = splits.leave_last_one_out(inter)
    else:
        train, test = splits.random_split(
            inter, p.test_fraction, seed=seed if p.seed is None else p.seed
        )
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


def tuned_encoder_config(
    cfg: RunConfig, split: ProtocolSplit, items: ItemCatalog, step: Callable[[str], None]
) -> EncoderConfig:
    """`cfg.encoder` pointing at an encoder fine-tuned on `split.train` (`[encoder.finetune]`).

    Trained once per training set and settings (`abrec.train.tuned`, cached by content); the
    trainer carves its validation part by the protocol's kind with the run's seed, which is
    also what the self-tuning models carve, so no model validates on events the encoder
    trained on. The test period is never read.
    """
    from abrec.data.splits import PROTOCOL_VALIDATION
    from abrec.train.config import parse_train_config
    from abrec.train.tuned import tuned_model_dir

    enc = cfg.encoder
    assert enc.finetune is not None
    tcfg = parse_train_config(
        {"seed": cfg.seed, **enc.finetune, "model": enc.model}, "[encoder.finetune]"
    )
    step(f"fine-tuning the encoder on the {len(split.train):,} training rows (cached by content)")
    folder, summary = tuned_model_dir(
        split.train, items, tcfg, validation=PROTOCOL_VALIDATION[cfg.protocol.name]
    )
    step(
        f"tuned encoder {folder} (best validation {summary['metric']} "
        f"{summary['best_value']:.4f} at epoch {summary['best_epoch']})"
    )
    return enc.model_copy(update={"model": str(folder)})


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


def build_model(
    m: ModelConfig, encoder: Any | None = None, protocol: str | None = None
) -> Recommender:
    """One configured model through `abrec.models.registry.build_model` (errors name it).

    A model that tunes itself on an inner validation split (`InnerValidationConfig`) gets the
    protocol's kind of split (`abrec.data.splits.PROTOCOL_VALIDATION`) unless its params set one.
    """
    from abrec.data.splits import PROTOCOL_VALIDATION
    from abrec.models import registry

    params = dict(m.params)
    if needs_encoder(m.kind) and encoder is not None and "encoder" not in params:
        params["encoder"] = encoder
    fields = registry.config_class(m.kind).model_fields
    if protocol is not None and "validation" in fields and "validation" not in params:
        params["validation"] = PROTOCOL_VALIDATION[protocol]
    try:
        return registry.build_model(m.kind, **params)
    except ConfigError as exc:
        raise ConfigError(f"model {m.name!r}: {exc}") from None


def build_models(cfg: RunConfig, encoder: Any | None = None) -> dict[str, Recommender]:
    """Instantiate every configured model, keyed by its display name (validation split kind
    from the run's protocol)."""
    return {m.name: build_model(m, encoder, cfg.protocol.name) for m in cfg.models}


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


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = time.perf_counter() - start


def _progress(console: Console, quiet: bool) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


def _fit_all(
    models: Mapping[str, Recommender],
    split: ProtocolSplit,
    items: ItemCatalog,
    progress: Progress,
    timings: dict[str, float],
) -> None:
    task = progress.add_task("training models", total=len(models))
    for name, model in models.items():
        progress.update(task, description=f"training {name}")
        with _timed(timings, f"fit_{name}_s"):
            model.fit(split.train, items)
        progress.advance(task)
    progress.update(task, description="training models")


def _evaluate(
    cfg: RunConfig,
    models: Mapping[str, Recommender],
    split: ProtocolSplit,
    item_emb: np.ndarray | None,
    progress: Progress,
    runner: ChunkRunner | None = None,
) -> EvaluationResult:
    from abrec.evaluation.protocol import evaluate_models

    task = progress.add_task("evaluating", total=len(split.scored_users) * len(models))
    done: dict[str, int] = {}

    def on_batch(model: str, users_done: int, total: int) -> None:
        prev = done.get(model, 0)
        done[model] = users_done
        progress.update(task, advance=users_done - prev, description=f"evaluating {model}")

    ev = cfg.evaluation
    return evaluate_models(
        dict(models),
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
        runner=runner,
    )


def run(
    cfg: RunConfig,
    output_dir: str | Path | None = None,
    *,
    write: bool = True,
    quiet: bool = False,
    console: Console | None = None,
    save_models_dir: str | Path | None = None,
    ray_address: str | None = None,
) -> RunOutput:
    """Load data, split, encode, fit every model, evaluate and write the run folder.

    With `ray_address` ("local", "auto", "ray://head:10001", ...; see
    `abrec.scale.ray_session`) the item texts are encoded and the per-user evaluation runs
    on Ray (`abrec.scale`), with the same results; fitting stays in this process.
    """
    if ray_address is not None:
        from abrec.scale import ray_session

        with ray_session(ray_address):
            return _run(cfg, output_dir, write, quiet, console, save_models_dir, use_ray=True)
    return _run(cfg, output_dir, write, quiet, console, save_models_dir, use_ray=False)


def _run(
    cfg: RunConfig,
    output_dir: str | Path | None,
    write: bool,
    quiet: bool,
    console: Console | None,
    save_models_dir: str | Path | None,
    *,
    use_ray: bool,
) -> RunOutput:
    from rich.console import Console

    con = console or Console(stderr=True, quiet=quiet)
    step = (lambda msg: None) if quiet else (lambda msg: con.print(f"[bold cyan]>[/] {msg}"))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    step(f"loading dataset ({cfg.dataset.kind})")
    with _timed(timings, "load_split_s"):
        inter, items = load_data(cfg.dataset)
        split = make_split(cfg, inter)
    step(
        f"protocol {split.name}: {len(split.train):,} train / {len(split.test):,} test rows, "
        f"{len(split.scored_users):,} scored users, {int(np.asarray(split.cold_items).sum()):,} "
        "cold items"
    )
    encoder = None
    if cfg.evaluation.diversity or any(needs_encoder(m.kind) for m in cfg.models):
        enc_cfg = cfg.encoder
        if enc_cfg.finetune is not None:
            with _timed(timings, "finetune_s"):
                enc_cfg = tuned_encoder_config(cfg, split, items, step)
        encoder = build_encoder(enc_cfg, show_progress=not quiet)
    item_emb: np.ndarray | None = None
    if encoder is not None:
        step(f"encoding {len(items):,} item texts with {encoder.name}")
        with _timed(timings, "encode_s"):
            if use_ray:
                from abrec.scale import encode_catalog_ray

                item_emb = encode_catalog_ray(items, encoder)
            else:
                texts = [str(x) for x in items.text]
                item_emb = np.asarray(encoder.encode(texts), dtype=np.float32)
    models = build_models(cfg, encoder)
    with _progress(con, quiet) as progress:
        _fit_all(models, split, items, progress, timings)
        with _timed(timings, "evaluate_s"):
            runner = None
            if use_ray:
                from abrec.scale import RayChunkRunner

                runner = RayChunkRunner()
            result = _evaluate(cfg, models, split, item_emb, progress, runner)
    timings["total_s"] = time.perf_counter() - t0
    result.info.update({f"time_{k}": v for k, v in timings.items()})
    result.info["executor"] = "ray" if use_ray else "process"

    out = RunOutput(cfg, result, models, split, None, timings=timings)
    out.lm_vs_cf = lm_vs_cf(cfg, result)
    if write:
        out.run_dir = Path(output_dir) if output_dir is not None else default_run_dir()
        out.files = write_run(out.run_dir, cfg, result, out.lm_vs_cf)
        out.files.update(write_learning_curves(out.run_dir, models))
    if save_models_dir is not None:
        out.files["models"] = save_models(models, split.train, save_models_dir)
        write_provenance(out.files["models"], cfg, result, split.train)
    return out


def write_provenance(
    bundle_dir: Path, cfg: RunConfig, result: EvaluationResult, train: Interactions
) -> Path:
    """`provenance.json` in a saved bundle: the training data fingerprint, the run config and
    each model's offline metrics (mean over all users), which `abrec models register` records."""
    from abrec.artifacts import PROVENANCE_FILE, data_fingerprint

    rows = result.summary[result.summary["slice"] == "all"]
    metrics = {
        str(model): {str(r["metric"]): float(r["mean"]) for _, r in group.iterrows()}
        for model, group in rows.groupby("model")
    }
    doc = {
        "data_fingerprint": data_fingerprint(train),
        "config": cfg.model_dump(mode="json"),
        "metrics": {"protocol": result.protocol, "per_model": metrics},
    }
    path = Path(bundle_dir) / PROVENANCE_FILE
    path.write_text(json.dumps(json_safe(doc), indent=2, sort_keys=True) + "\n")
    return path


def write_learning_curves(run_dir: Path, models: Mapping[str, Recommender]) -> dict[str, Path]:
    """`curves/<model>.json` and `.png` for every model that fine-tuned its encoder in `fit`
    (train loss and validation metric per epoch, the best epoch marked)."""
    from abrec.train.curve import plot_curve, write_curve_json

    files: dict[str, Path] = {}
    for name, model in models.items():
        report = getattr(model, "training_report", None)
        if not report:
            continue
        folder = Path(run_dir) / "curves"
        folder.mkdir(parents=True, exist_ok=True)
        files[f"curve_{name}_json"] = write_curve_json(folder / f"{name}.json", report)
        files[f"curve_{name}_png"] = plot_curve(
            folder / f"{name}.png", report["history"], report["metric"], report["best_epoch"]
        )
    return files


def lm_vs_cf(cfg: RunConfig, result: EvaluationResult) -> list[dict[str, Any]]:
    """The language-model champion against every other (collaborative) model, per slice.

    The champion is `evaluation.champion` (a model chosen on the validation split, `abrec
    evaluate --on validation`); when unset, the best language-model model on this split by the
    primary metric (`chosen_on` says which). Each row is one (slice, CF model) pair oriented
    champion minus CF model, with its paired tests; the `_holm` p-values are corrected over the
    CF models within the slice. Empty when the run lacks either kind of model.
    """
    metric = cfg.evaluation.primary_metric
    lm = [m.name for m in cfg.models if needs_encoder(m.kind)]
    cf = [m.name for m in cfg.models if not needs_encoder(m.kind)]
    if not lm or not cf:
        return []
    rows: list[dict[str, Any]] = []
    for slice_ in ("all", "cold"):
        have = set(result.summary[result.summary["slice"] == slice_]["model"])
        lm_s, cf_s = [n for n in lm if n in have], [n for n in cf if n in have]
        if not lm_s or not cf_s:
            continue
        champion = cfg.evaluation.champion
        chosen_on = "named by evaluation.champion"
        if champion is None:
            champion = max(lm_s, key=lambda n: result.value(n, metric, slice_))
            chosen_on = f"the best on this split ({result.protocol})"
        if champion not in have:
            continue
        comp = result.compare(champion, cf_s)
        hit = comp[(comp["metric"] == metric) & (comp["slice"] == slice_)]
        for r in hit.to_dict("records"):
            row = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            row.update(
                model=champion,
                baseline=r["model"],
                mean_model=r["mean_baseline"],
                mean_baseline=r["mean_model"],
                diff=-r["diff"],
                diff_low=-r["diff_high"],
                diff_high=-r["diff_low"],
                lift=r["mean_baseline"] / r["mean_model"] - 1.0 if r["mean_model"] else np.nan,
                chosen_on=chosen_on,
            )
            rows.append(row)
    return rows


def write_run(
    run_dir: str | Path,
    cfg: RunConfig,
    result: EvaluationResult,
    head_to_head: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write `per_user.parquet`, `summary.json`, `comparisons.csv`, `config.resolved.toml`."""
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


__all__ = [
    "RunOutput",
    "build_encoder",
    "build_model",
    "build_models",
    "default_run_dir",
    "lm_vs_cf",
    "load_data",
    "make_split",
    "run",
    "save_models",
    "write_provenance",
    "write_run",
]
