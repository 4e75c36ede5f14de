"""A tiny random BERT (2 layers, width 32) with MiniLM's tokenizer, for fast cross-encoder tests.

Written once per test session into a temporary folder (removed at exit); its weights are seeded,
so its content (and fingerprint) is the same every session.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def tiny_bert_dir() -> str:
    """The folder of the tiny model (created on first use)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from abrec.embed import default_model_path

    path = Path(tempfile.mkdtemp(prefix="abrec-tiny-bert-"))
    atexit.register(shutil.rmtree, path, True)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
