"""Interleaving algorithms: list properties, Joachims' balanced definition, exact propensities."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from abrec.errors import ConfigError, DataError
from abrec.interleave import algorithms, enumerate_outcomes, interleave

POOL = [f"i{j}" for j in range(40)]


def _rankings(seed: int, m: int = 2, length: int = 12, pool: int = 18) -> dict[str, list[str]]:
    """Overlapping random rankings over a small pool (overlap is what makes interleaving hard)."""
    rng = np.random.default_rng(seed)
    return {chr(65 + r): [str(x) for x in rng.permutation(POOL[:pool])[:length]] for r in range(m)}


def _dedup_alternating(first: list[str], second: list[str], k: int) -> list[str]:
    """Joachims' balanced list, written independently: first1, second1, first2, second2, ...
    with already-shown items skipped (a ranker that runs out leaves the other to continue)."""
    seq = [x for pair in zip(first, second, strict=False) for x in pair]
    n = min(len(first), len(second))
    seq += first[n:] + second[n:]
    out: list[str] = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out[:k]


@pytest.mark.parametrize("method", ["team_draft", "multileave"])
def test_team_draft_list_properties(method: str) -> None:
    for seed in range(60):
        m = 2 if method == "team_draft" else 2 + seed % 3
        rk = _rankings(seed, m=m, length=12)
        k = 3 + seed % 8
        out = interleave(method, rk, k, np.random.default_rng(seed))  # type: ignore[arg-type]
        assert len(out.items) == min(k, len(set().union(*map(set, rk.values()))))
        assert len(set(out.items)) == len(out.items)
        sizes = Counter(out.sources)
        counts = [sizes.get(n, 0) for n in rk]
        assert max(counts) - min(counts) <= 1  # each team floor(k/m) or ceil(k/m)
        for p, (item, team) in enumerate(zip(out.items, out.sources, strict=True)):
            # each pick is its ranker's highest-ranked item not yet shown
            assert item == next(x for x in rk[team] if x not in out.items[:p])
        shorter = interleave(method, rk, k - 1, np.random.default_rng(seed))  # type: ignore[arg-type]
        assert shorter.items == out.items[: k - 1]  # prefix property (same coin flips)
        assert shorter.sources == out.sources[: k - 1]


def test_team_draft_runs_on_when_one_ranker_is_exhausted() -> None:
    out = interleave("team_draft", {"A": ["a"], "B": ["b", "c", "d"]}, 4, np.random.default_rng(1))
    assert sorted(out.items) == ["a", "b", "c", "d"]
    assert out.sources.count("A") == 1


def test_balanced_matches_joachims_definition() -> None:
    # hand example: A-first gives a b e c d; B-first gives b a e c f
    a, b = ["a", "b", "c", "d"], ["b", "e", "a", "f"]
    outs = enumerate_outcomes("balanced", {"A": a, "B": b}, 5)
    assert outs is not None
    lists = sorted(o.items for o in outs)
    assert lists == [("a", "b", "e", "c", "d"), ("b", "a", "e", "c", "f")]
    assert all(o.probability == 0.5 for o in outs)
    by_items = {o.items: o.sources for o in outs}
    assert by_items[("a", "b", "e", "c", "d")] == ("1,3", "2,1", ",2", "3,", "4,")
    for seed in range(80):
        rk = _rankings(seed, length=8 + seed % 5, pool=14)
        ra, rb = rk["A"], rk["B"]
        k = 2 + seed % 12
        got = {o.items for o in enumerate_outcomes("balanced", rk, k) or ()}
        assert got == {tuple(_dedup_alternating(ra, rb, k)), tuple(_dedup_alternating(rb, ra, k))}


@pytest.mark.parametrize(
    ("method", "m"), [("team_draft", 2), ("balanced", 2), ("multileave", 3), ("multileave", 4)]
)
def test_propensities_equal_brute_force_enumeration(method: str, m: int) -> None:
    """The DP propensities equal the sums over every enumerated coin-flip sequence."""
    for seed in range(12):
        rk = _rankings(seed, m=m, length=9, pool=13)
        k = 7
        outs = enumerate_outcomes(method, rk, k)  # type: ignore[arg-type]
        assert outs is not None
        assert sum(o.probability for o in outs) == pytest.approx(1.0, abs=1e-12)
        got = interleave(method, rk, k, np.random.default_rng(seed))  # type: ignore[arg-type]
        for p, item in enumerate(got.items):
            exact = sum(o.probability for o in outs if o.items[p] == item)
            assert got.propensities[p] == pytest.approx(exact, abs=1e-12)
            assert 0.0 < got.propensities[p] <= 1.0


def test_propensities_match_empirical_frequencies_and_sum_to_one() -> None:
    rk = _rankings(3, m=2, length=10, pool=14)
    k, draws = 6, 4000
    rng = np.random.default_rng(11)
    freq: list[Counter[str]] = [Counter() for _ in range(k)]
    prop: list[dict[str, float]] = [{} for _ in range(k)]
    for _ in range(draws):
        out = interleave("team_draft", rk, k, rng)
        for p, (item, pr) in enumerate(zip(out.items, out.propensities, strict=True)):
            freq[p][item] += 1
            prop[p][item] = pr
    for p in range(k):
        assert sum(prop[p].values()) == pytest.approx(1.0, abs=1e-12)  # every item seen
        for item, pr in prop[p].items():
            se = np.sqrt(pr * (1 - pr) / draws)
            assert abs(freq[p][item] / draws - pr) <= 4.5 * se + 1e-12


def test_monte_carlo_fallback_is_close_and_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    rk = _rankings(5, m=3, length=9, pool=12)
    exact = interleave("multileave", rk, 8, np.random.default_rng(2))
    monkeypatch.setattr(algorithms, "MAX_STATES", 1)
    mc = interleave("multileave", rk, 8, np.random.default_rng(2))
    assert mc.items == exact.items
    assert all(0.0 < p <= 1.0 for p in mc.propensities)
    np.testing.assert_allclose(mc.propensities, exact.propensities, atol=0.02)
    assert mc.propensities != exact.propensities  # really took the Monte Carlo path


def test_identical_rankings_show_the_ranking_itself() -> None:
    same = [f"x{j}" for j in range(10)]
    for method in ("team_draft", "balanced"):
        out = interleave(method, {"A": same, "B": same}, 6, np.random.default_rng(0))  # type: ignore[arg-type]
        assert out.items == same[:6]
        assert out.propensities == [1.0] * 6


def test_enumerate_outcomes_cap() -> None:
    rk = _rankings(1, m=2, length=20, pool=30)
    assert enumerate_outcomes("team_draft", rk, 20, max_outcomes=100) is None
    outs = enumerate_outcomes("team_draft", rk, 20)
    assert outs is not None and len(outs) == 2**10


def test_bad_input_raises_clear_errors() -> None:
    rng = np.random.default_rng(0)
    ok = {"A": ["a", "b"], "B": ["b", "c"]}
    with pytest.raises(ConfigError, match="method must be one of"):
        interleave("tdi", ok, 2, rng)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="multileave"):
        interleave("team_draft", {**ok, "C": ["c"]}, 2, rng)
    with pytest.raises(ConfigError, match="at least 2"):
        interleave("multileave", {"A": ["a"]}, 2, rng)
    with pytest.raises(DataError, match="twice"):
        interleave("team_draft", {"A": ["a", "a"], "B": ["b"]}, 2, rng)
    with pytest.raises(DataError, match="k "):
        interleave("team_draft", ok, 0, rng)
    with pytest.raises(DataError, match="Generator"):
        interleave("team_draft", ok, 2, 3)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="comma"):
        interleave("team_draft", {"A,1": ["a"], "B": ["b"]}, 2, rng)
    with pytest.raises(DataError, match="not a string"):
        interleave("team_draft", {"A": "ab", "B": ["b"]}, 2, rng)
