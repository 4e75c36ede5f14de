"""`abrec evaluate` command."""

from abrec.cli.app import app  # noqa: F401
