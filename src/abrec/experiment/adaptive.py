"""Analyses of the experiment types that are not a fixed split: interleaving and bandits.

- Interleaving: every stored impression (one merged list, its exposures' ``source`` and
  click flags, `EventStore.impressions`) is credited to the rankers by the method's rule;
  units are compared by their summed credit (`abrec.interleave.analyze_interleaving`).
- Bandit: per-unit rewards with the probability each unit had of its arm when assigned
  (stored with the assignment) give IPS and Hájek arm values beside the naive means
  (`abrec.bandit.analyse_bandit`); the allocation itself makes the naive means biased.
"""

from __future__ import annotations

import numpy as np

from abrec.bandit import BanditAnalysis, analyse_bandit
from abrec.experiment.spec import ExperimentSpec
from abrec.interleave import Impression, InterleavingResult, analyze_interleaving
from abrec.stats import NotTestableError
from abrec.store.sql import EventStore


def interleaving_analysis(
    store: EventStore, spec: ExperimentSpec, alpha: float
) -> tuple[InterleavingResult | None, list[str]]:
    """The interleaving analysis of a stored experiment (None and a note while untestable)."""
    impressions = [
        Impression(imp.unit_id, [s or "" for s in imp.sources], imp.clicked)
        for imp in store.impressions(spec.id)
    ]
    try:
        result = analyze_interleaving(
            spec.interleaving_method,
            spec.variant_names,
            impressions,
            alpha=alpha,
            target_n=spec.planned_units or 1000,
        )
    except NotTestableError as exc:
        return None, [f"interleaving: not tested ({exc})"]
    return result, []


def bandit_analysis(
    store: EventStore, spec: ExperimentSpec, confidence: float
) -> tuple[BanditAnalysis | None, list[str]]:
    """IPS-weighted arm values of a stored bandit experiment (None and a note when no unit
    with exposures has a logged assignment probability)."""
    units = store.unit_frame(spec.id)
    assigned = store.assignment_frame(spec.id)
    prob = dict(zip(assigned["unit_id"], assigned["propensity"], strict=True))
    p = np.array([prob.get(u, np.nan) for u in units["unit_id"]], dtype=np.float64)
    keep = (units["exposures"] > 0) & np.isfinite(p)
    notes = []
    if (units["exposures"] > 0).sum() > keep.sum():
        notes.append(
            f"bandit: {int((units['exposures'] > 0).sum() - keep.sum())} unit(s) without a logged "
            "assignment probability are left out of the IPS values"
        )
    if keep.sum() < 2:
        return None, [*notes, "bandit: not enough units with a logged probability yet"]
    exposures = units["exposures"][keep].astype(np.float64)
    clicks = units["clicks"][keep].astype(np.float64)
    arm = units["variant"][keep]
    names = spec.variant_names
    result = analyse_bandit(
        arm,
        clicks / exposures,
        p[keep],
        names,
        successes=np.array([clicks[arm == n].sum() for n in names], dtype=np.int64),
        trials=np.array([exposures[arm == n].sum() for n in names], dtype=np.int64),
        units=np.array([(arm == n).sum() for n in names], dtype=np.int64),
        settings=spec.bandit_settings,
        confidence=confidence,
    )
    return result, notes
