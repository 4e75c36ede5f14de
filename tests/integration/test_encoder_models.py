"""TextEncoder on real models: bundled MiniLM, a plain Hugging Face dir, the on-disk cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from abrec.embed import TextEncoder, default_model_path
from abrec.errors import ConfigError, DataError

TEXTS = [
    "Toy Story. Year: 1995. Genres: Adventure, Animation, Children. Tags: pixar, fun.",
    "Finding Nemo. Year: 2003. Genres: Adventure, Animation, Children. Tags: pixar, fish.",
    "Saw. Year: 2004. Genres: Horror, Mystery, Thriller. Tags: gore, torture.",
]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("emb"), show_progress=False)


@pytest.fixture(scope="module")
def plain_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model's transformer + tokenizer saved as a plain HF dir (no ST config)."""
    from transformers import AutoModel, AutoTokenizer

    out = tmp_path_factory.mktemp("plain_hf")
    src = default_model_path()
    AutoModel.from_pretrained(str(src)).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(out)
    assert not (out / "modules.json").exists()
    return out


def counting(enc: TextEncoder) -> list[int]:
    """Count texts passed to the model (wraps the one method that runs it)."""
    calls: list[int] = []
    inner: Callable[[list[str]], np.ndarray] = enc._encode_uncached

    def wrapped(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return inner(texts)

    enc._encode_uncached = wrapped  # type: ignore[method-assign]
    return calls


def test_default_model_outputs_normalised_float32(minilm: TextEncoder) -> None:
    x = minilm.encode(TEXTS)
    assert x.dtype == np.float32 and x.shape == (3, 384) and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    sims = x @ x.T
    assert sims[0, 1] > sims[0, 2] + 0.1  # two Pixar films are closer than Pixar vs horror
    assert minilm.identity.startswith("all-MiniLM-L6-v2[st,l2]@")
    assert minilm.encode([]).shape == (0, 384)


def test_second_run_encodes_nothing(tmp_path: Path) -> None:
    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    calls = counting(enc)
    first = enc.encode([*TEXTS, TEXTS[0]])  # a duplicate is encoded once
    assert calls == [3]
    np.testing.assert_array_equal(first[0], first[3])
    second = enc.encode(TEXTS)
    assert calls == [3]
    np.testing.assert_array_equal(first[:3], second)
    # a fresh encoder (new process, same cache) neither runs nor loads the model
    fresh = TextEncoder(cache_dir=tmp_path, show_progress=False)
    fresh_calls = counting(fresh)
    np.testing.assert_array_equal(fresh.encode(TEXTS[::-1]), second[::-1])
    assert fresh_calls == [] and fresh._model is None
    # only new texts reach the model
    fresh.encode([TEXTS[1], "A brand new film."])
    assert fresh_calls == [1]


def test_without_cache_every_call_runs_the_model(tmp_path: Path) -> None:
    enc = TextEncoder(use_cache=False, show_progress=False)
    calls = counting(enc)
    enc.encode(TEXTS[:1])
    enc.encode(TEXTS[:1])
    assert calls == [1, 1]


def test_plain_hf_dir_uses_mean_pooling(
    plain_hf_dir: Path, minilm: TextEncoder, tmp_path: Path
) -> None:
    hf = TextEncoder(plain_hf_dir, cache_dir=tmp_path, show_progress=False, batch_size=2)
    assert hf.kind == "hf-mean" and hf.dim == 384
    got = hf.encode(TEXTS)
    # all-MiniLM-L6-v2 is mean pooling + L2 norm, so the two paths must agree
    np.testing.assert_allclose(got, minilm.encode(TEXTS), atol=2e-5)
    assert hf.identity != minilm.identity


def test_identity_is_a_content_hash(plain_hf_dir: Path, tmp_path: Path) -> None:
    a = tmp_path / "a"
    shutil.copytree(plain_hf_dir, a)
    b = tmp_path / "b"
    shutil.copytree(plain_hf_dir, b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-6
    (b / "config.json").write_text(json.dumps(cfg))
    ident = lambda p: TextEncoder(p).identity.split("@")[1]  # noqa: E731
    assert ident(a) == ident(plain_hf_dir)
    assert ident(b) != ident(a)
    assert TextEncoder(a, normalize=False).identity != TextEncoder(a).identity


def test_progress_bar_only_when_asked(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    quiet = TextEncoder(cache_dir=tmp_path / "q", show_progress=False)
    quiet.encode(TEXTS)
    assert capfd.readouterr().err == ""
    loud = TextEncoder(cache_dir=tmp_path / "l", show_progress=True)
    loud.encode(TEXTS)
    err = capfd.readouterr().err
    assert "Batches" in err or "it/s" in err


def test_errors(tmp_path: Path, minilm: TextEncoder) -> None:
    with pytest.raises(ConfigError, match="not a model directory"):
        TextEncoder(tmp_path)
    with pytest.raises(ConfigError, match="Could not load"):
        TextEncoder("no-such-org/no-such-model", use_cache=False).encode(["x"])
    with pytest.raises(DataError, match="not a single string"):
        minilm.encode("just one")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="needs strings"):
        minilm.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="batch_size"):
        TextEncoder(batch_size=0)
