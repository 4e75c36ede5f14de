"""Semantic EASE in the spirit of L3AE (CIKM 2025): EASE regularised towards a text prior.

Two closed-form steps, over every catalogue item (items never seen in training included):

1. Semantic item-item weights S from the language-model item vectors E (n x d, unit rows):
   EASE on the Gram matrix E E^T,

       S = argmin ||E^T - E^T S||^2 + lambda_s ||S||^2   s.t. diag(S) = 0,
       S = I - P_s diagMat(1 / diag(P_s)),  P_s = (E E^T + lambda_s I)^-1.

   With Woodbury, P_s = (I - E K^-1 E^T) / lambda_s, K = E^T E + lambda_s I (d x d), so
   S = diagMat(a) + U W^T with U = E K^-1, W = E / (lambda_s diag(P_s)) and
   a = 1 - 1 / (lambda_s diag(P_s)): a diagonal plus rank d. S is never formed densely.

2. Collaborative weights pulled towards S:

       B = argmin ||X - X B||^2 + lambda ||B||^2 + beta ||B - S||^2   s.t. diag(B) = 0.

   Column j's Lagrangian gives (G + (lambda + beta) I) B_j = G_j + beta S_j - mu_j e_j with
   G = X^T X, hence B = B^ - P diagMat(diag(B^) / diag(P)), P = (G + (lambda + beta) I)^-1,
   B^ = P (G + beta S). Since P G = I - (lambda + beta) P and S = diagMat(a) + U W^T this is

       B = I - P diagMat((1 + beta q) / diag(P)) + beta (P U) W^T,   q_j = (P U)_j . w_j,

   (S's diagonal part diagMat(a) only rescales columns of P, which the multiplier absorbs),
   costing O(n^2 (d + users)) with P from Woodbury when users < items. beta = 0 is EASE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveFloat

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.config import RecommenderConfig
from abrec.models.ease import EASE, EASEConfig, centred_embeddings, regularised_inverse
from abrec.models.lm import Encoder, encode_catalog
from abrec.models.tuning import TunedEncoderConfig, finetune_config, tuned_text_encoder

_BLOCK = 1024  # columns of B assembled at a time (bounds the float64 temporaries)


def semantic_factors(E: np.ndarray, lambda_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S = diagMat(a) + U W^T, the EASE weights of the Gram matrix E E^T (see module doc).

    Args:
        E: (n, d) item vectors.
        lambda_s: L2 regularisation of S (> 0).
    Returns:
        (a, U, W) in float64: a (n,), U and W (n, d).
    """
    E = np.asarray(E, dtype=np.float64)
    K = E.T @ E
    K[np.diag_indices_from(K)] += lambda_s
    U = np.linalg.solve(K, E.T).T  # E K^-1 (K symmetric)
    scaled_p = 1.0 - np.einsum("ij,ij->i", U, E)  # lambda_s * diag(P_s)
    return 1.0 - 1.0 / scaled_p, U, E / scaled_p[:, None]


def semantic_weights(E: np.ndarray, lambda_s: float) -> np.ndarray:
    """Dense float64 S (n x n) from `semantic_factors`; diag(S) = 0. For small catalogues."""
    a, U, W = semantic_factors(E, lambda_s)
    S = U @ W.T
    S[np.diag_indices_from(S)] += a
    S[np.diag_indices_from(S)] = 0.0
    return S


def l3ae_weights(
    X: np.ndarray | sp.spmatrix, E: np.ndarray, lambda_: float, beta: float, lambda_s: float
) -> np.ndarray:
    """float32 B of step 2 (module doc) for interactions X (users x n) and item vectors E (n x d).

    Peak memory: P (float64, n x n), B (float32, n x n) and one float64 block of n x 1024.
    """
    _, U, W = semantic_factors(E, lambda_s)  # S's diagonal part cancels (module doc)
    P = regularised_inverse(X, lambda_ + beta)
    n = P.shape[0]
    PU = P @ U
    t = (1.0 + beta * np.einsum("ij,ij->i", PU, W)) / np.diag(P)
    B = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, _BLOCK):
        cols = slice(start, min(start + _BLOCK, n))
        block = P[:, cols] * -t[cols]
        if beta:
            block += beta * (PU @ W[cols].T)
        width = block.shape[1]
        block[np.arange(start, start + width), np.arange(width)] = 0.0
        B[:, cols] = block
    return B


class L3AEConfig(EASEConfig, TunedEncoderConfig):
    """L3AE hyper-parameters.

    Attributes:
        lambda_: L2 regularisation of B, as in EASE.
        beta: pull of B towards the semantic weights S (0 gives EASE over all items).
        lambda_s: L2 regularisation of the semantic step (EASE on E E^T).
        storage_dtype, prune_top_k: compact storage of B (`abrec.models.compact`), as in EASE.
        centre: centre the item vectors over the catalogue (and re-normalise) before step 1.
        model: encoder model for the default `abrec.embed.TextEncoder` (None: bundled MiniLM);
            the base model when `finetune` is set.
        finetune, seed, cache_dir, validation, validation_fraction: tuned vectors
            (`abrec.models.tuning.TunedEncoderConfig`): the encoder is fine-tuned on the
            training data first, and S is built from the tuned vectors.

    Defaults (lambda_ 500 as EASE, beta 100, lambda_s 0.1, centred) come from a small look
    at a validation split of MovieLens-small's training period (beta 100-500 and lambda_s
    0.1-1 were within 0.0005 NDCG@10 of each other; beta 2000 was worse).
    """

    beta: NonNegativeFloat = 100.0
    lambda_s: PositiveFloat = 0.1
    centre: bool = True
    model: str | None = None


class L3AE(EASE):
    """EASE whose item-item weights are regularised towards language-model weights S.

    See the module docstring for the two closed-form steps. Every catalogue item gets a
    column of B, so items never seen in training are scored through S (beta > 0). Scoring
    is EASE's: history rows times B.

    Args:
        config: an `L3AEConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`; not persisted.
    """

    name: ClassVar[str] = "l3ae"
    config_class: ClassVar[type[RecommenderConfig]] = L3AEConfig
    config: L3AEConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: L3AEConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self.training_report: dict[str, Any] | None = None
        finetune_config(self.config, self.name)  # a bad `finetune` key fails here

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        cfg = self.config
        tuned, self.training_report = tuned_text_encoder(cfg, train, items, self.name)
        emb = encode_catalog(items, tuned if tuned is not None else self.encoder, cfg.model)
        E = centred_embeddings(emb) if cfg.centre else emb.astype(np.float64)
        self._items = np.arange(train.n_items)
        self._B = l3ae_weights(self._require_train(), E, cfg.lambda_, cfg.beta, cfg.lambda_s)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "training_report": json.dumps(self.training_report)}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.training_report = json.loads(state.get("training_report", "null"))
