"""Open Bandit Dataset sample loader: real files under ABREC_DATA, pinned checksums."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abrec.data.open_bandit import (
    FILE_SHA256,
    load_bts_prior,
    load_open_bandit,
    locate_open_bandit,
)
from abrec.errors import DataError, DatasetUnavailableError


@pytest.fixture(scope="module")
def folder() -> Path:
    try:
        return locate_open_bandit()
    except DatasetUnavailableError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("open-bandit-small is not under ABREC_DATA")


def test_logs_load_with_propensities_positions_and_clicks(folder: Path) -> None:
    raw = pd.read_csv(folder / "random/all/all.csv", index_col=0)
    rnd = load_open_bandit("random", "all")
    bts = load_open_bandit("bts", "all")
    assert len(rnd) == len(bts) == 10_000
    assert rnd.n_actions == 80 and rnd.n_positions == 3
    np.testing.assert_array_equal(rnd.positions, raw["position"].to_numpy() - 1)
    np.testing.assert_array_equal(rnd.rewards, raw["click"].to_numpy())
    # the uniform-random policy shows each of 80 items with probability 1/80
    np.testing.assert_allclose(rnd.pscore, 1 / 80)
    assert 0 < bts.pscore.min() < bts.pscore.max() <= 1
    assert set(np.unique(rnd.actions)) <= set(range(80))
    assert rnd.rewards.mean() == pytest.approx(raw["click"].mean())
    assert rnd.context.shape == (10_000, 4 + 80)
    assert rnd.timestamps[0] < rnd.timestamps[-1]


def test_bts_prior_has_one_beta_per_item(folder: Path) -> None:
    for campaign, n in (("all", 80), ("men", 34), ("women", 46)):
        alpha, beta = load_bts_prior(campaign)
        assert alpha.shape == beta.shape == (n,)
        assert (alpha > 0).all() and (beta > 0).all()


def test_a_changed_file_is_refused(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "open-bandit-small"
    shutil.copytree(folder, copy)
    assert load_open_bandit("random", "men", data_dir=tmp_path).campaign == "men"
    path = copy / "random/men/men.csv"
    path.write_text(path.read_text().replace(",1,", ",0,", 1))
    with pytest.raises(DataError, match="not the official file"):
        load_open_bandit("random", "men", data_dir=tmp_path)
    (copy / "prior_bts.yaml").unlink()
    with pytest.raises(DatasetUnavailableError, match="obp"):
        load_open_bandit("random", "all", data_dir=tmp_path)


def test_bad_choices_and_missing_data_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown policy 'greedy'"):
        load_open_bandit("greedy")
    with pytest.raises(DataError, match="unknown campaign"):
        load_bts_prior("kids")
    with pytest.raises(DatasetUnavailableError, match="was not found"):
        load_open_bandit("random", data_dir=tmp_path)
    assert len(FILE_SHA256) == 13
