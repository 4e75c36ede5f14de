"""A/B statistics on sufficient statistics or per-unit arrays (numpy/scipy only).

Every function returns a frozen dataclass; see docs/statistics.md for formulas and references.
"""

from abrec.stats.analysis import (
    Comparison,
    ExperimentAnalysis,
    MetricSpec,
    VariantSummary,
    aggregate,
    analyze_experiment,
)
from abrec.stats.bayesian import bayes_means, bayes_proportions, bayes_ratio
from abrec.stats.bootstrap import bootstrap
from abrec.stats.errors import StatsError, StatsInputError
from abrec.stats.frequentist import (
    compare_variants,
    cupac_test,
    cuped_test,
    mann_whitney,
    ratio_test,
    relative_interval,
    welch_ttest,
    ztest_proportions,
)
from abrec.stats.multiple import benjamini_hochberg, holm
from abrec.stats.power import (
    mde_means,
    mde_proportions,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)
from abrec.stats.results import (
    BayesResult,
    BootstrapResult,
    EffectResult,
    Interval,
    MannWhitneyResult,
    SampleSizeResult,
    SequentialResult,
    SRMResult,
)
from abrec.stats.sequential import (
    SequentialMonitor,
    always_valid_pvalue,
    confidence_sequence_radius,
    optimal_rho,
    sequential_ratio_test,
    sequential_test,
)
from abrec.stats.srm import srm_test
from abrec.stats.sufficient import CupedStats, MeanStats, RatioStats, proportion_stats

__all__ = [
    "BayesResult",
    "BootstrapResult",
    "Comparison",
    "CupedStats",
    "EffectResult",
    "ExperimentAnalysis",
    "Interval",
    "MannWhitneyResult",
    "MeanStats",
    "MetricSpec",
    "RatioStats",
    "SRMResult",
    "SampleSizeResult",
    "SequentialMonitor",
    "SequentialResult",
    "StatsError",
    "StatsInputError",
    "VariantSummary",
    "aggregate",
    "always_valid_pvalue",
    "analyze_experiment",
    "bayes_means",
    "bayes_proportions",
    "bayes_ratio",
    "benjamini_hochberg",
    "bootstrap",
    "compare_variants",
    "confidence_sequence_radius",
    "cupac_test",
    "cuped_test",
    "holm",
    "mann_whitney",
    "mde_means",
    "mde_proportions",
    "optimal_rho",
    "power_means",
    "power_proportions",
    "proportion_stats",
    "ratio_test",
    "relative_interval",
    "sample_size_means",
    "sample_size_proportions",
    "sequential_ratio_test",
    "sequential_test",
    "srm_test",
    "welch_ttest",
    "ztest_proportions",
]
