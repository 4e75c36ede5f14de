"""`abrec` command line: wiring only; each command lives in its own module."""

from abrec.cli import analyze, demo, evaluate, loop, serve, train  # noqa: F401  (register commands)
from abrec.cli.app import app

__all__ = ["app"]
