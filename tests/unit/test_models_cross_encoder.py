"""The cross-encoder re-ranker: conformance, its data, its metrics and its overfitting controls.

The base model is a tiny random BERT with MiniLM's tokenizer (`tiny_bert`), one CPU thread, so
the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import train_synthetic as syn
from model_conformance import (
    N_COLD,
    N_ITEMS,
    N_USERS,
    HashingEncoder,
    RecommenderConformance,
)
from sklearn.metrics import roc_auc_score
from tiny_bert import tiny_bert_dir

import abrec.models.cross_encoder as ce
from abrec.data.splits import temporal_user_split
from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models import build_model
from abrec.models.base import Recommender
from abrec.models.cross_encoder import (
    CrossEncoder,
    CrossEncoderConfig,
    training_examples,
    validation_groups,
)
from abrec.models.ease import EASE
from abrec.train.cross import (
    CrossScorer,
    CrossSettings,
    GroupSet,
    PairSet,
    PairTokenizer,
    train_cross_encoder,
    validation_metrics,
)
from abrec.train.data import anchor_text, item_titles


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One torch thread for the direct scorer calls too (the models set `cpu_threads` = 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides: Any) -> dict[str, Any]:
    """Settings of a fast cross-encoder on the synthetic data."""
    base: dict[str, Any] = {
        "model": tiny_bert_dir(),
        "epochs": 1,
        "max_length": 32,
        "freeze_layers": 1,
        "history_len": 2,
        "batch_size": 16,
        "n_cf": 4,
        "n_text": 2,
        "hard_pool": 6,
        "lambda_": 5.0,
        "learning_rate": 2e-3,
        "cpu_threads": 1,
        "progress": False,
    }
    return {**base, **overrides}


class TestCrossEncoder(RecommenderConformance):
    def make_model(self) -> Recommender:
        return CrossEncoder(**tiny(), encoder=HashingEncoder())

    def make_history_model(self) -> Recommender | None:
        return None  # a known user's anchor follows likes and their order; a history is a set

    def test_candidates_score_their_logit_and_the_rest_follow_ease(
        self, fitted: Recommender, data: tuple[Interactions, ItemCatalog]
    ) -> None:
        """Candidates: EASE's top 4 unseen and the text profile's top 2 unseen (float64 here),
        scored by the scorer's logit on the last 2 liked titles; the rest below, in EASE order."""
        assert isinstance(fitted, CrossEncoder)
        inter, items = data
        assert inter.ratings is not None and inter.timestamps is not None
        X = inter.matrix.toarray() > 0
        ease = EASE(lambda_=5.0).fit(inter, items).score(np.arange(N_USERS))
        E = HashingEncoder().encode(list(items.text)).astype(np.float64)
        scores = fitted.score(np.arange(N_USERS))
        scorer = fitted._cross()
        titles = item_titles(items)
        checked = 0
        for u in range(N_USERS):
            rows = np.flatnonzero((inter.user_idx == u) & (inter.ratings >= 4.0))
            if len(rows) < 2:
                continue
            e = np.where(X[u], -np.inf, ease[u])
            prof = E[X[u]].mean(0)
            t = np.where(X[u], -np.inf, E @ (prof / np.linalg.norm(prof)))
            se, st = np.sort(e[np.isfinite(e)])[::-1], np.sort(t[np.isfinite(t)])[::-1]
            if se[3] - se[4] < 1e-4 or st[1] - st[2] < 1e-4:
                continue  # a near-tie at the cut: float32 vs float64 may pick either item
            top_e = np.argsort(-e, kind="stable")[:4]
            top_t = np.argsort(-t, kind="stable")[:2]
            cand = np.union1d(top_e, top_t)
            rest = np.setdiff1d(np.arange(N_ITEMS), cand)
            assert scores[u, cand].min() > scores[u, rest].max()
            assert (np.diff(scores[u, rest[np.argsort(-e[rest], kind="stable")]]) < 0).all()
            last = inter.item_idx[rows[np.argsort(inter.timestamps[rows])]][-2:]
            want = scorer.logits(anchor_text(titles, last), [str(items.text[i]) for i in cand])
            np.testing.assert_array_equal(scores[u, cand], want)
            checked += 1
        assert checked > 10

    def test_never_seen_items_are_recommended_through_text(self, fitted: Recommender) -> None:
        items, _ = fitted.recommend(np.arange(N_USERS), k=6)
        assert np.isin(items, np.arange(N_ITEMS - N_COLD, N_ITEMS)).any()

    def test_training_report_is_json_and_is_saved(
        self, fitted: Recommender, tmp_path: Path
    ) -> None:
        assert isinstance(fitted, CrossEncoder)
        report = fitted.training_report
        assert json.loads(json.dumps(report)) == report
        (epoch,) = report["history"]
        assert {"train_loss", "val_auc", "val_ndcg10"} <= set(epoch)
        assert 0.0 <= epoch["val_auc"] <= 1.0 and 0.0 < epoch["val_ndcg10"] <= 1.0
        assert epoch["metrics"] == {"auc": epoch["val_auc"], "ndcg@10": epoch["val_ndcg10"]}
        # the offline run draws it like the bi-encoder's (curves/<model>.png)
        from abrec.offline.run import write_learning_curves

        files = write_learning_curves(tmp_path / "run", {"ce": fitted})
        assert files["curve_ce_png"].read_bytes()[:4] == b"\x89PNG"
        assert report["n_validation_users"] > 0 and report["n_pairs"] > report["n_positives"]
        fitted.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        assert isinstance(loaded, CrossEncoder) and loaded.training_report == report
        assert loaded.encoder is None  # item vectors are saved; no encoder needed

    def test_reported_validation_metrics_are_those_of_the_saved_weights(
        self, fitted: Recommender, data: tuple[Interactions, ItemCatalog]
    ) -> None:
        """The curve's AUC is sklearn's on sigmoid(logit) of the model's validation groups."""
        assert isinstance(fitted, CrossEncoder)
        inter, items = data
        _, _, _, groups = fitted.examples(inter, items)
        logits = fitted._cross().group_logits(_group_set(groups, items))
        assert np.ptp(logits) > 0
        labels = np.zeros(logits.shape, dtype=int)
        labels[:, 0] = 1
        probs = 1 / (1 + np.exp(-logits.astype(np.float64).ravel()))
        (epoch,) = fitted.training_report["history"]
        assert epoch["val_auc"] == pytest.approx(roc_auc_score(labels.ravel(), probs), abs=1e-12)
        assert epoch["val_ndcg10"] == validation_metrics(logits)["ndcg@10"]

    def test_a_changed_base_model_is_refused(self, fitted: Recommender) -> None:
        assert isinstance(fitted, CrossEncoder)
        state = fitted.get_state()
        other = CrossEncoder(**tiny()).set_state({**state, "base": "0" * 16})
        with pytest.raises(ConfigError, match="trained from base model"):
            other.score(np.array([0]))


# ---------------------------------------------------------------------------------- metrics
def _mann_whitney(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(positive > negative) + 0.5 P(tie), by counting every pair."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_auc_and_ndcg_on_a_hand_case() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, -2.0]])
    m = validation_metrics(logits)
    # positive 2.0 beats all 4 negatives, 0.0 beats 2 of 4: 6 of 8 pairs
    assert m["auc"] == pytest.approx(0.75, abs=1e-12)
    # the positives rank 1st and 2nd in their groups: (1 + 1/log2(3)) / 2
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2, abs=1e-12)
    # the model has ONE logit: an argmax over its outputs is the same for every pair, and an
    # AUC of that is 0.5 whatever the logits; the probabilities keep the order
    outputs = logits.reshape(-1, 1)
    labels = np.array([1, 0, 0, 1, 0, 0])
    assert roc_auc_score(labels, outputs.argmax(axis=1)) == 0.5
    assert m["auc"] != 0.5
    tied = validation_metrics(np.array([[1.0, 1.0, 0.0]]))
    assert tied["ndcg@10"] == pytest.approx(1 / np.log2(3), abs=1e-12)  # ties rank it below
    assert tied["auc"] == pytest.approx(0.75, abs=1e-12)  # one win, one tie


def test_auc_equals_pair_counting_and_sklearn_on_random_logits() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(40, 6))
    logits[:, 0] += 0.7
    logits = np.round(logits, 1)  # ties, also between positives and negatives
    m = validation_metrics(logits)
    ref = _mann_whitney(logits[:, 0], logits[:, 1:].ravel())
    assert m["auc"] == pytest.approx(ref, abs=1e-12)
    labels = np.zeros(logits.shape)
    labels[:, 0] = 1
    assert m["auc"] == pytest.approx(roc_auc_score(labels.ravel(), logits.ravel()), abs=1e-12)
    ranks = 1 + (logits[:, 1:] >= logits[:, :1]).sum(axis=1)  # pessimistic ties
    assert m["ndcg@10"] == pytest.approx(np.mean(1 / np.log2(ranks + 1)), abs=1e-12)


# ---------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def themed() -> tuple[Interactions, ItemCatalog]:
    """16 users who like 12 items of one theme and dislike 3 others; titles in the catalogue."""
    return syn.split().train, syn.catalog()


def _cfg(**overrides: Any) -> CrossEncoderConfig:
    return CrossEncoderConfig(**tiny(**overrides))


def _ease_top(fit: Interactions, touched: set[tuple[int, int]], u: int, size: int) -> np.ndarray:
    """EASE by the textbook closed form (inverse of the regularised Gram matrix): the user's
    scores with touched items at -inf, and the `size`-th best score."""
    X = np.zeros((fit.n_users, fit.n_items))
    X[fit.user_idx, fit.item_idx] = 1.0
    active = X.sum(0) > 0
    P = np.linalg.inv(X[:, active].T @ X[:, active] + 5.0 * np.eye(active.sum()))
    B = np.zeros((fit.n_items, fit.n_items))
    B[np.ix_(active, active)] = np.eye(active.sum()) - P / np.diag(P)
    s = X[u] @ B
    s[[i for (v, i) in touched if v == u]] = -np.inf
    return s, float(np.sort(s)[::-1][size - 1])


def test_negatives_are_untouched_and_hard_ones_come_from_the_ease_pool(
    themed: tuple[Interactions, ItemCatalog],
) -> None:
    train, items = themed
    cfg = _cfg(hard_pool=5, n_hard=2, n_random=3, max_examples_per_user=None)
    fit, val = temporal_user_split(train, cfg.validation_fraction)
    ex = training_examples(fit, EASE(lambda_=5.0).fit(fit, items), cfg)
    touched = set(zip(fit.user_idx.tolist(), fit.item_idx.tolist(), strict=True))
    assert fit.ratings is not None
    liked = {
        (u, i)
        for u, i, r in zip(fit.user_idx.tolist(), fit.item_idx.tolist(), fit.ratings, strict=True)
        if r >= 4.0
    }
    assert len(ex) and (ex.kinds == 2).any() and (ex.kinds == 1).any()
    np.testing.assert_array_equal(ex.labels, (ex.kinds == 0).astype(np.float32))
    pools = {u: _ease_top(fit, touched, u, 5) for u in np.unique(ex.users).tolist()}
    tol = 1e-5  # the model's EASE is float32
    for u, i, k, h in zip(
        ex.users.tolist(), ex.items.tolist(), ex.kinds, ex.histories, strict=True
    ):
        assert all((u, int(j)) in liked for j in h) and 1 <= len(h) <= cfg.history_len
        if k == 0:
            assert (u, i) in liked
        else:
            assert (u, i) not in touched  # never liked nor disliked
        if k == 2:  # among the 5 best untouched (up to float32 rounding)
            assert pools[u][0][i] >= pools[u][1] - tol, (u, i)
    # every positive brings n_hard hard and n_random random negatives, all distinct
    starts = np.flatnonzero(ex.kinds == 0)
    for a, b in zip(starts, [*starts[1:], len(ex)], strict=True):
        assert sorted(ex.kinds[a:b].tolist()) == [0, 1, 1, 1, 2, 2]
        assert len(set(ex.items[a:b].tolist())) == b - a
    # validation groups: the first liked validation item, then negatives untouched in both parts
    groups = validation_groups(fit, val, EASE(lambda_=5.0).fit(fit, items), cfg)
    both = touched | set(zip(val.user_idx.tolist(), val.item_idx.tolist(), strict=True))
    for u, row in zip(groups.users.tolist(), groups.candidates, strict=True):
        assert (u, int(row[0])) in set(
            zip(val.user_idx.tolist(), val.item_idx.tolist(), strict=True)
        )
        assert not any((u, int(i)) in both for i in row[1:])
        scores, fifth = _ease_top(fit, both, u, 5)
        assert (scores[row[1:3]] >= fifth - tol).all()


def test_training_never_reads_the_validation_part(
    themed: tuple[Interactions, ItemCatalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training pairs come from fit events only, and do not change when the validation part
    is replaced by other events; the test period is never given to fit."""
    train, items = themed
    model = CrossEncoder(**tiny(max_examples_per_user=None))
    fit, val, pairs, _ = model.examples(train, items)
    assert len(fit) + len(val) == len(train)
    fit_events = set(zip(fit.user_idx.tolist(), fit.item_idx.tolist(), strict=True))
    val_only = set(zip(val.user_idx.tolist(), val.item_idx.tolist(), strict=True)) - fit_events
    assert val_only
    for u, i, k, h in zip(
        pairs.users.tolist(), pairs.items.tolist(), pairs.kinds, pairs.histories, strict=True
    ):
        assert all((u, int(j)) in fit_events for j in h)
        if k == 0:
            assert (u, i) in fit_events and (u, i) not in val_only

    real = ce.validation_split

    def poisoned(*args: Any) -> tuple[Interactions, Interactions]:
        f, v = real(*args)
        rng = np.random.default_rng(0)
        other = dataclasses.replace(v, item_idx=rng.permutation(v.item_idx))
        return f, other

    monkeypatch.setattr(ce, "validation_split", poisoned)
    _, _, again, _ = model.examples(train, items)
    for name in ("users", "items", "labels", "kinds"):
        np.testing.assert_array_equal(getattr(again, name), getattr(pairs, name))
    assert all(np.array_equal(a, b) for a, b in zip(again.histories, pairs.histories, strict=True))

    # the protocol's test period is never seen: fit gets the training part only, and no pair,
    # anchor or validation item is a test event
    split = syn.split()
    monkeypatch.setattr(ce, "validation_split", real)
    _, _, ex, groups = model.examples(split.train, items)
    test_only = set(zip(split.test.user_idx.tolist(), split.test.item_idx.tolist(), strict=True))
    test_only -= set(zip(split.train.user_idx.tolist(), split.train.item_idx.tolist(), strict=True))
    assert test_only
    used = {(u, i) for u, i, k in zip(ex.users, ex.items, ex.kinds, strict=True) if k == 0}
    used |= {(u, int(j)) for u, h in zip(ex.users, ex.histories, strict=True) for j in h}
    used |= {(u, int(r[0])) for u, r in zip(groups.users, groups.candidates, strict=True)}
    assert not used & test_only


# ---------------------------------------------------------------------------------- tokens
def test_pair_tokens_match_the_tokenizer_and_truncate_the_oldest_history() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir())
    pt = PairTokenizer(tok, max_length=24)
    a, b = "Space Story 1; Romance Story 2", "Horror Story 3. Genres: Horror."
    ids, types = pt.pair(a, b)
    ref = tok(a, b)
    assert ids == ref["input_ids"] and types == ref["token_type_ids"]
    long_anchor = "; ".join(f"Cartoon Story {k}" for k in range(1, 12))
    ids, types = pt.pair(long_anchor, b)
    assert len(ids) == len(types) == 24
    item = tok(b, add_special_tokens=False)["input_ids"]
    hist = tok(long_anchor, add_special_tokens=False)["input_ids"]
    n_item = len(item)
    assert ids[-n_item - 1 : -1] == item  # the whole item text is kept
    n_hist = 24 - 3 - n_item
    assert ids[1 : 1 + n_hist] == hist[-n_hist:]  # the most recent titles are kept


# ---------------------------------------------------------------------------------- training
def _group_set(groups: Any, items: ItemCatalog) -> GroupSet:
    titles, texts = item_titles(items), [str(t) for t in items.text]
    return GroupSet(
        anchors=[anchor_text(titles, h) for h in groups.histories],
        items=[[texts[i] for i in row] for row in groups.candidates],
    )


@pytest.fixture(scope="module")
def pair_data(themed: tuple[Interactions, ItemCatalog]) -> tuple[PairSet, GroupSet]:
    train, items = themed
    _, _, ex, groups = CrossEncoder(**tiny()).examples(train, items)
    titles, texts = item_titles(items), [str(t) for t in items.text]
    pairs = PairSet(
        anchors=[anchor_text(titles, h) for h in ex.histories],
        items=[texts[i] for i in ex.items],
        labels=ex.labels,
    )
    return pairs, _group_set(groups, items)


def _settings(**overrides: Any) -> CrossSettings:
    cfg = _cfg(**overrides)
    return CrossSettings(
        **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(CrossSettings)}
    )


def _fingerprint(model: Any) -> str:
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _base_state(settings: CrossSettings) -> dict[str, torch.Tensor]:
    from abrec.train.cross import load_classifier

    model, _, _ = load_classifier(settings, "cpu")
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_minilm_learns_the_themes(pair_data: tuple[PairSet, GroupSet]) -> None:
    """The bundled MiniLM, one epoch: the validation AUC (from probabilities) is far above 0.5,
    and it is the AUC of the saved weights."""
    settings = _settings(model=None, learning_rate=1e-4, max_length=48, freeze_layers=2)
    result = train_cross_encoder(settings, *pair_data)
    (epoch,) = result.history
    assert epoch.val_auc > 0.7, epoch
    rebuilt = CrossScorer.from_weights(settings, result.weights, result.base)
    again = validation_metrics(rebuilt.group_logits(pair_data[1]))
    assert again == {"auc": epoch.val_auc, "ndcg@10": epoch.val_ndcg10}


def test_early_stopping_stops_an_overfitting_run_and_restores_the_best(
    pair_data: tuple[PairSet, GroupSet],
) -> None:
    pairs, groups = pair_data
    rng = np.random.default_rng(3)  # validation positives shuffled: the metric is noise
    shuffled = [list(g) for g in groups.items]
    firsts = rng.permutation([g[0] for g in shuffled])
    for g, f in zip(shuffled, firsts, strict=True):
        g[0] = f
    noise = GroupSet(anchors=groups.anchors, items=shuffled)
    prints: dict[int, str] = {}
    settings = _settings(
        epochs=8, learning_rate=5e-3, patience=1, restore_best=True, freeze_layers=None
    )
    result = train_cross_encoder(
        settings,
        pairs,
        noise,
        callbacks=[lambda m, r: prints.__setitem__(r.epoch, _fingerprint(m))],
    )
    last = result.history[-1].epoch
    assert result.stopped_early and last < 8
    values = [h.val_auc for h in result.history]
    assert result.best_epoch == result.history[int(np.argmax(values))].epoch < last
    assert last - result.best_epoch == 1  # `patience` epochs after the last improvement
    assert _fingerprint(result.model) == prints[result.best_epoch] != prints[last]
    # the saved weights rebuild exactly that model
    rebuilt = CrossScorer.from_weights(settings, result.weights, result.base)
    assert _fingerprint(rebuilt.model) == prints[result.best_epoch]
    assert result.report("auc")["weights_epoch"] == result.best_epoch


def test_freeze_layers_trains_only_the_top_layer_and_the_head(
    pair_data: tuple[PairSet, GroupSet],
) -> None:
    settings = _settings(freeze_layers=1, learning_rate=1e-2)
    result = train_cross_encoder(settings, *pair_data)
    base = _base_state(settings)
    tuned = result.model.state_dict()
    head = ("bert.encoder.layer.1.", "bert.pooler.", "classifier.")
    assert set(result.weights) == {k for k in tuned if k.startswith(head)}
    for name, value in tuned.items():
        if name.startswith(head):
            assert not torch.equal(value, base[name]), f"{name} did not train"
        else:
            assert torch.equal(value, base[name]), f"{name} changed but is frozen"
    assert result.trainable_parameters == sum(
        v.numel() for k, v in base.items() if k.startswith(head)
    )


def test_lora_trains_adapters_and_head_and_the_merged_weights_rebuild_the_model(
    pair_data: tuple[PairSet, GroupSet],
) -> None:
    settings = _settings(
        freeze_layers=None,
        lora={"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]},
        learning_rate=1e-2,
    )
    seen: dict[str, int] = {}

    def inspect(model: Any, record: Any) -> None:
        seen.update({n: p.numel() for n, p in model.named_parameters() if p.requires_grad})

    result = train_cross_encoder(settings, *pair_data, callbacks=[inspect])
    assert all("lora_" in n or "classifier" in n for n in seen)
    hidden, layers, r = 32, 2, 2
    lora = sum(v for n, v in seen.items() if "lora_" in n)
    assert lora == layers * 2 * r * (hidden + hidden)
    changed = {k.rsplit(".", 1)[0] for k in result.weights if not k.startswith("classifier")}
    assert changed and all(k.endswith(("query", "value")) for k in changed)
    rebuilt = CrossScorer.from_weights(settings, result.weights, result.base)
    direct = CrossScorer(result.model, rebuilt.tokens.tokenizer, 32, "cpu", 16)
    groups = pair_data[1]
    np.testing.assert_array_equal(rebuilt.group_logits(groups), direct.group_logits(groups))


def test_gradient_clipping_and_seeded_runs_are_reproducible(
    pair_data: tuple[PairSet, GroupSet],
) -> None:
    with syn.recorded_grad_norms() as norms:
        clipped = train_cross_encoder(_settings(max_grad_norm=0.01, dropout=0.2), *pair_data)
        clipped_norms, norms[:] = list(norms), []
        again = train_cross_encoder(_settings(max_grad_norm=0.01, dropout=0.2), *pair_data)
    assert clipped_norms and max(clipped_norms) <= 0.01 * (1 + 1e-4)
    assert clipped.history[0].grad_norm_max > 0.01  # the raw norm needed the clip
    assert [h.train_loss for h in again.history] == [h.train_loss for h in clipped.history]
    assert _fingerprint(again.model) == _fingerprint(clipped.model)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="lora and freeze_layers"):
        build_model("cross_encoder", lora={"r": 2})
    with pytest.raises(ConfigError, match="n_random \\+ n_hard"):
        build_model("cross_encoder", n_random=0, n_hard=0)
    with pytest.raises(ConfigError, match="hard_pool"):
        build_model("cross_encoder", n_hard=5, hard_pool=3)
    with pytest.raises(ConfigError, match="device"):
        build_model("cross_encoder", device="gpu")
    with pytest.raises(ConfigError, match="metric"):
        build_model("cross_encoder", metric="recall@10")
