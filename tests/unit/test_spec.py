"""Experiment specs: validation, weight normalisation, defaults and TOML loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from abrec.errors import ConfigError, ExperimentError
from abrec.experiment.spec import ExperimentSpec, Variant, load_specs, parse_spec


def _spec(**kw: object) -> ExperimentSpec:
    base: dict[str, object] = {
        "id": "recs-1",
        "variants": [
            {"name": "control", "weight": 1, "model": "popularity"},
            {"name": "lm", "weight": 3, "model": "minilm"},
        ],
    }
    base.update(kw)
    return ExperimentSpec.model_validate(base)


def test_defaults_and_normalised_weights() -> None:
    s = _spec()
    assert s.seed == "recs-1" and s.hash_seed == "recs-1"
    assert s.hash_version == 2 and s.coverage == 1.0 and s.status == "draft"
    assert s.control == "control" and s.sticky and s.alpha == 0.05
    assert s.primary_metric == "ctr" and s.guardrails == []
    assert s.weights == pytest.approx([0.25, 0.75])
    assert s.variant_names == ["control", "lm"]
    assert s.variant("lm").model == "minilm"
    with pytest.raises(ExperimentError, match="no variant"):
        s.variant("nope")


def test_round_trip_through_json() -> None:
    s = _spec(seed="salt", control="lm", guardrails=["exposures_per_unit"], status="running")
    again = parse_spec(s.model_dump(mode="json"))
    assert again == s
    assert again.weights == pytest.approx([0.25, 0.75])


def test_with_updates_revalidates() -> None:
    s = _spec()
    assert s.with_updates(status="running").status == "running"
    with pytest.raises(ExperimentError, match="coverage"):
        s.with_updates(coverage=2.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": [{"name": "a", "model": "m"}]}, "at least 2"),
        (
            {"variants": [{"name": "a", "model": "m"}, {"name": "a", "model": "n"}]},
            "unique",
        ),
        (
            {
                "variants": [
                    {"name": "a", "model": "m", "weight": 0},
                    {"name": "b", "model": "n", "weight": 0},
                ]
            },
            "sum to 0",
        ),
        (
            {
                "variants": [
                    {"name": "a", "model": "m", "weight": -1},
                    {"name": "b", "model": "n"},
                ]
            },
            "greater than or equal",
        ),
        ({"coverage": 1.5}, "coverage"),
        ({"hash_version": 3}, "hash_version"),
        ({"status": "paused"}, "status"),
        ({"control": "treatment"}, "control"),
        ({"primary_metric": "revenue"}, "unknown metric"),
        ({"guardrails": ["latency"]}, "unknown metric"),
        ({"alpha": 0}, "alpha"),
        ({"id": "has space"}, "id"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_specs(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**change)
    data = _spec().model_dump()
    data.update(change)
    with pytest.raises(ExperimentError, match=message):
        parse_spec(data)


def test_variant_model() -> None:
    v = Variant(name="a", model="ease")
    assert v.weight == 1.0
    with pytest.raises(ValidationError):
        Variant(name="", model="ease")
    with pytest.raises(ValidationError, match="finite"):
        Variant(name="a", model="m", weight=float("inf"))


TOML = """
[[experiment]]
id = "homepage"
seed = "homepage-2024"
coverage = 0.5
guardrails = ["exposures_per_unit"]
status = "running"

  [[experiment.variants]]
  name = "control"
  model = "popularity"
  weight = 50

  [[experiment.variants]]
  name = "minilm"
  model = "lm_profile"
  weight = 50

[[experiment]]
id = "search"
hash_version = 1
sticky = false

  [[experiment.variants]]
  name = "a"
  model = "ease"

  [[experiment.variants]]
  name = "b"
  model = "als"

  [[experiment.variants]]
  name = "c"
  model = "knn"
"""


def test_load_specs(tmp_path: Path) -> None:
    path = tmp_path / "experiments.toml"
    path.write_text(TOML)
    specs = load_specs(path)
    assert [s.id for s in specs] == ["homepage", "search"]
    home, search = specs
    assert home.seed == "homepage-2024" and home.coverage == 0.5 and home.status == "running"
    assert home.weights == [0.5, 0.5] and home.guardrails == ["exposures_per_unit"]
    assert search.hash_version == 1 and not search.sticky and search.seed == "search"
    assert search.weights == pytest.approx([1 / 3] * 3) and search.control == "a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[experiment]]\nid = 'x'\n", "experiment #1 is invalid"),
        ("this is = = not toml", "not valid TOML"),
        ("[experiments]\nid='x'\n", "unknown top-level"),
        ("experiment = 3\n", "array of tables"),
        (TOML + TOML, "more than once"),
    ],
)
def test_load_specs_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_specs(path)


def test_load_specs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_specs(tmp_path / "nope.toml")
    assert load_specs_empty(tmp_path) == []


def load_specs_empty(tmp_path: Path) -> list[ExperimentSpec]:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return load_specs(path)
