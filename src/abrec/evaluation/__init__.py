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
from abrec.evaluation.protocol import EvaluationResult, MeanCIs, evaluate_models, mean_cis
from abrec.evaluation.significance import (
    PairedTest,
    holm,
    paired_ttest,
    permutation_test,
    wilcoxon_signed_rank,
)

__all__ = [
    "RANKING_METRICS",
    "EvaluationResult",
    "MeanCIs",
    "PairedTest",
    "auc_scores",
    "catalog_coverage",
    "evaluate_models",
    "hit_matrix",
    "holm",
    "intra_list_diversity",
    "mean_cis",
    "novelty_at_k",
    "paired_ttest",
    "permutation_test",
    "ranking_metrics",
    "wilcoxon_signed_rank",
]
