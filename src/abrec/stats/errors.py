"""Errors raised by `abrec.stats` (which imports nothing else of abrec but its leaf helpers)."""


class StatsError(Exception):
    """Base class for every error `abrec.stats` raises on purpose."""


class StatsInputError(StatsError, ValueError):
    """Statistics were called with invalid, empty or degenerate input."""


class NotTestableError(StatsInputError):
    """The data cannot support the test yet: too few units, zero variance, a zero denominator.

    Callers that analyse live data turn exactly this error into a "not tested" note; any
    other exception is a bug or a misuse and must propagate.
    """
