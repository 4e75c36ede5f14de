"""Interleaving and multileaving of rankings, with exact per-position propensities.

Three methods (see docs/statistics.md, "Interleaving"):

* ``team_draft`` (Radlinski, Kurup and Joachims 2008): two rankers; in each round a coin
  decides which ranker picks first, and each appends its highest-ranked item not yet shown,
  which joins its *team*. Equivalently: the ranker with the smaller team picks next, a coin
  breaking ties.
* ``multileave`` (team-draft multileaving, Schuth et al. 2014): the same with two or more
  rankers; the next pick goes to a uniformly random ranker among those with the smallest team
  (a uniformly random order per round).
* ``balanced`` (Joachims 2002, 2003): two rankers; one coin decides which ranker leads; then
  with pointers ``ka``, ``kb`` into the two rankings, ``A`` contributes when ``ka < kb`` (or
  ``ka == kb`` and ``A`` leads), otherwise ``B``; an item already shown is skipped.

A ranker that runs out of items drops out and the others continue, so the merged list always
has ``min(k, |union of the rankings|)`` items.

``sources`` records what the credit rules need: the team (ranker name) for the team methods;
for ``balanced`` the item's 1-based rank in each input ranking, in ranker order, joined by
commas, empty where the ranker does not rank the item (``"3,"``: rank 3 in A, absent from B;
``"2,5"``: rank 2 in A, rank 5 in B).

``propensities`` are exact: every sequence of coin flips is enumerated (there are 2^ceil(k/2)
for team-draft, 2 for balanced, about (m!)^(k/m) for m-ranker multileaving) and the marginal
probability of the shown item at each position is summed. When there are more than
``MAX_OUTCOMES`` sequences the probability is estimated from ``MC_DRAWS`` draws with the fixed
seed ``MC_SEED`` plus the realised draw itself, ``(count + 1) / (MC_DRAWS + 1)``, so it always
lies in (0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from abrec.errors import ConfigError, DataError

Method = Literal["team_draft", "balanced", "multileave"]
METHODS: tuple[str, ...] = get_args(Method)

#: Largest number of coin-flip sequences enumerated exactly for the propensities.
MAX_OUTCOMES = 4096
#: Largest number of distinct (shown set, team sizes) states per position in the exact DP.
MAX_STATES = 4096
#: Monte Carlo draws (fixed seed) for the propensities when there are more sequences.
MC_DRAWS = 10_000
MC_SEED = 20140101
#: Longest stored source / ranker name.
MAX_SOURCE_CHARS = 256

# chooser(n_choices) -> index of the chosen option (only called when n_choices >= 2)
Chooser = Callable[[int], int]


@dataclass(frozen=True)
class Interleaving:
    """One merged list: the items, what to store per position, and the exact propensities."""

    items: list[str]
    sources: list[str]
    propensities: list[float]


@dataclass(frozen=True)
class Outcome:
    """One possible merged list and its probability over the method's coin flips."""

    probability: float
    items: tuple[str, ...]
    sources: tuple[str, ...]


def check_method(method: str, n_rankers: int | None = None) -> Method:
    """Return `method` or raise ConfigError; checks the number of rankers when given."""
    if method not in METHODS:
        raise ConfigError(
            f"interleaving method must be one of {', '.join(METHODS)}; got {method!r}."
        )
    if n_rankers is not None:
        if method in ("team_draft", "balanced") and n_rankers != 2:
            raise ConfigError(
                f"{method} interleaving compares exactly 2 rankers, got {n_rankers}; "
                "use method='multileave' for more."
            )
        if method == "multileave" and n_rankers < 2:
            raise ConfigError(f"multileave needs at least 2 rankers, got {n_rankers}.")
    return method  # type: ignore[return-value]


def check_name(name: object) -> str:
    """A ranker name must be a non-empty printable string without commas, <= 256 chars."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise DataError(f"ranker names must be non-empty printable strings, got {name!r}.")
    if len(name) > MAX_SOURCE_CHARS or "," in name:
        raise DataError(
            f"ranker name {name[:40]!r} must be at most {MAX_SOURCE_CHARS} characters "
            "and contain no comma."
        )
    return name


def _check_rankings(
    rankings: Mapping[str, Sequence[str]],
) -> tuple[list[str], list[list[str]]]:
    if not isinstance(rankings, Mapping) or not rankings:
        raise DataError("rankings must be a non-empty mapping {ranker name: ranked item ids}.")
    names = [check_name(n) for n in rankings]
    lists: list[list[str]] = []
    for name in names:
        ranking = rankings[name]
        if isinstance(ranking, str):
            raise DataError(f"ranking of {name!r} must be a sequence of item ids, not a string.")
        items = list(ranking)
        for it in items:
            if not isinstance(it, str) or not it:
                raise DataError(
                    f"ranking of {name!r} holds {it!r}; item ids are non-empty strings."
                )
        if len(set(items)) != len(items):
            raise DataError(f"ranking of {name!r} lists an item twice; deduplicate it first.")
        lists.append([str(it) for it in items])
    return names, lists


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"k (the merged list length) must be an integer >= 1, got {k!r}.")
    return int(k)


def _team_draft(
    names: list[str], lists: list[list[str]], k: int, choose: Chooser
) -> tuple[list[str], list[str]]:
    """Team-draft (multi)leaving: the smallest team picks next, ties broken by `choose`."""
    shown: set[str] = set()
    ptr = [0] * len(lists)
    team = [0] * len(lists)
    items: list[str] = []
    sources: list[str] = []
    while len(items) < k:
        for r, lst in enumerate(lists):
            while ptr[r] < len(lst) and lst[ptr[r]] in shown:
                ptr[r] += 1
        live = [r for r, lst in enumerate(lists) if ptr[r] < len(lst)]
        if not live:
            break
        smallest = min(team[r] for r in live)
        cands = [r for r in live if team[r] == smallest]
        r = cands[choose(len(cands))] if len(cands) > 1 else cands[0]
        item = lists[r][ptr[r]]
        items.append(item)
        sources.append(names[r])
        shown.add(item)
        team[r] += 1
    return items, sources


def _balanced(
    names: list[str], lists: list[list[str]], k: int, choose: Chooser
) -> tuple[list[str], list[str]]:
    """Balanced interleaving (Joachims 2003, as written in Chapelle et al. 2012, Alg. 1)."""
    a, b = lists
    a_first = choose(2) == 0
    ka = kb = 0
    items: list[str] = []
    shown: set[str] = set()
    while len(items) < k and (ka < len(a) or kb < len(b)):
        take_a = kb >= len(b) or (ka < len(a) and (ka < kb or (ka == kb and a_first)))
        if take_a:
            item, ka = a[ka], ka + 1
        else:
            item, kb = b[kb], kb + 1
        if item not in shown:
            items.append(item)
            shown.add(item)
    rank_a = {it: i + 1 for i, it in enumerate(a)}
    rank_b = {it: i + 1 for i, it in enumerate(b)}
    sources = [f"{rank_a.get(it, '')},{rank_b.get(it, '')}" for it in items]
    return items, sources


def _merge(
    method: Method, names: list[str], lists: list[list[str]], k: int, choose: Chooser
) -> tuple[list[str], list[str]]:
    if method == "balanced":
        return _balanced(names, lists, k, choose)
    return _team_draft(names, lists, k, choose)


def _enumerate(
    method: Method, names: list[str], lists: list[list[str]], k: int, max_outcomes: int
) -> list[Outcome] | None:
    """Every coin-flip sequence (odometer over the choice points); None past `max_outcomes`."""
    out: list[Outcome] = []
    path: list[int] = []

    def replay(sizes: list[int]) -> Chooser:
        def choose(n: int) -> int:
            i = len(sizes)
            sizes.append(n)
            if i == len(path):
                path.append(0)
            return path[i]

        return choose

    while True:
        sizes: list[int] = []
        items, sources = _merge(method, names, lists, k, replay(sizes))
        prob = 1.0 / float(np.prod(sizes)) if sizes else 1.0
        out.append(Outcome(prob, tuple(items), tuple(sources)))
        if len(out) > max_outcomes:
            return None
        del path[len(sizes) :]
        while path and path[-1] == sizes[len(path) - 1] - 1:
            path.pop()
        if not path:
            return out
        path[-1] += 1


def enumerate_outcomes(
    method: Method,
    rankings: Mapping[str, Sequence[str]],
    k: int,
    *,
    max_outcomes: int = MAX_OUTCOMES,
) -> tuple[Outcome, ...] | None:
    """All merged lists the method can produce, each with its probability (they sum to 1).

    Returns None when there are more than `max_outcomes` coin-flip sequences. Useful to
    simulate interleaving exactly and fast: draw an outcome index by the probabilities.
    """
    names, lists = _check_rankings(rankings)
    m = check_method(method, len(names))
    outs = _enumerate(m, names, lists, _check_k(k), max_outcomes)
    return None if outs is None else tuple(outs)


def _team_marginals(lists: list[list[str]], k: int) -> list[dict[str, float]] | None:
    """P(item at position p) for the team methods by dynamic programming over the states.

    What happens next depends only on the set of shown items and the team sizes, so the
    coin-flip paths that reach the same state are merged. None past `MAX_STATES` states.
    """
    states: dict[tuple[frozenset[str], tuple[int, ...]], float] = {
        (frozenset(), (0,) * len(lists)): 1.0
    }
    marginals: list[dict[str, float]] = []
    for _ in range(k):
        nxt: dict[tuple[frozenset[str], tuple[int, ...]], float] = {}
        here: dict[str, list[float]] = {}
        for (shown, team), prob in states.items():
            heads = [next((it for it in lst if it not in shown), None) for lst in lists]
            live = [r for r, h in enumerate(heads) if h is not None]
            if not live:
                continue
            smallest = min(team[r] for r in live)
            cands = [r for r in live if team[r] == smallest]
            share = prob / len(cands)
            for r in cands:
                item = heads[r]
                assert item is not None
                here.setdefault(item, []).append(share)
                grown = tuple(t + (i == r) for i, t in enumerate(team))
                key = (shown | {item}, grown)
                nxt[key] = nxt.get(key, 0.0) + share
        if not here:
            break
        marginals.append({it: math.fsum(v) for it, v in here.items()})
        if len(nxt) > MAX_STATES:
            return None
        states = nxt
    return marginals


def _propensities(
    method: Method, names: list[str], lists: list[list[str]], k: int, items: list[str]
) -> list[float]:
    """Exact P(items[p] at position p); Monte Carlo (fixed seed) when the DP is too large."""
    if method == "balanced":
        outs = _enumerate(method, names, lists, k, MAX_OUTCOMES)
        assert outs is not None  # one coin: two outcomes
        marg: list[dict[str, float]] | None = [
            {it: math.fsum(o.probability for o in outs if o.items[p] == it)}
            for p, it in enumerate(items)
        ]
    else:
        marg = _team_marginals(lists, k)
    if marg is not None:
        return [min(1.0, marg[p][it]) for p, it in enumerate(items)]
    mc = np.random.default_rng(MC_SEED)
    counts = np.ones(len(items))
    for _ in range(MC_DRAWS):
        drawn, _src = _merge(method, names, lists, k, lambda n: int(mc.integers(n)))
        counts += np.fromiter((d == it for d, it in zip(drawn, items, strict=True)), bool)
    return [float(c) for c in counts / (MC_DRAWS + 1)]


def interleave(
    method: Method,
    rankings: Mapping[str, Sequence[str]],
    k: int,
    rng: np.random.Generator,
) -> Interleaving:
    """Merge the rankers' lists into one list of at most `k` items (see the module docstring).

    Args:
        method: "team_draft" or "balanced" (2 rankers) or "multileave" (>= 2 rankers).
        rankings: ranker name -> its ranked item ids (no duplicates), in experiment order.
        k: length of the merged list.
        rng: the source of the coin flips.
    """
    names, lists = _check_rankings(rankings)
    m = check_method(method, len(names))
    k = _check_k(k)
    if not isinstance(rng, np.random.Generator):
        raise DataError("rng must be a numpy.random.Generator (np.random.default_rng(seed)).")
    items, sources = _merge(m, names, lists, k, lambda n: int(rng.integers(n)))
    props = _propensities(m, names, lists, k, items)
    return Interleaving(items=items, sources=sources, propensities=props)
