"""The encoder being tuned: loading, device, dropout, layer freezing, LoRA, optimiser groups, saving.

The helpers take a SentenceTransformer (the bi-encoder) or a plain Hugging Face model (the
cross-encoder of `abrec.train.cross`); `transformer` finds the Hugging Face model in either.
torch, sentence-transformers and peft are imported inside the functions (the `lm` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abrec.errors import ConfigError
from abrec.train.config import LoraSettings, TrainConfig

#: Config attributes that hold dropout probabilities (BERT and friends, DistilBERT, T5-style).
_DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "dropout_rate",
)

#: Names of the ModuleList that holds the transformer blocks (BERT, Llama-like, GPT-2, T5).
_STACKS = ("layer", "layers", "h", "block")


def resolve_device(spec: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is present, else 'cpu'; other values are checked."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but no CUDA device is present; use 'auto'")
    return spec


def base_model_source(model: str | None) -> tuple[str, Path | None]:
    """(what to load, local folder or None) for the configured base model."""
    if model is None:
        from abrec.embed import default_model_path

        path = default_model_path()
        return str(path), path
    p = Path(model).expanduser()
    return (str(p.resolve()), p.resolve()) if p.exists() else (model, None)


def base_fingerprint(model: str | None) -> str:
    """Content hash of the base model's files (its name when it is not a local folder)."""
    from abrec.embed.encoder import model_dir_hash

    _, path = base_model_source(model)
    return model_dir_hash(path) if path is not None else f"name:{model}"


def is_sentence_transformer(model: Any) -> bool:
    """Whether `model` is a SentenceTransformer (a torch Sequential of modules), not a bare model."""
    import torch

    return isinstance(model, torch.nn.Sequential)


def transformer(model: Any) -> Any:
    """The Hugging Face model: a SentenceTransformer's first module's, or `model` itself."""
    return model[0].auto_model if is_sentence_transformer(model) else model


def transformer_layers(model: Any) -> Any:
    """The stack of transformer blocks (the longest ModuleList named like layers/layer/h/block)."""
    import torch

    best = None
    for name, module in transformer(model).named_modules():
        stack = isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in _STACKS
        if stack and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise ConfigError("freeze_layers: cannot find the transformer layers of this model")
    return best


def set_dropout(model: Any, p: float) -> None:
    """Set every dropout probability of the encoder (modules and config) to `p`."""
    import torch

    hf = transformer(model)
    for module in hf.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    for key in _DROPOUT_KEYS:
        if isinstance(getattr(hf.config, key, None), float):
            setattr(hf.config, key, p)


def freeze_below_top(model: Any, n_top: int) -> None:
    """Train only the top `n_top` transformer layers; embeddings and every other weight frozen."""
    layers = transformer_layers(model)
    if n_top > len(layers):
        raise ConfigError(
            f"freeze_layers = {n_top}, but the model has only {len(layers)} transformer layers"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for layer in list(layers)[len(layers) - n_top :]:
        for param in layer.parameters():
            param.requires_grad_(True)


def add_lora(model: Any, settings: LoraSettings, task_type: str | None = None) -> Any:
    """Wrap the Hugging Face model with peft LoRA adapters (only they train).

    A SentenceTransformer is changed in place (and returned); for a bare Hugging Face model the
    peft wrapper is returned. `task_type` is peft's (e.g. "SEQ_CLS": the classification head
    then trains too, fully).
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("lora needs the package peft: pip install 'peft>=0.13'") from exc
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type=task_type,
    )
    try:
        wrapped = get_peft_model(transformer(model), config)
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules: {exc}") from None
    if not is_sentence_transformer(model):
        return wrapped
    model[0].model = wrapped
    return model


def load_encoder(cfg: TrainConfig, device: str) -> Any:
    """The base SentenceTransformer with the configured dropout, freezing or LoRA applied.

    Seeds torch first, so LoRA's random initialisation is reproducible.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    source, _ = base_model_source(cfg.model)
    torch.manual_seed(cfg.seed)
    try:
        model = SentenceTransformer(source, device=device)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"could not load the base model {source!r} ({exc}); pass a local "
            "sentence-transformers folder or leave `model` unset for the bundled MiniLM"
        ) from exc
    model.max_seq_length = cfg.max_seq_length
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    if cfg.freeze_layers is not None:
        freeze_below_top(model, cfg.freeze_layers)
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    return model


def parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over trainable parameters: decay on weights, none on biases and LayerNorm."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        (no_decay if plain else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("nothing to train: every parameter is frozen")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def trainable_state(model: Any) -> dict[str, Any]:
    """Copies (on the CPU) of the trainable parameters, by name."""
    return {
        name: param.detach().to("cpu", copy=True)
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    """Put saved trainable parameters back (every name must exist in the model)."""
    import torch

    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise ConfigError(f"checkpoint does not match the model (unknown {missing[:3]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_encoder(model: Any, path: Path) -> Path:
    """Save as a sentence-transformers folder (LoRA adapters merged into the weights first)."""
    hf = transformer(model)
    if hasattr(hf, "merge_and_unload"):
        model[0].model = hf.merge_and_unload()
    path.mkdir(parents=True, exist_ok=True)
    model.save(str(path), create_model_card=False)
    return path


__all__ = [
    "add_lora",
    "base_fingerprint",
    "base_model_source",
    "count_parameters",
    "freeze_below_top",
    "is_sentence_transformer",
    "load_encoder",
    "load_trainable_state",
    "parameter_groups",
    "resolve_device",
    "save_encoder",
    "set_dropout",
    "trainable_state",
    "transformer",
    "transformer_layers",
]
