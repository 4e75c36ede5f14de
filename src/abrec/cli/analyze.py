"""`abrec analyze` command."""

from abrec.cli.app import app  # noqa: F401
