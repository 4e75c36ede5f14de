"""Load a user's own interactions + items tables (CSV or Parquet) with strict validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError

MAX_SHOWN = 5
_CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(_PARQUET_SUFFIXES)


def _read_table(path: Path, id_columns: list[str]) -> pd.DataFrame:
    """Read a CSV (ids as strings) or Parquet file; empty or unreadable files raise DataError."""
    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows.")
    try:
        if _is_parquet(path):
            df = pd.read_parquet(path)
        elif name.endswith(_CSV_SUFFIXES):
            sep = "\t" if ".tsv" in name else ","
            df = pd.read_csv(path, sep=sep, dtype=dict.fromkeys(id_columns, str))
        else:
            raise DataError(
                f"{path}: unsupported file type; use .csv, .tsv (optionally .gz) or .parquet."
            )
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows.") from exc
    except Exception as exc:  # parser errors from pandas / pyarrow
        raise DataError(f"{path}: could not be read ({exc}); check its format.") from exc
    if df.empty:
        raise DataError(f"{path}: the file has a header but no data rows.")
    return df


def _where(path: Path, rows: np.ndarray) -> str:
    """Human row labels: file line numbers for CSV (header = line 1), 0-based rows for Parquet."""
    if _is_parquet(path):
        return "rows " + ", ".join(str(int(r)) for r in rows[:MAX_SHOWN])
    return "lines " + ", ".join(str(int(r) + 2) for r in rows[:MAX_SHOWN])


def _bad_rows(path: Path, df: pd.DataFrame, mask: np.ndarray, problem: str, fix: str) -> DataError:
    rows = np.flatnonzero(mask)
    shown = df.iloc[rows[:MAX_SHOWN]].to_string()
    more = f" (showing {MAX_SHOWN} of {len(rows)})" if len(rows) > MAX_SHOWN else ""
    return DataError(f"{path}: {problem} at {_where(path, rows)}{more}:\n{shown}\n{fix}")


def _require_columns(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "Rename the columns in the file to the expected names."
        )


def _check_nan(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        mask = df[col].isna().to_numpy()
        if mask.any():
            raise _bad_rows(
                path,
                df,
                mask,
                f"column '{col}' has {int(mask.sum())} missing value(s)",
                f"Fill or drop the rows with an empty '{col}'.",
            )


def _to_numeric(path: Path, df: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce")
    mask = (values.isna() | ~np.isfinite(values.astype(float))).to_numpy()
    if mask.any():
        raise _bad_rows(
            path,
            df,
            mask,
            f"column '{col}' has non-numeric or infinite values",
            f"Make every '{col}' a finite number.",
        )
    return values.to_numpy(np.float64)


def _epoch_seconds(parsed: pd.Series) -> np.ndarray:
    """Whole Unix seconds of tz-aware datetimes, whatever their resolution (ns, us, s)."""
    delta = parsed - pd.Timestamp("1970-01-01", tz="UTC")
    return np.asarray(delta // pd.Timedelta(seconds=1), dtype=np.int64)


def _to_seconds(path: Path, df: pd.DataFrame, col: str) -> np.ndarray:
    """Timestamps as int64 Unix seconds: numbers are taken as seconds, strings are parsed."""
    s = df[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        return _epoch_seconds(pd.to_datetime(s, utc=True))
    if pd.api.types.is_numeric_dtype(s):
        return np.floor(_to_numeric(path, df, col)).astype(np.int64)
    numeric = pd.to_numeric(s, errors="coerce")
    seconds = np.zeros(len(s), dtype=np.int64)
    is_num = numeric.notna().to_numpy() & np.isfinite(numeric.to_numpy(np.float64))
    seconds[is_num] = np.floor(numeric.to_numpy(np.float64)[is_num]).astype(np.int64)
    bad = np.zeros(len(s), dtype=bool)
    if (~is_num).any():
        parsed = pd.to_datetime(s[~is_num], utc=True, errors="coerce", format="mixed")
        ok = parsed.notna().to_numpy()
        rows = np.flatnonzero(~is_num)
        seconds[rows[ok]] = _epoch_seconds(parsed[ok])
        bad[rows[~ok]] = True
    if bad.any():
        raise _bad_rows(
            path,
            df,
            bad,
            f"column '{col}' has values that are not timestamps",
            f"Use Unix seconds or ISO-8601 date-times in '{col}'.",
        )
    return seconds


_INT_LITERAL = r"^-?(?:0|[1-9][0-9]{0,17})$"


def _canonical_ids(values: pd.Series) -> pd.Series:
    """One id type whatever the file format: int64 when every id is an integer, else str.

    A CSV yields ids as text and a Parquet file as typed columns, so the same data gave
    string ids from one and integers from the other, and everything ordered by id (user
    indices, the item-id tie-break of the temporal split) differed. Integers written as
    canonical literals ("42", not "042" or "4.2e1") become int64, as Parquet stores them.
    """
    if pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):
        return values.astype(str)
    text = values.astype(str)
    if text.str.fullmatch(_INT_LITERAL).all():
        return text.astype(np.int64)
    return text


def _harmonise_ids(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Make two id columns comparable: keep integers if both are integer, else strings."""
    if pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b):
        return a.astype(np.int64), b.astype(np.int64)
    return a.astype(str), b.astype(str)


def _duplicates(path: Path, df: pd.DataFrame, cols: list[str], what: str) -> None:
    mask = df.duplicated(cols, keep=False).to_numpy()
    if mask.any():
        raise _bad_rows(
            path,
            df,
            mask,
            f"duplicate {what} (same {', '.join(cols)})",
            "Remove the duplicated rows (keep one of each).",
        )


def _id_array(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy()
    return arr.astype(np.int64) if pd.api.types.is_integer_dtype(values) else arr.astype(object)


def _text_columns(path: Path, items: pd.DataFrame, given: list[str] | None) -> list[str]:
    """The columns item text is made of: `given`, else every non-id text column."""
    if given is not None:
        if not given:
            raise DataError("text_columns must name at least one column of the items file")
        return given
    found = [
        c
        for c in items.columns
        if c != "item_id"
        and (pd.api.types.is_string_dtype(items[c]) or pd.api.types.is_object_dtype(items[c]))
    ]
    if not found:
        raise DataError(
            f"{path}: no text column found besides 'item_id'; add a text column "
            "(e.g. title, description) or pass text_columns=[...]."
        )
    return found


def _no_duplicate_events(
    path: Path, inter: pd.DataFrame, item_idx: np.ndarray, timestamps: np.ndarray | None
) -> None:
    """Raise naming the rows when a (user, item[, timestamp]) event appears twice."""
    key = pd.DataFrame({"u": inter["user_id"].astype(str), "i": item_idx})
    if timestamps is not None:
        key["t"] = timestamps
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        what = "user_id, item_id, timestamp" if timestamps is not None else "user_id, item_id"
        raise _bad_rows(
            path,
            inter,
            dup,
            f"duplicate interactions (same {what})",
            "Remove the duplicated rows (keep one of each).",
        )


def _item_text(items: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Item text: the first column, then "Col: value." for each further non-empty column."""
    frame = items[columns].astype(str)
    text = frame.iloc[:, 0].str.strip().str.rstrip(".")
    for col in columns[1:]:
        value = frame[col].str.strip().str.rstrip(".")
        text = text.where(value == "", text + f". {col.replace('_', ' ').capitalize()}: " + value)
    return (text + ".").to_numpy(dtype=object)


def load_interactions(
    interactions_path: str | Path,
    items_path: str | Path,
    *,
    text_columns: list[str] | None = None,
) -> tuple[Interactions, ItemCatalog]:
    """Load interactions (`user_id`, `item_id`, optional `timestamp`, `rating`) and items.

    Users are indexed in sorted id order, items in the items file's row order. Item text is
    the `text_columns` (default: every non-id text column) joined as "first. Col: value.".

    Raises:
        DataError: naming the file, the column and the first bad rows for missing columns,
            empty files, NaNs, unknown item ids, duplicate events or duplicate item ids.
    """
    ipath, cpath = Path(interactions_path), Path(items_path)
    inter_df = _read_table(ipath, ["user_id", "item_id"])
    items_df = _read_table(cpath, ["item_id"])

    _require_columns(ipath, inter_df, ["user_id", "item_id"])
    has_ts = "timestamp" in inter_df.columns
    has_rating = "rating" in inter_df.columns
    _check_nan(
        ipath,
        inter_df,
        ["user_id", "item_id"]
        + (["timestamp"] if has_ts else [])
        + (["rating"] if has_rating else []),
    )

    text_columns = _text_columns(cpath, items_df, text_columns)
    _require_columns(cpath, items_df, ["item_id", *text_columns])
    _check_nan(cpath, items_df, ["item_id", *text_columns])
    inter_df["user_id"] = _canonical_ids(inter_df["user_id"])
    inter_df["item_id"] = _canonical_ids(inter_df["item_id"])
    items_df["item_id"] = _canonical_ids(items_df["item_id"])
    _duplicates(cpath, items_df, ["item_id"], "item ids")

    item_col, inter_item = _harmonise_ids(items_df["item_id"], inter_df["item_id"])
    item_ids = _id_array(item_col)
    item_idx = pd.Index(item_ids).get_indexer(inter_item.to_numpy())
    unknown = item_idx < 0
    if unknown.any():
        raise _bad_rows(
            ipath,
            inter_df,
            unknown,
            f"{int(unknown.sum())} interaction(s) refer to item ids not in {cpath.name}",
            f"Add these items to {cpath} or drop the interactions.",
        )

    ratings = _to_numeric(ipath, inter_df, "rating").astype(np.float32) if has_rating else None
    timestamps = _to_seconds(ipath, inter_df, "timestamp") if has_ts else None
    _no_duplicate_events(ipath, inter_df, item_idx, timestamps)

    users = inter_df["user_id"]
    if not pd.api.types.is_integer_dtype(users):
        users = users.astype(str)
    user_ids = np.unique(_id_array(users))
    user_idx = np.searchsorted(user_ids, _id_array(users)).astype(np.int64)

    features = items_df.drop(columns=["item_id"]).reset_index(drop=True)
    catalog = ItemCatalog(
        item_ids=item_ids, text=_item_text(items_df, text_columns), features=features
    )
    inter = Interactions(
        user_idx=user_idx,
        item_idx=item_idx.astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=ratings,
        timestamps=timestamps,
    )
    return inter, catalog
