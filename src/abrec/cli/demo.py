"""`abrec demo` command."""

from abrec.cli.app import app  # noqa: F401
