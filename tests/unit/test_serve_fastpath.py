"""The serving fast paths give exactly what the general code gives.

- `top_k_row` (one row) against `top_k` (2-D): same items, same order, same scores.
- `exposure_rows` against building each `Event` in full: same columns, same errors.
- `event_row` against `Event.model_dump`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from abrec.models import top_k, top_k_row
from abrec.store import Event, ExposureRow, event_row, exposure_rows


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, float("-inf"), 3.25]), min_size=1, max_size=40
    ),
    k=st.integers(0, 45),
)
def test_top_k_row_equals_top_k_with_ties_and_minus_inf(values: list[float], k: int) -> None:
    row = np.asarray(values, dtype=np.float32)
    items, scores = top_k_row(row, k)
    ref_items, ref_scores = top_k(row[None, :], k)
    assert items.dtype == np.int64
    np.testing.assert_array_equal(items, ref_items[0])
    np.testing.assert_array_equal(scores, ref_scores[0])  # bit-equal: no arithmetic


def test_top_k_row_on_a_long_random_row() -> None:
    rng = np.random.default_rng(3)
    row = rng.integers(0, 50, 10_000).astype(np.float32)  # many ties
    row[rng.choice(10_000, 500, replace=False)] = -np.inf
    for k in (1, 10, 100, 9_999, 10_000, 20_000):
        items, scores = top_k_row(row, k)
        ref_items, ref_scores = top_k(row[None, :], k)
        np.testing.assert_array_equal(items, ref_items[0])
        np.testing.assert_array_equal(scores, ref_scores[0])
    # independent reference: a stable sort by descending score keeps lower indices first
    order = np.argsort(-row, kind="stable")[:10]
    np.testing.assert_array_equal(top_k_row(row, 10)[0], order)


def _slow(
    request_id: str,
    items: list[str],
    props: list[float | None],
    sources: list[str | None],
    ts: datetime,
    *,
    experiment: str = "exp",
    variant: str = "treatment",
    unit_id: str = "u1",
    scores: list[float | None] | None = None,
    model_version: str | None = None,
) -> list[Event]:
    return [
        Event(
            event_id=f"{request_id}:{p}",
            ts=ts,
            experiment=experiment,
            variant=variant,
            unit_id=unit_id,
            type="exposure",
            item_id=i,
            position=p,
            request_id=request_id,
            propensity=pr,
            source=s,
            score=sc,
            model_version=model_version,
        )
        for p, (i, pr, s, sc) in enumerate(
            zip(items, props, sources, scores or [None] * len(items), strict=True)
        )
    ]


def _fast(
    request_id: str,
    items: list[str],
    props: list[float | None],
    sources: list[str | None],
    ts: datetime,
    *,
    experiment: str = "exp",
    variant: str = "treatment",
    unit_id: str = "u1",
    scores: list[float | None] | None = None,
    model_version: str | None = None,
) -> list[ExposureRow]:
    return exposure_rows(
        request_id=request_id,
        experiment=experiment,
        variant=variant,
        unit_id=unit_id,
        item_ids=items,
        propensities=props,
        sources=sources,
        scores=scores,
        model_version=model_version,
        ts=ts,
    )


TS = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("items", "props", "sources"),
    [
        ([str(100 + j) for j in range(10)], [1.0] * 10, [None] * 10),
        (["a", "b", "c"], [0.5, 0.25, 1.0], ["A", "B", "A"]),
        (["only"], [None], [None]),
        ([], [], []),
    ],
)
def test_exposure_rows_equal_events_built_in_full(
    items: list[str], props: list[float | None], sources: list[str | None]
) -> None:
    fast = _fast("r" * 32, items, props, sources, TS)
    slow = _slow("r" * 32, items, props, sources, TS)
    assert [dict(r) for r in fast] == [e.model_dump() for e in slow]
    assert [list(r) for r in fast] == [list(e.model_dump()) for e in slow]  # column order
    assert [r.event_id for r in fast] == [e.event_id for e in slow]
    assert [event_row(r) for r in fast] == [e.model_dump() for e in slow]
    assert all(r["ts"].tzinfo is UTC for r in fast)  # converted as Event does


@pytest.mark.parametrize(
    ("items", "props", "sources", "request_id", "unit_id"),
    [
        (["ok", "bad\x00id", "ok2"], [1.0] * 3, [None] * 3, "r1", "u1"),  # middle item
        (["ok", "x" * 257, "ok2"], [1.0] * 3, [None] * 3, "r1", "u1"),  # too long
        (["a", "b", "c"], [1.0, 0.0, 1.0], [None] * 3, "r1", "u1"),  # propensity 0
        (["a", "b", "c"], [1.0, float("nan"), 1.0], [None] * 3, "r1", "u1"),
        (["a", "b", "c"], [1.0] * 3, [None, "\u200bzero-width", None], "r1", "u1"),
        (["a", "b"], [1.0] * 2, [None] * 2, "r1", "\u202eu"),  # shared field
        # ":0" fits 128 characters, ":10" does not: the last event_id is too long
        ([str(j) for j in range(11)], [1.0] * 11, [None] * 11, "r" * 126, "u1"),
    ],
)
def test_exposure_rows_refuse_what_event_refuses(
    items: list[str],
    props: list[float | None],
    sources: list[str | None],
    request_id: str,
    unit_id: str,
) -> None:
    with pytest.raises(ValidationError):
        _slow(request_id, items, props, sources, TS, unit_id=unit_id)
    with pytest.raises(ValidationError):
        _fast(request_id, items, props, sources, TS, unit_id=unit_id)


@pytest.mark.parametrize("version", [None, "3ba635bd93045d7a"])
def test_exposure_rows_carry_scores_and_the_model_version(version: str | None) -> None:
    items, scores = ["a", "b", "c"], [2.5, -1.0, 0.125]
    fast = _fast("r1", items, [1.0] * 3, [None] * 3, TS, scores=scores, model_version=version)
    slow = _slow("r1", items, [1.0] * 3, [None] * 3, TS, scores=scores, model_version=version)
    assert [dict(r) for r in fast] == [e.model_dump() for e in slow]
    assert [r["score"] for r in fast] == scores
    assert {r["model_version"] for r in fast} == {version}


@pytest.mark.parametrize(
    "scores",
    [[1.0, float("nan"), 1.0], [1.0, float("inf"), 0.0, 1.0], [1.0, 0.0, float("-inf")]],
)
def test_exposure_rows_refuse_non_finite_scores(scores: list[float | None]) -> None:
    items = [str(j) for j in range(len(scores))]
    props, sources = [1.0] * len(items), [None] * len(items)
    with pytest.raises(ValidationError):
        _slow("r1", items, props, sources, TS, scores=scores)
    with pytest.raises(ValidationError):
        _fast("r1", items, props, sources, TS, scores=scores)


def test_exposure_rows_need_one_propensity_and_source_per_item() -> None:
    with pytest.raises(ValueError, match="one of each per item"):
        _fast("r1", ["a", "b"], [1.0], [None, None], TS)


def test_event_row_equals_model_dump() -> None:
    events = [
        Event(
            event_id="e1",
            experiment="x",
            variant="v",
            unit_id="u",
            type="covariate",
            value=2.5,
        ),
        Event.model_validate(
            {
                "event_id": "e2",
                "ts": "2026-01-05T12:00:00+05:00",
                "experiment": "x",
                "variant": "v",
                "unit_id": "u",
                "type": "click",
                "item_id": "i",
                "position": 3,
                "request_id": "r",
            }
        ),
    ]
    for e in events:
        assert event_row(e) == e.model_dump()
        assert list(event_row(e)) == list(e.model_dump())  # same column order
