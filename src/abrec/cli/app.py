"""The typer application object every command module registers on."""

import typer

app = typer.Typer(
    name="abrec",
    help="Language-model recommenders, offline evaluation and online A/B statistics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# `abrec train` registers itself on `app` when imported (the other commands are imported by
# abrec/cli/__init__.py); imported last, once `app` exists.
from abrec.cli import train as _train  # noqa: E402, F401
