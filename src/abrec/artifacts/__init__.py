"""Versioned model artifacts on disk: a registry of model bundles with their provenance."""

from abrec.artifacts.registry import (
    PROMOTED,
    PROVENANCE_FILE,
    ArtifactError,
    ModelRegistry,
    ModelVersion,
    bundle_digest,
    code_version,
    data_fingerprint,
)

__all__ = [
    "PROMOTED",
    "PROVENANCE_FILE",
    "ArtifactError",
    "ModelRegistry",
    "ModelVersion",
    "bundle_digest",
    "code_version",
    "data_fingerprint",
]
