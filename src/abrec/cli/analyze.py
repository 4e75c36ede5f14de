"""`abrec analyze`: A/B analysis of a per-unit CSV or Parquet file."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from abrec import fmt
from abrec.cli.app import app

if TYPE_CHECKING:
    from abrec.stats.analysis import ExperimentAnalysis, MetricSpec


class _UsageError(Exception):
    """Bad file, column or option: reported in one line, exit status 2."""


def _parse_weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not name.strip():
            raise _UsageError(f"--weights must look like A=0.5,B=0.5; got {text!r}")
    return out


def _parse_metrics(metrics: list[str], covariates: list[str]) -> list[MetricSpec]:
    from dataclasses import replace

    from abrec.stats.analysis import MetricSpec

    specs = [MetricSpec.parse(m) for m in metrics]
    default_cov: str | None = None
    per_metric: dict[str, str] = {}
    for c in covariates:
        name, eq, col = c.partition("=")
        if eq:
            per_metric[name] = col
        else:
            default_cov = c
    unknown = set(per_metric) - {s.name for s in specs}
    if unknown:
        raise _UsageError(f"--covariate names unknown metric(s) {sorted(unknown)}")
    out = []
    for s in specs:
        cov = per_metric.get(s.name, default_cov)
        if cov and s.kind != "ratio":
            s = replace(s, covariate=cov)
        elif s.name in per_metric:
            raise _UsageError(f"--covariate is not supported for ratio metric {s.name!r}")
        out.append(s)
    return out


DEFAULT_UNIT_COL = "unit_id"
MAX_SHOWN_IDS = 5


def _read(path: Path, columns: list[str], variant_col: str, unit_col: str | None = None) -> Any:
    """Read the per-unit file and validate it: columns present, rows, labels, unique units.

    Units are checked for duplicates in ``unit_col`` (by default ``unit_id`` when the
    file has it): the analysis needs one row per unit, so a repeated unit is an error
    naming a few of the repeated ids, not a silent double count.
    """
    import pandas as pd

    if not path.is_file():
        raise _UsageError(f"file not found: {path}")
    id_cols = [variant_col, unit_col or DEFAULT_UNIT_COL]
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=dict.fromkeys(id_cols, str), low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise _UsageError(f"{path} is empty; it needs a header row and one row per unit") from exc
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise _UsageError(f"cannot read {path} as CSV or Parquet: {exc}") from exc
    missing = [c for c in [variant_col, *columns] if c not in df.columns]
    if unit_col is not None and unit_col not in df.columns:
        missing.append(unit_col)
    if missing:
        raise _UsageError(f"column(s) {missing} not in {path}; available: {list(df.columns)}")
    if df.empty:
        raise _UsageError(f"{path} has no rows (only a header); it needs one row per unit")
    if df[variant_col].isna().any():
        raise _UsageError(f"{df[variant_col].isna().sum()} row(s) have no {variant_col!r}")
    unit = unit_col or (DEFAULT_UNIT_COL if DEFAULT_UNIT_COL in df.columns else None)
    if unit is not None:
        ids = df[unit].astype(str)
        repeated = ids[ids.duplicated(keep=False)]
        if len(repeated):
            shown = list(dict.fromkeys(repeated))[:MAX_SHOWN_IDS]
            n = repeated.nunique()
            more = f" (showing {len(shown)} of {n})" if n > len(shown) else ""
            raise _UsageError(
                f"{n} unit id(s) in column {unit!r} appear on more than one row{more}: "
                f"{', '.join(repr(i[:40]) for i in shown)}; the analysis needs one row per "
                "unit, so aggregate each unit's rows first"
            )
    return df


def _num(x: float | None, pct: bool = False) -> str:
    """A number as :mod:`abrec.fmt` writes it; ±inf (one-sided bounds) as ∞ rather than missing."""
    if x is not None and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return fmt.pct(x) if pct else fmt.num(x)


def _pct(x: float | None) -> str:
    return _num(x, pct=True)


def _render(analysis: ExperimentAnalysis, metrics: list[MetricSpec]) -> None:
    from rich.console import Console
    from rich.table import Table

    from abrec.stats.results import BayesResult, EffectResult, Interval, SequentialResult

    console = Console(width=None if sys.stdout.isatty() else 150)
    vt = Table(title=f"Variants (control: {analysis.control})")
    vt.add_column("variant")
    vt.add_column("n", justify="right")
    for m in metrics:
        vt.add_column(f"mean {m.name}", justify="right")
    for v in analysis.variants:
        vt.add_row(v.variant, str(v.n), *(_num(v.means[m.name]) for m in metrics))
    console.print(vt)
    srm = analysis.srm
    verdict = "[bold red]MISMATCH[/]" if srm.mismatch else "[green]ok[/]"
    console.print(
        f"Sample ratio: chi2={srm.chi2:.3g}, p={srm.p_value:.3g} → {verdict} "
        f"(alarm at p < {srm.threshold:g})"
    )
    bayes = analysis.method == "bayesian"
    ct = Table(title=f"Comparisons against {analysis.control} ({analysis.method})")
    ct.add_column("metric")
    ct.add_column("variant")
    ct.add_column("method")
    ct.add_column("effect [CI]", justify="right", no_wrap=True)
    ct.add_column("relative [CI]", justify="right", no_wrap=True)
    if bayes:
        ct.add_column("P(beat control)", justify="right")
        ct.add_column("expected loss", justify="right")
    else:
        ct.add_column("p-value", justify="right")
        ct.add_column("p (Holm)", justify="right")
        ct.add_column("p (BH)", justify="right")
    for c in analysis.comparisons:
        r = c.result
        rel: Interval | None
        if isinstance(r, BayesResult):
            ci, rel = r.credible_interval, r.relative
            tail = [f"{r.prob_beat_control:.1%}", _num(r.expected_loss)]
        elif isinstance(r, SequentialResult):
            ci, rel = r.ci, None
            tail = [_num(r.p_value), _num(c.p_value_holm), _num(c.p_value_bh)]
        else:
            ci, rel = r.absolute, r.relative
            tail = [_num(r.p_value), _num(c.p_value_holm), _num(c.p_value_bh)]
        ct.add_row(
            c.metric,
            c.variant,
            r.method,
            f"{_num(ci.estimate)} {fmt.interval(ci.low, ci.high, _num)}",
            f"{_pct(rel.estimate)} {fmt.interval(rel.low, rel.high, _pct)}" if rel else fmt.MISSING,
            *tail,
        )
    console.print(ct)
    for c in analysis.comparisons:
        r = c.result
        if isinstance(r, EffectResult) and r.variance_reduction is not None:
            console.print(
                f"{c.metric} / {c.variant}: {r.method} variance reduction "
                f"{r.variance_reduction:.1%}"
            )
    for note in analysis.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
def analyze(
    data: Annotated[Path, typer.Argument(help="Per-unit CSV or Parquet file (one row per unit)")],
    variant_col: Annotated[str, typer.Option(help="Column holding the variant label")] = "group",
    control: Annotated[str, typer.Option(help="Label of the control variant")] = "A",
    metric: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN:proportion|mean or NUM/DEN:ratio (repeatable)"),
    ] = None,
    covariate: Annotated[
        list[str] | None,
        typer.Option(help="Pre-period covariate for CUPED: COLUMN, or METRIC=COLUMN"),
    ] = None,
    method: Annotated[
        str, typer.Option(help="frequentist | bayesian | sequential")
    ] = "frequentist",
    weights: Annotated[
        str | None, typer.Option(help="Intended split, e.g. A=0.5,B=0.5 (default equal)")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level")] = 0.05,
    target_n: Annotated[
        int, typer.Option(help="Sequential: total units where the CS is tightest")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed for Bayesian posterior draws")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    unit_col: Annotated[
        str | None,
        typer.Option(
            help="Column of unit ids, checked for duplicates (default: unit_id if present)"
        ),
    ] = None,
) -> None:
    """Analyse an A/B test: effects, CIs, p-values or P(beat control), SRM, Holm and BH."""
    from abrec.stats.analysis import analyze_experiment
    from abrec.stats.errors import StatsInputError

    try:
        if not metric:
            raise _UsageError("give at least one --metric, e.g. --metric converted:proportion")
        specs = _parse_metrics(metric, covariate or [])
        cols = sorted({c for s in specs for c in s.columns})
        df = _read(data, cols, variant_col, unit_col)
        result = analyze_experiment(
            {c: df[c].to_numpy() for c in cols},
            df[variant_col].astype(str).to_numpy(),
            control=control,
            metrics=specs,
            method=method,
            weights=_parse_weights(weights),
            alpha=alpha,
            seed=seed,
            target_n=target_n,
        )
    except (_UsageError, StatsInputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload = {"file": str(data), "rows": len(df), **result.to_dict()}
        typer.echo(json.dumps(payload, indent=2, allow_nan=False))
    else:
        _render(result, specs)
