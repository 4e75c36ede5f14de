"""`abrec train`: fine-tune the text encoder on a dataset's training period (contrastive).

The TOML file has the run config's `[dataset]` and `[protocol]` tables (same keys as
`abrec evaluate`) and a `[train]` table (`abrec.train.TrainConfig`; `[train.lora]` optional).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abrec import fmt
from abrec.cli.app import app
from abrec.errors import ConfigError, format_validation_error
from abrec.offline.config import DatasetConfig, ProtocolConfig, read_toml
from abrec.train.config import TrainConfig

if TYPE_CHECKING:
    from rich.console import Console

    from abrec.train.trainer import TrainResult

#: Timing keys in the order the run spends them, with their labels.
TIMING_LABELS = {
    "load_data_s": "loading the data and the protocol split",
    "data_s": "training pairs and validation set",
    "load_model_s": "loading the base model",
    "train_s": "training steps",
    "validate_s": "validation",
    "checkpoint_s": "checkpoints",
    "save_s": "saving the model",
    "total_s": "total",
}


class FinetuneConfig(BaseModel):
    """The `abrec train` TOML file: data, protocol (the training period) and training knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "finetune"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def load_finetune_config(path: Path, output: Path | None = None) -> FinetuneConfig:
    """Read and validate the TOML; relative data/model paths resolve against its folder."""
    data = read_toml(path, "path/to/finetune.toml")
    try:
        cfg = FinetuneConfig.model_validate(data)
    except ValidationError as exc:
        detail = format_validation_error(
            exc, sep="\n  - ", what="(top level)", hint="see examples/finetune.toml"
        )
        raise ConfigError(f"invalid config {path}:\n  - {detail}") from None

    def near(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute():
            return value
        candidate = (path.parent / value).resolve()
        return str(candidate) if candidate.exists() else value

    ds = cfg.dataset.model_copy(
        update={
            "path": near(cfg.dataset.path),
            "interactions": near(cfg.dataset.interactions),
            "items": near(cfg.dataset.items),
        }
    )
    train_update: dict[str, str | None] = {"model": near(cfg.train.model)}
    if output is not None:
        train_update["output_dir"] = str(output)
    return cfg.model_copy(
        update={"dataset": ds, "train": cfg.train.model_copy(update=train_update)}
    )


def print_result(result: TrainResult, console: Console) -> None:
    """The learning curve, the best epoch and where the time went."""
    from rich.table import Table

    curve = Table(title="learning curve (epoch 0 = the base model)", title_justify="left")
    for col in ("epoch", "train loss", "val ndcg@10", "val recall@10", "steps", "seconds"):
        curve.add_column(col, justify="right")
    for h in result.history:
        mark = " *" if h.epoch == result.best_epoch else ""
        curve.add_row(
            f"{h.epoch}{mark}",
            fmt.num(h.train_loss) if h.train_loss is not None else fmt.MISSING,
            fmt.num(h.metrics["ndcg@10"], fixed=True),
            fmt.num(h.metrics["recall@10"], fixed=True),
            str(h.steps),
            fmt.num(h.seconds, 1, fixed=True),
        )
    console.print(curve)
    stop = "stopped early" if result.stopped_early else "ran every epoch"
    console.print(
        f"best epoch {result.best_epoch} (* above): validation {result.metric} "
        f"{fmt.num(result.best_value, fixed=True)}; {stop}; device {result.device} "
        f"({result.precision}); {result.n_pairs:,} training pairs, "
        f"{result.n_validation_users:,} validation users; "
        f"{result.trainable_parameters:,} of {result.total_parameters:,} parameters trained"
    )
    times = Table(title="where the time went", title_justify="left")
    times.add_column("step")
    times.add_column("seconds", justify="right")
    times.add_column("share", justify="right")
    total = result.timings.get("total_s", 0.0)
    for key, label in TIMING_LABELS.items():
        if key in result.timings:
            share = result.timings[key] / total if total > 0 and key != "total_s" else None
            times.add_row(
                label,
                fmt.num(result.timings[key], 1, fixed=True),
                fmt.pct(share, 0, signed=False) if share is not None else "",
            )
    console.print(times)


@app.command()
def train(
    config: Path = typer.Option(
        Path("examples/finetune.toml"),
        "--config",
        "-c",
        help="TOML with \\[dataset], \\[protocol] and \\[train] tables.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output folder (default: train.output_dir)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Fine-tune the text encoder on the training period; write the tuned model folder."""
    from rich.console import Console
    from rich.markup import escape

    from abrec.errors import AbrecError
    from abrec.offline.run import load_data, split_protocol
    from abrec.train.run import train_encoder

    out, err, progress = Console(), Console(stderr=True), Console(stderr=True, quiet=quiet)
    try:
        cfg = load_finetune_config(config, output)
        progress.print(f"[bold cyan]>[/] loading dataset ({cfg.dataset.kind})")
        t0 = time.perf_counter()
        inter, items = load_data(cfg.dataset)
        split = split_protocol(cfg.protocol, cfg.train.seed, inter)
        progress.print(
            f"[bold cyan]>[/] protocol {split.name}: training on the {len(split.train):,} "
            f"training rows only (validation carved from them; the test period is not read)"
        )
        result = train_encoder(
            split.train,
            items,
            cfg.train,
            protocol=split.name,
            resume=resume,
            quiet=quiet,
            log=lambda msg: progress.print(escape(msg), highlight=False),
            timings={"load_data_s": time.perf_counter() - t0},
        )
    except AbrecError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    print_result(result, out)
    out.print(f"Tuned model: {result.model_dir}")
    out.print(f"Learning curve: {result.files['curve_json']} and {result.files['curve_png']}")
    out.print(
        "Use it in a run config: \\[encoder] model = "
        f'"{result.model_dir.resolve()}" (every language-model model and the hybrid read it)'
    )
