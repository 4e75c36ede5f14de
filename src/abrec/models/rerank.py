"""Learned re-ranker: logistic regression over EASE (+ language-model) candidates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError
from abrec.models._util import rows_times, weighted_sum
from abrec.models.base import Recommender
from abrec.models.compact import StorageDtype
from abrec.models.config import RecommenderConfig
from abrec.models.ease import EASE, TextEASE, TextEASEConfig
from abrec.models.lm import (
    EmbeddingSimilarity,
    EmbeddingSimilarityConfig,
    Encoder,
    default_encoder,
    history_profiles,
)
from abrec.models.tuning import TunedEncoderConfig, finetune_config, tuned_text_encoder
from abrec.models.two_tower import TwoTower, TwoTowerConfig

CF_FEATURES: tuple[str, ...] = (
    "ease",
    "ease_z",
    "ease_lrank",
    "lpop",
    "lrec",
    "cold",
    "lhist",
    "cf_max5",
    "cf_mean5",
)
"""Features of the collaborative-only re-ranker (`use_lm=False`)."""

LM_FEATURES: tuple[str, ...] = (
    *CF_FEATURES,
    "tease",
    "tease_z",
    "tease_lrank",
    "lm5",
    "lm5_z",
    "lm0",
    "lm_lrank",
    "emb_max5",
    "emb_mean5",
    "tt",
    "tt_z",
    "tt_lrank",
)
"""Features of the language-model re-ranker (`use_lm=True`)."""

N_LAST = 5  # most recent history items compared item-to-item
RECENT_QUANTILE = 0.9  # "recent" popularity counts events after this quantile of train time
_BLOCK = 256  # users scored per block (bounds memory: block x n_items dense arrays)


class _MemoEncoder:
    """Encoder wrapper that encodes each distinct text list once (the generators share it:
    item texts for TextEASE, the profile and the two-tower; titles and anchors for the latter)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self._memo: dict[tuple[str, ...], np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        if key not in self._memo:
            self._memo[key] = np.asarray(self.inner.encode(list(texts)))
        return self._memo[key]


def _last_items(train: Interactions, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's n most recent items (n_users x n, most recent first) and a validity mask."""
    m = len(train)
    ts = np.zeros(m) if train.timestamps is None else train.timestamps
    order = np.lexsort((np.arange(m), ts, train.user_idx))
    users = train.user_idx[order]
    items = train.item_idx[order].astype(np.int64)
    everyone = np.arange(train.n_users)
    starts = np.searchsorted(users, everyone, side="left")
    ends = np.searchsorted(users, everyone, side="right")
    idx = ends[:, None] - 1 - np.arange(n)[None, :]
    valid = idx >= starts[:, None]
    last = items[np.clip(idx, 0, max(m - 1, 0))] if m else np.zeros((train.n_users, n), np.int64)
    return np.where(valid, last, 0), valid


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Per-row rank (0 = best) of every column, ties by lower index."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks


def _zscore(scores: np.ndarray) -> np.ndarray:
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True)
    return (scores - mu) / (sd + 1e-9)


def _masked_max_mean(sims: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean over axis 1 of (batch x N_LAST x n_items) where `valid` (batch x N_LAST).

    Rows without a valid entry give 0.
    """
    v = valid[:, :, None]
    count = valid.sum(axis=1)[:, None]
    mx = np.where(v, sims, -np.inf).max(axis=1)
    mean = np.where(v, sims, 0.0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count > 0, mx, 0.0), mean


class _Generators:
    """Candidate and feature generators fitted on one training set.

    The parts (EASE, and with `use_lm` TextEASE and the embedding profile model) are used only
    through their public methods.
    """

    def __init__(self, cfg: LTRConfig, encoder: Encoder | None) -> None:
        self.use_lm = cfg.use_lm
        self.n_cf = cfg.n_cf
        self.n_lm = cfg.n_lm
        compact: dict[str, Any] = {
            "storage_dtype": cfg.storage_dtype,
            "prune_top_k": cfg.prune_top_k,
        }
        self.ease = EASE(lambda_=cfg.lambda_, **compact)
        self.tease: TextEASE | None = None
        self.lm: EmbeddingSimilarity | None = None
        self.tt: TwoTower | None = None
        if self.use_lm:
            tcfg = TextEASEConfig(lambda_=cfg.lambda_, beta=cfg.beta, model=cfg.model, **compact)
            lcfg = EmbeddingSimilarityConfig(model=cfg.model, half_life=cfg.half_life)
            ttcfg = TwoTowerConfig(model=cfg.model, history_len=cfg.history_len)
            self.tease = TextEASE.from_config(tcfg, encoder=encoder)
            self.lm = EmbeddingSimilarity.from_config(lcfg, encoder=encoder)
            self.tt = TwoTower.from_config(ttcfg, encoder=encoder)
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, train: Interactions, items: ItemCatalog) -> None:
        self.ease.fit(train, items)
        X = self.ease.train_matrix
        pop = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        assert train.timestamps is not None
        tcut = np.quantile(train.timestamps, RECENT_QUANTILE) if len(train) else 0
        recent = train.item_idx[train.timestamps >= tcut]
        last, valid = _last_items(train, N_LAST)
        self.arrays = {
            "pop": pop,
            "recent": np.bincount(recent, minlength=train.n_items).astype(np.float64),
            "hist": np.asarray(X.sum(axis=1)).ravel().astype(np.float64),
            "last": last,
            "last_valid": valid,
        }
        if self.use_lm:
            assert self.tease is not None and self.lm is not None and self.tt is not None
            self.tease.fit(train, items)
            self.lm.fit(train, items)
            self.tt.fit(train, items)
            assert self.lm.item_embeddings is not None
            self.arrays["profiles0"] = history_profiles(train, self.lm.item_embeddings, None)

    def models(self) -> dict[str, Recommender]:
        out: dict[str, Recommender] = {"ease": self.ease}
        if self.tease is not None and self.lm is not None and self.tt is not None:
            out.update(tease=self.tease, lm=self.lm, tt=self.tt)
        return out

    def state(self) -> dict[str, Any]:
        """The arrays and every part's `get_state()`, nested by name."""
        parts = {name: model.get_state() for name, model in self.models().items()}
        return {"arrays": dict(self.arrays), "parts": parts}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""
        self.arrays = dict(state["arrays"])
        for name, model in self.models().items():
            model.set_state(state["parts"][name])

    def features(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates and their features for a block of users.

        Returns:
            rows (position in `users`), items, feature matrix (n_candidates x n_features),
            and the EASE ranks (len(users) x n_items) used to order non-candidates.
        """
        X = self.ease.train_matrix
        seen = X[users].toarray() > 0
        a = self.arrays
        S_e = self.ease.score(users).astype(np.float64)
        r_e = _ranks(np.where(seen, -np.inf, S_e))
        cand = r_e < self.n_cf
        lm_parts: dict[str, np.ndarray] = {}
        if self.use_lm:
            assert self.tease is not None and self.lm is not None and self.tt is not None
            emb = self.lm.item_embeddings
            assert emb is not None
            S_t = self.tease.score(users).astype(np.float64)
            L5 = self.lm.score(users).astype(np.float64)
            L0 = rows_times(a["profiles0"][users], emb).astype(np.float64)
            T = self.tt.score(users).astype(np.float64)
            r_l = _ranks(np.where(seen, -np.inf, L5))
            r_tt = _ranks(np.where(seen, -np.inf, T))
            cand |= (r_l < self.n_lm) | (r_tt < self.n_lm)
            # cosine of every item to each of the user's last items, one row at a time
            last_emb = emb[a["last"][users].ravel()]
            sims = rows_times(last_emb, emb).reshape(len(users), N_LAST, emb.shape[0])
            emax, emean = _masked_max_mean(sims, a["last_valid"][users])
            del sims
            lm_parts = {
                "S_t": S_t,
                "L5": L5,
                "L0": L0,
                "r_t": _ranks(np.where(seen, -np.inf, S_t)),
                "r_l": r_l,
                "emax": emax,
                "emean": emean,
                "T": T,
                "r_tt": r_tt,
            }
        cand &= ~seen
        uu, ii = np.nonzero(cand)
        # item-item cosine of co-occurrence between each candidate and the user's last items
        pop = a["pop"]
        Xn = sp.csc_matrix(X.multiply(1.0 / np.sqrt(np.maximum(pop, 1.0))[None, :]))
        last, valid = a["last"][users], a["last_valid"][users]
        cols = np.unique(last[valid])
        C = np.asarray((Xn[:, cols].T @ Xn).todense(), dtype=np.float32)
        csim = C[np.searchsorted(cols, last).clip(0, max(len(cols) - 1, 0))] if len(cols) else None
        if csim is None:
            cmax = cmean = np.zeros_like(S_e)
        else:
            cmax, cmean = _masked_max_mean(csim, valid)
        hist = a["hist"][users]
        f: dict[str, np.ndarray] = {
            "ease": S_e[uu, ii],
            "ease_z": _zscore(S_e)[uu, ii],
            "ease_lrank": np.log1p(r_e[uu, ii]),
            "lpop": np.log1p(pop[ii]),
            "lrec": np.log1p(a["recent"][ii]),
            "cold": (pop[ii] == 0).astype(np.float64),
            "lhist": np.log1p(hist[uu]),
            "cf_max5": cmax[uu, ii],
            "cf_mean5": cmean[uu, ii],
        }
        if self.use_lm:
            p = lm_parts
            f.update(
                tease=p["S_t"][uu, ii],
                tease_z=_zscore(p["S_t"])[uu, ii],
                tease_lrank=np.log1p(p["r_t"][uu, ii]),
                lm5=p["L5"][uu, ii],
                lm5_z=_zscore(p["L5"])[uu, ii],
                lm0=p["L0"][uu, ii],
                lm_lrank=np.log1p(p["r_l"][uu, ii]),
                emb_max5=p["emax"][uu, ii],
                emb_mean5=p["emean"][uu, ii],
                tt=p["T"][uu, ii],
                tt_z=_zscore(p["T"])[uu, ii],
                tt_lrank=np.log1p(p["r_tt"][uu, ii]),
            )
        names = LM_FEATURES if self.use_lm else CF_FEATURES
        F = np.nan_to_num(np.column_stack([f[n] for n in names]).astype(np.float64))
        return uu, ii, F, r_e

    def cold_values(self, users: np.ndarray) -> np.ndarray:
        """The CF features (`CF_FEATURES` order) a candidate of each given user would have if
        the item had never been seen in training: EASE score 0 (its z-score and rank within the
        user's row), no popularity, `cold` = 1, no co-occurrence with the last items.

        Args:
            users: the user of each candidate row (repeats allowed).
        """
        X = self.ease.train_matrix
        uniq, inverse = np.unique(users, return_inverse=True)
        z0 = np.empty(len(uniq))
        r0 = np.empty(len(uniq))
        for s in range(0, len(uniq), _BLOCK):
            block = uniq[s : s + _BLOCK]
            S = self.ease.score(block).astype(np.float64)
            unseen = X[block].toarray() == 0
            z0[s : s + len(block)] = -S.mean(axis=1) / (S.std(axis=1) + 1e-9)
            r0[s : s + len(block)] = ((S > 0) & unseen).sum(axis=1)
        cold = {
            "ease": np.zeros(len(uniq)),
            "ease_z": z0,
            "ease_lrank": np.log1p(r0),
            "lpop": np.zeros(len(uniq)),
            "lrec": np.zeros(len(uniq)),
            "cold": np.ones(len(uniq)),
            "lhist": np.log1p(self.arrays["hist"][uniq]),
            "cf_max5": np.zeros(len(uniq)),
            "cf_mean5": np.zeros(len(uniq)),
        }
        return np.column_stack([cold[n] for n in CF_FEATURES])[inverse]


class LTRConfig(TunedEncoderConfig):
    """Learned re-ranker hyper-parameters (see `LTRReranker`)."""

    use_lm: bool = True
    n_cf: PositiveInt = 200
    n_lm: NonNegativeInt = 50
    lambda_: PositiveFloat = 500.0
    beta: NonNegativeFloat = 20.0
    half_life: PositiveFloat = 5.0
    C: PositiveFloat = 1.0
    seed: NonNegativeInt = 0
    model: str | None = None
    history_len: PositiveInt = 5
    cf_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    cold_boost: float = Field(0.0, ge=0.0, le=20.0)
    storage_dtype: StorageDtype = "float32"
    prune_top_k: PositiveInt | None = None


class CFRerankerConfig(LTRConfig):
    """`LTRConfig` without the language model by default (kind "ltr_cf")."""

    use_lm: bool = False


class LTRReranker(Recommender):
    """Pointwise learning-to-rank: logistic regression re-ranks EASE (+ LM) candidates.

    `fit` carves a validation split out of the training data it is given (`validation`: the
    protocol's kind; temporal = the last `validation_fraction` of each user's events), fits the
    feature generators (EASE, item co-occurrence cosine to the last 5 items, popularity; with
    `use_lm` also TextEASE, the recency-weighted embedding profile, embedding similarity to the
    last 5 items and the two-tower anchor cosine) on the rest, and learns a standardised
    logistic regression that tells relevant validation items (rated >=
    `abrec.data.splits.RELEVANCE_THRESHOLD`; any validation interaction when there are no
    ratings) from the other candidates. The generators are then refitted on the whole training
    data for scoring. Candidates are each user's EASE top `n_cf` unseen items (plus, with
    `use_lm`, the top `n_lm` of the embedding profile and of the two-tower, which reach items
    never seen in training); they score the logistic decision value, every other item scores
    below every candidate (ordered by EASE rank).

    With `finetune`, the text encoder is first fine-tuned contrastively on the training data
    (`abrec.train`, cached by content), with the trainer's validation part equal to this
    model's, so the encoder never trains on the events the weights are learned on; every
    language-model part then reads the tuned vectors. With `cf_dropout` (DropoutNet-style),
    that share of the warm validation candidates get the CF features of a never-seen item
    (`_Generators.cold_values`) while learning the weights, so the model learns to lean on the
    text when the CF signal is missing.

    Config (`LTRConfig`):
        use_lm: add language-model candidates and features.
        n_cf: EASE candidates per user.
        n_lm: language-model candidates per user and per LM retriever (with use_lm).
        lambda_: L2 regularisation of EASE and TextEASE.
        beta: TextEASE text-prior weight.
        half_life: recency half-life (interactions) of the embedding profile.
        validation, validation_fraction: the inner split (`InnerValidationConfig`).
        C: inverse L2 strength of the logistic regression.
        seed: random state of the solver, the random split, the masking and the fine-tuning.
        model: encoder model for the default TextEncoder (None: bundled MiniLM); the base model
            when `finetune` is set.
        history_len: liked titles in the two-tower anchor (and the fine-tuning pairs).
        cf_dropout: share of warm validation candidates whose CF features are masked.
        cold_boost: added to the log-odds of candidates never seen in training (a ranking
            prior for new items the pointwise loss does not give; choose it on validation).
        finetune: `abrec.train.TrainConfig` fields (see `two_tower.finetune_config`).
        cache_dir: where fine-tuned encoders are kept (None: `$ABREC_CACHE/finetune`).
        storage_dtype, prune_top_k: compact storage of the EASE and TextEASE weights
            (`abrec.models.compact`); the weights are learned on the compacted features.

    Args:
        config: an `LTRConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`; not persisted.
    """

    name: ClassVar[str] = "ltr"
    config_class: ClassVar[type[RecommenderConfig]] = LTRConfig
    config: LTRConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: LTRConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self._gen = _Generators(self.config, encoder)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float | None = None
        self.training_report: dict[str, Any] | None = None
        finetune_config(self.config, self.name)  # a bad `finetune` key fails here

    @property
    def feature_names(self) -> tuple[str, ...]:
        return LM_FEATURES if self.config.use_lm else CF_FEATURES

    def features(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates and features of known `users` (see `_Generators.features`)."""
        self._require_train()
        return self._gen.features(np.asarray(users, dtype=np.int64))

    def validation_data(
        self, train: Interactions, items: ItemCatalog
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates (user, item), features and labels of the inner validation split of `train`.

        Fits the generators on train minus the validation part (left fitted on it).
        """
        from abrec.data.splits import RELEVANCE_THRESHOLD, validation_split

        cfg = self.config
        if train.timestamps is None:
            raise DataError(
                f"{self.name} needs timestamps (recency features and the {cfg.validation} "
                "validation split); load interactions with a timestamp column"
            )
        inner, val = validation_split(train, cfg.validation, cfg.validation_fraction, cfg.seed)
        if val.ratings is not None:
            val = val.subset(val.ratings >= RELEVANCE_THRESHOLD)
        rel = val.matrix.tocsr()
        users = np.flatnonzero(np.diff(rel.indptr) > 0)
        if len(users) == 0:
            raise DataError(
                f"{self.name}: no positive validation interaction (rating >= "
                f"{RELEVANCE_THRESHOLD}) in the last {cfg.validation_fraction:.0%} of "
                "any user's history; give users more history or use another model"
            )
        self._gen = _Generators(cfg, self._shared_encoder(train, items))
        self._gen.fit(inner, items)
        blocks = [users[s : s + _BLOCK] for s in range(0, len(users), _BLOCK)]
        parts = [self._gen.features(b) for b in blocks]
        uu = np.concatenate([b[p[0]] for b, p in zip(blocks, parts, strict=True)])
        ii = np.concatenate([p[1] for p in parts])
        F = np.concatenate([p[2] for p in parts])
        y = np.asarray(rel[uu, ii]).ravel() > 0
        return uu, ii, F, y

    def _mask_cf(self, uu: np.ndarray, ii: np.ndarray, F: np.ndarray) -> np.ndarray:
        """F with the CF features of a seeded `cf_dropout` share of warm rows set to what a
        never-seen item gets (DropoutNet-style masking; the generators are the inner ones)."""
        warm = np.flatnonzero(self._gen.arrays["pop"][ii] > 0)
        rng = np.random.default_rng([self.config.seed, 11])
        rows = warm[rng.random(len(warm)) < self.config.cf_dropout]
        F = F.copy()
        F[rows, : len(CF_FEATURES)] = self._gen.cold_values(uu[rows])
        return F

    def _shared_encoder(self, train: Interactions, items: ItemCatalog) -> Encoder | None:
        """The encoder the generators share (built and memoised once per model): fine-tuned on
        `train` when `finetune` is set (the trainer carves this model's validation part)."""
        cfg = self.config
        if cfg.use_lm and not isinstance(self.encoder, _MemoEncoder):
            tuned, self.training_report = tuned_text_encoder(cfg, train, items, self.name)
            self.encoder = tuned if tuned is not None else self.encoder
        if cfg.use_lm and self.encoder is None:
            self.encoder = default_encoder(cfg.model)
        if self.encoder is not None and not isinstance(self.encoder, _MemoEncoder):
            self.encoder = _MemoEncoder(self.encoder)
        return self.encoder

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.training_report = None
        uu, ii, F, y = self.validation_data(train, items)
        if self.config.cf_dropout > 0:
            F = self._mask_cf(uu, ii, F)
        if y.all() or not y.any():
            raise DataError(
                f"{self.name}: validation candidates are all {'positive' if y.any() else 'negative'}"
                "; the re-ranker needs both; raise n_cf or give users more history"
            )
        scaler = StandardScaler().fit(F)  # (near-)constant features get scale 1
        lr = LogisticRegression(C=self.config.C, max_iter=2000, random_state=self.config.seed)
        lr.fit(scaler.transform(F), y)
        self.mean_ = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale_ = np.asarray(scaler.scale_, dtype=np.float64)
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self._gen = _Generators(self.config, self._shared_encoder(train, items))
        self._gen.fit(train, items)

    def decision_function(self, F: np.ndarray) -> np.ndarray:
        """Logistic decision value (log-odds) x_std . w + b of feature rows F.

        Summed feature by feature in a fixed order, so a row's value does not depend on the
        other rows (a BLAS matrix-vector product does).
        """
        assert self.mean_ is not None and self.scale_ is not None and self.coef_ is not None
        Z = (F - self.mean_) / self.scale_
        return weighted_sum(Z, self.coef_) + float(self.intercept_ or 0.0)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        self._require_train()
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for s in range(0, len(users), _BLOCK):
            block = users[s : s + _BLOCK]
            uu, ii, F, r_e = self._gen.features(block)
            d = self.decision_function(F)
            if self.config.cold_boost:
                d = d + self.config.cold_boost * (self._gen.arrays["pop"][ii] == 0)
            floor = np.full(len(block), 0.0)
            if len(d):
                np.minimum.at(floor, uu, d)  # floor <= min candidate score of each row (and 0)
            rest = floor[:, None] - 1.0 - r_e / max(self.n_items, 1)
            rest[uu, ii] = d
            out[s : s + len(block)] = rest
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "generators": self._gen.state(),
            "lr.mean": self.mean_,
            "lr.scale": self.scale_,
            "lr.coef": self.coef_,
            "lr.intercept": np.array([self.intercept_]),
            "training_report": json.dumps(self.training_report, default=str),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._gen = _Generators(self.config, self.encoder)
        self._gen.set_state(state["generators"])
        self.mean_ = state["lr.mean"]
        self.scale_ = state["lr.scale"]
        self.coef_ = state["lr.coef"]
        self.intercept_ = float(state["lr.intercept"][0])
        self.training_report = json.loads(state.get("training_report", "null"))


class CFReranker(LTRReranker):
    """`LTRReranker` without the language model (`use_lm=False` by default): kind "ltr_cf"."""

    name: ClassVar[str] = "ltr_cf"
    config_class: ClassVar[type[RecommenderConfig]] = CFRerankerConfig
    needs_encoder: ClassVar[bool] = False
