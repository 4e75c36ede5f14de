"""Simulated users drawn from MovieLens users, with held-out ratings and a pre-period covariate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from abrec.data.types import Interactions
from abrec.errors import DataError
from abrec.models.base import top_k
from abrec.simulate.click_model import ClickModel

CovariateKind = Literal["pre_clicks", "train_ratings", "none"]


@dataclass(frozen=True)
class SimUser:
    """One simulated user: external id, held-out ratings by item id, pre-period covariate."""

    unit_id: str
    test_ratings: dict[str, float]
    n_train: int
    covariate: float | None

    def ratings_for(self, item_ids: list[str]) -> np.ndarray:
        """Held-out rating per item id (NaN where the user did not rate it in the test period)."""
        get = self.test_ratings.get
        return np.array([get(i, np.nan) for i in item_ids], dtype=np.float64)


@dataclass(frozen=True)
class Population:
    """All users that can be simulated, ordered by external id."""

    users: tuple[SimUser, ...]

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_split(
        cls,
        train: Interactions,
        test: Interactions,
        *,
        click_model: ClickModel | None = None,
        covariate: CovariateKind = "pre_clicks",
        pre_sessions: int = 3,
        k: int = 10,
        seed: int = 0,
    ) -> Population:
        """Users with at least one held-out rating; relevance = their test-period ratings.

        Args:
            covariate: `pre_clicks` = clicks in `pre_sessions` simulated pre-experiment
                sessions on a popularity top-k list (same click model, same held-out
                ratings, independent seed); `train_ratings` = number of training-period
                ratings; `none` = no covariate.
        """
        if test.ratings is None:
            raise DataError("the test split needs ratings: the click model is driven by them")
        if train.n_users != test.n_users or train.n_items != test.n_items:
            raise DataError("train and test must share the same user and item index spaces")
        if pre_sessions < 1 or k < 1:
            raise DataError("pre_sessions and k must be at least 1")
        cm = click_model or ClickModel()
        ratings = test.rating_matrix.tocsr()
        users = np.flatnonzero(np.diff(ratings.indptr) > 0)
        if len(users) == 0:
            raise DataError("no user has a held-out rating: nothing to simulate")
        n_train = np.diff(train.matrix.tocsr().indptr)
        cov: np.ndarray | None = None
        if covariate == "pre_clicks":
            cov = _pre_period_clicks(train, ratings, users, cm, pre_sessions, k, seed)
        elif covariate == "train_ratings":
            cov = n_train[users].astype(np.float64)
        item_ids = np.asarray([str(i) for i in test.item_ids])
        out = []
        for j, u in enumerate(users):
            lo, hi = ratings.indptr[u], ratings.indptr[u + 1]
            out.append(
                SimUser(
                    unit_id=str(test.user_ids[u]),
                    test_ratings=dict(
                        zip(
                            item_ids[ratings.indices[lo:hi]],
                            ratings.data[lo:hi].tolist(),
                            strict=True,
                        )
                    ),
                    n_train=int(n_train[u]),
                    covariate=None if cov is None else float(cov[j]),
                )
            )
        out.sort(key=lambda s: _id_key(s.unit_id))
        return cls(users=tuple(out))

    def sample(self, n: int | None, seed: int) -> list[SimUser]:
        """`n` distinct users drawn without replacement (seeded); all users when `n` is None."""
        if n is None or n >= len(self.users):
            return list(self.users)
        if n < 1:
            raise DataError(f"number of simulated users must be >= 1, got {n}")
        pick = np.sort(np.random.default_rng(seed).choice(len(self.users), size=n, replace=False))
        return [self.users[i] for i in pick]


def _id_key(unit_id: str) -> tuple[int, int | str]:
    return (0, int(unit_id)) if unit_id.isdigit() else (1, unit_id)


def _pre_period_clicks(
    train: Interactions,
    ratings: object,
    users: np.ndarray,
    cm: ClickModel,
    pre_sessions: int,
    k: int,
    seed: int,
) -> np.ndarray:
    """Clicks per user over `pre_sessions` sessions shown the popularity top-k (vectorised)."""
    import scipy.sparse as sp

    assert isinstance(ratings, sp.csr_matrix)
    mat = train.matrix.tocsr()
    pop = np.asarray(mat.sum(axis=0)).ravel().astype(np.float64)
    scores = np.tile(pop, (len(users), 1))
    seen = mat[users].tocoo()
    scores[seen.row, seen.col] = -np.inf
    items, _ = top_k(scores, k)
    shown = np.asarray(ratings[users[:, None], items].todense(), dtype=np.float64)
    shown[shown == 0] = np.nan  # MovieLens ratings are >= 0.5, so 0 means unrated
    positions = np.broadcast_to(np.arange(items.shape[1]), items.shape)
    rng = np.random.default_rng([seed, 0x9E])
    clicked = np.zeros(items.shape, dtype=bool)
    total = np.zeros(len(users))
    for _ in range(pre_sessions):
        prob = cm.click_probability(positions, shown, clicked)
        now = rng.random(items.shape) < prob
        total += now.sum(axis=1)
        clicked |= now
    return total
