"""Language-model representations: text encoders and their embedding cache.

torch / sentence-transformers are imported only when a model is first used.
"""

from abrec.embed.cache import EmbeddingCache, default_embedding_cache_dir, text_keys
from abrec.embed.encoder import DEFAULT_MODEL_NAME, TextEncoder, default_model_path, encode_items

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddingCache",
    "TextEncoder",
    "default_embedding_cache_dir",
    "default_model_path",
    "encode_items",
    "text_keys",
]
