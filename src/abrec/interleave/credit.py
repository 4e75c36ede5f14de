"""Click credit per ranker for one impression, and per-unit outcomes over many impressions.

* team_draft / multileave (Radlinski et al. 2008; Schuth et al. 2014): a ranker's credit is
  the number of clicks on the items of its team.
* balanced (Joachims 2003; as stated in Chapelle et al. 2012, section 2.2): let ``d`` be the
  lowest clicked item of the merged list (largest clicked position) and
  ``k* = min(rank_A(d), rank_B(d))`` (a ranker that does not rank ``d`` counts as infinity).
  The credit of ranker ``r`` is ``h_r``, the number of clicked items ranked within the top
  ``k*`` of ``r``. No click gives ``h_A = h_B = 0``.

A unit's credit is the sum over its impressions; its outcome for a pair is the sign of
``credit[treatment] - credit[control]``: +1 the treatment (``names[1]`` by default) wins,
-1 the control (``names[0]``) wins, 0 a tie.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from abrec.errors import DataError
from abrec.interleave.algorithms import Method, check_method, check_name


class Impression(NamedTuple):
    """One merged list shown once to a unit: the stored sources and a click flag per position."""

    unit: str
    sources: Sequence[str]
    clicked: Sequence[bool]


def check_names(method: str, names: Sequence[str]) -> tuple[Method, list[str]]:
    """Validated method and ranker names (distinct, experiment order)."""
    if isinstance(names, str):
        raise DataError("names must be a sequence of ranker names, not a string.")
    out = [check_name(n) for n in names]
    if len(set(out)) != len(out):
        raise DataError(f"ranker names must be distinct, got {out}.")
    return check_method(method, len(out)), out


def parse_balanced_source(source: str) -> tuple[float, float]:
    """``"3,"`` -> (3, inf): the item's rank in A and in B (inf where absent)."""
    parts = source.split(",") if isinstance(source, str) else []
    if len(parts) != 2:
        raise DataError(
            f"balanced source {source!r} must be 'rankA,rankB' (1-based ranks, empty where absent)."
        )
    ranks = []
    for p in parts:
        if p == "":
            ranks.append(math.inf)
        elif p.isdigit() and int(p) >= 1:
            ranks.append(float(int(p)))
        else:
            raise DataError(f"balanced source {source!r}: {p!r} is not a 1-based rank.")
    if ranks[0] == ranks[1] == math.inf:
        raise DataError(f"balanced source {source!r}: the item is ranked by neither ranker.")
    return ranks[0], ranks[1]


def _check_clicks(sources: Sequence[str], clicked: Sequence[bool]) -> npt.NDArray[np.bool_]:
    if isinstance(sources, str):
        raise DataError("sources must be a sequence of strings, not one string.")
    c = np.asarray(clicked)
    if c.ndim != 1 or len(c) != len(sources):
        raise DataError(
            f"clicked must be one flag per position: {len(sources)} sources, "
            f"clicked of shape {c.shape}."
        )
    if c.size and not (c.dtype == bool or np.isin(c, (0, 1)).all()):
        raise DataError("clicked must hold booleans (or 0/1).")
    return c.astype(bool)


def credit(
    method: Method, names: Sequence[str], sources: Sequence[str], clicked: Sequence[bool]
) -> dict[str, float]:
    """Credit per ranker for one impression (see the module docstring for the rules)."""
    m, names = check_names(method, names)
    c = _check_clicks(sources, clicked)
    out = dict.fromkeys(names, 0.0)
    if m == "balanced":
        ranks = np.array([parse_balanced_source(s) for s in sources]).reshape(-1, 2)
        if not c.any():
            return out
        lowest = int(np.flatnonzero(c)[-1])
        k_star = ranks[lowest].min()
        for r, name in enumerate(names):
            out[name] = float(np.sum(c & (ranks[:, r] <= k_star)))
        return out
    for s in sources:
        if s not in out:
            raise DataError(f"source {s!r} is not one of the rankers {names}.")
    for s, hit in zip(sources, c, strict=True):
        if hit:
            out[s] += 1.0
    return out


def unit_credits(
    method: Method, names: Sequence[str], impressions: Iterable[Impression]
) -> dict[str, dict[str, float]]:
    """Summed credit per ranker for every unit, units in order of first appearance."""
    m, names = check_names(method, names)
    out: dict[str, dict[str, float]] = {}
    for imp in impressions:
        unit, sources, clicked = imp
        if not isinstance(unit, str) or not unit:
            raise DataError(f"unit ids must be non-empty strings, got {unit!r}.")
        got = credit(m, names, sources, clicked)
        acc = out.setdefault(unit, dict.fromkeys(names, 0.0))
        for name, v in got.items():
            acc[name] += v
    return out


def outcomes_from_credits(
    credits: dict[str, dict[str, float]], control: str, treatment: str
) -> dict[str, int]:
    """Per unit: sign(credit[treatment] - credit[control]) as +1 / -1 / 0."""
    return {u: int(np.sign(c[treatment] - c[control])) for u, c in credits.items()}


def unit_outcomes(
    method: Method,
    names: Sequence[str],
    impressions: Iterable[Impression],
    *,
    pair: tuple[str, str] | None = None,
) -> dict[str, int]:
    """Per unit, +1 when the treatment's summed credit beats the control's, -1 when lower, 0 tie.

    Args:
        names: ranker names in the experiment's order (names[0] is the control).
        impressions: every impression of every unit (unit id, stored sources, click flags).
        pair: (control, treatment) to compare; default (names[0], names[1]).
    """
    m, names = check_names(method, names)
    control, treatment = pair if pair is not None else (names[0], names[1])
    for n in (control, treatment):
        if n not in names:
            raise DataError(f"pair member {n!r} is not one of the rankers {names}.")
    if control == treatment:
        raise DataError("pair must name two different rankers.")
    return outcomes_from_credits(unit_credits(m, names, impressions), control, treatment)
