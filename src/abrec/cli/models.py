"""`abrec models`: the model registry on disk (register, list, show, promote).

The registry root comes from `--registry` or the `ABREC_MODEL_REGISTRY` environment
variable (default `runs/models`). Mistakes (no such bundle or version, bad JSON) are one
line on stderr and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from abrec.cli.app import app

models_app = typer.Typer(
    help="Versioned model bundles: register, list, show, promote (docs/deployment.md).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

Registry = Annotated[
    Path,
    typer.Option(
        "--registry",
        "-r",
        envvar="ABREC_MODEL_REGISTRY",
        help="Registry folder (env ABREC_MODEL_REGISTRY).",
    ),
]
DEFAULT_REGISTRY = Path("runs/models")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _json_file(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise _fail(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            doc: Any = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:
        raise _fail(f"{what} file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(f"{what} file {path} must hold an object")
    return doc


@models_app.command("register")
def register(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (abrec evaluate --save-models).")],
    registry: Registry = DEFAULT_REGISTRY,
    config: Annotated[
        Path | None, typer.Option(help="Training config to record (TOML or JSON).")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="Offline metrics to record (JSON object).")
    ] = None,
    data_fingerprint: Annotated[
        str | None, typer.Option(help="Training data fingerprint (SHA-256 hex) to record.")
    ] = None,
    promote: Annotated[bool, typer.Option(help="Also promote the version.")] = False,
) -> None:
    """Copy a bundle into the registry as a content-addressed version; print the version.

    What the options leave out is taken from the bundle's provenance.json (written by
    `abrec evaluate --save-models`: data fingerprint, run config, offline metrics).
    """
    from abrec.artifacts import ArtifactError, ModelRegistry

    cfg, met = _json_file(config, "config"), _json_file(metrics, "metrics")
    try:
        reg = ModelRegistry(registry)
        found = reg.register(bundle, data_fingerprint=data_fingerprint, config=cfg, metrics=met)
        if promote:
            reg.promote(found.version)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    typer.echo(found.version)


@models_app.command("list")
def list_versions(
    registry: Registry = DEFAULT_REGISTRY,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version, oldest first; `*` marks the promoted one."""
    from rich.console import Console
    from rich.table import Table

    from abrec.artifacts import ArtifactError, ModelRegistry

    reg = ModelRegistry(registry)
    try:
        versions, promoted = reg.list(), reg.promoted()
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        rows = [{**v.meta, "promoted": v.version == promoted} for v in versions]
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not versions:
        typer.echo(f"no model versions in {registry}; add one with `abrec models register`")
        return
    table = Table("", "version", "created (UTC)", "models", "data", "size")
    for v in versions:
        fp = v.meta.get("data_fingerprint") or "-"
        table.add_row(
            "*" if v.version == promoted else "",
            v.version,
            str(v.meta.get("created_at", "")),
            ", ".join(v.models),
            fp[:12],
            f"{int(v.meta.get('size_bytes', 0)) / 1e6:.1f} MB",
        )
    Console().print(table)


@models_app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="A version id (see `abrec models list`).")],
    registry: Registry = DEFAULT_REGISTRY,
) -> None:
    """A version's metadata as JSON (and whether it is promoted)."""
    from abrec.artifacts import ArtifactError, ModelRegistry

    reg = ModelRegistry(registry)
    try:
        found = reg.get(version)
        promoted = reg.promoted()
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    doc = {**found.meta, "promoted": found.version == promoted, "path": str(found.bundle)}
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


@models_app.command("promote")
def promote_version(
    version: Annotated[str, typer.Argument(help="A version id (see `abrec models list`).")],
    registry: Registry = DEFAULT_REGISTRY,
) -> None:
    """Mark a version as the one to serve. Running services switch when told to
    (`POST /v1/admin/models/reload`); a service that starts serves it unless a reload
    stored another version in its database (docs/deployment.md)."""
    from abrec.artifacts import ArtifactError, ModelRegistry

    try:
        ModelRegistry(registry).promote(version)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"promoted {version}")
