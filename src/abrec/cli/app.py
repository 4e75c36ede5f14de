"""The typer application object every command module registers on."""

import typer

app = typer.Typer(
    name="abrec",
    help="Language-model recommenders, offline evaluation and online A/B statistics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
