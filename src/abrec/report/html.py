"""Self-contained HTML + JSON run report (inline CSS, base64 PNG plots, no external URLs).

`write_report(run_dir, results)` takes one JSON-ready dict; every section is optional
and rendered only when present. Keys (all numbers are floats, intervals are 95%):

- ``title``: str; ``meta``: {name: value} shown as a table.
- ``decision``: {``winner``: str | None, ``verdict``: str, ``text``: str}.
- ``offline``: {``primary_metric``, ``baseline``, ``leaderboard``: [{``model``,
  ``metrics``: {name: {``estimate``, ``low``, ``high``}}}], ``comparisons``:
  [{``model``, ``baseline``, ``metric``, ``estimate``, ``low``, ``high``, ``p_value``}]}.
- ``online``: {``experiment``, ``control``, ``variants``: [{``name``, ``model``,
  ``weight``, ``units``, ``exposures``, ``clicks``, ``conversions``, ``ctr``}],
  ``srm``: {``chi2``, ``p_value``, ``mismatch``}, ``effects``: [{``variant``,
  ``metric``, ``method``, ``control_mean``, ``treatment_mean``, ``estimate``,
  ``low``, ``high``, ``relative``, ``relative_low``, ``relative_high``,
  ``p_value``, ``p_adjusted``, ``variance_reduction``}], ``sequential``:
  [{``variant``, ``metric``, ``estimate``, ``low``, ``high``, ``p_value``,
  ``decision``}], ``guardrails``: [{``variant``, ``metric``, ``estimate``,
  ``low``, ``high``, ``passed``}]}.
- ``timeline``: [{``elapsed_s``, ``units``, ``exposures``, ``clicks``, ``variant``,
  ``estimate``, ``low``, ``high``, ``p_value``}] (the sequential confidence sequence).
- ``agreement``: [{``variant``, ``offline_metric``, ``offline_estimate``,
  ``offline_low``, ``offline_high``, ``online_metric``, ``online_estimate``,
  ``online_low``, ``online_high``}].
Any other keys (e.g. the raw analysis) are kept in ``results.json`` only.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from abrec.errors import AbrecError
from abrec.report import plots


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


def _json_ready(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become null; numpy scalars/arrays become Python values."""
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_ready(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def fmt(x: Any, digits: int = 4) -> str:
    """Number with `digits` significant digits; integers unchanged; missing as an en dash."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return html.escape(str(x))
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _pct(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{100 * v:+.2f}%" if math.isfinite(v) else "–"


def _ci(d: Mapping[str, Any], est: str = "estimate", lo: str = "low", hi: str = "high") -> str:
    return f"{fmt(d.get(est))} [{fmt(d.get(lo))}, {fmt(d.get(hi))}]"


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


def _decision(d: Mapping[str, Any]) -> str:
    cls = "win" if d.get("winner") else "nowin"
    verdict = _e(d.get("verdict", ""))
    text = _e(d.get("text", ""))
    return f'<div class="banner {cls}">{verdict}<div class="muted">{text}</div></div>'


def _offline(off: Mapping[str, Any]) -> str:
    board = list(off.get("leaderboard", []))
    metrics: list[str] = []
    for row in board:
        for m in row.get("metrics", {}):
            if m not in metrics:
                metrics.append(m)
    rows = [
        [_e(r.get("model"))] + [_ci(r.get("metrics", {}).get(m, {})) for m in metrics]
        for r in board
    ]
    out = '<p class="muted">mean over scored users [95% bootstrap CI]</p>'
    out += _table(["model", *metrics], rows)
    primary = str(off.get("primary_metric") or (metrics[0] if metrics else ""))
    if primary:
        pts = [(str(r.get("model")), r.get("metrics", {}).get(primary, {})) for r in board]
        out += _img(
            plots.interval_chart(
                [p[0] for p in pts],
                [p[1].get("estimate") for p in pts],
                [p[1].get("low") for p in pts],
                [p[1].get("high") for p in pts],
                title=f"offline {primary} with 95% CI",
                xlabel=primary,
                zero_line=False,
            ),
            f"offline {primary}",
        )
    comps = list(off.get("comparisons", []))
    if comps:
        out += "<h3>Paired comparisons</h3>" + _table(
            ["model", "baseline", "metric", "difference [95% CI]", "p-value"],
            [
                [
                    _e(c.get("model")),
                    _e(c.get("baseline")),
                    _e(c.get("metric")),
                    _ci(c),
                    fmt(c.get("p_value"), 3),
                ]
                for c in comps
            ],
        )
    return _section("Offline leaderboard", out)


def _online(on: Mapping[str, Any]) -> str:
    parts: list[str] = []
    variants = list(on.get("variants", []))
    if variants:
        total = sum(float(v.get("units") or 0) for v in variants)
        wsum = sum(float(v.get("weight") or 0) for v in variants)
        expected = (
            [total * float(v.get("weight") or 0) / wsum for v in variants] if wsum > 0 else None
        )
        parts.append(
            _table(
                [
                    "variant",
                    "model",
                    "weight",
                    "units",
                    "exposures",
                    "clicks",
                    "conversions",
                    "CTR",
                ],
                [
                    [
                        _e(v.get("name")),
                        _e(v.get("model", "")),
                        fmt(v.get("weight")),
                        fmt(v.get("units")),
                        fmt(v.get("exposures")),
                        fmt(v.get("clicks")),
                        fmt(v.get("conversions")),
                        fmt(v.get("ctr")),
                    ]
                    for v in variants
                ],
            )
        )
        parts.append(
            _img(
                plots.bar_chart(
                    [str(v.get("name")) for v in variants],
                    [float(v.get("units") or 0) for v in variants],
                    expected,
                    title="assignment counts per variant",
                    ylabel="units",
                ),
                "assignment counts",
            )
        )
    srm = on.get("srm")
    if srm:
        bad = bool(srm.get("mismatch"))
        verdict = (
            '<span class="bad">sample-ratio mismatch (p &lt; 0.001): do not trust the effects</span>'
            if bad
            else '<span class="ok">no sample-ratio mismatch</span>'
        )
        parts.append(
            f"<p>SRM check (chi-square vs intended weights): {verdict}; "
            f"chi2 = {fmt(srm.get('chi2'))}, p = {fmt(srm.get('p_value'), 3)}</p>"
        )
    return _section("Online experiment: assignment", "".join(parts)) if parts else ""


def _effects(effects: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _e(f"{e.get('variant')} vs control"),
            _e(e.get("metric")),
            _e(e.get("method", "")),
            fmt(e.get("control_mean")),
            fmt(e.get("treatment_mean")),
            _ci(e),
            f"{_pct(e.get('relative'))} [{_pct(e.get('relative_low'))}, {_pct(e.get('relative_high'))}]",
            fmt(e.get("p_value"), 3),
            fmt(e.get("p_adjusted"), 3),
            _pct(e.get("variance_reduction")) if e.get("variance_reduction") is not None else "–",
        ]
        for e in effects
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
    labels = [f"{e.get('variant')}: {e.get('metric')} ({e.get('method', '')})" for e in effects]
    out += _img(
        plots.interval_chart(
            labels,
            [_rel(e, "relative") for e in effects],
            [_rel(e, "relative_low") for e in effects],
            [_rel(e, "relative_high") for e in effects],
            title="online relative lift per metric (95% CI)",
            xlabel="relative lift (%)",
        ),
        "online lift per metric",
    )
    cuped = [e for e in effects if e.get("variance_reduction") is not None]
    if cuped:
        out += (
            "<h3>CUPED</h3><p>"
            + "; ".join(
                f"{_e(e.get('metric'))} ({_e(e.get('variant'))}): variance reduced by "
                f"{_pct(e.get('variance_reduction'))}"
                for e in cuped
            )
            + "</p>"
        )
    return _section("Online effects (fixed horizon)", out)


def _rel(e: Mapping[str, Any], key: str) -> float:
    v = e.get(key)
    return 100.0 * float(v) if v is not None else float("nan")


def _sequential(seq: Sequence[Mapping[str, Any]], timeline: Sequence[Mapping[str, Any]]) -> str:
    out = ""
    if seq:
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
                    _e(f"{s.get('variant')} vs control"),
                    _e(s.get("metric", "ctr")),
                    _ci(s),
                    fmt(s.get("p_value"), 3),
                    _e(s.get("decision", "")),
                ]
                for s in seq
            ],
        )
    if timeline:
        out += _img(
            plots.confidence_sequence(timeline, "sequential confidence sequence over time"),
            "confidence sequence",
        )
        last = timeline[-1]
        out += (
            f'<p class="muted">{len(timeline)} looks; last look after {fmt(last.get("elapsed_s"), 3)} s: '
            f"{fmt(last.get('units'))} units, {fmt(last.get('exposures'))} exposures, "
            f"{fmt(last.get('clicks'))} clicks.</p>"
        )
    return _section("Sequential monitoring (safe under peeking)", out) if out else ""


def _guardrails(g: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _e(f"{x.get('variant')} vs control"),
            _e(x.get("metric")),
            _ci(x),
            '<span class="ok">pass</span>' if x.get("passed") else '<span class="bad">fail</span>',
        ]
        for x in g
    ]
    return _section(
        "Guardrails",
        _table(["comparison", "metric", "difference [always-valid 95% CI]", "status"], rows),
    )


def _agreement(a: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _e(f"{x.get('variant')} vs control"),
            _e(x.get("offline_metric")),
            _ci(x, "offline_estimate", "offline_low", "offline_high"),
            _e(x.get("online_metric")),
            f"{_pct(x.get('online_estimate'))} [{_pct(x.get('online_low'))}, {_pct(x.get('online_high'))}]",
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
    off = plots.interval_chart(
        [str(x.get("variant")) for x in a],
        [x.get("offline_estimate") for x in a],
        [x.get("offline_low") for x in a],
        [x.get("offline_high") for x in a],
        title=f"offline {a[0].get('offline_metric')} difference",
        xlabel="difference vs control model",
    )
    on = plots.interval_chart(
        [str(x.get("variant")) for x in a],
        [_rel(x, "online_estimate") for x in a],
        [_rel(x, "online_low") for x in a],
        [_rel(x, "online_high") for x in a],
        title=f"online {a[0].get('online_metric')} lift",
        xlabel="relative lift (%)",
    )
    out += f'<div class="grid">{_img(off, "offline difference")}{_img(on, "online lift")}</div>'
    return _section("Offline vs online", out)


def render_html(results: Mapping[str, Any]) -> str:
    """The report page as one self-contained HTML string."""
    if not isinstance(results, Mapping):
        raise ReportError("results must be a dict (see abrec.report.html for its keys)")
    title = str(results.get("title", "abrec report"))
    body = [f"<h1>{_e(title)}</h1>"]
    body.append(
        f'<p class="muted">generated {datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}</p>'
    )
    if results.get("decision"):
        body.append(_decision(results["decision"]))
    meta = results.get("meta") or {}
    if meta:
        body.append(
            _section(
                "Run",
                _table(
                    ["setting", "value"],
                    [[_e(k), f"<span>{fmt(v)}</span>"] for k, v in meta.items()],
                ),
            )
        )
    if results.get("offline"):
        body.append(_offline(results["offline"]))
    online = results.get("online") or {}
    if online:
        body.append(_online(online))
        if online.get("effects"):
            body.append(_effects(online["effects"]))
    seq = online.get("sequential") or []
    timeline = results.get("timeline") or []
    if seq or timeline:
        body.append(_sequential(seq, timeline))
    if online.get("guardrails"):
        body.append(_guardrails(online["guardrails"]))
    if results.get("agreement"):
        body.append(_agreement(results["agreement"]))
    body.append('<p class="muted">All numbers are also in results.json beside this file.</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><main>{''.join(body)}</main></body></html>"
    )


def write_report(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Write `report.html` and `results.json` into `run_dir`; returns the HTML path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = _json_ready(results)
    page = render_html(clean)
    (run_dir / "results.json").write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n")
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
