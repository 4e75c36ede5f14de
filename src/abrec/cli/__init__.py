"""`abrec` command line: wiring only; each command lives in its own module."""

from abrec.cli import analyze, demo, evaluate, loop, monitor, serve, train  # noqa: F401
from abrec.cli.app import app

__all__ = ["app"]
