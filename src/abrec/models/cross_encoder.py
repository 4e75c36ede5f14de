"""Cross-encoder re-ranker: a fine-tuned BERT-style model reads (history, item) and predicts a like.

The classic BERT-for-CTR set-up as a model kind ("cross_encoder"):

- **Input**: the titles of the user's last `history_len` liked items (oldest first, joined with
  "; ") paired with a candidate item's catalogue text; one logit out, trained with binary
  cross-entropy on likes (rating >= `abrec.data.splits.RELEVANCE_THRESHOLD`; every event is a
  like when there are no ratings). The torch side (model, loop, overfitting controls, scoring)
  is `abrec.train.cross`; this module builds the data and the candidates.
- **Training data** come only from the training interactions given to `fit`: a validation part
  is carved with `abrec.data.splits.validation_split` (`validation`, `validation_fraction`), the
  rest ("fit") makes the pairs. Positives: each user's liked fit items after the first (the
  anchor is the liked titles before it), the most recent `max_examples_per_user`. For each
  positive, `n_hard` hard negatives drawn from the `hard_pool` items EASE (fitted on the fit
  part) ranks highest for the user among the items the user never touched, and `n_random`
  negatives drawn from the other untouched items. Nothing of the validation part is read.
- **Validation** (each epoch): for a seeded sample of `val_users` users with a liked fit item
  and a liked validation item, one group = the first liked validation item (label 1) and
  negatives of the same two kinds (untouched in fit and validation); the learning curve keeps
  the mean train loss, the AUC of the predicted probabilities over all validation pairs and the
  NDCG@10 of the liked item within its group; early stopping watches `metric`.
- **Scoring**: after training, EASE is refitted on all the training data. A user's candidates
  are EASE's top `n_cf` unseen items and the top `n_text` unseen items by text retrieval (cosine
  of the mean item vector of the user's training items, from the `encoder`, to every item
  vector), so items nobody has interacted with can be recommended. Candidates score their logit;
  every other item scores below every candidate, ordered by EASE rank (as in
  `abrec.models.rerank`). The anchor is the user's last `history_len` liked training items (all
  training items when none is liked).
- **Batch invariance**: each user's candidate pairs are forward batches of their own, so a
  user's scores do not depend on who else is in the batch.
- **Persistence**: the weights that training changed (and the new head) are saved as numpy
  arrays with the base model's fingerprint; loading rebuilds the model from the base model and
  these weights (the base model must be installed, unchanged) and scores identically.

`score_history` (users known only by an item history) runs the same pipeline with every given
item taken as liked; a history is a set (`Recommender.score_history`), so its anchor lists the
last `history_len` items in item-index order.

`abrec.train` (and torch) are imported only when this module is used; the registry imports it
on first use of the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from abrec.data.splits import RELEVANCE_THRESHOLD, validation_split
from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError
from abrec.models._util import rows_times
from abrec.models.base import Recommender
from abrec.models.config import InnerValidationConfig, RecommenderConfig
from abrec.models.ease import EASE
from abrec.models.lm import Encoder, default_encoder, encode_catalog, l2_normalize
from abrec.train.config import LoraSettings, check_device

if TYPE_CHECKING:
    from abrec.train.cross import CrossScorer, CrossSettings

_BLOCK = 256  # users per block of EASE scores (bounds memory: block x n_items)


class CrossEncoderConfig(InnerValidationConfig):
    """Cross-encoder re-ranker hyper-parameters (see `CrossEncoder` and `abrec.train.cross`).

    The defaults keep a MovieLens latest-small fit (610 users: about 6,000 training pairs, 188
    steps per epoch, 2 epochs) within ten minutes on two shared CPU cores; scoring runs about
    40 pairs per user.
    """

    model: str | None = Field(
        default=None, description="base model: local folder or name; None = bundled MiniLM"
    )
    text_model: str | None = Field(
        default=None,
        description="model of the default text encoder for candidate retrieval (when no "
        "encoder object is given); None = bundled MiniLM",
    )
    history_len: PositiveInt = Field(default=5, description="liked titles in the anchor")
    max_length: int = Field(default=128, ge=8, le=512, description="tokens per pair")
    epochs: PositiveInt = 2
    batch_size: PositiveInt = Field(default=32, description="pairs per step and per forward")
    learning_rate: PositiveFloat = 3e-5
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    weight_decay: NonNegativeFloat = 0.01
    freeze_layers: PositiveInt | None = Field(
        default=2, description="train only the top N transformer layers (and the head)"
    )
    lora: LoraSettings | None = None
    max_grad_norm: PositiveFloat | None = 1.0
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    patience: PositiveInt | None = 1
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = True
    metric: Literal["auc", "ndcg@10"] = "auc"
    n_random: NonNegativeInt = Field(default=2, description="random negatives per positive")
    n_hard: NonNegativeInt = Field(default=2, description="EASE hard negatives per positive")
    hard_pool: PositiveInt = Field(default=50, description="EASE top items hard negatives are from")
    max_examples_per_user: PositiveInt | None = Field(
        default=2, description="each user's most recent N positives; None = all"
    )
    val_users: PositiveInt | None = Field(
        default=200, description="validation users (a seeded sample); None = all"
    )
    n_cf: PositiveInt = Field(default=30, description="EASE candidates per user")
    n_text: NonNegativeInt = Field(default=10, description="text-retrieval candidates per user")
    lambda_: PositiveFloat = 500.0
    seed: int = 0
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    cpu_threads: PositiveInt | None = Field(
        default=1,
        description="torch CPU threads while fitting and scoring (1: on a shared 2-core machine "
        "two threads spin against the other jobs and run several times slower); None = "
        "torch's default (every core)",
    )
    progress: bool = Field(default=True, description="progress bars while training")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)

    @model_validator(mode="after")
    def _consistent(self) -> CrossEncoderConfig:
        if self.lora is not None and self.freeze_layers is not None:
            raise ValueError(
                "lora and freeze_layers are alternatives (LoRA already freezes every base "
                "weight); set freeze_layers = None to use lora"
            )
        if self.n_random + self.n_hard == 0:
            raise ValueError("n_random + n_hard must be at least 1 (the loss needs negatives)")
        if self.hard_pool < self.n_hard:
            raise ValueError(f"hard_pool ({self.hard_pool}) must be >= n_hard ({self.n_hard})")
        return self


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class CrossExamples:
    """Training pairs by item index: user, anchor items (oldest first), item, label and kind.

    `kinds`: 0 = positive (label 1), 1 = random negative, 2 = hard negative (label 0).
    """

    users: np.ndarray
    histories: list[np.ndarray]
    items: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, eq=False)
class CrossGroups:
    """Validation groups: user, anchor items and candidates (column 0 liked, then `n_hard` hard
    negatives, then `n_random` random negatives)."""

    users: np.ndarray
    histories: list[np.ndarray]
    candidates: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def liked_sequences(inter: Interactions) -> list[np.ndarray]:
    """Per user, the liked items in event order (`abrec.train.data.liked_sequences`)."""
    from abrec.train.data import liked_sequences as sequences

    return sequences(inter, RELEVANCE_THRESHOLD)


def _row(X: sp.csr_matrix, r: int) -> np.ndarray:
    return X.indices[X.indptr[r] : X.indptr[r + 1]]


def hard_pools(
    ease: EASE, users: np.ndarray, touched: sp.csr_matrix, size: int
) -> dict[int, np.ndarray]:
    """Per user, the `size` items EASE scores highest among those not in `touched` (ties: lower
    index first)."""
    out: dict[int, np.ndarray] = {}
    for s in range(0, len(users), _BLOCK):
        block = users[s : s + _BLOCK]
        scores = ease.score(block).astype(np.float64)
        for r, u in enumerate(block.tolist()):
            row = scores[r]
            row[_row(touched, u)] = -np.inf
            order = np.argsort(-row, kind="stable")
            out[u] = order[: min(size, int(np.isfinite(row).sum()))]
    return out


def _negatives(
    rng: np.random.Generator, pool: np.ndarray, untouched: np.ndarray, n_hard: int, n_random: int
) -> tuple[np.ndarray, np.ndarray]:
    """(hard, random): `n_hard` from `pool`, then `n_random` from `untouched` minus those."""
    hard = rng.choice(pool, size=min(n_hard, len(pool)), replace=False)
    rest = np.setdiff1d(untouched, hard, assume_unique=True)
    rand = rng.choice(rest, size=min(n_random, len(rest)), replace=False)
    return hard.astype(np.int64), rand.astype(np.int64)


def training_examples(fit: Interactions, ease: EASE, cfg: CrossEncoderConfig) -> CrossExamples:
    """Positives and negatives from the fit part only (see the module doc).

    Args:
        fit: the training interactions minus the validation part.
        ease: EASE fitted on `fit` (hard negatives).
        cfg: history length, examples per user, negatives and seed.
    """
    seqs = liked_sequences(fit)
    touched = fit.matrix.tocsr()
    users = np.array([u for u, s in enumerate(seqs) if len(s) >= 2], dtype=np.int64)
    pools = hard_pools(ease, users, touched, cfg.hard_pool) if cfg.n_hard else {}
    rng = np.random.default_rng([cfg.seed, 3])
    everything = np.arange(fit.n_items)
    out_u: list[int] = []
    hist: list[np.ndarray] = []
    items: list[int] = []
    kinds: list[int] = []
    for u in users.tolist():
        seq = seqs[u]
        untouched = np.setdiff1d(everything, _row(touched, u), assume_unique=True)
        targets = range(1, len(seq))
        if cfg.max_examples_per_user is not None:
            targets = targets[-cfg.max_examples_per_user :]
        for t in targets:
            anchor = seq[max(0, t - cfg.history_len) : t]
            pool = pools.get(u, np.zeros(0, dtype=np.int64))
            hard, rand = _negatives(rng, pool, untouched, cfg.n_hard, cfg.n_random)
            chosen = [(int(seq[t]), 0)] + [(int(i), 2) for i in hard] + [(int(i), 1) for i in rand]
            for item, kind in chosen:
                out_u.append(u)
                hist.append(anchor)
                items.append(item)
                kinds.append(kind)
    kind_arr = np.asarray(kinds, dtype=np.int8)
    return CrossExamples(
        users=np.asarray(out_u, dtype=np.int64),
        histories=hist,
        items=np.asarray(items, dtype=np.int64),
        labels=(kind_arr == 0).astype(np.float32),
        kinds=kind_arr,
    )


def validation_groups(
    fit: Interactions, val: Interactions, ease: EASE, cfg: CrossEncoderConfig
) -> CrossGroups:
    """One group per sampled validation user (see the module doc).

    Users with fewer than `n_hard + n_random` untouched items are left out (every group has
    the same size).
    """
    fit_seqs, val_seqs = liked_sequences(fit), liked_sequences(val)
    users = np.array(
        [u for u in range(fit.n_users) if len(fit_seqs[u]) and len(val_seqs[u])], dtype=np.int64
    )
    rng = np.random.default_rng([cfg.seed, 1])
    if cfg.val_users is not None and len(users) > cfg.val_users:
        users = np.sort(rng.choice(users, size=cfg.val_users, replace=False))
    touched = (fit.matrix + val.matrix).tocsr()
    pools = hard_pools(ease, users, touched, cfg.hard_pool) if cfg.n_hard else {}
    everything = np.arange(fit.n_items)
    kept: list[int] = []
    hist: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for u in users.tolist():
        untouched = np.setdiff1d(everything, _row(touched, u), assume_unique=True)
        if len(untouched) < cfg.n_hard + cfg.n_random:
            continue
        pool = pools.get(u, np.zeros(0, dtype=np.int64))
        hard, rand = _negatives(rng, pool, untouched, cfg.n_hard, cfg.n_random)
        if len(hard) < cfg.n_hard or len(rand) < cfg.n_random:
            continue
        kept.append(u)
        hist.append(fit_seqs[u][-cfg.history_len :])
        rows.append(np.r_[val_seqs[u][0], hard, rand].astype(np.int64))
    width = 1 + cfg.n_hard + cfg.n_random
    return CrossGroups(
        users=np.asarray(kept, dtype=np.int64),
        histories=hist,
        candidates=np.asarray(rows, dtype=np.int64).reshape(len(rows), width),
    )


def scoring_anchors(train: Interactions, history_len: int) -> np.ndarray:
    """Per user, the last `history_len` liked training items (oldest first; all training items
    when none is liked), left-aligned in an (n_users x history_len) array padded with -1."""
    from abrec.train.data import liked_sequences as sequences

    liked, every = liked_sequences(train), sequences(train, -np.inf)
    out = np.full((train.n_users, history_len), -1, dtype=np.int64)
    for u in range(train.n_users):
        seq = liked[u] if len(liked[u]) else every[u]
        last = seq[-history_len:]
        out[u, : len(last)] = last
    return out


# ---------------------------------------------------------------------------------- model
class CrossEncoder(Recommender):
    """Re-ranks EASE and text-retrieval candidates with a fine-tuned cross-encoder's like logit.

    See the module doc for the set-up, `CrossEncoderConfig` for the settings and
    `abrec.train.cross` for the training loop. `training_report` holds the learning curve
    (train loss, validation AUC and NDCG@10 per epoch) and the run's summary; it is saved with
    the model.

    Args:
        config: a `CrossEncoderConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)` for the text-retrieval item
            vectors; not persisted (the vectors are).
    """

    name: ClassVar[str] = "cross_encoder"
    config_class: ClassVar[type[RecommenderConfig]] = CrossEncoderConfig
    config: CrossEncoderConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: CrossEncoderConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self._ease = EASE(lambda_=self.config.lambda_)
        self.item_embeddings: np.ndarray | None = None
        self._anchors: np.ndarray | None = None
        self._titles: list[str] = []
        self._texts: list[str] = []
        self._weights: dict[str, np.ndarray] = {}
        self._base = ""
        self.training_report: dict[str, Any] = {}
        self._scorer: CrossScorer | None = None

    def settings(self) -> CrossSettings:
        """The config's training settings as `abrec.train.cross.CrossSettings`."""
        from abrec.train.cross import CrossSettings

        return CrossSettings(
            **{f.name: getattr(self.config, f.name) for f in fields(CrossSettings)}
        )

    def examples(
        self, train: Interactions, items: ItemCatalog
    ) -> tuple[Interactions, Interactions, CrossExamples, CrossGroups]:
        """(fit, validation, training pairs, validation groups) carved from `train`."""
        cfg = self.config
        fit, val = validation_split(train, cfg.validation, cfg.validation_fraction, cfg.seed)
        ease = EASE(lambda_=cfg.lambda_).fit(fit, items)
        pairs = training_examples(fit, ease, cfg)
        if len(pairs) == 0:
            raise DataError(
                f"{self.name}: no training pair (a user needs two liked items in the fit part); "
                "give users more history or lower validation_fraction"
            )
        groups = validation_groups(fit, val, ease, cfg)
        if len(groups) == 0:
            raise DataError(
                f"{self.name}: no validation user has a liked fit item and a liked validation "
                "item; raise validation_fraction"
            )
        return fit, val, pairs, groups

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        from abrec.train.cross import torch_threads

        with torch_threads(self.config.cpu_threads):
            self._fit_threads(train, items)

    def _fit_threads(self, train: Interactions, items: ItemCatalog) -> None:
        import time

        from abrec.train.cross import GroupSet, PairSet, train_cross_encoder
        from abrec.train.data import anchor_text, item_titles

        cfg = self.config
        t0 = time.perf_counter()
        fit, val, pairs, groups = self.examples(train, items)
        titles, texts = item_titles(items), [str(t) for t in items.text]
        pair_set = PairSet(
            anchors=[anchor_text(titles, h) for h in pairs.histories],
            items=[texts[int(i)] for i in pairs.items],
            labels=pairs.labels,
        )
        group_set = GroupSet(
            anchors=[anchor_text(titles, h) for h in groups.histories],
            items=[[texts[int(i)] for i in row] for row in groups.candidates],
        )
        data_s = time.perf_counter() - t0
        self._scorer = None
        result = train_cross_encoder(self.settings(), pair_set, group_set)
        t1 = time.perf_counter()
        self._ease = EASE(lambda_=cfg.lambda_).fit(train, items)
        if self.encoder is None:
            self.encoder = default_encoder(cfg.text_model)
        self.item_embeddings = encode_catalog(items, self.encoder, cfg.text_model)
        self._anchors = scoring_anchors(train, cfg.history_len)
        self._titles, self._texts = titles, texts
        self._weights, self._base = result.weights, result.base
        report = result.report(cfg.metric)
        report["timings_s"].update(data_s=data_s, candidates_s=time.perf_counter() - t1)
        report.update(
            n_pairs=len(pairs),
            n_positives=int(pairs.labels.sum()),
            n_train_users=len(np.unique(pairs.users)),
            n_validation_users=len(groups),
            n_fit_events=len(fit),
            n_validation_events=len(val),
        )
        self.training_report = report

    # ------------------------------------------------------------------ scoring
    def _cross(self) -> CrossScorer:
        """The fine-tuned model, rebuilt from the base model and the saved weights (once)."""
        if self._scorer is None:
            from abrec.train.cross import CrossScorer

            self._scorer = CrossScorer.from_weights(self.settings(), self._weights, self._base)
        return self._scorer

    def _text_scores(self, X: sp.csr_matrix) -> np.ndarray:
        """Cosine of each row's mean item vector (over its items) to every item vector."""
        assert self.item_embeddings is not None
        profiles = l2_normalize(
            np.asarray(X.astype(np.float64) @ self.item_embeddings.astype(np.float64))
        )
        return rows_times(profiles, self.item_embeddings)

    def _rerank(self, S_e: np.ndarray, X: sp.csr_matrix, anchors: list[np.ndarray]) -> np.ndarray:
        """Scores of each row: candidates get their logit, the rest rank below in EASE order."""
        from abrec.train.data import anchor_text

        cfg, n_items = self.config, self.n_items
        S_t = self._text_scores(X) if cfg.n_text else None
        scorer = self._cross()
        out = np.empty(S_e.shape, dtype=np.float32)
        for r in range(len(S_e)):
            seen = _row(X, r)
            e = S_e[r].astype(np.float64)
            e[seen] = -np.inf
            order = np.argsort(-e, kind="stable")
            rank = np.empty(n_items, dtype=np.float64)
            rank[order] = np.arange(n_items)
            cand = order[: cfg.n_cf]
            if S_t is not None:
                t = S_t[r].astype(np.float64)
                t[seen] = -np.inf
                cand = np.r_[cand, np.argsort(-t, kind="stable")[: cfg.n_text]]
            cand = np.setdiff1d(cand, seen)  # sorted, unique
            anchor = anchor_text(self._titles, anchors[r])
            logits = scorer.logits(anchor, [self._texts[int(i)] for i in cand]).astype(np.float64)
            floor = min(0.0, float(logits.min())) if len(logits) else 0.0
            row = floor - 1.0 - rank / max(n_items, 1)
            row[cand] = logits
            out[r] = row
        return out

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        from abrec.train.cross import torch_threads

        with torch_threads(self.config.cpu_threads):
            return self._score_users(users)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        assert self._anchors is not None
        train = self._require_train()
        uniq, inverse = np.unique(users, return_inverse=True)
        scores = np.empty((len(uniq), self.n_items), dtype=np.float32)
        for s in range(0, len(uniq), _BLOCK):
            block = uniq[s : s + _BLOCK]
            anchors = [row[row >= 0] for row in self._anchors[block]]
            scores[s : s + len(block)] = self._rerank(
                self._ease.score(block), train[block], anchors
            )
        return scores[inverse.ravel()]

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Every history item counts as liked; the anchor is its last `history_len` items in
        item-index order (a history is a set)."""
        from abrec.train.cross import torch_threads

        X = X.tocsr()
        out = np.empty(X.shape, dtype=np.float32)
        with torch_threads(self.config.cpu_threads):
            for s in range(0, X.shape[0], _BLOCK):
                block = X[s : s + _BLOCK]
                rows = [_row(block, r) for r in range(block.shape[0])]
                anchors = [row[-self.config.history_len :] for row in rows]
                S_e = self._ease.score_history(rows)
                out[s : s + block.shape[0]] = self._rerank(S_e, block, anchors)
        return out

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "ease": self._ease.get_state(),
            "item_embeddings": self.item_embeddings,
            "anchors": self._anchors,
            "titles": np.asarray(self._titles, dtype=object),
            "texts": np.asarray(self._texts, dtype=object),
            "weights": dict(self._weights),
            "base": self._base,
            "report": self.training_report,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._ease = EASE(lambda_=self.config.lambda_).set_state(state["ease"])
        self.item_embeddings = state["item_embeddings"]
        self._anchors = state["anchors"]
        self._titles = [str(t) for t in state["titles"]]
        self._texts = [str(t) for t in state["texts"]]
        self._weights = dict(state["weights"])
        self._base = str(state["base"])
        self.training_report = dict(state["report"])
        self._scorer = None
