"""A position-based click model driven by held-out ratings.

For an item shown at 0-based position ``p`` to a user who rated it ``r`` in the
held-out (test) period, the click probability is

    P(click) = min(1, examination(p) * attractiveness(r) + noise)
    examination(p) = 1 / (1 + p) ** eta                      (position bias)
    attractiveness(r) = a_max * sigmoid(slope * (r - midpoint))   if rated
                      = base_rate                                   if unrated

so relevant items (r >= 4) are clicked far more often than unrated or disliked
ones, and every item is clicked less the lower it is shown. ``noise`` is a small
rate of clicks unrelated to the item. Items the user already clicked in an
earlier session keep ``repeat_factor`` of their attractiveness. A click on an item
rated at least ``conversion_min_rating`` converts with probability ``conversion_rate``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ClickModel(BaseModel):
    """Parameters of the position-biased, rating-driven click model (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eta: float = Field(default=0.8, ge=0.0, description="position-bias exponent")
    a_max: float = Field(default=0.85, gt=0.0, le=1.0, description="attractiveness ceiling")
    midpoint: float = Field(default=3.5, description="rating at which attractiveness is a_max/2")
    slope: float = Field(default=2.5, gt=0.0, description="logistic slope per rating point")
    base_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, description="attractiveness when unrated"
    )
    noise: float = Field(default=0.002, ge=0.0, le=1.0, description="item-independent click rate")
    repeat_factor: float = Field(
        default=0.2, ge=0.0, le=1.0, description="kept for re-shown clicks"
    )
    conversion_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    conversion_min_rating: float = Field(default=4.0, ge=0.0)

    def examination(self, positions: np.ndarray) -> np.ndarray:
        """Probability that a 0-based position is looked at: 1/(1+p)^eta."""
        p = np.asarray(positions, dtype=np.float64)
        if np.any(p < 0):
            raise ValueError("positions must be >= 0 (0-based)")
        return np.asarray(1.0 / np.power(1.0 + p, self.eta))

    def attractiveness(self, ratings: np.ndarray) -> np.ndarray:
        """Attractiveness per item from its held-out rating (NaN = unrated -> base_rate)."""
        r = np.asarray(ratings, dtype=np.float64)
        rated = self.a_max / (1.0 + np.exp(-self.slope * (np.nan_to_num(r) - self.midpoint)))
        return np.where(np.isnan(r), self.base_rate, rated)

    def click_probability(
        self,
        positions: np.ndarray,
        ratings: np.ndarray,
        clicked_before: np.ndarray | None = None,
    ) -> np.ndarray:
        """P(click) per shown item; `clicked_before` marks items clicked in earlier sessions."""
        attr = self.attractiveness(ratings)
        if clicked_before is not None:
            attr = np.where(np.asarray(clicked_before, dtype=bool), attr * self.repeat_factor, attr)
        return np.asarray(np.minimum(1.0, self.examination(positions) * attr + self.noise))

    def sample(
        self,
        rng: np.random.Generator,
        positions: np.ndarray,
        ratings: np.ndarray,
        clicked_before: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boolean click and conversion indicators per shown item."""
        prob = self.click_probability(positions, ratings, clicked_before)
        u = rng.random((2, len(prob)))
        clicks = u[0] < prob
        r = np.asarray(ratings, dtype=np.float64)
        eligible = ~np.isnan(r) & (np.nan_to_num(r) >= self.conversion_min_rating)
        conversions = clicks & eligible & (u[1] < self.conversion_rate)
        return clicks, conversions
