"""Open Bandit Dataset, small sample (ZOZO; Saito et al., arXiv:2008.07146): locate, verify, load.

The sample holds a real A/B test of two policies choosing which fashion item to show in each of
3 slots: `random` (uniform over the 80 items of campaign "all", propensity 1/80 per slot) and
`bts` (Bernoulli Thompson sampling, production propensities), 10,000 impressions each per
campaign, with clicks. `prior_bts.yaml` holds the production BTS policy's Beta(alpha, beta)
prior per item and campaign, which lets an estimator compute BTS's action probabilities on the
random policy's logs.

The folder is `open-bandit-small/` under `$ABREC_DATA` (or a folder given explicitly). Every
file read is checked against its pinned sha256, so a changed or truncated copy is refused. The
files ship in the `obp` 0.5.7 source distribution (folder `obd/`); the loader does not
download them: without a local copy it stops with a message saying where to get one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abrec.data.movielens import sha256_file
from abrec.errors import DataError, DatasetUnavailableError

DATASET_NAME = "open-bandit-small"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")

#: sha256 of every file of the sample (as shipped in obp 0.5.7's `obd/` folder).
FILE_SHA256: dict[str, str] = {
    "bts/all/all.csv": "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    "bts/all/item_context.csv": "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
    "bts/men/item_context.csv": "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d",
    "bts/men/men.csv": "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527",
    "bts/women/item_context.csv": "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4",
    "bts/women/women.csv": "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8",
    "random/all/all.csv": "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    "random/all/item_context.csv": "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    "random/men/item_context.csv": "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09",
    "random/men/men.csv": "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb",
    "random/women/item_context.csv": "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147",
    "random/women/women.csv": "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34",
    "prior_bts.yaml": "81a54fbdc184021ccc62ab97de81ec35461c032e3d7f99ccaa0a9745f732d251",
}

_HOW_TO_FIX = (
    "Put the sample in $ABREC_DATA/open-bandit-small/ (the `obd/` folder of the obp 0.5.7 "
    "source distribution on PyPI, https://pypi.org/project/obp/0.5.7/) or pass data_dir."
)


@dataclass(frozen=True, eq=False)
class BanditLog:
    """One policy's logged impressions: the action (item), its slot, click and propensity.

    Attributes:
        policy, campaign: which log this is.
        actions: item index shown (0 .. n_actions - 1).
        positions: slot, 0-based (the file's `position` minus 1).
        rewards: click (0 or 1), float.
        pscore: the logging policy's probability of showing that item in that slot.
        timestamps: UTC impression times.
        context: the user features and user-item affinities of each impression.
        item_context: one row per item (its features).
    """

    policy: str
    campaign: str
    actions: np.ndarray
    positions: np.ndarray
    rewards: np.ndarray
    pscore: np.ndarray
    timestamps: np.ndarray
    context: pd.DataFrame
    item_context: pd.DataFrame

    @property
    def n_actions(self) -> int:
        return len(self.item_context)

    @property
    def n_positions(self) -> int:
        return int(self.positions.max()) + 1 if len(self.positions) else 0

    def __len__(self) -> int:
        return len(self.actions)


def locate_open_bandit(data_dir: str | Path | None = None) -> Path:
    """The sample's folder: `data_dir` (or its `open-bandit-small/`), else `$ABREC_DATA`'s."""
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    if data_dir is None and (env := os.environ.get("ABREC_DATA")):
        roots.append(Path(env).expanduser())
    for root in roots:
        for cand in (root / DATASET_NAME, root):
            if (cand / "prior_bts.yaml").is_file() and (cand / "random").is_dir():
                return cand
    where = f"{data_dir}" if data_dir is not None else "$ABREC_DATA (unset or without it)"
    raise DatasetUnavailableError(f"{DATASET_NAME} was not found in {where}. " + _HOW_TO_FIX)


def _verified(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DatasetUnavailableError(f"{path} is missing. " + _HOW_TO_FIX)
    if (got := sha256_file(path)) != FILE_SHA256[name]:
        raise DataError(
            f"{path} is not the official file (sha256 {got[:12]}…, expected "
            f"{FILE_SHA256[name][:12]}…); replace it with a verified copy. " + _HOW_TO_FIX
        )
    return path


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise DataError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def load_open_bandit(
    policy: str, campaign: str = "all", data_dir: str | Path | None = None
) -> BanditLog:
    """The `policy` log of `campaign`, checked against the pinned sha256 values."""
    _check_choice(policy, POLICIES, "policy")
    _check_choice(campaign, CAMPAIGNS, "campaign")
    folder = locate_open_bandit(data_dir)
    log = pd.read_csv(_verified(folder, f"{policy}/{campaign}/{campaign}.csv"), index_col=0)
    items = pd.read_csv(_verified(folder, f"{policy}/{campaign}/item_context.csv"), index_col=0)
    context_cols = [
        c for c in log.columns if c.startswith(("user_feature_", "user-item_affinity_"))
    ]
    return BanditLog(
        policy=policy,
        campaign=campaign,
        actions=log["item_id"].to_numpy(np.int64),
        positions=log["position"].to_numpy(np.int64) - 1,
        rewards=log["click"].to_numpy(np.float64),
        pscore=log["propensity_score"].to_numpy(np.float64),
        timestamps=pd.to_datetime(log["timestamp"], utc=True).to_numpy(),
        context=log[context_cols].reset_index(drop=True),
        item_context=items.reset_index(drop=True),
    )


def load_bts_prior(
    campaign: str = "all", data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of the production BTS policy's Beta prior, one entry per item."""
    import yaml

    _check_choice(campaign, CAMPAIGNS, "campaign")
    path = _verified(locate_open_bandit(data_dir), "prior_bts.yaml")
    prior = yaml.safe_load(path.read_text())[campaign]
    alpha = np.asarray(prior["alpha"], dtype=np.float64)
    beta = np.asarray(prior["beta"], dtype=np.float64)
    return alpha, beta


__all__ = [
    "CAMPAIGNS",
    "DATASET_NAME",
    "FILE_SHA256",
    "POLICIES",
    "BanditLog",
    "load_bts_prior",
    "load_open_bandit",
    "locate_open_bandit",
]
