"""Every registered kind: config round trips, saved-state round trips, clear config errors.

The kinds come from the registry (`MODEL_KINDS`), so a new model is covered when registered.
"""

from __future__ import annotations

import json
import tomllib
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from model_conformance import N_ITEMS, N_USERS, HashingEncoder, synthetic_data
from tiny_bert import tiny_bert_dir

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models import (
    MODEL_KINDS,
    Recommender,
    RecommenderConfig,
    build_model,
    config_class,
    model_class,
    needs_encoder,
)

SMALL: dict[str, dict[str, Any]] = {
    "als": {"factors": 6, "iterations": 3, "seed": 5},
    "als_text": {"factors": 6, "iterations": 3, "seed": 5, "ridge_alpha": 0.5},
    "itemknn": {"k": 7, "shrinkage": 0.5},
    "ease": {"lambda_": 5.0},
    "text_ease": {"lambda_": 5.0, "beta": 2.5},
    "l3ae": {"lambda_": 5.0, "beta": 2.5, "lambda_s": 0.5, "centre": False},
    "lm": {"half_life": 2.0},
    "hybrid": {"cf": "ease", "cf_params": {"lambda_": 5.0}, "lm_weight": 0.3},
    "ltr": {"n_cf": 10, "n_lm": 5, "lambda_": 5.0},
    "ltr_cf": {"n_cf": 10, "lambda_": 5.0},
    "two_tower": {"history_len": 3, "seed": 1},
    "cross_encoder": {
        "model": tiny_bert_dir(),
        "max_length": 32,
        "freeze_layers": 1,
        "n_cf": 4,
        "n_text": 2,
        "lambda_": 5.0,
        "cpu_threads": 1,
        "progress": False,
    },
}
"""Non-default settings small enough for the synthetic data (kinds not listed use defaults)."""


def runtime(kind: str) -> dict[str, Any]:
    return {"encoder": HashingEncoder()} if needs_encoder(kind) else {}


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, ItemCatalog]:
    return synthetic_data()


def test_small_settings_name_registered_kinds() -> None:
    assert set(SMALL) <= set(MODEL_KINDS)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_config_round_trips(kind: str) -> None:
    """config -> model -> config; JSON and TOML dumps validate back to an equal config."""
    cls = config_class(kind)
    assert issubclass(cls, RecommenderConfig) and model_class(kind).config_class is cls
    for cfg in (cls(), cls.model_validate(SMALL.get(kind, {}))):
        model = model_class(kind).from_config(cfg, **runtime(kind))
        assert model.name == kind and model.get_config() == cfg
        assert build_model(kind, **cfg.model_dump(), **runtime(kind)).get_config() == cfg
        assert json.loads(json.dumps(model.params())) == model.params()
        assert cls.model_validate(json.loads(json.dumps(model.params()))) == cfg
        assert cls.model_validate_json(cfg.model_dump_json()) == cfg
        toml = tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))
        assert cls.model_validate(tomllib.loads(toml)) == cfg


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_saved_state_round_trips(
    kind: str, data: tuple[Interactions, ItemCatalog], tmp_path: Path
) -> None:
    """Fit, save, load: same class, config and bit-identical scores; get/set_state likewise."""
    model = build_model(kind, **SMALL.get(kind, {}), **runtime(kind)).fit(*data)
    users = np.array([-1, *range(N_USERS), N_USERS + 3])
    scores = model.score(users)
    model.save(tmp_path / kind)
    loaded = Recommender.load(tmp_path / kind)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.score(users), scores)
    fresh = model_class(kind).from_config(model.get_config()).set_state(model.get_state())
    np.testing.assert_array_equal(fresh.score(users), scores)
    if model.supports_history:
        hists = [np.array([0, 3, 5]), np.array([], dtype=np.int64), np.arange(N_ITEMS - 6, N_ITEMS)]
        np.testing.assert_array_equal(loaded.score_history(hists), model.score_history(hists))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_bad_values_name_the_key(kind: str) -> None:
    """A non-numeric value for any numeric key, and any unknown key, is a ConfigError naming it."""
    fields = config_class(kind).model_fields
    for key, field in fields.items():
        kinds = set(typing.get_args(field.annotation)) | {field.annotation}
        if kinds & {int, float}:
            with pytest.raises(ConfigError, match=rf"'{kind}': {key}: "):
                build_model(kind, **{key: "lots"}, **runtime(kind))
    with pytest.raises(ConfigError, match=rf"'{kind}': colour: unknown key"):
        build_model(kind, colour=3, **runtime(kind))


def test_encoder_flag() -> None:
    """`needs_encoder` is the class flag; only those kinds take `encoder=`."""
    assert {k for k in MODEL_KINDS if needs_encoder(k)} == {
        "text_ease",
        "l3ae",
        "als_text",
        "lm",
        "hybrid",
        "ltr",
        "two_tower",
        "cross_encoder",
    }
    assert all(needs_encoder(k) == model_class(k).needs_encoder for k in MODEL_KINDS)
    for kind in MODEL_KINDS:
        if not needs_encoder(kind) and kind != "ltr_cf":  # ltr_cf may be switched to use_lm
            with pytest.raises(ConfigError, match="encoder: unknown key"):
                build_model(kind, encoder=HashingEncoder())


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match=r"^bad parameters for model kind 'ease': lambda_: "):
        build_model("ease", lambda_="lots")
    with pytest.raises(ConfigError, match="lambda_: Input should be greater than 0"):
        build_model("ease", lambda_=-1.0)
    with pytest.raises(ConfigError, match="factors: Input should be a valid integer"):
        build_model("als", factors=2.5)
    with pytest.raises(ConfigError, match="finite"):
        build_model("itemknn", shrinkage=float("inf"))
    with pytest.raises(ConfigError, match="pass parameters by keyword"):
        model_class("ease")(5.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="either a config or keyword"):
        model_class("ease")({"lambda_": 1.0}, lambda_=2.0)
    with pytest.raises(ConfigError, match="unknown model kind"):
        build_model("svd")
