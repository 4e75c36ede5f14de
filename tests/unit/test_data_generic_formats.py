"""Issue 9: a CSV and a Parquet file of the same data load identically (ids, order, split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abrec.data.generic import load_interactions
from abrec.data.splits import temporal_user_split


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Integer ids whose text order differs from their numeric order, and many ts ties."""
    rng = np.random.default_rng(3)
    n = 600
    items = pd.DataFrame({"item_id": np.arange(1, 121) * 7, "title": [f"t{j}" for j in range(120)]})
    inter = pd.DataFrame(
        {
            "user_id": rng.choice([2, 10, 100, 9, 33, 1000], n),
            "item_id": rng.choice(items["item_id"].to_numpy(), n),
            "rating": rng.integers(1, 6, n).astype(float),
            "timestamp": rng.integers(0, 4, n) * 1_000_000,  # 4 instants: ties everywhere
        }
    ).drop_duplicates(["user_id", "item_id", "timestamp"])
    return inter, items


def _write(tmp: Path, inter: pd.DataFrame, items: pd.DataFrame, fmt: str) -> tuple[Path, Path]:
    a, b = tmp / f"inter.{fmt}", tmp / f"items.{fmt}"
    if fmt == "csv":
        inter.to_csv(a, index=False)
        items.to_csv(b, index=False)
    else:
        inter.to_parquet(a)
        items.to_parquet(b)
    return a, b


def test_csv_and_parquet_give_the_same_data_and_split(tmp_path: Path) -> None:
    inter_df, items_df = _tables()
    csv = load_interactions(*_write(tmp_path, inter_df, items_df, "csv"))[0]
    pq = load_interactions(*_write(tmp_path, inter_df, items_df, "parquet"))[0]
    assert csv.user_ids.dtype == np.int64 and pq.user_ids.dtype == np.int64
    assert csv.item_ids.dtype == np.int64 and pq.item_ids.dtype == np.int64
    np.testing.assert_array_equal(csv.user_ids, sorted(inter_df["user_id"].unique()))
    for name in ("user_ids", "item_ids", "user_idx", "item_idx", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(csv, name), getattr(pq, name), err_msg=name)
    (tr_c, te_c), (tr_p, te_p) = temporal_user_split(csv, 0.2), temporal_user_split(pq, 0.2)
    assert len(te_c) == len(te_p) and len(tr_c) == len(tr_p)
    np.testing.assert_array_equal(te_c.item_idx, te_p.item_idx)
    # the tie-break is by numeric item id: within a user's tied last instant, the
    # largest ids go to test (an independent check on one user)
    u = int(np.flatnonzero(csv.user_ids == 10)[0])
    rows = inter_df[inter_df["user_id"] == 10].sort_values(["timestamp", "item_id"])
    n_train = int(np.floor(0.8 * len(rows) + 1e-9))
    # (test rows whose item is also in the user's train part are dropped)
    expected_test = set(rows["item_id"].iloc[n_train:]) - set(rows["item_id"].iloc[:n_train])
    got = set(csv.item_ids[te_c.item_idx[te_c.user_idx == u]])
    assert got == expected_test


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_non_integer_ids_stay_text(tmp_path: Path, fmt: str) -> None:
    items = pd.DataFrame({"item_id": ["007", "7", "a"], "title": ["x", "y", "z"]})
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["007", "7", "a"]})
    loaded, _ = load_interactions(*_write(tmp_path, inter, items, fmt))
    assert list(loaded.item_ids) == ["007", "7", "a"]  # "007" and "7" are distinct items
    assert list(loaded.user_ids) == ["u1", "u2"]
