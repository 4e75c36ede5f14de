"""`abrec loop` command: rounds of retrain → screen → interleave → A/B → promote."""

from __future__ import annotations

from pathlib import Path

import typer

from abrec.cli.app import app


@app.command()
def loop(
    config: Path = typer.Option(
        Path("examples/loop.toml"), "--config", "-c", help="TOML loop config ([loop] + models)."
    ),
    output: Path = typer.Option(Path("runs/loop"), "--output", "-o", help="Run folder."),
    rounds: int | None = typer.Option(None, "--rounds", "-n", min=1, help="Override loop.rounds."),
    store_url: str | None = typer.Option(
        None,
        "--store-url",
        help="Event store (default sqlite:///<output>/events.db; e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test).",
    ),
) -> None:
    """Run N rounds through the real service and store: retrain on the clicks logged so far,
    screen candidates offline and off-policy, interleave the best against the champion,
    confirm with a sequential A/B test, promote the winner. Writes loop.html + loop.json;
    Ctrl-C stops the running experiment and writes the report of the completed rounds."""
    from rich.console import Console
    from rich.markup import escape

    from abrec.errors import AbrecError
    from abrec.loop import load_loop_config, run_loop

    con = Console()
    try:
        cfg = load_loop_config(config)
        result = run_loop(cfg, output, store_url=store_url, rounds=rounds, console=con)
    except AbrecError as exc:
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=2) from None
    con.rule("[bold]Loop summary")
    for r in result.rounds:
        ctr = "—" if r.online_ctr is None else f"{r.online_ctr:.4f}"
        con.print(
            f"round {r.round}: {r.champion_before} → {r.champion_after}"
            f"{' (promoted)' if r.promoted else ''}; online CTR {ctr}; {r.users} users",
            highlight=False,
        )
    con.print(f"Final champion: {result.champion}\nReport: {result.report}")
    if result.interrupted:
        raise typer.Exit(code=130)
