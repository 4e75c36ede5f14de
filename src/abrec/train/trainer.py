"""The training loop: contrastive fine-tuning with early stopping, checkpoints and resume.

A plain PyTorch loop over sentence-transformers' `MultipleNegativesRankingLoss` (in-batch
negatives) with AdamW and a linear warm-up/decay schedule. Each epoch: train, validate (the
ranking metric of `abrec.train.validation`), update early stopping, write a checkpoint
(trainable weights, optimiser, scheduler, RNG state, history). `fit(resume=True)` continues from
the last checkpoint and reaches the same weights and history as an uninterrupted run (on the
CPU): the batch plan of an epoch depends only on (seed, epoch) and the torch RNG (dropout) is
restored. Output folder::

    model/                 the tuned sentence-transformers model (load it with TextEncoder)
    checkpoints/           epoch-NNN.pt (the last `keep_checkpoints`) and best.pt
    learning_curve.json    history, best epoch, where the time went
    learning_curve.png
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abrec.errors import ConfigError
from abrec.train import modeling
from abrec.train.config import TrainConfig
from abrec.train.curve import plot_curve, write_curve_json
from abrec.train.data import TrainingData
from abrec.train.validation import epoch_batches, rank_metrics, validation_scores

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class EpochRecord:
    """One row of the learning curve (epoch 0 = the base model, before any step)."""

    epoch: int
    metrics: dict[str, float]
    train_loss: float | None = None
    steps: int = 0
    learning_rate: float | None = None
    grad_norm_max: float | None = None
    seconds: float = 0.0


@dataclass
class TrainResult:
    """What a training run produced."""

    config: TrainConfig
    history: list[EpochRecord]
    metric: str
    best_epoch: int
    best_value: float
    stopped_early: bool
    output_dir: Path
    model_dir: Path
    device: str
    precision: str
    n_pairs: int
    n_validation_users: int
    trainable_parameters: int
    total_parameters: int
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the content of learning_curve.json)."""
        return {
            "metric": self.metric,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "stopped_early": self.stopped_early,
            "epochs_run": self.history[-1].epoch if self.history else 0,
            "device": self.device,
            "precision": self.precision,
            "n_pairs": self.n_pairs,
            "n_validation_users": self.n_validation_users,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "timings_s": self.timings,
            "history": [asdict(h) for h in self.history],
            "config": self.config.model_dump(mode="json"),
        }


#: Called after each epoch's checkpoint with the trainer and the epoch's record.
EpochCallback = Callable[["Trainer", EpochRecord], None]


class Trainer:
    """Fine-tune an encoder on `TrainingData` under a `TrainConfig`.

    Args:
        cfg: the training config.
        data: pairs and validation set (`build_training_data`).
        quiet: no progress bars or log lines.
        log: where log lines go (default: print to stderr through tqdm).
        callbacks: functions called after every epoch (after its checkpoint is written).
        timings: seconds already spent (e.g. `data_s`), reported with the run's own and
            counted in `total_s`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainingData,
        *,
        quiet: bool = False,
        log: Callable[[str], None] | None = None,
        callbacks: Sequence[EpochCallback] = (),
        timings: Mapping[str, float] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.quiet = quiet
        self._log = log
        self.callbacks = list(callbacks)
        self.output_dir = Path(cfg.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.model_dir = self.output_dir / "model"
        self.timings: dict[str, float] = dict(timings or {})
        self._before = sum(self.timings.values())
        self._created = time.perf_counter()
        self.history: list[EpochRecord] = []
        self.model: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.scaler: Any = None
        self.best_epoch: int | None = None
        self.best_value = -math.inf
        self._best_state: dict[str, Any] | None = None
        self._bad_epochs = 0
        self._stopped = False
        self._plans: dict[int, list[np.ndarray]] = {}

    # ------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self._log is not None:
            self._log(message)
        else:
            from tqdm.auto import tqdm

            tqdm.write(message)

    @contextlib.contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def _autocast(self) -> Any:
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        import torch
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
        from transformers import get_linear_schedule_with_warmup

        cfg = self.cfg
        self.device = modeling.resolve_device(cfg.device)
        cuda = self.device.startswith("cuda")
        if cuda and cfg.mixed_precision:
            self.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            self.precision = "fp32"
        with self._timed("load_model_s"):
            self.model = modeling.load_encoder(cfg, self.device)
        self.loss = MultipleNegativesRankingLoss(self.model)
        self.optimizer = torch.optim.AdamW(
            modeling.parameter_groups(self.model, cfg.weight_decay), lr=cfg.learning_rate
        )
        total = len(self.epoch_plan(1)) * cfg.epochs
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, round(cfg.warmup_ratio * total), total
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.trainable_parameters, self.total_parameters = modeling.count_parameters(self.model)
        self.base_fingerprint = modeling.base_fingerprint(cfg.model)

    # ------------------------------------------------------------------ one epoch
    def _features(self, texts: list[str]) -> dict[str, Any]:
        import torch

        features = self.model.preprocess(texts)
        return {
            k: (v.to(self.device) if isinstance(v, torch.Tensor) else v)
            for k, v in features.items()
        }

    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of pair indices) of `epoch`: seeded, computed once per epoch."""
        if epoch not in self._plans:
            cfg = self.cfg
            self._plans[epoch] = epoch_batches(
                self.data.positive_items, cfg.batch_size, cfg.seed, epoch
            )
        return self._plans[epoch]

    def train_steps(
        self, epoch: int = 1, start: int = 0, stop: int | None = None
    ) -> tuple[float, int, float]:
        """Train on batches `start` to `stop` (exclusive) of `epoch`'s plan; default: all of them.

        Loads the model and builds the optimiser and scheduler first when that has not been done
        (`fit` always starts afresh from the base model). Consecutive slices of an epoch reach
        the same weights as one call over the whole epoch, so a benchmark can time a few steps.
        Returns (mean loss, steps, largest total gradient norm before clipping).
        """
        import torch
        from tqdm.auto import tqdm

        if self.model is None:
            self._setup()
        cfg, data = self.cfg, self.data
        plan = self.epoch_plan(epoch)
        stop = len(plan) if stop is None else stop
        if not 0 <= start <= stop <= len(plan):
            raise ValueError(
                f"steps {start}:{stop} are outside epoch {epoch}'s {len(plan)} batches"
            )
        batches = plan[start:stop]
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf
        self.model.train()
        total, grad_max = 0.0, 0.0
        bar = tqdm(
            batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="step", disable=self.quiet,
            leave=False,
        )  # fmt: skip
        for step, idx in enumerate(bar, start=1):
            anchors = self._features([data.anchors[i] for i in idx])
            positives = self._features([data.positives[i] for i in idx])
            with self._autocast():
                loss = self.loss([anchors, positives], None)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            total += float(loss.detach())
            grad_max = max(grad_max, norm)
            bar.set_postfix(loss=f"{total / step:.4f}")
        bar.close()
        return total / max(len(batches), 1), len(batches), grad_max

    def validate(self) -> dict[str, float]:
        """The validation ranking metrics of the current weights."""
        import torch

        self.model.eval()
        with torch.inference_mode(), self._autocast():
            scores = validation_scores(
                self.model, self.data.validation, self.data.item_text, self.cfg.encode_batch_size
            )
        return rank_metrics(scores)

    def _record(self, record: EpochRecord) -> None:
        """Append to the history and update early stopping (and the best weights)."""
        self.history.append(record)
        value = record.metrics[self.cfg.metric]
        if self.best_epoch is None or value > self.best_value + self.cfg.min_delta:
            self.best_epoch, self.best_value, self._bad_epochs = record.epoch, value, 0
            self._best_state = modeling.trainable_state(self.model)
            if self.cfg.save_checkpoints:
                self._save_best()
        elif record.epoch > 0:
            self._bad_epochs += 1
        patience = self.cfg.patience
        if patience is not None and self._bad_epochs >= patience:
            self._stopped = True

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch-{epoch:03d}.pt"

    def _save_best(self) -> None:
        import torch

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with self._timed("checkpoint_s"):
            tmp = self.checkpoint_dir / ".best.pt.tmp"
            torch.save({"epoch": self.best_epoch, "state": self._best_state}, tmp)
            tmp.replace(self.checkpoint_dir / "best.pt")

    def _save_checkpoint(self, epoch: int) -> None:
        import torch

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with self._timed("checkpoint_s"):
            state = {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "config": self.cfg.resume_key(),
                "base": self.base_fingerprint,
                "trainable": modeling.trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "history": [asdict(h) for h in self.history],
                "best_epoch": self.best_epoch,
                "best_value": self.best_value,
                "bad_epochs": self._bad_epochs,
                "stopped": self._stopped,
            }
            path = self._checkpoint_path(epoch)
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(path)
            old = sorted(self.checkpoint_dir.glob("epoch-*.pt"))[: -self.cfg.keep_checkpoints]
            for stale in old:
                stale.unlink(missing_ok=True)

    def last_checkpoint(self) -> Path | None:
        """The newest epoch checkpoint in the output folder, if any."""
        found = sorted(self.checkpoint_dir.glob("epoch-*.pt"))
        return found[-1] if found else None

    def _resume(self, path: Path) -> int:
        """Load a checkpoint; returns the next epoch to train."""
        import torch

        with self._timed("checkpoint_s"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a checkpoint this version can resume")
        if state["base"] != self.base_fingerprint:
            raise ConfigError(f"{path} was trained from another base model; cannot resume")
        saved, now = state["config"], self.cfg.resume_key()
        differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if differ:
            raise ConfigError(
                f"cannot resume from {path}: the config differs in {differ}; restore those "
                "settings or train into a new output folder"
            )
        modeling.load_trainable_state(self.model, state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if torch.cuda.is_available() and state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.history = [EpochRecord(**h) for h in state["history"]]
        self.best_epoch, self.best_value = state["best_epoch"], float(state["best_value"])
        self._bad_epochs, self._stopped = int(state["bad_epochs"]), bool(state["stopped"])
        best_file = self.checkpoint_dir / "best.pt"
        if best_file.is_file():
            best = torch.load(best_file, map_location="cpu", weights_only=True)
            if best["epoch"] == self.best_epoch:
                self._best_state = best["state"]
        if self._best_state is None and self.best_epoch == state["epoch"]:
            self._best_state = state["trainable"]
        self.log(f"resumed from {path} (epoch {state['epoch']})")
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ the run
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or resume), restore the best weights if asked, save the model and the curve."""
        import torch

        threads = torch.get_num_threads()
        if self.cfg.cpu_threads is not None:
            torch.set_num_threads(self.cfg.cpu_threads)
        try:
            return self._fit(resume)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        self._setup()
        start = 1
        last = self.last_checkpoint() if resume else None
        if resume and last is None:
            self.log(f"no checkpoint in {self.checkpoint_dir}; starting from the base model")
        if last is not None:
            start = self._resume(last)
        elif cfg.validate_untuned:
            with self._timed("validate_s"):
                t0 = time.perf_counter()
                metrics = self.validate()
            self._record(EpochRecord(0, metrics, seconds=time.perf_counter() - t0))
            self.log(f"epoch 0 (base model): {cfg.metric} {metrics[cfg.metric]:.4f}")
        for epoch in range(start, cfg.epochs + 1):
            if self._stopped:
                break
            t0 = time.perf_counter()
            with self._timed("train_s"):
                loss, steps, grad_max = self.train_steps(epoch)
            with self._timed("validate_s"):
                metrics = self.validate()
            record = EpochRecord(
                epoch=epoch,
                metrics=metrics,
                train_loss=loss,
                steps=steps,
                learning_rate=float(self.scheduler.get_last_lr()[0]),
                grad_norm_max=grad_max,
                seconds=time.perf_counter() - t0,
            )
            self._record(record)
            if cfg.save_checkpoints:
                self._save_checkpoint(epoch)
            self.log(
                f"epoch {epoch}: loss {loss:.4f}, {cfg.metric} {metrics[cfg.metric]:.4f} "
                f"(best {self.best_value:.4f} at epoch {self.best_epoch}), {record.seconds:.1f}s"
            )
            for callback in self.callbacks:
                callback(self, record)
        return self._finish()

    def _finish(self) -> TrainResult:
        cfg = self.cfg
        last_epoch = self.history[-1].epoch if self.history else 0
        assert self.best_epoch is not None or not self.history
        if (
            cfg.restore_best
            and self._best_state is not None
            and self.best_epoch is not None
            and self.best_epoch != last_epoch
        ):
            modeling.load_trainable_state(self.model, self._best_state)
            self.log(f"restored the weights of epoch {self.best_epoch} (best {cfg.metric})")
        with self._timed("save_s"):
            modeling.save_encoder(self.model, self.model_dir)
        self.timings["total_s"] = time.perf_counter() - self._created + self._before
        result = TrainResult(
            config=cfg,
            history=list(self.history),
            metric=cfg.metric,
            best_epoch=self.best_epoch if self.best_epoch is not None else last_epoch,
            best_value=self.best_value,
            stopped_early=self._stopped and last_epoch < cfg.epochs,
            output_dir=self.output_dir,
            model_dir=self.model_dir,
            device=self.device,
            precision=self.precision,
            n_pairs=len(self.data),
            n_validation_users=len(self.data.validation),
            trainable_parameters=self.trainable_parameters,
            total_parameters=self.total_parameters,
            timings=dict(self.timings),
        )
        summary = result.summary()
        result.files = {
            "model": self.model_dir,
            "curve_json": write_curve_json(self.output_dir / "learning_curve.json", summary),
            "curve_png": plot_curve(
                self.output_dir / "learning_curve.png",
                summary["history"],
                cfg.metric,
                result.best_epoch,
            ),
        }
        return result


__all__ = ["CHECKPOINT_FORMAT", "EpochCallback", "EpochRecord", "TrainResult", "Trainer"]
