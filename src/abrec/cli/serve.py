"""`abrec serve`: run the HTTP service with uvicorn (SIGTERM shuts down gracefully)."""

from pathlib import Path
from typing import Annotated

import typer

from abrec.cli.app import app

#: Exit code of `abrec serve` when the database stays unreachable at start (uvicorn uses
#: the same code for any other start-up failure).
DATABASE_UNAVAILABLE_EXIT = 3


@app.command()
def serve(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Service TOML (see examples/serve.toml)")
    ],
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one)")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes behind the port, connections dealt to them in turn; use "
            "PostgreSQL for more than one (docs/deployment.md, Several workers)",
        ),
    ] = 1,
) -> None:
    """Serve recommendations, experiments and event ingestion over HTTP.

    Admin routes accept `Authorization: Bearer <token>` with the token taken from the
    ABREC_ADMIN_TOKEN environment variable; results, the experiment list and detailed
    readiness accept that token or the one in ABREC_READ_TOKEN. Without them those
    routes answer 401. When ABREC_METRICS_TOKEN is set, /metrics needs it as a bearer
    token (see docs/security.md).

    With `--workers N` (N > 1) the store's schema and the TOML experiments are set up
    once, then N processes serve the same port; an admin change or model reload in one
    is followed by the others within about `sync_poll_s` (docs/deployment.md).

    Exit codes: 0 after a clean shutdown; 2 for a configuration mistake (one line);
    3 when the database stays unreachable after the configured retries
    (`db_connect_retries`, `db_retry_backoff_s`; one line), or when the application
    fails to start for another reason (uvicorn's start-up failure code).
    """
    import os

    import uvicorn

    from abrec.errors import ConfigError
    from abrec.experiment.spec import load_specs
    from abrec.serve.app import create_app
    from abrec.serve.config import (
        CONFIG_ENV,
        ServeConfig,
        admin_token_from_env,
        metrics_token_from_env,
        read_token_from_env,
    )
    from abrec.serve.services import DatabaseUnavailableError, prepare_store, wait_for_store

    try:
        cfg = ServeConfig.from_toml(config)
        cfg = cfg.model_copy(
            update={
                "admin_token": admin_token_from_env(os.environ),
                "read_token": read_token_from_env(os.environ),
                "metrics_token": metrics_token_from_env(os.environ),
            }
        )
        # cheap checks first, so a typo gives one clear line instead of a startup traceback
        if cfg.bundle is not None and not (cfg.bundle / "bundle.json").is_file():
            raise ConfigError(
                f"bundle {cfg.bundle} is not a model bundle (no bundle.json); build one with "
                "`abrec evaluate --config examples/movielens.toml --save-models runs/bundle`"
            )
        if cfg.experiments is not None:
            load_specs(cfg.experiments)
        if workers > 1 and port == 0:
            raise ConfigError("--workers needs a fixed --port (0 would give each its own)")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        wait_for_store(cfg)
        if workers > 1 or cfg.model_registry is not None:
            prepare_store(cfg)  # one line for a registry with nothing to serve
    except DatabaseUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(DATABASE_UNAVAILABLE_EXIT) from None
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    # uvicorn installs SIGTERM/SIGINT handlers: stop accepting, finish in-flight requests,
    # then run the lifespan shutdown, which closes (flushes) the batch writer. With several
    # workers the supervisor forwards SIGTERM to each, which shuts down the same way.
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(create_app(cfg), **common)  # type: ignore[arg-type]
        return
    from abrec.serve.workers import Supervisor

    os.environ[CONFIG_ENV] = str(config.resolve())
    options = {k: v for k, v in common.items() if k not in ("host", "port")}
    code = Supervisor(host, port, workers, options).run()
    if code:
        raise typer.Exit(code)
