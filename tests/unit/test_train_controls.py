"""Each overfitting control ACTS (not just exists), and training is reproducible and resumable.

Tiny synthetic catalogue (40 items, 16 users), the bundled MiniLM, batch size 8, one thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import train_synthetic as syn
from sentence_transformers import SentenceTransformer

from abrec.embed import TextEncoder, default_model_path
from abrec.errors import ConfigError
from abrec.train import Trainer, TrainingData, build_training_data
from abrec.train.data import ValidationSet
from abrec.train.modeling import load_encoder

FAST: dict[str, Any] = {
    "epochs": 1,
    "max_examples_per_user": 2,
    "validate_untuned": False,
    "save_checkpoints": False,
    "cpu_threads": 1,
}


def _hf_state(model: Any) -> dict[str, torch.Tensor]:
    """The Hugging Face model's weights by name (PEFT wrappers unwrapped to the base names)."""
    hf = model[0].auto_model
    state = hf.state_dict()
    if hasattr(hf, "get_base_model"):
        state = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in state.items()
            if "lora_" not in k
        }
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _fingerprint(model: Any) -> str:
    """sha256 over every weight's name and bytes (independent of the trainer's own helpers)."""
    h = hashlib.sha256()
    for name, value in sorted(_hf_state(model).items()):
        h.update(name.encode())
        h.update(value.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def base_state() -> dict[str, torch.Tensor]:
    return _hf_state(SentenceTransformer(str(default_model_path()), device="cpu"))


@pytest.fixture(scope="module")
def data_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TrainingData]:
    split, items = syn.split(), syn.catalog()
    cache: dict[tuple[Any, ...], TrainingData] = {}

    def build(**overrides: Any) -> TrainingData:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            cfg = syn.config(tmp_path_factory.mktemp("data"), **{**FAST, **overrides})
            cache[key] = build_training_data(split.train, items, cfg, "temporal")
        return cache[key]

    return build


def _train(
    tmp: Path, data: TrainingData, callbacks: tuple[Any, ...] = (), **overrides: Any
) -> tuple[Trainer, Any]:
    cfg = syn.config(tmp, **{**FAST, **overrides})
    trainer = Trainer(cfg, data, quiet=True, callbacks=callbacks)
    return trainer, trainer.fit()


def test_weight_decay_shrinks_the_decayed_weights(
    tmp_path: Path, data_for: Callable[..., TrainingData]
) -> None:
    data = data_for()
    plain, _ = _train(tmp_path / "a", data, weight_decay=0.0, learning_rate=1e-4)
    decayed, _ = _train(tmp_path / "b", data, weight_decay=50.0, learning_rate=1e-4)
    a, b = _hf_state(plain.model), _hf_state(decayed.model)
    # the pooler is not used by mean pooling: it gets no gradient, so AdamW never touches it
    matrices = [
        k
        for k, v in a.items()
        if v.ndim >= 2 and "LayerNorm" not in k and not k.startswith("pooler")
    ]
    assert matrices
    # same seed, same batches: only the decay differs, and every decayed matrix is smaller
    for k in matrices:
        assert torch.linalg.norm(b[k]) < torch.linalg.norm(a[k]), k
    # biases and LayerNorm weights are not decayed: far smaller relative change
    rel = lambda k: float(torch.linalg.norm(b[k] - a[k]) / torch.linalg.norm(a[k]))  # noqa: E731
    bias = [k for k in a if k.endswith(".bias")]
    assert max(rel(k) for k in bias) < min(rel(k) for k in matrices if "embeddings" not in k)


def test_freeze_layers_trains_only_the_top_layers(
    tmp_path: Path, data_for: Callable[..., TrainingData], base_state: dict[str, torch.Tensor]
) -> None:
    trainer, result = _train(tmp_path, data_for(), freeze_layers=2, learning_rate=1e-3)
    tuned = _hf_state(trainer.model)
    top = ("encoder.layer.4.", "encoder.layer.5.")
    assert any(k.startswith(top) for k in tuned)
    for name, value in tuned.items():
        if name.startswith(top):
            assert not torch.equal(value, base_state[name]), f"{name} did not train"
        else:
            assert torch.equal(value, base_state[name]), f"{name} changed but is frozen"
    n_top = sum(v.numel() for k, v in base_state.items() if k.startswith(top))
    assert result.trainable_parameters == n_top

    # the embedding cache keys on the model's content: a tuned model written over a folder that
    # held the base model is never served the base model's cached vectors
    same, cache = tmp_path / "same", tmp_path / "cache"
    shutil.copytree(default_model_path(), same)
    texts = ["Cartoon Story 3. Genres: Animation.", "Space Story 9; Horror Story 1"]
    before = TextEncoder(same, cache_dir=cache, show_progress=False).encode(texts)
    shutil.rmtree(same)
    shutil.copytree(result.model_dir, same)
    after = TextEncoder(same, cache_dir=cache, show_progress=False).encode(texts)
    fresh = TextEncoder(result.model_dir, use_cache=False, show_progress=False).encode(texts)
    np.testing.assert_array_equal(after, fresh)
    assert not np.allclose(before, after, atol=1e-4)


def test_freeze_more_layers_than_the_model_has_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only 6 transformer layers"):
        load_encoder(syn.config(tmp_path, freeze_layers=7), "cpu")


def test_lora_trains_only_the_adapters_and_the_saved_model_loads(
    tmp_path: Path, data_for: Callable[..., TrainingData], base_state: dict[str, torch.Tensor]
) -> None:
    seen: dict[str, Any] = {}

    def inspect(trainer: Trainer, record: Any) -> None:
        model = trainer.model
        seen["trainable"] = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
        seen["base"] = _hf_state(model)  # before the adapters are merged at save time

    r = 4
    trainer, result = _train(
        tmp_path,
        data_for(),
        callbacks=(inspect,),
        lora={"r": r, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]},
        learning_rate=1e-3,
    )
    # only adapter weights train; their count is r * (d_in + d_out) per adapted Linear
    assert seen["trainable"] and all("lora_" in n for n in seen["trainable"])
    hidden, n_layers = 384, 6
    assert sum(seen["trainable"].values()) == n_layers * 2 * r * (hidden + hidden)
    assert result.trainable_parameters == n_layers * 2 * r * 2 * hidden
    for name, value in seen["base"].items():
        assert torch.equal(value, base_state[name]), f"base weight {name} changed under LoRA"
    # the saved folder is a plain sentence-transformers model with the adapters merged
    texts = ["Space Story 1; Space Story 2", "Romance Story 3. Genres: Romance."]
    tuned = TextEncoder(result.model_dir, use_cache=False, show_progress=False)
    base = TextEncoder(use_cache=False, show_progress=False)
    assert tuned.kind == "st"
    assert tuned.identity != base.identity  # the embedding cache keys on the content
    got, ref = tuned.encode(texts), base.encode(texts)
    assert got.shape == ref.shape
    assert not np.allclose(got, ref, atol=1e-4)  # the merged adapters changed the vectors
    merged = trainer.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(got, merged, atol=1e-5)


def test_gradient_clipping_bounds_the_total_norm(
    tmp_path: Path, data_for: Callable[..., TrainingData]
) -> None:
    with syn.recorded_grad_norms() as norms:
        _, clipped = _train(tmp_path / "a", data_for(), max_grad_norm=0.05)
        clipped_norms, norms[:] = list(norms), []
        _train(tmp_path / "b", data_for(), max_grad_norm=None)
        free_norms = list(norms)
    assert clipped_norms and free_norms
    assert max(clipped_norms) <= 0.05 * (1 + 1e-4)
    assert clipped.history[-1].grad_norm_max is not None
    assert clipped.history[-1].grad_norm_max > 0.05  # the raw norm needed the clip
    assert min(free_norms) > 0.05  # unclipped, the same steps are far above the bound


def test_dropout_sets_and_acts(tmp_path: Path) -> None:
    model = load_encoder(syn.config(tmp_path, dropout=0.3), "cpu")
    hf = model[0].auto_model
    probs = [m.p for m in hf.modules() if isinstance(m, torch.nn.Dropout)]
    assert probs and all(p == 0.3 for p in probs)
    assert hf.config.hidden_dropout_prob == 0.3
    assert hf.config.attention_probs_dropout_prob == 0.3

    def two_passes(m: Any) -> tuple[torch.Tensor, torch.Tensor]:
        m.train()
        f = m.preprocess(["Horror Story 2. Genres: Horror. Tags: ghosts."])
        torch.manual_seed(0)
        first = m(dict(f))["sentence_embedding"]
        second = m(dict(f))["sentence_embedding"]
        return first.detach(), second.detach()

    a, b = two_passes(model)
    assert not torch.allclose(a, b)  # dropout is active in training mode
    a, b = two_passes(load_encoder(syn.config(tmp_path, dropout=0.0), "cpu"))
    assert torch.equal(a, b)  # and off at 0


def _shuffled_validation(data: TrainingData, seed: int) -> TrainingData:
    """Validation positives replaced by random other items: the metric is noise for training."""
    rng = np.random.default_rng(seed)
    cand = data.validation.candidates.copy()
    cand[:, 0] = rng.permutation(cand[:, 0])
    dup = (cand[:, 1:] == cand[:, :1]).any(axis=1)
    cand[dup, 0] = cand[dup, 1]
    cand[dup, 1] = data.validation.candidates[dup, 0]
    val = ValidationSet(
        users=data.validation.users, anchors=data.validation.anchors, candidates=cand
    )
    return dataclasses.replace(data, validation=val)


def test_early_stopping_stops_an_overfitting_run_and_restores_the_best(
    tmp_path: Path, data_for: Callable[..., TrainingData], base_state: dict[str, torch.Tensor]
) -> None:
    data = _shuffled_validation(data_for(), seed=3)
    prints: dict[int, str] = {}
    h = hashlib.sha256()
    for name, value in sorted(base_state.items()):
        h.update(name.encode())
        h.update(value.contiguous().numpy().tobytes())
    prints[0] = h.hexdigest()

    def record(trainer: Trainer, rec: Any) -> None:
        prints[rec.epoch] = _fingerprint(trainer.model)

    epochs = 8
    trainer, result = _train(
        tmp_path,
        data,
        callbacks=(record,),
        epochs=epochs,
        learning_rate=5e-4,  # deliberately high on ~30 pairs
        patience=1,
        restore_best=True,
        validate_untuned=True,
        save_checkpoints=True,
    )
    last = result.history[-1].epoch
    assert result.stopped_early and last < epochs
    values = [h.metrics["ndcg@10"] for h in result.history]
    best = int(np.argmax(values))
    assert result.best_epoch == result.history[best].epoch
    assert result.best_epoch < last
    # stopped exactly `patience` epochs after the last improvement
    assert last - result.best_epoch == 1
    # the final and the saved weights are the best epoch's, not the last epoch's
    assert _fingerprint(trainer.model) == prints[result.best_epoch]
    assert prints[last] != prints[result.best_epoch]
    saved = SentenceTransformer(str(result.model_dir), device="cpu")
    assert _fingerprint(saved) == prints[result.best_epoch]
    assert (result.output_dir / "learning_curve.png").stat().st_size > 1000
    assert (result.output_dir / "learning_curve.json").is_file()


@pytest.mark.slow
def test_seeded_runs_are_reproducible_and_resume_matches(
    tmp_path: Path, data_for: Callable[..., TrainingData]
) -> None:
    """Two identical runs give identical histories and weights; a crash after epoch 1 followed
    by resume=True ends where the uninterrupted 2-epoch run ends."""
    data = data_for()
    settings: dict[str, Any] = {
        "epochs": 2,
        "save_checkpoints": True,
        "dropout": 0.1,  # the RNG state matters
        "validate_untuned": True,
        "patience": None,
        "restore_best": False,
    }
    full, full_result = _train(tmp_path / "full", data, **settings)
    again, again_result = _train(tmp_path / "again", data, **settings)
    losses = [h.train_loss for h in full_result.history]
    assert losses == [h.train_loss for h in again_result.history]
    assert _fingerprint(full.model) == _fingerprint(again.model)

    class Crash(RuntimeError):
        pass

    def crash(trainer: Trainer, rec: Any) -> None:
        if rec.epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        _train(tmp_path / "resumed", data, callbacks=(crash,), **settings)
    cfg = syn.config(tmp_path / "resumed", **{**FAST, **settings})
    assert (tmp_path / "resumed" / "checkpoints" / "epoch-001.pt").is_file()
    resumed = Trainer(cfg, data, quiet=True)
    result = resumed.fit(resume=True)
    assert [dataclasses.asdict(h) | {"seconds": 0} for h in result.history] == [
        dataclasses.asdict(h) | {"seconds": 0} for h in full_result.history
    ]
    assert _fingerprint(resumed.model) == _fingerprint(full.model)
    # a changed setting refuses to resume
    other = syn.config(tmp_path / "resumed", **{**FAST, **settings, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="learning_rate"):
        Trainer(other, data, quiet=True).fit(resume=True)


def test_train_steps_in_slices_reach_the_weights_of_fit(
    tmp_path: Path, data_for: Callable[..., TrainingData]
) -> None:
    """Epoch 1 run as two slices of `train_steps` ends where `fit` (one epoch) ends, bit for bit;
    bad slices are refused."""
    data = data_for(max_examples_per_user=4)
    settings: dict[str, Any] = {"dropout": 0.1, "max_examples_per_user": 4}  # RNG matters
    full, result = _train(tmp_path / "fit", data, **settings)
    cfg = syn.config(tmp_path / "steps", **{**FAST, **settings})
    sliced = Trainer(cfg, data, quiet=True)
    n = len(sliced.epoch_plan(1))
    assert n == result.history[-1].steps >= 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as fit does with cpu_threads = 1
    try:
        loss_a, steps_a, grad_a = sliced.train_steps(1, 0, 2)
        loss_b, steps_b, grad_b = sliced.train_steps(1, 2)
    finally:
        torch.set_num_threads(threads)
    assert (steps_a, steps_b) == (2, n - 2)
    assert sliced.scheduler.last_epoch == n
    assert _fingerprint(sliced.model) == _fingerprint(full.model)
    record = result.history[-1]
    assert (loss_a * 2 + loss_b * (n - 2)) / n == pytest.approx(record.train_loss, rel=1e-12)
    assert max(grad_a, grad_b) == record.grad_norm_max
    for start, stop in ((3, 2), (-1, 2), (0, n + 1)):
        with pytest.raises(ValueError, match="outside epoch 1"):
            sliced.train_steps(1, start, stop)
