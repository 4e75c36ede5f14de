"""Offline evaluation: vectorised metrics, paired significance, the evaluation protocol."""

from abrec.evaluation.metrics import (
    RANKING_METRICS,
    auc_scores,
    catalog_coverage,
    hit_matrix,
    intra_list_diversity,
    novelty_at_k,
    ranking_metrics,
)
from abrec.evaluation.protocol import EvaluationResult, evaluate_models
from abrec.evaluation.significance import (
    BootstrapCI,
    PairedTest,
    bootstrap_ci,
    holm,
    paired_ttest,
    permutation_test,
    wilcoxon_signed_rank,
)

__all__ = [
    "RANKING_METRICS",
    "BootstrapCI",
    "EvaluationResult",
    "PairedTest",
    "auc_scores",
    "bootstrap_ci",
    "catalog_coverage",
    "evaluate_models",
    "hit_matrix",
    "holm",
    "intra_list_diversity",
    "novelty_at_k",
    "paired_ttest",
    "permutation_test",
    "ranking_metrics",
    "wilcoxon_signed_rank",
]
