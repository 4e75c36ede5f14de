"""Experiment registry on real stores: lifecycle, persistence, GrowthBook assignment, stickiness."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abrec.errors import ExperimentError
from abrec.experiment.assignment import choose_variation, gb_hash, get_bucket_ranges
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec
from abrec.store import EventStore


def _spec(exp_id: str = "home", **kw: object) -> ExperimentSpec:
    data: dict[str, object] = {
        "id": exp_id,
        "variants": [
            {"name": "control", "weight": 0.5, "model": "popularity"},
            {"name": "lm", "weight": 0.5, "model": "minilm"},
        ],
    }
    data.update(kw)
    return ExperimentSpec.model_validate(data)


def test_lifecycle_and_persistence(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    assert reg.list() == []
    reg.create(_spec())
    reg.create(_spec("b-exp"))
    with pytest.raises(ExperimentError, match="already exists"):
        reg.create(_spec())
    assert [s.id for s in reg.list()] == ["b-exp", "home"]
    assert reg.assign("home", "u1") is None  # draft: nobody is assigned
    assert reg.start("home").status == "running"
    with pytest.raises(ExperimentError, match="cannot move"):
        reg.start("home")
    reg.set_weights("home", {"control": 1, "lm": 3})
    assert reg.stop("home").status == "stopped"
    with pytest.raises(ExperimentError, match="cannot move"):
        reg.start("home")
    with pytest.raises(ExperimentError, match="stopped"):
        reg.set_weights("home", {"control": 1, "lm": 1})
    assert reg.assign("home", "u1") is None  # stopped
    # a fresh registry (e.g. after a restart) sees the latest version of every spec
    again = ExperimentRegistry(store)
    home = again.get("home")
    assert home.status == "stopped" and home.weights == pytest.approx([0.25, 0.75])
    assert again.get("b-exp").status == "draft"


def test_errors_are_named(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    for call in (
        lambda: reg.get("nope"),
        lambda: reg.start("nope"),
        lambda: reg.stop("nope"),
        lambda: reg.assign("nope", "u"),
        lambda: reg.set_weights("nope", {"a": 1}),
    ):
        with pytest.raises(ExperimentError, match="unknown experiment"):
            call()
    reg.create(_spec())
    with pytest.raises(ExperimentError, match="every variant"):
        reg.set_weights("home", {"control": 1})
    with pytest.raises(ExperimentError, match="sum to 0"):
        reg.set_weights("home", {"control": 0, "lm": 0})
    with pytest.raises(ExperimentError, match="invalid experiment spec"):
        reg.create({"id": "x", "variants": []})
    reg.start("home")
    with pytest.raises(ExperimentError, match="unit_id"):
        reg.assign("home", "")


def test_assignment_matches_growthbook_and_is_balanced(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    reg.create(_spec(seed="salt-1", sticky=False, status="running"))
    units = [f"user-{i}" for i in range(4000)]
    got = [reg.assign("home", u) for u in units]
    ranges = get_bucket_ranges(2, 1.0, [0.5, 0.5])
    expected = [
        ["control", "lm"][choose_variation(gb_hash("salt-1", u, 2) or 0.0, ranges)] for u in units
    ]
    assert got == expected
    counts = np.array([got.count("control"), got.count("lm")])
    assert stats.chisquare(counts).pvalue > 0.001


def test_coverage_excludes_units(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    reg.create(_spec(coverage=0.3, status="running", sticky=False))
    got = [reg.assign("home", f"u{i}") for i in range(3000)]
    share = sum(v is not None for v in got) / len(got)
    assert abs(share - 0.3) < 0.04
    # with stickiness, excluded units are not stored as assigned, included ones are
    reg.create(_spec("sticky", coverage=0.3, status="running"))
    got = [reg.assign("sticky", f"u{i}") for i in range(40)]
    excluded = next(f"u{i}" for i, v in enumerate(got) if v is None)
    included = next(f"u{i}" for i, v in enumerate(got) if v is not None)
    assert store.get_assignment("sticky", excluded) is None
    assert store.get_assignment("sticky", included) == got[int(included[1:])]


def test_sticky_assignment_survives_weight_changes(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    reg.create(_spec())
    reg.start("home")
    units = [f"user-{i}" for i in range(300)]
    before = {u: reg.assign("home", u) for u in units}
    reg.set_weights("home", {"control": 0.1, "lm": 0.9})
    after = {u: reg.assign("home", u) for u in units}
    assert after == before  # already-assigned users stay where they were
    # without stickiness about 40 % of them (hash in [0.1, 0.5)) would have moved
    would_move = sum(reg.bucket("home", u) != before[u] for u in units)
    assert would_move > 60
    # a new registry (no in-memory cache) reads the stored assignments
    fresh = ExperimentRegistry(store)
    assert {u: fresh.assign("home", u) for u in units} == before
    # new users follow the new weights
    new = [fresh.assign("home", f"new-{i}") for i in range(300)]
    assert abs(new.count("lm") / len(new) - 0.9) < 0.06


def test_non_sticky_assignment_moves_users_on_weight_change(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    reg.create(_spec(sticky=False, status="running"))
    units = [f"user-{i}" for i in range(1500)]
    before = {u: reg.assign("home", u) for u in units}
    reg.set_weights("home", {"control": 0.1, "lm": 0.9})
    after = {u: reg.assign("home", u) for u in units}
    moved = sum(before[u] != after[u] for u in units)
    # every unit hashed into [0.1, 0.5) moves from control to lm: about 40 %
    assert 0.3 < moved / len(units) < 0.5
    assert all(before[u] == "control" and after[u] == "lm" for u in units if before[u] != after[u])
    assert store.get_assignment("home", units[0]) is None  # nothing stored when not sticky


def test_hash_version_1_and_upsert(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    spec = _spec(hash_version=1, status="running", sticky=False)
    assert reg.upsert(spec) == spec
    assert reg.upsert(_spec(hash_version=2)).hash_version == 1  # keeps the stored one
    n = gb_hash("home", "abc", 1)
    assert n is not None
    assert reg.assign("home", "abc") == ("control" if n < 0.5 else "lm")
