"""abrec: language-model recommenders, offline evaluation and online A/B statistics."""

__version__ = "0.1.0"
