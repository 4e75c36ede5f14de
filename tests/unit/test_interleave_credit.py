"""Click credit rules on hand-worked examples, per-unit aggregation and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from abrec.errors import ConfigError, DataError
from abrec.interleave import (
    Impression,
    credit,
    enumerate_outcomes,
    interleave,
    parse_balanced_source,
    unit_credits,
    unit_outcomes,
)

AB = ["A", "B"]
# A = (a, b, c, d), B = (b, e, a, f); A-first balanced list a b e c d
BAL_SOURCES = ["1,3", "2,1", ",2", "3,", "4,"]


def test_team_draft_credit_counts_clicks_on_each_team() -> None:
    src = ["B", "A", "A", "B", "A"]
    assert credit("team_draft", AB, src, [True, False, True, True, True]) == {"A": 2.0, "B": 2.0}
    assert credit("team_draft", AB, src, [False, True, False, False, False]) == {
        "A": 1.0,
        "B": 0.0,
    }
    assert credit("team_draft", AB, src, [False] * 5) == {"A": 0.0, "B": 0.0}
    assert credit("multileave", ["A", "B", "C"], ["C", "A", "B"], [1, 0, 1]) == {
        "A": 0.0,
        "B": 1.0,
        "C": 1.0,
    }


@pytest.mark.parametrize(
    ("clicked", "expected"),
    [
        # clicks b, e: lowest e ranks (inf, 2) -> k*=2; A top-2 {a,b} holds b; B top-2 {b,e} both
        ([False, True, True, False, False], {"A": 1.0, "B": 2.0}),
        # click a only: k* = min(1, 3) = 1; a is A's 1st, B's 3rd
        ([True, False, False, False, False], {"A": 1.0, "B": 0.0}),
        # clicks a, d: lowest d ranks (4, inf) -> k*=4; A: a, d; B: a (3rd) only
        ([True, False, False, False, True], {"A": 2.0, "B": 1.0}),
        # clicks c, e: lowest is c (position 4) ranks (3, inf) -> k*=3; A top-3 has c; B top-3 has e
        ([False, False, True, True, False], {"A": 1.0, "B": 1.0}),
        ([False] * 5, {"A": 0.0, "B": 0.0}),
    ],
)
def test_balanced_credit_joachims_rule(clicked: list[bool], expected: dict[str, float]) -> None:
    assert credit("balanced", AB, BAL_SOURCES, clicked) == expected


def test_balanced_sources_are_what_interleave_stores() -> None:
    outs = enumerate_outcomes("balanced", {"A": list("abcd"), "B": list("beaf")}, 5)
    assert outs is not None
    assert BAL_SOURCES in [list(o.sources) for o in outs]
    assert parse_balanced_source("3,") == (3.0, float("inf"))
    assert parse_balanced_source(",12") == (float("inf"), 12.0)


def test_identical_rankings_balanced_is_always_a_tie() -> None:
    rng = np.random.default_rng(4)
    same = [f"x{j}" for j in range(12)]
    for _ in range(200):
        out = interleave("balanced", {"A": same, "B": same}, 10, rng)
        c = credit("balanced", AB, out.sources, rng.random(10) < 0.3)
        assert c["A"] == c["B"]


def test_identical_rankings_team_draft_expected_credit_is_equal() -> None:
    same = [f"x{j}" for j in range(12)]
    outs = enumerate_outcomes("team_draft", {"A": same, "B": same}, 10)
    assert outs is not None and len(outs) == 32
    for clicked in ([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], [1] * 10, [0] * 9 + [1]):
        exp = {
            n: sum(o.probability * credit("team_draft", AB, o.sources, clicked)[n] for o in outs)
            for n in AB
        }
        assert exp["A"] == pytest.approx(exp["B"], abs=1e-12)
        assert exp["A"] == pytest.approx(sum(clicked) / 2, abs=1e-12)


def test_unit_outcomes_sum_credits_over_impressions() -> None:
    imps = [
        Impression("u1", ["A", "B"], [True, False]),
        Impression("u1", ["B", "A"], [True, True]),  # u1: A 2, B 1 -> control wins
        Impression("u2", ["A", "B"], [False, True]),  # u2: B wins
        Impression("u3", ["A", "B"], [False, False]),  # tie
        ("u4", ["B", "A"], [True, True]),  # plain tuples work too; tie
    ]
    assert unit_outcomes("team_draft", AB, imps) == {"u1": -1, "u2": 1, "u3": 0, "u4": 0}
    assert unit_outcomes("team_draft", AB, imps, pair=("B", "A")) == {
        "u1": 1,
        "u2": -1,
        "u3": 0,
        "u4": 0,
    }
    assert unit_credits("team_draft", AB, imps)["u1"] == {"A": 2.0, "B": 1.0}


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(DataError, match="not one of the rankers"):
        credit("team_draft", AB, ["A", "C"], [True, False])
    with pytest.raises(DataError, match="one flag per position"):
        credit("team_draft", AB, ["A", "B"], [True])
    with pytest.raises(DataError, match="rankA,rankB"):
        credit("balanced", AB, ["1"], [True])
    with pytest.raises(DataError, match="1-based"):
        credit("balanced", AB, ["0,2"], [True])
    with pytest.raises(DataError, match="neither"):
        credit("balanced", AB, [","], [True])
    with pytest.raises(DataError, match="distinct"):
        credit("team_draft", ["A", "A"], ["A"], [True])
    with pytest.raises(ConfigError, match="exactly 2"):
        credit("balanced", ["A", "B", "C"], ["1,2"], [True])
    with pytest.raises(DataError, match="booleans"):
        credit("team_draft", AB, ["A"], [2])
    with pytest.raises(DataError, match="unit ids"):
        unit_credits("team_draft", AB, [Impression("", ["A"], [True])])
    with pytest.raises(DataError, match="pair member"):
        unit_outcomes("team_draft", AB, [], pair=("A", "Z"))
