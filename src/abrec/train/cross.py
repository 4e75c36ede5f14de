"""The cross-encoder for like prediction (the classic BERT-for-CTR set-up): model, loop, scoring.

The model kind "cross_encoder" (`abrec.models.cross_encoder`) builds the data; this module holds
the torch side. Set-up:

- **Input**: one sequence per (user, item) pair, ``[CLS] history [SEP] item text [SEP]``. The
  history is the titles of the user's last liked items (oldest first, joined with "; "), the item
  text is the catalogue text. When the pair is longer than `max_length` tokens the history loses
  its OLDEST tokens first (the item text keeps at least half of the budget and is cut at its end).
- **Model**: a Hugging Face sequence classifier with ONE logit
  (`AutoModelForSequenceClassification(num_labels=1)`: the transformer's pooled [CLS] vector,
  then a new linear layer), from the bundled MiniLM or any local / named model.
- **Loss**: binary cross-entropy on the logit (`BCEWithLogitsLoss`): label 1 = the user liked the
  item next, 0 = a sampled negative.
- **Loop** (plain torch): AdamW (no decay on biases and LayerNorm weights), linear warm-up then
  linear decay, gradient clipping, and the overfitting controls of the bi-encoder trainer
  (`abrec.train.modeling`): dropout, training only the top N transformer layers (the head always
  trains), LoRA adapters (peft; the head trains fully; merged into the weights at the end).
  Each epoch trains, then validates on held-out groups (one liked item and its negatives per
  validation user): the **AUC of the predicted probabilities** (sigmoid of the logit, over every
  validation pair) and **NDCG@10** of the liked item within its group. Early stopping watches
  `metric` with `patience`; `restore_best` puts the best epoch's weights back.
- **Batches**: a seeded shuffle, then within windows of 16 batches the pairs are sorted by length
  and cut into batches (each batch pads to its own longest pair, so little padding), and the batch
  order is shuffled. Dropout, the head's initialisation and the plan depend only on `seed`:
  two CPU runs give the same weights.
- **Device**: CUDA when present with `device="auto"`, under bf16 autocast (fp16 with a gradient
  scaler where bf16 is missing); fp32 on the CPU.
- **Scoring** (`CrossScorer.logits`): one call's pairs (one user's candidates) are their own
  forward batches, padded to the longest pair of that call, so a user's logits never depend on
  the other users being scored.

torch, transformers and peft are imported inside the functions (the `lm` extra).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from abrec.errors import ConfigError, DataError
from abrec.train import modeling
from abrec.train.config import LoraSettings
from abrec.train.validation import rank_metrics

CrossMetric = Literal["auc", "ndcg@10"]
"""Validation metrics early stopping can watch."""

WINDOW = 16
"""Batches per length-sorted window of the batch plan."""


@dataclass(frozen=True)
class CrossSettings:
    """Everything the cross-encoder run reads (`abrec.models.cross_encoder` maps its config here).

    Attributes:
        model: base model, a local folder or a name; None = the bundled MiniLM.
        max_length: tokens per (history, item) pair.
        freeze_layers: train only the top N transformer layers (and the head).
        lora: LoRA adapters instead of full or top-layer training.
        patience: epochs without an improvement of more than `min_delta` before stopping.
        metric: "auc" or "ndcg@10" (early stopping and restore-best).
        device: auto (CUDA when present), cpu, cuda, cuda:N.
        cpu_threads: torch CPU threads while training and scoring; None = torch's default.
        progress: show progress bars.
    """

    model: str | None = None
    max_length: int = 128
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    freeze_layers: int | None = None
    lora: LoraSettings | None = None
    max_grad_norm: float | None = 1.0
    dropout: float | None = None
    patience: int | None = 1
    min_delta: float = 0.0
    restore_best: bool = True
    metric: CrossMetric = "auc"
    seed: int = 0
    device: str = "auto"
    cpu_threads: int | None = None
    progress: bool = False


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to `n` inside the block (None: unchanged), restored after."""
    import torch

    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@dataclass(frozen=True, eq=False)
class PairSet:
    """Training pairs: history text, item text and label (1.0 = liked) per pair."""

    anchors: list[str]
    items: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True, eq=False)
class GroupSet:
    """Validation groups: a history text and its candidate item texts; candidate 0 is the liked one.

    Every group has the same number of candidates.
    """

    anchors: list[str]
    items: list[list[str]]

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True)
class CrossEpoch:
    """One row of the learning curve."""

    epoch: int
    train_loss: float
    val_auc: float
    val_ndcg10: float
    steps: int
    learning_rate: float
    grad_norm_max: float
    seconds: float


@dataclass
class CrossTrainResult:
    """A finished run: the changed weights, the curve and where the time went."""

    weights: dict[str, np.ndarray]
    base: str
    history: list[CrossEpoch]
    best_epoch: int
    weights_epoch: int
    stopped_early: bool
    device: str
    precision: str
    trainable_parameters: int
    total_parameters: int
    timings: dict[str, float] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    """The trained model itself (in memory only; LoRA merged)."""

    def report(self, metric: str) -> dict[str, Any]:
        """The JSON-able learning curve and run summary."""
        best = next(h for h in self.history if h.epoch == self.best_epoch)
        return {
            "metric": metric,
            "best_epoch": self.best_epoch,
            "best_value": best.val_auc if metric == "auc" else best.val_ndcg10,
            "weights_epoch": self.weights_epoch,
            "stopped_early": self.stopped_early,
            "epochs_run": self.history[-1].epoch,
            "device": self.device,
            "precision": self.precision,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "timings_s": dict(self.timings),
            "history": [
                {**asdict(h), "metrics": {"auc": h.val_auc, "ndcg@10": h.val_ndcg10}}
                for h in self.history
            ],
        }


# ---------------------------------------------------------------------------------- metrics
def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities 1 / (1 + exp(-logit)) in float64."""
    from scipy.special import expit

    return np.asarray(expit(np.asarray(logits, dtype=np.float64)), dtype=np.float64)


def validation_metrics(logits: np.ndarray) -> dict[str, float]:
    """AUC and NDCG@10 of validation logits (groups x candidates, column 0 the liked item).

    AUC: sklearn's `roc_auc_score` of the predicted probabilities sigmoid(logit) of every pair
    (label 1 in column 0, 0 elsewhere), pooled over the groups. NDCG@10: of the liked item
    within its group (`abrec.train.validation.rank_metrics`; ties rank it below the tied
    negatives; with at most 10 candidates it is NDCG over the whole group).
    """
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2 or len(logits) == 0:
        raise ValueError(f"logits must be [n_groups, >= 2 candidates], got {logits.shape}")
    labels = np.zeros(logits.shape, dtype=np.int8)
    labels[:, 0] = 1
    auc = float(roc_auc_score(labels.ravel(), sigmoid(logits).ravel()))
    ranked = rank_metrics(logits)
    ndcg = next(v for k, v in ranked.items() if k.startswith("ndcg@"))
    return {"auc": auc, "ndcg@10": ndcg}


# ---------------------------------------------------------------------------------- tokens
class PairTokenizer:
    """(history, item) pairs to token ids, memoised per text; see the module doc for truncation.

    The special tokens around the two texts (e.g. BERT's ``[CLS] a [SEP] b [SEP]``, token types
    0 then 1) are read off the tokenizer once, from a probe pair, so any Hugging Face tokenizer
    that encodes text pairs works.

    Args:
        tokenizer: a Hugging Face tokenizer.
        max_length: tokens per pair, special tokens included.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.type_ids = "token_type_ids" in tokenizer.model_input_names
        a, b = self._encode(["a"])[0], self._encode(["b"])[0]
        probe = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
        full, types = list(probe["input_ids"]), list(probe["token_type_ids"])
        ia = self._find(full, a, 0)
        ib = self._find(full, b, ia + len(a))
        self.prefix = (full[:ia], types[:ia])
        self.middle = (full[ia + len(a) : ib], types[ia + len(a) : ib])
        self.suffix = (full[ib + len(b) :], types[ib + len(b) :])
        self.type_a, self.type_b = types[ia], types[ib]
        n_special = len(self.prefix[0]) + len(self.middle[0]) + len(self.suffix[0])
        self.budget = max_length - n_special
        if self.budget < 2:
            raise ConfigError(f"max_length = {max_length} leaves no room for the texts")
        self._memo: dict[str, list[int]] = {}

    @staticmethod
    def _find(seq: list[int], part: list[int], start: int) -> int:
        for i in range(start, len(seq) - len(part) + 1):
            if seq[i : i + len(part)] == part:
                return i
        raise ConfigError("cannot read the pair layout of this tokenizer")

    def _encode(self, texts: list[str]) -> list[list[int]]:
        out = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [list(ids) for ids in out]

    def ids(self, texts: Sequence[str]) -> None:
        """Tokenise texts not seen yet (one call for the lot; `pair` then only looks them up)."""
        new = sorted({t for t in texts if t not in self._memo})
        for start in range(0, len(new), 4096):
            chunk = new[start : start + 4096]
            self._memo.update(zip(chunk, self._encode(chunk), strict=True))

    def pair(self, anchor: str, item: str) -> tuple[list[int], list[int]]:
        """(input ids, token type ids) of one pair."""
        self.ids([anchor, item])
        a, b = self._memo[anchor], self._memo[item]
        n_b = min(len(b), max(self.budget - len(a), self.budget // 2))
        n_a = min(len(a), self.budget - n_b)
        a, b = a[len(a) - n_a :], b[:n_b]
        ids = self.prefix[0] + a + self.middle[0] + b + self.suffix[0]
        types = (
            self.prefix[1]
            + [self.type_a] * len(a)
            + self.middle[1]
            + [self.type_b] * len(b)
            + self.suffix[1]
        )
        return ids, types

    def batch(
        self, pairs: Sequence[tuple[list[int], list[int]]], device: str, width: int | None = None
    ) -> dict[str, Any]:
        """Tensors for a batch, padded (at the end) to `width` (default: its longest pair)."""
        import torch

        width = max(len(ids) for ids, _ in pairs) if width is None else width
        ids = np.full((len(pairs), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(pairs), width), dtype=np.int64)
        mask = np.zeros((len(pairs), width), dtype=np.int64)
        for row, (i, t) in enumerate(pairs):
            ids[row, : len(i)] = i
            types[row, : len(t)] = t
            mask[row, : len(i)] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if self.type_ids:
            out["token_type_ids"] = types
        return {k: torch.from_numpy(v).to(device) for k, v in out.items()}


# ---------------------------------------------------------------------------------- the model
@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No loading bars and no 'newly initialised head' report while the base model loads."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_classifier(settings: CrossSettings, device: str) -> tuple[Any, Any, set[str]]:
    """(model, tokenizer, new weight names): the base model with a fresh one-logit head.

    Seeds torch first, so the head's initialisation is reproducible. The new weight names are
    those the base checkpoint lacked (the head), which training always changes.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source, _ = modeling.base_model_source(settings.model)
    torch.manual_seed(settings.seed)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=1, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"could not load the base model {source!r} as a cross-encoder ({exc}); pass a "
            "local Hugging Face folder or leave `model` unset for the bundled MiniLM"
        ) from exc
    return model.to(device), tokenizer, set(info["missing_keys"])


def _is_head(model: Any, name: str) -> bool:
    """Whether a parameter belongs to the classification head (outside the backbone, or its pooler)."""
    prefix = f"{model.base_model_prefix}."
    return not name.startswith(prefix) or ".pooler." in name


def apply_controls(model: Any, settings: CrossSettings) -> Any:
    """Dropout, top-layer freezing (the head keeps training) or LoRA; returns the model to train."""
    if settings.dropout is not None:
        modeling.set_dropout(model, settings.dropout)
    if settings.freeze_layers is not None and settings.lora is not None:
        raise ConfigError("lora and freeze_layers are alternatives; set one of them")
    if settings.freeze_layers is not None:
        modeling.freeze_below_top(model, settings.freeze_layers)
        for name, param in model.named_parameters():
            if _is_head(model, name):
                param.requires_grad_(True)
    if settings.lora is not None:
        model = modeling.add_lora(model, settings.lora, task_type="SEQ_CLS")
    return model


def _precision(device: str) -> str:
    import torch

    if not device.startswith("cuda"):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _autocast(precision: str) -> Any:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


class CrossScorer:
    """Logits of (history, item) pairs under a cross-encoder, in eval mode.

    Args:
        model: the Hugging Face sequence classifier (one logit).
        tokenizer: its tokenizer.
        max_length: tokens per pair.
        device: where the model is.
        batch_size: pairs per forward pass.
    """

    def __init__(
        self, model: Any, tokenizer: Any, max_length: int, device: str, batch_size: int
    ) -> None:
        self.model = model
        self.tokens = PairTokenizer(tokenizer, max_length)
        self.device = device
        self.precision = _precision(device)
        self.batch_size = batch_size

    @classmethod
    def from_weights(
        cls, settings: CrossSettings, weights: Mapping[str, np.ndarray], base: str
    ) -> CrossScorer:
        """The base model with the saved changed weights put back (what `train_cross_encoder`
        returned); ConfigError when the base model's files are not those it was trained from."""
        import torch

        now = modeling.base_fingerprint(settings.model)
        if now != base:
            raise ConfigError(
                f"the cross-encoder was trained from base model {base}, but "
                f"{settings.model or 'the bundled MiniLM'} is now {now}; load it where the "
                "same base model is installed"
            )
        device = modeling.resolve_device(settings.device)
        model, tokenizer, _ = load_classifier(settings, device)
        known = model.state_dict()
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise ConfigError(f"saved cross-encoder weights do not fit the model: {unknown[:3]}")
        tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
        model.load_state_dict(tensors, strict=False)
        return cls(model, tokenizer, settings.max_length, device, settings.batch_size)

    def logits(self, anchor: str, items: Sequence[str]) -> np.ndarray:
        """float32 logits of (anchor, item) for each item: forward batches of these pairs alone,
        every batch padded to the longest pair of the call."""
        import torch

        if not len(items):
            return np.zeros(0, dtype=np.float32)
        pairs = [self.tokens.pair(anchor, t) for t in items]
        width = max(len(ids) for ids, _ in pairs)
        out = np.empty(len(pairs), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode(), _autocast(self.precision):
            for s in range(0, len(pairs), self.batch_size):
                batch = self.tokens.batch(pairs[s : s + self.batch_size], self.device, width)
                logits = self.model(**batch).logits[:, 0]
                out[s : s + len(logits)] = logits.float().cpu().numpy()
        return out

    def group_logits(self, groups: GroupSet) -> np.ndarray:
        """Logits (groups x candidates), each group one `logits` call."""
        return np.stack(
            [self.logits(a, items) for a, items in zip(groups.anchors, groups.items, strict=True)]
        )


# ---------------------------------------------------------------------------------- training
def batch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """An epoch's batches: seeded shuffle, length-sorted within windows, batches shuffled.

    Depends only on (lengths, batch_size, seed, epoch); the batch count is the same each epoch.
    """
    rng = np.random.default_rng([seed, 5, epoch])
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[np.ndarray] = []
    window = batch_size * WINDOW
    for s in range(0, len(order), window):
        w = order[s : s + window]
        w = w[np.argsort(lengths[w], kind="stable")]
        batches += [w[i : i + batch_size] for i in range(0, len(w), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


#: Called after each epoch with the model being trained and the epoch's record.
CrossCallback = Callable[[Any, CrossEpoch], None]


def train_cross_encoder(
    settings: CrossSettings,
    pairs: PairSet,
    groups: GroupSet,
    *,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[CrossCallback] = (),
) -> CrossTrainResult:
    """Fine-tune the cross-encoder on `pairs`, validating on `groups` each epoch.

    Returns the weights that differ from the base model (plus the new head) after restore-best
    and the LoRA merge, the base model's fingerprint and the learning curve;
    `CrossScorer.from_weights` rebuilds the model from them.
    """
    with torch_threads(settings.cpu_threads):
        return _train(settings, pairs, groups, log, callbacks)


def _train(
    settings: CrossSettings,
    pairs: PairSet,
    groups: GroupSet,
    log: Callable[[str], None] | None,
    callbacks: Sequence[CrossCallback],
) -> CrossTrainResult:
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if settings.metric not in ("auc", "ndcg@10"):
        raise ConfigError(f"metric must be 'auc' or 'ndcg@10', got {settings.metric!r}")
    if len(pairs) == 0 or len(groups) == 0:
        raise DataError("the cross-encoder needs training pairs and validation groups")
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

    def say(message: str) -> None:
        if log is not None:
            log(message)
        elif settings.progress:
            tqdm.write(message)

    device = modeling.resolve_device(settings.device)
    precision = _precision(device)
    with timed("load_model_s"):
        model, tokenizer, new_names = load_classifier(settings, device)
        initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        model = apply_controls(model, settings)
    scorer = CrossScorer(model, tokenizer, settings.max_length, device, settings.batch_size)
    tokens = scorer.tokens
    with timed("tokenize_s"):
        tokens.ids([*pairs.anchors, *pairs.items])
        encoded = [tokens.pair(a, i) for a, i in zip(pairs.anchors, pairs.items, strict=True)]
    lengths = np.array([len(ids) for ids, _ in encoded])
    labels = np.asarray(pairs.labels, dtype=np.float32)
    optimizer = torch.optim.AdamW(
        modeling.parameter_groups(model, settings.weight_decay), lr=settings.learning_rate
    )
    steps = len(batch_plan(lengths, settings.batch_size, settings.seed, 1))
    total = steps * settings.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(settings.warmup_ratio * total), total
    )
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    params = [p for p in model.parameters() if p.requires_grad]
    trainable, n_total = modeling.count_parameters(model)
    clip = settings.max_grad_norm if settings.max_grad_norm is not None else math.inf
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history: list[CrossEpoch] = []
    best_epoch, best_value, best_state, bad, stopped = 0, -math.inf, None, 0, False
    torch.manual_seed(settings.seed)
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total_loss, grad_max = 0.0, 0.0
        plan = batch_plan(lengths, settings.batch_size, settings.seed, epoch)
        bar = tqdm(
            plan, desc=f"cross-encoder epoch {epoch}/{settings.epochs}", unit="step",
            disable=not settings.progress, leave=False,
        )  # fmt: skip
        with timed("train_s"):
            for step, idx in enumerate(bar, start=1):
                batch = tokens.batch([encoded[i] for i in idx], device)
                y = torch.from_numpy(labels[idx]).to(device)
                with _autocast(precision):
                    logits = model(**batch).logits[:, 0]
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                total_loss += float(loss.detach())
                grad_max = max(grad_max, norm)
                bar.set_postfix(loss=f"{total_loss / step:.4f}")
        bar.close()
        with timed("validate_s"):
            metrics = validation_metrics(scorer.group_logits(groups))
        record = CrossEpoch(
            epoch=epoch,
            train_loss=total_loss / max(len(plan), 1),
            val_auc=metrics["auc"],
            val_ndcg10=metrics["ndcg@10"],
            steps=len(plan),
            learning_rate=float(scheduler.get_last_lr()[0]),
            grad_norm_max=grad_max,
            seconds=time.perf_counter() - t0,
        )
        history.append(record)
        value = metrics[settings.metric]
        if value > best_value + settings.min_delta:
            best_epoch, best_value, bad = epoch, value, 0
            best_state = modeling.trainable_state(model)
        else:
            bad += 1
        say(
            f"epoch {epoch}: loss {record.train_loss:.4f}, val AUC {record.val_auc:.4f}, "
            f"val NDCG@10 {record.val_ndcg10:.4f}, {record.seconds:.1f}s"
        )
        for callback in callbacks:
            callback(model, record)
        if settings.patience is not None and bad >= settings.patience:
            stopped = epoch < settings.epochs
            break
    with timed("finish_s"):
        if settings.restore_best and best_state is not None and best_epoch != history[-1].epoch:
            modeling.load_trainable_state(model, best_state)
            say(f"restored the weights of epoch {best_epoch} (best {settings.metric})")
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        weights = {
            name: value.detach().to("cpu", copy=True).numpy()
            for name, value in model.state_dict().items()
            if name in new_names or not torch.equal(value.detach().cpu(), initial[name])
        }
    return CrossTrainResult(
        weights=weights,
        base=modeling.base_fingerprint(settings.model),
        history=history,
        best_epoch=best_epoch,
        weights_epoch=best_epoch if settings.restore_best else history[-1].epoch,
        stopped_early=stopped,
        device=device,
        precision=precision,
        trainable_parameters=trainable,
        total_parameters=n_total,
        timings=timings,
        model=model,
    )


__all__ = [
    "CrossCallback",
    "CrossEpoch",
    "CrossMetric",
    "CrossScorer",
    "CrossSettings",
    "CrossTrainResult",
    "GroupSet",
    "PairSet",
    "PairTokenizer",
    "apply_controls",
    "batch_plan",
    "load_classifier",
    "sigmoid",
    "torch_threads",
    "train_cross_encoder",
    "validation_metrics",
]
