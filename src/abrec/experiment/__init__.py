"""Experiments: specs, GrowthBook-compatible assignment, registry and analysis.

Submodules: ``assignment`` (hashing, bucket ranges), ``spec`` (ExperimentSpec, load_specs),
``registry`` (ExperimentRegistry), ``analysis`` (analyze → ExperimentResults).
"""

from abrec.experiment.assignment import (
    choose_variation,
    fnv1a32,
    gb_hash,
    gb_hash_many,
    get_bucket_ranges,
    in_range,
)
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import METRICS, ExperimentSpec, Variant, load_specs, parse_spec

__all__ = [
    "METRICS",
    "ExperimentRegistry",
    "ExperimentSpec",
    "Variant",
    "choose_variation",
    "fnv1a32",
    "gb_hash",
    "gb_hash_many",
    "get_bucket_ranges",
    "in_range",
    "load_specs",
    "parse_spec",
]
