"""Under CI=true a missing dataset fails the test instead of skipping it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def test_missing_movielens_fails_in_ci_and_skips_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locate_movielens: Callable[[], Path]
) -> None:
    monkeypatch.setenv("ABREC_DATA", str(tmp_path))  # no ml-latest-small/ inside
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"ratings\.csv"):
        locate_movielens()
    monkeypatch.delenv("ABREC_DATA")
    with pytest.raises(pytest.fail.Exception, match="ABREC_DATA"):
        locate_movielens()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="ABREC_DATA"):
        locate_movielens()
