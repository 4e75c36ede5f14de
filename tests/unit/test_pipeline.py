"""Offline run: config validation, resolved-config round trip and a small end-to-end run."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abrec.errors import ConfigError
from abrec.offline import config, present, run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "movielens.toml"


def _cfg(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "models": [{"name": "pop", "kind": "popularity"}, {"name": "ease", "kind": "ease"}]
    }
    base.update(over)
    return base


def test_example_config_is_valid() -> None:
    cfg = config.load_config(EXAMPLE)
    assert cfg.baseline == "popularity"
    assert cfg.protocol.name == "ml-small-temporal-v1"
    assert [m.kind for m in cfg.models][:4] == ["popularity", "itemknn", "als", "ease"]


def test_defaults_and_baseline_default() -> None:
    cfg = config.parse_config(_cfg())
    assert cfg.baseline == "pop"
    assert cfg.evaluation.ks == [5, 10, 20]
    assert cfg.dataset.kind == "movielens"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_cfg(modles=[]), "modles: unknown key"),
        (_cfg(evaluation={"kz": [1]}), "evaluation.kz: unknown key"),
        (_cfg(evaluation={"ks": [0, 10]}), "evaluation.ks"),
        (_cfg(evaluation={"baseline": "nope"}), "baseline 'nope' is not a model name"),
        (_cfg(evaluation={"primary_metric": "ndcg@7"}), "primary_metric"),
        (_cfg(evaluation={"primary_metric": "foo@10"}), "primary_metric"),
        (_cfg(evaluation={"n_bootstrap": 5}), "evaluation.n_bootstrap"),
        (_cfg(protocol={"name": "weird"}), "protocol.name"),
        (_cfg(protocol={"test_fraction": 1.5}), "protocol.test_fraction"),
        (_cfg(dataset={"kind": "generic"}), "needs both `interactions` and `items`"),
        ({"models": []}, "models"),
        ({}, "models: required key is missing"),
        (
            {"models": [{"name": "a", "kind": "ease"}, {"name": "a", "kind": "als"}]},
            "unique",
        ),
        ({"models": [{"name": "a", "kind": "ease", "parms": {}}]}, "models.0.parms: unknown key"),
    ],
)
def test_bad_configs_raise_config_error(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_config(data)
    assert needle in str(info.value)


def test_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load_config(bad)


def test_resolved_config_round_trip() -> None:
    cfg = config.load_config(EXAMPLE)
    text = config.config_to_toml(cfg)
    again = config.parse_config(tomllib.loads(text))
    assert again == cfg


def test_resolved_config_round_trips_awkward_values() -> None:
    """Quotes, backslashes, unicode, nested tables and lists survive the TOML writer."""
    models = [
        {"name": 'q"uo\\te ü', "kind": "ease", "params": {"lambda_": 0.1}},
        {"name": "h", "kind": "hybrid", "params": {"cf": "ease", "cf_params": {"lambda_": 5.0}}},
    ]
    cfg = config.parse_config({"name": "x = [1]", "models": models})
    text = config.config_to_toml(cfg)
    assert config.parse_config(tomllib.loads(text)) == cfg
    assert "encoder.model" not in text and "baseline" not in text  # None values are omitted


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lambda_": "lots"}, r"models\.0: model 'e' \(kind 'ease'\): lambda_: "),
        ({"lambda_": -1.0}, r"lambda_: Input should be greater than 0"),
        ({"tags": ["a"]}, r"tags: unknown key"),
    ],
)
def test_model_params_are_validated_when_the_config_loads(
    params: dict[str, object], message: str
) -> None:
    """A bad model parameter is a ConfigError naming the model and key, before any data loads."""
    with pytest.raises(ConfigError, match=message):
        config.parse_config({"models": [{"name": "e", "kind": "ease", "params": params}]})


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    f = tmp_path / "c.toml"
    f.write_text(
        '[dataset]\nkind = "generic"\ninteractions = "data/i.csv"\nitems = "data/m.csv"\n'
        '[[models]]\nname = "p"\nkind = "popularity"\n'
    )
    cfg = config.load_config(f)
    assert cfg.dataset.interactions == str(tmp_path / "data" / "i.csv")


def _generic_files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n_users, n_items = 80, 40
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items - 5, size=rng.integers(6, 15), replace=False)
        for t, i in enumerate(items):
            rows.append((f"u{u}", int(i), t, float(rng.choice([2, 3, 4, 5]))))
    # cold items (never in train with the temporal split) appear last for a few users
    for u in range(0, n_users, 4):
        rows.append((f"u{u}", n_items - 1 - u % 5, 1000, 5.0))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame(
        {"item_id": np.arange(n_items), "title": [f"Item {i}" for i in range(n_items)]}
    )
    ip, mp = tmp_path / "inter.csv", tmp_path / "items.csv"
    inter.to_csv(ip, index=False)
    items.to_csv(mp, index=False)
    return ip, mp


def test_run_on_generic_files_writes_run_folder(tmp_path: Path) -> None:
    ip, mp = _generic_files(tmp_path)
    cfg = config.parse_config(
        {
            "seed": 3,
            "dataset": {"kind": "generic", "interactions": str(ip), "items": str(mp)},
            "protocol": {"name": "temporal"},
            "evaluation": {
                "ks": [5, 10],
                "n_bootstrap": 200,
                "n_permutations": 200,
                "diversity": False,
            },
            "models": [
                {"name": "pop", "kind": "popularity"},
                {"name": "ease", "kind": "ease", "params": {"lambda_": 10.0}},
            ],
        }
    )
    out = run.run(cfg, tmp_path / "run", quiet=True, save_models_dir=tmp_path / "bundle")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["comparisons.csv", "config.resolved.toml", "per_user.parquet", "summary.json"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["baseline"] == "pop"
    assert summary["lm_vs_cf"] == []  # no language-model model in this run
    assert set(summary["models"]) == {"pop", "ease"}
    nd = summary["models"]["ease"]["all"]["ndcg@10"]
    assert nd["ci_low"] <= nd["mean"] <= nd["ci_high"]
    # the saved bundle carries its provenance, which the model registry records
    from abrec.artifacts import ModelRegistry, data_fingerprint

    meta = ModelRegistry(tmp_path / "registry").register(tmp_path / "bundle").meta
    assert meta["data_fingerprint"] == data_fingerprint(out.split.train)
    assert meta["data_fingerprint"] != data_fingerprint(out.split.test)
    assert meta["metrics"]["per_model"]["ease"]["ndcg@10"] == nd["mean"]
    assert meta["config"] == json.loads(cfg.model_dump_json())
    per_user = pd.read_parquet(tmp_path / "run" / "per_user.parquet")
    assert set(per_user["slice"]) <= {"all", "cold"}
    assert len(per_user[per_user["slice"] == "all"]) == 2 * len(out.split.scored_users)
    again = config.load_config(tmp_path / "run" / "config.resolved.toml")
    assert again == cfg
    import io

    from rich.console import Console

    buf = io.StringIO()
    present.print_leaderboard(out, Console(file=buf, width=120))
    text = buf.getvalue()
    assert "Leaderboard" in text and "Cold-item slice" in text and "pop*" in text
    ease_nd = out.result.value("ease", "ndcg@10")
    assert f"{ease_nd:.3f}" in text
    rows = present.leaderboard_rows(out.result, ["ndcg@10"], "all", "permutation")
    assert [r["model"] for r in rows] == sorted(
        ["pop", "ease"], key=lambda m: -out.result.value(m, "ndcg@10")
    )

    from abrec.models.bundle import ModelBundle

    bundle = ModelBundle.load(tmp_path / "bundle")
    users = out.split.scored_users[:5]
    np.testing.assert_allclose(
        bundle.models["ease"].score(users), out.models["ease"].score(users), rtol=1e-6
    )


def test_unknown_model_kind_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model kind 'no-such-kind'"):
        config.parse_config({"models": [{"name": "x", "kind": "no-such-kind"}]})
    with pytest.raises(ConfigError, match=r"model 'x' .*no_such_param: unknown key"):
        config.parse_config(
            {"models": [{"name": "x", "kind": "ease", "params": {"no_such_param": 1}}]}
        )


def test_lm_vs_cf_head_to_head(tmp_path: Path) -> None:
    from abrec.evaluation.protocol import evaluate_models
    from abrec.models.ease import EASE
    from abrec.models.popularity import Popularity

    ip, mp = _generic_files(tmp_path)
    cfg = config.parse_config(
        {
            "dataset": {"kind": "generic", "interactions": str(ip), "items": str(mp)},
            "protocol": {"name": "temporal"},
            "models": [
                {"name": "pop", "kind": "popularity"},
                {"name": "knn", "kind": "itemknn"},
                {"name": "txt", "kind": "lm"},
            ],
        }
    )
    inter, items = run.load_data(cfg.dataset)
    split = run.make_split(cfg, inter)
    # stand-ins with known order: "txt" is EASE, "knn" popularity, "pop" popularity
    models = {
        "pop": Popularity().fit(split.train, items),
        "knn": Popularity().fit(split.train, items),
        "txt": EASE(lambda_=10.0).fit(split.train, items),
    }
    res = evaluate_models(models, split, ks=(10,), n_bootstrap=100, n_permutations=200)
    rows = run.lm_vs_cf(cfg, res)
    assert [(r["slice"], r["baseline"]) for r in rows] == [
        ("all", "pop"),
        ("all", "knn"),
        ("cold", "pop"),
        ("cold", "knn"),
    ]
    assert all(r["model"] == "txt" and r["metric"] == "ndcg@10" for r in rows)
    assert all(r["chosen_on"].startswith("the best on this split") for r in rows)
    for r in rows[:2]:
        # oriented champion minus CF model, same paired test as comparing them directly
        ref = res.compare(r["baseline"], ["txt"])
        ref_row = ref[(ref.metric == "ndcg@10") & (ref.slice == "all")].iloc[0]
        assert r["diff"] == pytest.approx(ref_row["diff"])
        assert (r["diff_low"], r["diff_high"]) == pytest.approx(
            (ref_row["diff_low"], ref_row["diff_high"]), abs=0.02
        )
        assert r["p_ttest"] == pytest.approx(ref_row["p_ttest"])
        assert r["mean_model"] == pytest.approx(res.value("txt", "ndcg@10"))
        assert r["mean_baseline"] == pytest.approx(res.value(r["baseline"], "ndcg@10"))
    # Holm over the two CF models: the smaller p doubled (capped), the larger at least that
    p = sorted(r["p_ttest"] for r in rows[:2])
    holm = sorted(r["p_ttest_holm"] for r in rows[:2])
    assert holm[0] == pytest.approx(min(1.0, 2 * p[0]))
    assert holm[1] == pytest.approx(min(1.0, max(2 * p[0], p[1])))
    # a champion named in the config (chosen on validation) is used as is
    named = cfg.model_copy(
        update={"evaluation": cfg.evaluation.model_copy(update={"champion": "txt"})}
    )
    assert all(r["chosen_on"].startswith("named by") for r in run.lm_vs_cf(named, res))
    with pytest.raises(ConfigError, match="champion"):
        config.parse_config(
            {"evaluation": {"champion": "nope"}, "models": [{"name": "a", "kind": "ease"}]}
        )


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [
        ("ml-small-temporal-v1", "temporal"),
        ("temporal", "temporal"),
        ("random", "random"),
        ("leave-last-one-out", "leave-last-one-out"),
    ],
)
def test_models_with_an_inner_split_follow_the_protocol(protocol: str, kind: str) -> None:
    """A self-tuning model gets the protocol's kind of validation split unless it sets one."""
    cfg = config.RunConfig.model_validate(
        {
            "protocol": {"name": protocol},
            "models": [
                {"name": "auto", "kind": "ltr_cf"},
                {"name": "pinned", "kind": "ltr_cf", "params": {"validation": "random"}},
                {"name": "plain", "kind": "ease"},
            ],
        }
    )
    models = run.build_models(cfg)
    assert models["auto"].get_config().validation == kind  # type: ignore[attr-defined]
    assert models["pinned"].get_config().validation == "random"  # type: ignore[attr-defined]
    assert "validation" not in models["plain"].params()


def test_validation_protocol_is_carved_from_the_training_period() -> None:
    """`evaluate_on = "validation"`: train and held-out events both come from the protocol's
    training period (same kind of cut), never from its test period."""
    from model_conformance import random_interactions

    from abrec.data import splits

    inter = random_interactions(4, 3000, 40, 80)
    cfg = config.RunConfig.model_validate({"models": [{"name": "pop", "kind": "popularity"}]})
    full = run.make_split(cfg, inter)
    val = run.make_split(cfg.with_evaluate_on("validation"), inter)
    assert val.name == "ml-small-temporal-v1:validation"
    test_times = set(full.test.timestamps.tolist())
    assert not test_times & set(val.train.timestamps.tolist())
    assert not test_times & set(val.test.timestamps.tolist())
    assert len(val.train) + len(val.test) <= len(full.train)
    ref_fit, ref_val = splits.temporal_user_split(full.train, 0.2)
    np.testing.assert_array_equal(val.train.timestamps, ref_fit.timestamps)
    np.testing.assert_array_equal(val.test.timestamps, ref_val.timestamps)
    with pytest.raises(ConfigError, match="--on"):
        cfg.with_evaluate_on("holdout")


def test_encoder_finetune_tunes_on_the_training_period_for_every_lm_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[encoder.finetune]`: one training on the split's training rows (validation by the
    protocol's kind, the run's seed), then every language-model model reads the tuned vectors."""
    import abrec.train.run as train_run

    monkeypatch.setenv("ABREC_CACHE", str(tmp_path / "cache"))
    seen: list[tuple[int, str, int]] = []
    real = train_run.train_encoder

    def spy(train: object, items: object, tcfg: object, **kw: object) -> object:
        seen.append((len(train), str(kw["protocol"]), tcfg.seed))  # type: ignore[arg-type,attr-defined]
        return real(train, items, tcfg, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(train_run, "train_encoder", spy)
    ip, mp = _generic_files(tmp_path)
    tiny = {
        "epochs": 1,
        "batch_size": 8,
        "max_examples_per_user": 2,
        "n_negatives": 10,
        "max_seq_length": 16,
        "freeze_layers": 1,
        "val_fraction": 0.2,
        "device": "cpu",
    }
    data = {
        "seed": 5,
        "dataset": {"kind": "generic", "interactions": str(ip), "items": str(mp)},
        "protocol": {"name": "random"},
        "encoder": {"finetune": tiny, "use_cache": False},
        "evaluation": {
            "ks": [5],
            "primary_metric": "ndcg@5",
            "n_bootstrap": 100,
            "n_permutations": 100,
            "diversity": False,
            "auc": False,
        },
        "models": [{"name": "pop", "kind": "popularity"}, {"name": "txt", "kind": "lm"}],
    }
    cfg = config.parse_config(data)
    out = run.run(cfg, tmp_path / "run", write=False, quiet=True)
    assert seen == [(len(out.split.train), "random", 5)]
    enc = out.models["txt"].encoder  # type: ignore[attr-defined]
    assert str(enc.path).startswith(str(tmp_path / "cache" / "finetune"))
    run.run(cfg, tmp_path / "run2", write=False, quiet=True)
    assert len(seen) == 1  # the second run reuses the cached encoder
    with pytest.raises(ConfigError, match="encoder"):
        config.parse_config({**data, "encoder": {"finetune": {"epochs": 0}}})
    with pytest.raises(ConfigError, match="model"):
        config.parse_config({**data, "encoder": {"finetune": {"model": "x"}}})


def test_learning_curves_of_models_that_fine_tuned_are_written(tmp_path: Path) -> None:
    """A model with a `training_report` gets curves/<name>.json and .png; others none."""
    from types import SimpleNamespace

    history = [
        {"epoch": 0, "metrics": {"ndcg@10": 0.08}, "train_loss": None},
        {"epoch": 1, "metrics": {"ndcg@10": 0.17}, "train_loss": 3.4},
        {"epoch": 2, "metrics": {"ndcg@10": 0.19}, "train_loss": 3.0},
    ]
    report = {"history": history, "metric": "ndcg@10", "best_epoch": 2, "best_value": 0.19}
    models = {"tuned": SimpleNamespace(training_report=report), "plain": SimpleNamespace()}
    files = run.write_learning_curves(tmp_path, models)  # type: ignore[arg-type]
    assert set(files) == {"curve_tuned_json", "curve_tuned_png"}
    assert json.loads(files["curve_tuned_json"].read_text())["best_epoch"] == 2
    assert files["curve_tuned_png"].read_bytes()[:4] == b"\x89PNG"
