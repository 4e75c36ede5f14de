"""Issue 9: `abrec analyze` input validation: header-only files and duplicated unit ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from abrec.cli import app

runner = CliRunner()
ARGS = ["--variant-col", "group", "--control", "A", "--metric", "converted:proportion"]


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "unit_id": [f"u{i}" for i in range(n)],
            "group": np.where(np.arange(n) % 2 == 0, "A", "B"),
            "converted": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_header_only_file_says_no_rows(tmp_path: Path, fmt: str) -> None:
    empty = _frame().iloc[:0]
    path = tmp_path / f"empty.{fmt}"
    empty.to_csv(path, index=False) if fmt == "csv" else empty.to_parquet(path)
    res = runner.invoke(app, ["analyze", str(path), *ARGS])
    assert res.exit_code == 2, res.output
    assert "has no rows" in res.output and "one row per unit" in res.output
    assert "1-d array" not in res.output


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nothing.csv"
    path.write_text("")
    res = runner.invoke(app, ["analyze", str(path), *ARGS])
    assert res.exit_code == 2 and "is empty" in res.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duplicated_unit_ids_are_rejected_naming_them(tmp_path: Path, fmt: str) -> None:
    df = _frame()
    dup = pd.concat([df, df.iloc[[3, 3, 10, 20, 30, 40, 50]]], ignore_index=True)
    path = tmp_path / f"dup.{fmt}"
    dup.to_csv(path, index=False) if fmt == "csv" else dup.to_parquet(path)
    res = runner.invoke(app, ["analyze", str(path), *ARGS])
    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert "6 unit id(s) in column 'unit_id' appear on more than one row" in out
    assert "(showing 5 of 6)" in out and "'u3'" in out and "'u10'" in out
    assert "'u50'" not in out  # only a few are named


def test_unit_ids_compared_as_text_and_custom_column(tmp_path: Path) -> None:
    df = _frame(40).rename(columns={"unit_id": "visitor"})
    df["visitor"] = [f"{i:03d}" if i % 2 else str(i) for i in range(40)]  # "001" != "1"
    path = tmp_path / "ok.csv"
    df.to_csv(path, index=False)
    ok = runner.invoke(app, ["analyze", str(path), *ARGS, "--unit-col", "visitor", "--json"])
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(app, ["analyze", str(path), *ARGS, "--unit-col", "unit"])
    assert missing.exit_code == 2 and "['unit']" in missing.output
    df.loc[5, "visitor"] = df.loc[4, "visitor"]
    df.to_csv(path, index=False)
    bad = runner.invoke(app, ["analyze", str(path), *ARGS, "--unit-col", "visitor"])
    assert bad.exit_code == 2 and "'4'" in bad.output
