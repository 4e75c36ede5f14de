"""Model drift: the training window of a bundle against the exposures the service served.

For each model served by a running A/B or bandit experiment (interleaving lists mix
models, so they are left out), three checks compare a *reference* sample with a
*serving* sample (the latest exposures in the store):

- ``scores``: the score of each served item (logged with the exposure) against the
  scores of the same model's top-k lists for a seeded sample of training users;
- ``popularity``: log(1 + training count) of each served item against the same for the
  items of those reference lists;
- ``embedding``: the cosine of each item's language-model embedding to the reference
  centroid (PSI and KS), plus ``cosine_shift`` = 1 - cos(reference centroid, serving
  centroid). It needs a model in the bundle with item embeddings (``lm``, ``two_tower``,
  ``hybrid``); without one the check is reported as skipped with the reason.

The reference is what the model serves to the population it was trained on (its top-k,
k being the serving lists' usual length, seen items excluded), so an unchanged
population gives no drift; comparing served items with raw training interactions would
flag every model's popularity bias as drift on day one (docs/operations.md, "Drift").
The statistics and the alarm rule are :mod:`abrec.stats.drift`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from abrec.experiment.spec import ExperimentSpec
from abrec.models.base import Recommender
from abrec.models.bundle import ModelBundle
from abrec.stats.drift import (
    DriftCheck,
    centroid,
    cosine_shift,
    drift_check,
    skipped_check,
)
from abrec.store.sql import EventStore

#: Training users sampled for the reference lists (seeded, so the reference is stable).
REFERENCE_USERS = 300
#: Fewest served exposures of a model before its checks run.
MIN_SERVING = 100
#: Latest exposures per experiment read as the serving window.
DEFAULT_WINDOW = 10_000
#: Longest list considered when choosing the reference k.
MAX_K = 100
CHECKS = ("scores", "popularity", "embedding")


def item_embeddings(bundle: ModelBundle) -> tuple[str, npt.NDArray[np.float64]] | None:
    """The first model (by name) of the bundle holding item embeddings, and them
    (one row per bundle item), or None when no model has any."""
    for name in sorted(bundle.models):
        model: object = bundle.models[name]
        for owner in (model, getattr(model, "lm_model", None)):
            emb = getattr(owner, "item_embeddings", None)
            if isinstance(emb, np.ndarray) and emb.ndim == 2 and len(emb) == len(bundle.item_ids):
                return name, np.asarray(emb, dtype=np.float64)
    return None


@dataclass(frozen=True)
class Reference:
    """One model's top-k lists for the sampled training users."""

    k: int
    items: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class ServingSample:
    """The served exposures of one model (item indices in the bundle, logged scores)."""

    model: str
    items: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    k: int


class DriftMonitor:
    """Computes the drift checks of a bundle's models; references are cached per (model, k).

    Thread-safe: the service's monitor thread and the CLI call :meth:`checks`.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        reference_users: int = REFERENCE_USERS,
        min_serving: int = MIN_SERVING,
        seed: int = 0,
    ) -> None:
        self.bundle = bundle
        self.reference_users = reference_users
        self.min_serving = min_serving
        self.seed = seed
        self._item_index = {str(i): j for j, i in enumerate(bundle.item_ids)}
        self._refs: dict[tuple[str, int], Reference] = {}
        self._lock = threading.Lock()
        self.embeddings = item_embeddings(bundle)

    def popularity(self, model: Recommender) -> npt.NDArray[np.float64]:
        """log(1 + training count) of every item, from the model's training matrix."""
        counts = np.asarray(model.train_matrix.sum(axis=0)).ravel()
        return np.log1p(counts.astype(np.float64))

    def reference(self, name: str, k: int) -> Reference:
        """The model's top-``k`` lists (seen items excluded) for the sampled training users."""
        key = (name, k)
        with self._lock:
            ref = self._refs.get(key)
        if ref is not None:
            return ref
        model = self.bundle.models[name]
        n_users = model.train_matrix.shape[0]
        rng = np.random.default_rng(self.seed)
        users = np.sort(rng.choice(n_users, size=min(self.reference_users, n_users), replace=False))
        items, scores = model.recommend(users, k, exclude_seen=True)
        flat_i, flat_s = items.ravel(), scores.ravel().astype(np.float64)
        keep = np.isfinite(flat_s)
        ref = Reference(k, flat_i[keep].astype(np.int64), flat_s[keep])
        with self._lock:
            self._refs[key] = ref
        return ref

    def serving(
        self, store: EventStore, specs: Sequence[ExperimentSpec], window: int = DEFAULT_WINDOW
    ) -> dict[str, ServingSample]:
        """The latest ``window`` exposures of each A/B or bandit experiment, by model."""
        items: dict[str, list[int]] = {}
        scores: dict[str, list[float]] = {}
        lengths: dict[str, Counter[int]] = {}
        for spec in specs:
            if spec.type == "interleaving":
                continue
            model_of = {v.name: v.model for v in spec.variants}
            rows = store.recent_exposures(spec.id, window)
            per_request: dict[tuple[str, object], int] = {}
            for variant, item, req, score in zip(
                rows["variant"], rows["item_id"], rows["request_id"], rows["score"], strict=True
            ):
                model = model_of.get(str(variant))
                j = self._item_index.get(str(item), -1)
                if model is None or model not in self.bundle.models or j < 0:
                    continue
                items.setdefault(model, []).append(j)
                scores.setdefault(model, []).append(float(score))
                if req is not None:
                    per_request[(model, req)] = per_request.get((model, req), 0) + 1
            for (model, _), n in per_request.items():
                lengths.setdefault(model, Counter())[n] += 1
        out = {}
        for model, its in items.items():
            common = lengths.get(model)
            k = common.most_common(1)[0][0] if common else 10
            out[model] = ServingSample(
                model,
                np.asarray(its, dtype=np.int64),
                np.asarray(scores[model], dtype=np.float64),
                int(min(max(k, 1), MAX_K)),
            )
        return out

    def checks(
        self, store: EventStore, specs: Sequence[ExperimentSpec], window: int = DEFAULT_WINDOW
    ) -> list[DriftCheck]:
        """Every check of every served model (sorted by model, then check)."""
        served = self.serving(store, specs, window)
        models = sorted(
            {v.model for s in specs if s.type != "interleaving" for v in s.variants}
            & set(self.bundle.models)
        )
        out: list[DriftCheck] = []
        for name in models:
            sample = served.get(name)
            out.extend(self.model_checks(name, sample))
        return out

    def model_checks(self, name: str, sample: ServingSample | None) -> list[DriftCheck]:
        """The three checks of one model against its serving sample."""
        n = 0 if sample is None else len(sample.items)
        if sample is None or n < self.min_serving:
            note = f"{n} exposure(s) served; the checks need at least {self.min_serving}"
            return [skipped_check(c, name, note, n_serving=n) for c in CHECKS]
        ref = self.reference(name, sample.k)
        pop = self.popularity(self.bundle.models[name])
        out = []
        logged = sample.scores[np.isfinite(sample.scores)]
        if len(logged) < self.min_serving:
            out.append(
                skipped_check(
                    "scores",
                    name,
                    f"only {len(logged)} exposure(s) logged a score (exposures stored before "
                    "the score was logged have none)",
                    n_reference=len(ref.scores),
                    n_serving=len(logged),
                )
            )
        else:
            out.append(drift_check("scores", name, ref.scores, logged))
        out.append(drift_check("popularity", name, pop[ref.items], pop[sample.items]))
        out.append(self._embedding_check(name, ref, sample))
        return out

    def _embedding_check(self, name: str, ref: Reference, sample: ServingSample) -> DriftCheck:
        if self.embeddings is None:
            return skipped_check(
                "embedding",
                name,
                "no model in the bundle has item embeddings (lm, two_tower or hybrid)",
                n_reference=len(ref.items),
                n_serving=len(sample.items),
            )
        emb_model, emb = self.embeddings
        ref_c, srv_c = centroid(emb[ref.items]), centroid(emb[sample.items])
        norm = float(np.linalg.norm(ref_c))
        if norm == 0 or float(np.linalg.norm(srv_c)) == 0:
            return skipped_check(
                "embedding", name, "a centroid is the zero vector", n_serving=len(sample.items)
            )
        unit = ref_c / norm
        norms = np.linalg.norm(emb, axis=1)
        cos = (emb @ unit) / np.where(norms > 0, norms, 1.0)
        res = drift_check(
            "embedding",
            name,
            cos[ref.items],
            cos[sample.items],
            cosine=cosine_shift(ref_c, srv_c),
        )
        return DriftCheck(**{**res.__dict__, "note": f"embeddings of model {emb_model!r}"})


__all__ = [
    "CHECKS",
    "DEFAULT_WINDOW",
    "MIN_SERVING",
    "REFERENCE_USERS",
    "DriftMonitor",
    "Reference",
    "ServingSample",
    "item_embeddings",
]
