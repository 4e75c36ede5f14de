"""`abrec monitor`: experiment health and model drift, computed once from a store and a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abrec.cli.app import app


@app.command()
def monitor(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Service TOML (store_url, bundle, table_prefix)"),
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print the snapshot as JSON")] = False,
    window: Annotated[
        int | None,
        typer.Option(min=100, help="Latest exposures per experiment (default: drift_window)"),
    ] = None,
) -> None:
    """Compute what the service's monitor exports, once: per running experiment the unit,
    exposure and click totals, the SRM p-value and the guardrails; per served model the drift
    checks (PSI, KS, centroid cosine shift) of the latest exposures against training.

    Reads the experiments stored by `abrec serve` (the same store_url and table_prefix).
    Exit codes: 0 done; 2 bad config or unreachable store (one line).
    """
    import json

    from abrec import fmt
    from abrec.errors import AbrecError
    from abrec.experiment.registry import ExperimentRegistry
    from abrec.models.bundle import ModelBundle
    from abrec.monitor import DriftMonitor, collect
    from abrec.serve.config import ServeConfig
    from abrec.serve.services import serving_bundle
    from abrec.store import EventStore

    try:
        cfg = ServeConfig.from_toml(config)
        store = EventStore.from_url(cfg.store_url, table_prefix=cfg.table_prefix)
        try:
            store.create_schema()
            bundle, _ = serving_bundle(cfg, store)
            if not (bundle / "bundle.json").is_file():
                raise AbrecError(f"bundle {bundle} is not a model bundle (no bundle.json)")
            specs = ExperimentRegistry(store).list()
            drift = DriftMonitor(ModelBundle.load(bundle))
            snap = collect(
                store,
                specs,
                drift,
                max_experiments=cfg.monitor_max_experiments,
                window=window or cfg.drift_window,
            )
        finally:
            store.dispose()
    except AbrecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(snap.to_dict(), indent=2, sort_keys=True))
        return
    if not snap.experiments:
        typer.echo("no running experiments")
    for e in snap.experiments:
        if e.error:
            typer.echo(f"{e.experiment}: not analysed: {e.error}")
            continue
        srm = "n/a" if e.srm_pvalue is None else fmt.num(e.srm_pvalue)
        breached = [f"{g.treatment}:{g.metric}" for g in e.guardrails if g.breached]
        typer.echo(
            f"{e.experiment} ({e.type}): SRM p={srm}; guardrails breached: "
            f"{', '.join(breached) or 'none'}"
        )
        for v in e.variants:
            typer.echo(
                f"  {v.variant}: units={v.units} exposures={v.exposures:.0f} clicks={v.clicks:.0f}"
            )
    if snap.unmonitored:
        typer.echo(f"{snap.unmonitored} more running experiment(s) not shown (cap)")
    if snap.drift_error:
        typer.echo(f"drift: failed: {snap.drift_error}")
    for c in snap.drift or ():
        if c.psi is None:
            typer.echo(f"drift {c.model}/{c.check}: skipped: {c.note}")
            continue
        extra = "" if c.cosine_shift is None else f" cosine_shift={fmt.num(c.cosine_shift)}"
        typer.echo(
            f"drift {c.model}/{c.check}: psi={fmt.num(c.psi)} ks={fmt.num(c.ks_statistic)} "
            f"p={fmt.num(c.ks_pvalue)}{extra} n={c.n_reference}/{c.n_serving}"
            f"{'  ALARM' if c.alarm else ''}"
        )
