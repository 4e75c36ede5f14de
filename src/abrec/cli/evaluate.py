"""`abrec evaluate` command: offline evaluation of the models in a TOML config."""

from __future__ import annotations

from pathlib import Path

import typer

from abrec.cli.app import app


@app.command()
def evaluate(
    config: Path = typer.Option(
        Path("examples/movielens.toml"), "--config", "-c", help="TOML run config."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Run folder (default runs/<UTC timestamp>/)."
    ),
    save_models: Path | None = typer.Option(
        None, "--save-models", help="Also save the fitted models as a bundle for `abrec serve`."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    on: str | None = typer.Option(
        None,
        "--on",
        help="test (default) or validation: a split carved from the training period only, "
        "for choosing models and hyper-parameters (overrides [protocol] evaluate_on).",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Encode item texts and compute the per-user metrics on Ray (same results): "
        "'local' starts a local instance, 'auto' joins the cluster on this machine, or "
        "'ray://head:10001'. Needs `pip install 'abrec[ray]'`.",
    ),
) -> None:
    """Train the configured models, evaluate them offline and print a leaderboard."""
    from rich.console import Console
    from rich.markup import escape

    from abrec.errors import AbrecError
    from abrec.offline.config import load_config
    from abrec.offline.present import print_leaderboard
    from abrec.offline.run import run

    out_console = Console()
    err_console = Console(stderr=True)
    try:
        cfg = load_config(config)
        if on is not None:
            cfg = cfg.with_evaluate_on(on)
        result = run(
            cfg,
            output,
            quiet=quiet,
            console=err_console,
            save_models_dir=save_models,
            ray_address=ray,
        )
    except AbrecError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=2) from None
    print_leaderboard(result, out_console)
    if result.run_dir is not None:
        out_console.print(f"Run folder: {result.run_dir}")
    if save_models is not None:
        out_console.print(f"Saved models: {result.files['models']}")
