"""Self-contained HTML + JSON run report (inline CSS, base64 PNG plots, no external URLs).

`write_report(run_dir, report)` takes a typed :class:`abrec.report.model.DemoReport` and
writes ``report.html`` and ``results.json`` (the report's JSON dump). Every section but the
title is optional and rendered only when present; intervals are 95%.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from abrec import fmt
from abrec.errors import AbrecError
from abrec.experiment.analysis import ExperimentResults, TreatmentResult
from abrec.report import plots
from abrec.report.model import (
    Agreement,
    Decision,
    DemoReport,
    InterleavingSection,
    Look,
    OfflineSection,
    RunInfo,
)
from abrec.stats import EffectResult, Interval


class ReportError(AbrecError, ValueError):
    """The results passed to the report are malformed."""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d232b}
main{max-width:1060px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;
border-bottom:2px solid #d9dee5;padding-bottom:4px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:12px 18px;
margin:14px 0}
table{border-collapse:collapse;font-size:.88em;margin:8px 0;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eceff3;text-align:right}
th{background:#f0f2f5}th:first-child,td:first-child{text-align:left}
td.l{text-align:left}.muted{color:#69727d;font-size:.85em}
.banner{padding:12px 16px;border-radius:8px;font-weight:600;margin:12px 0}
.win{background:#e4f4e7;border:1px solid #8ccf99}.nowin{background:#eef1f5;
border:1px solid #c6ccd5}.alarm{background:#fde8e6;border:1px solid #ef9c93}
.ok{color:#2d7a3e;font-weight:600}.bad{color:#b3261e;font-weight:600}
img{max-width:100%;height:auto}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
"""


def _ci(iv: Interval | None) -> str:
    """``estimate [low, high]`` with 4 significant digits."""
    if iv is None:
        return f"{fmt.MISSING} {fmt.interval(None, None)}"
    return f"{fmt.num(iv.estimate)} {fmt.interval(iv.low, iv.high)}"


def _pct_ci(iv: Interval | None) -> str:
    """``+x.xx% [+l.ll%, +h.hh%]``."""
    if iv is None:
        return f"{fmt.MISSING} {fmt.interval(None, None, fmt.pct)}"
    return f"{fmt.pct(iv.estimate)} {fmt.interval(iv.low, iv.high, fmt.pct)}"


def _value(x: str | int | float | None) -> str:
    """A table cell: text escaped, numbers through :func:`abrec.fmt.num`."""
    return _e(x) if isinstance(x, str) else fmt.num(x)


def _count(totals: dict[str, float], key: str) -> str:
    """A raw count from a variant's totals, as an integer."""
    v = fmt.as_float(totals.get(key))
    return fmt.MISSING if v is None else str(round(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{uri}">' if uri else ""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _section(title: str, inner: str) -> str:
    return f"<h2>{html.escape(title)}</h2><section>{inner}</section>"


def _decision(d: Decision) -> str:
    cls = "win" if d.winner else "nowin"
    return f'<div class="banner {cls}">{_e(d.verdict)}<div class="muted">{_e(d.text)}</div></div>'


def _run(run: RunInfo) -> str:
    rows = [[_e(k), f"<span>{_value(v)}</span>"] for k, v in run.rows()]
    return _section("Run", _table(["setting", "value"], rows))


def _offline(off: OfflineSection) -> str:
    board = off.leaderboard
    metrics: list[str] = []
    for row in board:
        metrics.extend(m for m in row.metrics if m not in metrics)
    rows = [[_e(r.model)] + [_ci(r.metrics.get(m)) for m in metrics] for r in board]
    out = '<p class="muted">mean over scored users [95% bootstrap CI]</p>'
    out += _table(["model", *metrics], rows)
    primary = off.primary_metric or (metrics[0] if metrics else "")
    if primary:
        cis = [r.metrics.get(primary) for r in board]
        out += _img(
            plots.interval_chart(
                [r.model for r in board],
                [None if c is None else c.estimate for c in cis],
                [None if c is None else c.low for c in cis],
                [None if c is None else c.high for c in cis],
                title=f"offline {primary} with 95% CI",
                xlabel=primary,
                zero_line=False,
            ),
            f"offline {primary}",
        )
    if off.comparisons:
        out += "<h3>Paired comparisons</h3>" + _table(
            ["model", "baseline", "metric", "difference [95% CI]", "p-value"],
            [
                [
                    _e(c.model),
                    _e(c.baseline),
                    _e(c.metric),
                    _ci(c.difference),
                    fmt.num(c.p_value, 3),
                ]
                for c in off.comparisons
            ],
        )
    return _section("Offline leaderboard", out)


def _online(on: ExperimentResults) -> str:
    parts: list[str] = []
    variants = on.variants
    if variants:
        total = sum(v.n for v in variants)
        weights = [v.weight or 0.0 for v in variants]
        wsum = sum(weights)
        expected = [total * w / wsum for w in weights] if wsum > 0 else None
        headers = ["variant", "model", "weight", "units", "exposures", "clicks", "conversions"]
        parts.append(
            _table(
                [*headers, "CTR"],
                [
                    [
                        _e(v.variant),
                        _e(v.model or ""),
                        fmt.num(v.weight),
                        fmt.num(v.n),
                        _count(v.totals, "exposures"),
                        _count(v.totals, "clicks"),
                        _count(v.totals, "conversions"),
                        fmt.num(v.means.get("ctr")),
                    ]
                    for v in variants
                ],
            )
        )
        parts.append(
            _img(
                plots.bar_chart(
                    [v.variant for v in variants],
                    [float(v.n) for v in variants],
                    expected,
                    title="assignment counts per variant",
                    ylabel="units",
                ),
                "assignment counts",
            )
        )
    srm = on.srm
    if srm is not None:
        verdict = (
            f'<span class="bad">sample-ratio mismatch (p &lt; {srm.threshold:g}): '
            "do not trust the effects</span>"
            if srm.mismatch
            else '<span class="ok">no sample-ratio mismatch</span>'
        )
        parts.append(
            f"<p>SRM check (chi-square vs intended weights): {verdict}; "
            f"chi2 = {fmt.num(srm.chi2)}, p = {fmt.num(srm.p_value, 3)}</p>"
        )
    return _section("Online experiment: assignment", "".join(parts)) if parts else ""


#: One row of the effects table: the treatment, the fixed-horizon result, its Holm p-value.
_Effect = tuple[str, EffectResult, float | None]


def _effect_rows(comps: Sequence[TreatmentResult]) -> list[_Effect]:
    """Every fixed-horizon test (with its Holm p-value), then CUPED, per treatment."""
    out: list[_Effect] = []
    for comp in comps:
        for t in comp.tests:
            if isinstance(t.result, EffectResult):
                out.append((comp.treatment, t.result, t.p_value_holm))
        if comp.cuped_clicks_per_unit is not None:
            out.append((comp.treatment, comp.cuped_clicks_per_unit, None))
    return out


def _effects(effects: Sequence[_Effect]) -> str:
    rows = [
        [
            _e(f"{v} vs control"),
            _e(r.metric),
            _e(r.method),
            fmt.num(r.control_mean),
            fmt.num(r.treatment_mean),
            _ci(r.absolute),
            _pct_ci(r.relative),
            fmt.num(r.p_value, 3),
            fmt.num(p_holm, 3),
            fmt.pct(r.variance_reduction),
        ]
        for v, r, p_holm in effects
    ]
    out = _table(
        [
            "comparison",
            "metric",
            "method",
            "control",
            "treatment",
            "difference [95% CI]",
            "relative lift [95% CI]",
            "p",
            "p (Holm)",
            "variance reduction",
        ],
        rows,
    )
    out += _img(
        plots.interval_chart(
            [f"{v}: {r.metric} ({r.method})" for v, r, _ in effects],
            [100.0 * r.relative.estimate for _, r, _ in effects],
            [100.0 * r.relative.low for _, r, _ in effects],
            [100.0 * r.relative.high for _, r, _ in effects],
            title="online relative lift per metric (95% CI)",
            xlabel="relative lift (%)",
        ),
        "online lift per metric",
    )
    cuped = [(v, r) for v, r, _ in effects if r.variance_reduction is not None]
    if cuped:
        out += (
            "<h3>CUPED</h3><p>"
            + "; ".join(
                f"{_e(r.metric)} ({_e(v)}): variance reduced by {fmt.pct(r.variance_reduction)}"
                for v, r in cuped
            )
            + "</p>"
        )
    return _section("Online effects (fixed horizon)", out)


def _sequential(comps: Sequence[TreatmentResult], timeline: Sequence[Look]) -> str:
    out = ""
    seqs = [(c.treatment, c.sequential_ctr) for c in comps if c.sequential_ctr is not None]
    if seqs:
        out += _table(
            [
                "comparison",
                "metric",
                "estimate [always-valid 95% CI]",
                "always-valid p",
                "decision",
            ],
            [
                [
                    _e(f"{v} vs control"),
                    _e(s.metric or "ctr"),
                    _ci(Interval(s.estimate, s.ci.low, s.ci.high)),
                    fmt.num(s.p_value, 3),
                    _e(s.decision),
                ]
                for v, s in seqs
            ],
        )
    if timeline:
        out += _img(
            plots.confidence_sequence(
                [look.variant for look in timeline],
                [look.units for look in timeline],
                [look.estimate for look in timeline],
                [look.low for look in timeline],
                [look.high for look in timeline],
                "sequential confidence sequence over time",
            ),
            "confidence sequence",
        )
        last = timeline[-1]
        out += (
            f'<p class="muted">{len(timeline)} looks; last look after '
            f"{fmt.num(last.elapsed_s, 3)} s: {fmt.num(last.units)} units, "
            f"{fmt.num(last.exposures)} exposures, {fmt.num(last.clicks)} clicks.</p>"
        )
    return _section("Sequential monitoring (safe under peeking)", out) if out else ""


def _guardrails(comps: Sequence[TreatmentResult]) -> str:
    rows = [
        [
            _e(f"{c.treatment} vs control"),
            _e(g.metric),
            _ci(Interval(g.estimate, g.low, g.high)),
            '<span class="ok">pass</span>' if g.passed else '<span class="bad">fail</span>',
        ]
        for c in comps
        for g in c.guardrails
    ]
    if not rows:
        return ""
    return _section(
        "Guardrails",
        _table(["comparison", "metric", "difference [always-valid 95% CI]", "status"], rows),
    )


def _agreement(a: Sequence[Agreement]) -> str:
    rows = [
        [
            _e(f"{x.variant} vs control"),
            _e(x.offline_metric),
            _ci(x.offline),
            _e(x.online_metric),
            _pct_ci(x.online),
        ]
        for x in a
    ]
    out = _table(
        [
            "comparison",
            "offline metric",
            "offline difference [95% CI]",
            "online metric",
            "online relative lift [95% CI]",
        ],
        rows,
    )
    labels = [x.variant for x in a]
    offs = [x.offline for x in a]
    off = plots.interval_chart(
        labels,
        [None if o is None else o.estimate for o in offs],
        [None if o is None else o.low for o in offs],
        [None if o is None else o.high for o in offs],
        title=f"offline {a[0].offline_metric} difference",
        xlabel="difference vs control model",
    )
    on = plots.interval_chart(
        labels,
        [100.0 * x.online.estimate for x in a],
        [100.0 * x.online.low for x in a],
        [100.0 * x.online.high for x in a],
        title=f"online {a[0].online_metric} lift",
        xlabel="relative lift (%)",
    )
    out += f'<div class="grid">{_img(off, "offline difference")}{_img(on, "online lift")}</div>'
    return _section("Offline vs online", out)


def _interleaving(il: InterleavingSection) -> str:
    """The interleaving screen beside the A/B test: verdicts and the users each needed."""
    rows = [
        ["A/B test (always-valid CTR test)", _e(il.ab_verdict), str(il.ab_units),
         "yes" if il.ab_decided else "no"],
        [f"interleaving ({_e(il.method)})", _e(il.verdict), str(il.units),
         "yes" if il.decided else "no"],
    ]  # fmt: skip
    inner = _table(["test", "verdict", "units used", "decided"], rows)
    if il.result is not None:
        p = il.result.primary
        inner += _table(
            ["control", "treatment", "wins", "losses", "ties", "preference [95% CI]",
             "sign test p", "always-valid p", "win share (confidence sequence)"],
            [[_e(p.control), _e(p.treatment), str(p.wins), str(p.losses), str(p.ties),
              _ci(p.preference), fmt.num(p.p_value), fmt.num(p.sequential.p_value),
              _ci(p.sequential.win_share)]],
        )  # fmt: skip
    inner += (
        '<p class="muted">Wins are units whose clicks credited the treatment\'s team more '
        f"than the control's; {_e(il.stopped_by)}.</p>"
    )
    return _section("Interleaving screen of the same pair", inner)


def render_html(report: DemoReport) -> str:
    """The report page as one self-contained HTML string.

    Raises:
        ReportError: when ``report`` is not a :class:`DemoReport`.
    """
    if not isinstance(report, DemoReport):
        raise ReportError(
            f"the report must be an abrec.report.DemoReport, got {type(report).__name__}"
        )
    body = [f"<h1>{_e(report.title)}</h1>"]
    body.append(
        f'<p class="muted">generated {datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}</p>'
    )
    if report.decision is not None:
        body.append(_decision(report.decision))
    if report.run is not None:
        body.append(_run(report.run))
    if report.offline is not None:
        body.append(_offline(report.offline))
    comps: tuple[TreatmentResult, ...] = ()
    if report.online is not None:
        comps = report.online.comparisons
        body.append(_online(report.online))
        effects = _effect_rows(comps)
        if effects:
            body.append(_effects(effects))
    body.append(_sequential(comps, report.timeline))
    body.append(_guardrails(comps))
    if report.interleaving is not None:
        body.append(_interleaving(report.interleaving))
    if report.agreement:
        body.append(_agreement(report.agreement))
    body.append('<p class="muted">All numbers are also in results.json beside this file.</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(report.title)}</title>"
        f"<style>{_CSS}</style></head><body><main>{''.join(body)}</main></body></html>"
    )


def write_report(run_dir: str | Path, report: DemoReport) -> Path:
    """Write ``report.html`` and ``results.json`` into ``run_dir``; returns the HTML path."""
    page = render_html(report)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(report.to_json())
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
