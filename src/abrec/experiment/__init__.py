"""Experiments: specs, GrowthBook-compatible assignment, registry and analysis."""
