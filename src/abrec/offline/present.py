"""Terminal presentation of an offline run: leaderboard tables and the LM-vs-CF lines.

Numbers go through `abrec.fmt`; a missing value prints as an em dash, as in the README.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from abrec import fmt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from abrec.evaluation.protocol import EvaluationResult
    from abrec.offline.run import RunOutput

#: What a missing cell prints as in the leaderboard tables.
NA = "—"
TEST_NAMES = {"ttest": "t-test", "wilcoxon": "Wilcoxon", "permutation": "permutation"}
_SHORT = {
    "precision": "P",
    "hit_rate": "HR",
    "coverage": "Cov",
    "novelty": "Nov",
    "diversity": "ILD",
    "map": "MAP",
    "mrr": "MRR",
    "auc": "AUC",
}


def _num(v: Any, digits: int = 3) -> str:
    return NA if fmt.as_float(v) is None else fmt.num(v, digits, fixed=True)


def _p(p: Any) -> str:
    return NA if fmt.as_float(p) is None else fmt.pvalue(p)


def _ci(cell: list[float] | None) -> str:
    """`mean (low–high)`, or the mean alone when the CI is missing."""
    if cell is None:
        return NA
    mean, low, high = cell
    if fmt.as_float(low) is None or fmt.as_float(high) is None:
        return _num(mean)
    return f"{_num(mean)} ({_num(low)}–{_num(high)})"


def _lift(lift: Any) -> str:
    return NA if fmt.as_float(lift) is None else fmt.pct(lift, 1)


def leaderboard_rows(
    result: EvaluationResult, metrics: list[str], slice_: str, test: str
) -> list[dict[str, Any]]:
    """Per model: [mean, ci_low, ci_high] per metric, lift and Holm p on the first metric."""
    s = result.summary[result.summary["slice"] == slice_]
    c = result.comparisons[result.comparisons["slice"] == slice_]
    primary = metrics[0]
    rows = []
    for model in dict.fromkeys(s["model"]):
        row: dict[str, Any] = {"model": model}
        for m in metrics:
            hit = s[(s["model"] == model) & (s["metric"] == m)]
            row[m] = (
                None
                if hit.empty
                else [float(x) for x in hit.iloc[0][["mean", "ci_low", "ci_high"]]]
            )
        comp = c[(c["model"] == model) & (c["metric"] == primary)]
        row["lift"] = None if comp.empty else float(comp.iloc[0]["lift"])
        row["p_holm"] = None if comp.empty else float(comp.iloc[0][f"p_{test}_holm"])
        row["n_users"] = int(s[s["model"] == model]["n_users"].max())
        rows.append(row)
    rows.sort(key=lambda r: -(r[primary][0] if r[primary] else -math.inf))
    return rows


def _label(model: str, baseline: str) -> str:
    return f"{model}*" if model == baseline else model


def _main_table(out: RunOutput, slice_: str, title: str, second: str) -> Table | None:
    """Primary and second metric with CIs, lift and Holm p of the primary test."""
    from rich.table import Table

    res, ev = out.result, out.config.evaluation
    primary = ev.primary_metric
    rows = leaderboard_rows(res, [primary, second], slice_, ev.primary_test)
    if not rows:
        return None
    pct = round(100 * res.level)
    t = Table(title=title, title_justify="left", caption=f"* baseline: {res.baseline}")
    t.add_column("model", style="bold", no_wrap=True)
    t.add_column(f"{primary} ({pct}% CI)", justify="right")
    t.add_column(f"{second} ({pct}% CI)", justify="right")
    t.add_column(f"lift {primary}", justify="right")
    t.add_column(f"p {TEST_NAMES[ev.primary_test]} (Holm)", justify="right")
    for r in rows:
        t.add_row(
            _label(r["model"], res.baseline),
            _ci(r[primary]),
            _ci(r[second]),
            _lift(r["lift"]),
            _p(r["p_holm"]),
        )
    return t


def _more_table(out: RunOutput, k: str) -> Table:
    """Means of the secondary metrics present in the run (all users)."""
    from rich.table import Table

    res, ev = out.result, out.config.evaluation
    wanted = [f"{m}@{k}" for m in ("map", "mrr", "hit_rate")] + ["auc"]
    wanted += [f"{m}@{k}" for m in ("coverage", "novelty", "diversity")]
    present = set(res.metrics) | set(res.summary["metric"])
    extra = [m for m in wanted if m in present]
    rows = leaderboard_rows(res, [ev.primary_metric, *extra], "all", ev.primary_test)
    t = Table(title="More metrics (means)", title_justify="left")
    t.add_column("model", style="bold", no_wrap=True)
    for m in extra:
        name, _, kk = m.partition("@")
        t.add_column(_SHORT.get(name, name) + (f"@{kk}" if kk else ""), justify="right")
    for r in rows:
        t.add_row(_label(r["model"], res.baseline), *(_num(r[m][0]) if r[m] else NA for m in extra))
    return t


def _head_to_head_line(out: RunOutput, r: dict[str, Any]) -> str:
    ev = out.config.evaluation
    test_name = TEST_NAMES[ev.primary_test]
    return (
        f"{r['slice']} users: language-model champion {r['model']} ({r['chosen_on']}) "
        f"vs {r['baseline']}: {ev.primary_metric} {_num(r['mean_model'], 4)} vs "
        f"{_num(r['mean_baseline'], 4)} (diff {fmt.num(r['diff'], 4, signed=True, fixed=True)}, "
        f"lift {fmt.pct(r['lift'])}, Holm p {test_name} {_p(r[f'p_{ev.primary_test}_holm'])}, "
        f"t-test {_p(r['p_ttest_holm'])}, Wilcoxon {_p(r['p_wilcoxon_holm'])}, n={r['n_users']})"
    )


def print_leaderboard(out: RunOutput, console: Console) -> None:
    """Rich tables: leaderboard with CIs, lift and Holm p; more metrics; cold-item slice."""
    res, primary = out.result, out.config.evaluation.primary_metric
    k = primary.partition("@")[2]
    second = f"recall@{k}" if primary != f"recall@{k}" else f"ndcg@{k}"
    titles = {
        "all": f"Leaderboard — {res.protocol}, {res.info['n_scored_users']} users",
        "cold": f"Cold-item slice — {res.info['n_cold_scored_users']} users with relevant "
        "items never seen in training",
    }
    for slice_, title in titles.items():
        table = _main_table(out, slice_, title, second)
        if table is None:
            continue
        console.print(table)
        if slice_ == "all":
            console.print(_more_table(out, k))
    for r in out.lm_vs_cf:
        console.print(_head_to_head_line(out, r), highlight=False, markup=False)


__all__ = ["NA", "TEST_NAMES", "leaderboard_rows", "print_leaderboard"]
