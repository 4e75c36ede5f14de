"""The loop's multi-round report: ``loop.json`` (the `LoopResult`) and ``loop.html``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from abrec import fmt
from abrec.jsonsafe import json_safe
from abrec.report import plots
from abrec.report.html import _CSS, _e, _img, _section, _table

if TYPE_CHECKING:
    from abrec.loop.run import LoopResult, RoundRecord


def _iv(est: float, low: float, high: float) -> str:
    return f"{fmt.num(est)} {fmt.interval(low, high)}"


def _round_html(r: RoundRecord) -> str:
    parts = [
        f"<p><b>champion</b> {_e(r.champion_before)} → <b>{_e(r.champion_after)}</b>; "
        f"{r.train_interactions} training interactions ({r.feedback_clicks} from clicks); "
        f"{r.users} simulated users ({r.users_interleaving} interleaving, {r.users_ab} A/B); "
        f"{r.elapsed_s:.0f} s</p>",
        f'<div class="banner {"win" if r.promoted else "nowin"}">{_e(r.evidence)}</div>',
    ]
    if r.offline:
        rows = [
            [
                _e(o.model) + (" →" if o.model in r.screened_in else ""),
                fmt.num(o.mean),
                _iv(o.difference.estimate, o.difference.low, o.difference.high),
                fmt.num(o.p_value),
            ]
            for o in r.offline
        ]
        parts.append(
            "<h3>Offline screen (validation, vs champion)</h3>"
            + _table(["candidate", r.offline[0].metric, "difference [95% CI]", "p"], rows)
        )
    if r.off_policy:
        rows = [
            [_e(p.model), _iv(p.estimate.estimate, p.estimate.low, p.estimate.high),
             f"{p.support}/{p.n_rows}"]
            for p in r.off_policy
        ]  # fmt: skip
        parts.append(
            "<h3>Off-policy screen (slot-wise IPS on last round's logs)</h3>"
            + _table(["model", "clicks per slot [95% CI]", "matched rows"], rows)
        )
    if r.screen_notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in r.screen_notes) + "</ul>")
    if r.interleaving:
        rows = [
            [_e(x.candidate), str(x.units), f"{x.wins}/{x.losses}/{x.ties}",
             _iv(x.preference.estimate, x.preference.low, x.preference.high),
             fmt.num(x.p_value), fmt.num(x.sequential_p), "yes" if x.passed else "no"]
            for x in r.interleaving
        ]  # fmt: skip
        parts.append(
            "<h3>Interleaving screen (team-draft, candidate vs champion)</h3>"
            + _table(
                [
                    "candidate",
                    "units",
                    "wins/losses/ties",
                    "preference [95% CI]",
                    "sign test p",
                    "always-valid p",
                    "passed",
                ],
                rows,
            )
        )
    if r.ab is not None:
        a = r.ab
        d = a.ctr_difference
        parts.append(
            "<h3>A/B confirmation</h3>"
            + _table(
                [
                    "experiment",
                    "units",
                    "CTR control",
                    "CTR treatment",
                    "difference (always-valid CI)",
                    "always-valid p",
                    "stopped by",
                    "verdict",
                ],
                [
                    [
                        _e(a.experiment),
                        str(a.units),
                        fmt.num(a.ctr_control),
                        fmt.num(a.ctr_treatment),
                        "—" if d is None else _iv(d.estimate, d.low, d.high),
                        fmt.num(a.sequential_p),
                        _e(a.stopped_by),
                        _e(a.decision.verdict),
                    ]
                ],
            )
        )
    return _section(f"Round {r.round}", "".join(parts))


def render_loop_html(result: LoopResult) -> str:
    """The report page (self-contained: inline CSS, base64 plot)."""
    rounds = result.rounds
    chart = plots.rounds_chart(
        [r.round for r in rounds],
        [r.online_ctr for r in rounds],
        [r.users for r in rounds],
        title="champion CTR per round and the users each round cost",
    )
    summary = _table(
        ["round", "champion before", "champion after", "promoted", "champion's online CTR",
         "users"],
        [
            [str(r.round), _e(r.champion_before), _e(r.champion_after),
             "yes" if r.promoted else "no", fmt.num(r.online_ctr), str(r.users)]
            for r in rounds
        ],
    )  # fmt: skip
    status = "interrupted" if result.interrupted else "complete"
    body = (
        f"<h1>abrec loop</h1><p class='muted'>{len(rounds)} round(s), {status}; final champion "
        f"<b>{_e(result.champion)}</b>; store {_e(result.store_url)}</p>"
        + _section("Summary", summary + _img(chart, "champion CTR per round"))
        + "".join(_round_html(r) for r in rounds)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>abrec loop</title>"
        f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>"
    )


def write_loop_report(out_dir: Path, result: LoopResult) -> Path:
    """Write ``loop.json`` and ``loop.html`` into `out_dir` (atomically); the HTML path."""
    data = json_safe(result.to_dict())
    for name, text in (
        ("loop.json", json.dumps(data, indent=2, allow_nan=False)),
        ("loop.html", render_loop_html(result)),
    ):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
    return out_dir / "loop.html"
