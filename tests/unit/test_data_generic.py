"""Generic CSV/Parquet loader: happy paths and every validation error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abrec.data import load_interactions
from abrec.errors import DataError

ITEMS = "item_id,title,description\nA,Alpha,First item.\nB,Beta,Second\nC,Gamma,Third item\n"
INTER = (
    "user_id,item_id,timestamp,rating\n"
    "u2,A,100,4.5\n"
    "u1,B,200,3\n"
    "u1,A,150,5\n"
    "u3,C,2024-01-01T00:00:00Z,2\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_happy_path(tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", ITEMS)
    inter, cat = load_interactions(write(tmp_path, "i.csv", INTER), items)
    assert inter.user_ids.tolist() == ["u1", "u2", "u3"]
    assert cat.item_ids.tolist() == ["A", "B", "C"]
    assert inter.to_frame()[["user_id", "item_id"]].values.tolist() == [
        ["u2", "A"],
        ["u1", "B"],
        ["u1", "A"],
        ["u3", "C"],
    ]
    assert inter.ratings is not None and inter.ratings.tolist() == [4.5, 3.0, 5.0, 2.0]
    assert inter.timestamps is not None
    assert inter.timestamps.tolist() == [100, 200, 150, 1704067200]
    assert cat.text.tolist() == [
        "Alpha. Description: First item.",
        "Beta. Description: Second.",
        "Gamma. Description: Third item.",
    ]
    assert cat.features is not None and list(cat.features.columns) == ["title", "description"]


def test_parquet_with_integer_ids_and_explicit_text_columns(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": [10, 20, 30], "name": ["x", "y", "z"], "n": [1, 2, 3]})
    inter = pd.DataFrame({"user_id": [5, 5, 7], "item_id": [30, 10, 10]})
    items.to_parquet(tmp_path / "items.parquet")
    inter.to_parquet(tmp_path / "inter.parquet")
    it, cat = load_interactions(
        tmp_path / "inter.parquet", tmp_path / "items.parquet", text_columns=["name"]
    )
    assert it.item_ids.dtype == np.int64 and it.item_ids.tolist() == [10, 20, 30]
    assert it.item_idx.tolist() == [2, 0, 0]
    assert it.user_idx.tolist() == [0, 0, 1]
    assert it.timestamps is None and it.ratings is None
    assert cat.text.tolist() == ["x.", "y.", "z."]
    assert it.matrix.toarray().tolist() == [[1, 0, 1], [1, 0, 0]]


def test_mixed_id_types_are_compared_as_strings(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": ["10", "20"], "t": ["a", "b"]}).to_parquet(tmp_path / "it.parquet")
    pd.DataFrame({"user_id": [1], "item_id": [20]}).to_parquet(tmp_path / "in.parquet")
    inter, _ = load_interactions(tmp_path / "in.parquet", tmp_path / "it.parquet")
    assert inter.item_idx.tolist() == [1]


@pytest.mark.parametrize(
    ("inter_text", "items_text", "match"),
    [
        ("user_id,timestamp\nu1,1\n", ITEMS, r"i\.csv: missing column\(s\) \['item_id'\]"),
        (INTER, "item_id,title\n", r"items\.csv: the file has a header but no data rows"),
        ("", ITEMS, r"i\.csv: the file is empty"),
        (INTER, "title\nAlpha\n", r"items\.csv: missing column\(s\) \['item_id'"),
        (
            "user_id,item_id\nu1,A\nu2,Z\nu3,Y\n",
            ITEMS,
            r"(?s)i\.csv: 2 interaction\(s\) refer to item ids not in items\.csv at lines 3, 4.*u2\s+Z",
        ),
        (
            "user_id,item_id,rating\nu1,A,4\nu2,B,\n",
            ITEMS,
            r"(?s)i\.csv: column 'rating' has 1 missing value\(s\) at lines 3.*u2",
        ),
        (
            "user_id,item_id,timestamp\nu1,A,1\nu2,B,5\nu1,A,1\n",
            ITEMS,
            r"(?s)i\.csv: duplicate interactions \(same user_id, item_id, timestamp\) at lines 2, 4",
        ),
        (
            "user_id,item_id,timestamp\nu1,A,1\nu2,B,yesterday-ish\n",
            ITEMS,
            r"i\.csv: column 'timestamp' has values that are not timestamps at lines 3",
        ),
        (
            "user_id,item_id,rating\nu1,A,good\n",
            ITEMS,
            r"i\.csv: column 'rating' has non-numeric or infinite values at lines 2",
        ),
        (
            "user_id,item_id\nu1,A\n",
            "item_id,title\nA,x\nB,y\nA,z\n",
            r"(?s)items\.csv: duplicate item ids \(same item_id\) at lines 2, 4",
        ),
        (
            "user_id,item_id\nu1,A\n",
            "item_id,title\nA,x\nB,\n",
            r"items\.csv: column 'title' has 1 missing value\(s\) at lines 3",
        ),
        ("user_id,item_id\nu1,A\n", "item_id,n\nA,1\n", r"items\.csv: no text column found"),
    ],
)
def test_validation_errors_name_file_column_and_rows(
    tmp_path: Path, inter_text: str, items_text: str, match: str
) -> None:
    inter = write(tmp_path, "i.csv", inter_text)
    items = write(tmp_path, "items.csv", items_text)
    with pytest.raises(DataError, match=match):
        load_interactions(inter, items)


def test_error_shows_at_most_five_bad_rows(tmp_path: Path) -> None:
    rows = "".join(f"u{k},Z{k}\n" for k in range(8))
    inter = write(tmp_path, "i.csv", "user_id,item_id\n" + rows)
    with pytest.raises(DataError) as err:
        load_interactions(inter, write(tmp_path, "items.csv", ITEMS))
    msg = str(err.value)
    assert "showing 5 of 8" in msg
    assert "Z4" in msg and "Z5" not in msg


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", ITEMS)
    with pytest.raises(DataError, match="file not found"):
        load_interactions(tmp_path / "nope.csv", items)
    with pytest.raises(DataError, match="unsupported file type"):
        load_interactions(write(tmp_path, "i.json", "{}"), items)
    with pytest.raises(DataError, match="text_columns must name"):
        load_interactions(write(tmp_path, "i.csv", INTER), items, text_columns=[])
    with pytest.raises(DataError, match=r"missing column\(s\) \['summary'\]"):
        load_interactions(write(tmp_path, "i.csv", INTER), items, text_columns=["summary"])
