"""The text encoder on ONNX Runtime: export (needs torch) and a torch-free encoder for serving.

`export_onnx(model, out_dir)` writes an encoder folder:

- `model.onnx`: the transformer with mean pooling over non-padding tokens and L2
  normalisation inside the graph (what sentence-transformers' Transformer -> Pooling(mean) ->
  Normalize pipeline, and `abrec.embed.TextEncoder`, compute); inputs `input_ids`,
  `attention_mask` (and `token_type_ids` when the model takes them), output `embedding`;
- `tokenizer.json`: the model's fast tokenizer;
- `encoder.json`: max sequence length, input names, dimension, source model identity and
  precision ("fp32" or "int8").

`OnnxTextEncoder(folder)` runs it with `onnxruntime` and `tokenizers` only: importing this
module or using the encoder never imports torch (only `export_onnx` does, lazily).

`quantize_int8(folder, ...)` makes a dynamically quantised int8 copy
(`onnxruntime.quantization.quantize_dynamic`) behind a quality gate (`Int8Gate`): it is kept
only when the mean cosine of its embeddings to the fp32 ones is >= 0.99 AND the NDCG@10 of
the language-model recommender changes by less than 0.001; otherwise it is deleted and the
gate's `reason` says why.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abrec.errors import ConfigError, DataError

ENCODER_FILE = "encoder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INT8_MODEL_FILE = "model.int8.onnx"
MIN_COSINE = 0.99
MAX_NDCG_CHANGE = 0.001


def _source_settings(path: Path) -> tuple[int, bool]:
    """(max sequence length, is sentence-transformers) of a local model folder; checks pooling."""
    st_config = path / "sentence_bert_config.json"
    is_st = (path / "modules.json").is_file()
    if is_st:
        pooling = path / "1_Pooling" / "config.json"
        if pooling.is_file():
            cfg = json.loads(pooling.read_text())
            if not cfg.get("pooling_mode_mean_tokens", False):
                raise ConfigError(
                    f"{path}: only mean pooling is exported (its pooling config is {cfg})"
                )
    if st_config.is_file():
        return int(json.loads(st_config.read_text()).get("max_seq_length", 256)), is_st
    config = json.loads((path / "config.json").read_text())
    tok_cfg = path / "tokenizer_config.json"
    tok_max = 512
    if tok_cfg.is_file():
        tok_max = int(json.loads(tok_cfg.read_text()).get("model_max_length", 512) or 512)
    return min(tok_max, 512, int(config.get("max_position_embeddings", 512))), is_st


def export_onnx(model: str | Path | None, out_dir: str | Path, *, opset: int = 17) -> Path:
    """Export a local sentence-transformers / Hugging Face encoder folder to ONNX (needs torch).

    Args:
        model: model folder (None: the bundled all-MiniLM-L6-v2).
        out_dir: folder to write (created; existing files of the same names are replaced).
        opset: ONNX opset.
    Returns:
        `out_dir`.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from abrec.embed.encoder import DEFAULT_MODEL_NAME, default_model_path, model_dir_hash

    src = default_model_path() if model is None else Path(model).expanduser()
    if not (src / "config.json").is_file():
        raise ConfigError(f"{src} is not a local model folder (no config.json)")
    max_len, is_st = _source_settings(src)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{src}: a fast tokenizer (tokenizer.json) is needed for ONNX serving")
    hf = AutoModel.from_pretrained(str(src)).eval()
    sample = tokenizer(["an example text", "a second one"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class Pooled(torch.nn.Module):
        """Transformer -> mean pooling over the attention mask -> L2 normalisation."""

        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kw = dict(zip(names, inputs, strict=True))
            hidden = self.hf(**kw).last_hidden_state
            mask = kw["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    # tracing warns about Python conditions on shapes that are fixed for this graph (no
    # causal mask, no KV cache) and about negative indices, which pooling does not use
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
        torch.onnx.export(
            Pooled().eval(),
            tuple(sample[n] for n in names),
            str(out / MODEL_FILE),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
    meta = {
        "source": DEFAULT_MODEL_NAME if model is None else src.resolve().name,
        "source_hash": model_dir_hash(src),
        "sentence_transformers": is_st,
        "max_seq_length": max_len,
        "inputs": names,
        "dim": int(hf.config.hidden_size),
        "pooling": "mean",
        "normalize": True,
        "precision": "fp32",
    }
    (out / ENCODER_FILE).write_text(json.dumps(meta, indent=2))
    return out


class OnnxTextEncoder:
    """Unit-norm float32 text embeddings from an exported folder, on ONNX Runtime (no torch).

    Args:
        path: a folder written by `export_onnx`.
        precision: "fp32" (`model.onnx`) or "int8" (`model.int8.onnx`, written by
            `quantize_int8` only when it passed its gate); None: the folder's `precision`
            (int8 only after the gate passed).
        batch_size: texts per inference call (sorted by length to limit padding).
        threads: intra-op threads (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        precision: str | None = None,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(path)
        meta_file = self.path / ENCODER_FILE
        if not meta_file.is_file():
            raise ConfigError(f"{self.path} is not an ONNX encoder folder (no {ENCODER_FILE})")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        precision = precision or str(self.meta.get("precision", "fp32"))
        if precision not in ("fp32", "int8"):
            raise ConfigError(f"precision must be fp32 or int8, got {precision!r}")
        model_file = self.path / (MODEL_FILE if precision == "fp32" else INT8_MODEL_FILE)
        if not model_file.is_file():
            raise ConfigError(
                f"{model_file} does not exist"
                + (" (int8 is written only when it passes its quality gate)" if precision == "int8" else "")
            )  # fmt: skip
        self.precision = precision
        self.batch_size = batch_size
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_file), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=int(self.meta["max_seq_length"]))
        self.tokenizer.no_padding()
        self.inputs: list[str] = list(self.meta["inputs"])
        self.dim = int(self.meta["dim"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim) unit-norm embeddings, in the order of `texts`."""
        if isinstance(texts, str):
            raise DataError("encode() takes a sequence of texts, not a single string")
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise DataError("encode() needs strings")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch([t.strip() for t in texts])
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encs[i].ids) for i in idx)
            feeds = {n: np.zeros((len(idx), width), dtype=np.int64) for n in self.inputs}
            for row, i in enumerate(idx):
                e, n = encs[i], len(encs[i].ids)
                feeds["input_ids"][row, :n] = e.ids
                feeds["attention_mask"][row, :n] = e.attention_mask
                if "token_type_ids" in feeds:
                    feeds["token_type_ids"][row, :n] = e.type_ids
            out[idx] = self.session.run(["embedding"], feeds)[0]
        return out

    def __repr__(self) -> str:
        return f"OnnxTextEncoder({str(self.path)!r}, precision={self.precision!r})"


@dataclass(frozen=True)
class Int8Gate:
    """Measurements and decision of the int8 quality gate.

    Attributes:
        mean_cosine: mean over the texts of cos(int8 embedding, fp32 embedding).
        min_cosine: the smallest of those cosines.
        ndcg_fp32, ndcg_int8: NDCG@10 of the language-model recommender with each encoder
            (None when no evaluation was given).
        passed: mean_cosine >= 0.99 and |ndcg_int8 - ndcg_fp32| < 0.001.
        reason: why it passed or was refused.
    """

    mean_cosine: float
    min_cosine: float
    ndcg_fp32: float | None
    ndcg_int8: float | None
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_decision(
    mean_cosine: float, ndcg_fp32: float | None, ndcg_int8: float | None
) -> tuple[bool, str]:
    """(passed, reason) of the int8 gate for the measured values (module doc)."""
    problems = []
    if not mean_cosine >= MIN_COSINE:
        problems.append(f"mean cosine to fp32 is {mean_cosine:.5f} < {MIN_COSINE}")
    if ndcg_fp32 is None or ndcg_int8 is None:
        problems.append("the NDCG@10 check was not run")
    elif not abs(ndcg_int8 - ndcg_fp32) < MAX_NDCG_CHANGE:
        problems.append(
            f"NDCG@10 changes by {ndcg_int8 - ndcg_fp32:+.5f} ({ndcg_fp32:.5f} -> "
            f"{ndcg_int8:.5f}); the limit is {MAX_NDCG_CHANGE}"
        )
    if problems:
        return False, "int8 refused: " + "; ".join(problems)
    return True, (
        f"int8 accepted: mean cosine {mean_cosine:.5f} >= {MIN_COSINE}, NDCG@10 change "
        f"{(ndcg_int8 or 0.0) - (ndcg_fp32 or 0.0):+.5f}"
    )


def quantize_int8(
    path: str | Path,
    texts: Sequence[str],
    ndcg_of: Callable[[OnnxTextEncoder], float] | None,
) -> Int8Gate:
    """Write `model.int8.onnx` next to `model.onnx` if it passes the quality gate.

    Args:
        path: a folder written by `export_onnx`.
        texts: texts the cosine is measured on (e.g. the catalogue's item texts).
        ndcg_of: NDCG@10 of the language-model recommender fitted with a given encoder
            (see `abrec.embed.gate.movielens_lm_ndcg`); None fails the gate.
    Returns:
        The gate; on refusal the int8 file is removed and `encoder.json` is left unchanged.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(path)
    if not texts:
        raise DataError("the int8 gate needs texts to compare embeddings on")
    target = folder / INT8_MODEL_FILE
    tmp = folder / (INT8_MODEL_FILE + ".tmp")
    quantize_dynamic(str(folder / MODEL_FILE), str(tmp), weight_type=QuantType.QInt8)
    os.replace(tmp, target)
    fp32 = OnnxTextEncoder(folder, precision="fp32")
    int8 = OnnxTextEncoder(folder, precision="int8")
    a, b = fp32.encode(texts), int8.encode(texts)
    cos = np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
    n32 = n8 = None
    if ndcg_of is not None:
        n32, n8 = float(ndcg_of(fp32)), float(ndcg_of(int8))
    passed, reason = gate_decision(float(cos.mean()), n32, n8)
    gate = Int8Gate(float(cos.mean()), float(cos.min()), n32, n8, passed, reason)
    meta_file = folder / ENCODER_FILE
    meta = json.loads(meta_file.read_text())
    meta["int8_gate"] = gate.to_dict()
    if passed:
        meta["precision"] = "int8"
    else:
        target.unlink()
    meta_file.write_text(json.dumps(meta, indent=2))
    return gate
