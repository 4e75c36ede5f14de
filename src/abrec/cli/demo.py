"""`abrec demo` command: the whole loop on MovieLens with simulated users."""

from __future__ import annotations

from pathlib import Path

import typer

from abrec.cli.app import app


@app.command()
def demo(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Run folder (default runs/<UTC timestamp>/)."
    ),
    aa: bool = typer.Option(False, "--aa", help="A/A test: both arms serve the control model."),
    users: int | None = typer.Option(
        None, "--users", min=2, help="Simulated users (default: every MovieLens user, 610)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation and assignment salt."),
    sessions: float = typer.Option(5.0, "--sessions", min=1.0, help="Mean sessions per user."),
    concurrency: int = typer.Option(6, "--concurrency", min=1, help="Concurrent HTTP clients."),
    control: str = typer.Option(
        "ltr_cf", "--control", help="Model served to the control arm (best CF on validation)."
    ),
    treatment: str = typer.Option(
        "ltr_ft_drop_cb2",
        "--treatment",
        help="Model of the treatment arm (the LM champion on validation).",
    ),
    finetune: bool = typer.Option(
        False,
        "--finetune",
        help="Fine-tune a served model's encoder when it is not cached (about 15-35 min on 2 "
        "CPU cores); without it such a model runs on the frozen MiniLM and the demo says so.",
    ),
    click: list[str] = typer.Option(
        [],
        "--click",
        help="Click-model parameter as name=value, repeatable (eta, a_max, midpoint, slope, "
        "base_rate, noise, repeat_factor, conversion_rate, conversion_min_rating).",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Offline TOML config (default: the built-in demo config)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the decision, no progress."),
    keep_bundle: bool = typer.Option(
        False,
        "--keep-bundle",
        help="Keep the served models in the run folder (about 1 GB with --dense).",
    ),
    compact: bool = typer.Option(
        True,
        "--compact/--dense",
        help="Store the served EASE weights compactly (float16, top-500 per row; "
        "docs/deployment.md) or dense float32 as before.",
    ),
    interleaving: bool = typer.Option(
        True,
        "--interleaving/--no-interleaving",
        help="After the A/B test, screen the same pair with team-draft interleaving.",
    ),
) -> None:
    """Evaluate offline, serve, A/B test with simulated users, decide, write report.html."""
    from rich.console import Console

    from abrec.demo import DemoOptions, parse_click_model, run_demo
    from abrec.errors import AbrecError

    console = Console()
    if not console.is_terminal and console.width < 120:
        console = Console(width=120)  # logs and pipes: room for the leaderboard columns
    try:
        click_model = parse_click_model(click)
    except AbrecError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    opts = DemoOptions(
        click_model=click_model,
        output=output,
        aa=aa,
        users=users,
        seed=seed,
        quiet=quiet,
        config=config,
        control_model=control,
        treatment_model=treatment,
        finetune=finetune,
        sessions_mean=sessions,
        concurrency=concurrency,
        keep_bundle=keep_bundle,
        compact=compact,
        interleaving=interleaving,
    )
    try:
        run_demo(opts, console=console)
    except AbrecError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
