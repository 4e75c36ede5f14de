"""Errors raised by `abrec.stats` (which imports nothing else of abrec)."""


class StatsError(Exception):
    """Base class for every error `abrec.stats` raises on purpose."""


class StatsInputError(StatsError, ValueError):
    """Statistics were called with invalid, empty or degenerate input."""
