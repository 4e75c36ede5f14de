"""Report figures rendered with matplotlib (Agg) to base64 PNG data URIs (no external files)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

_COLORS = ("#3b6ea5", "#d1762b", "#4c9a5b", "#a34b8a", "#7d7d7d", "#b5a33a")


def _figure(width: float = 6.4, height: float = 3.4) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _encode(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def confidence_sequence(
    variants: Sequence[str],
    units: Sequence[float],
    estimates: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    title: str,
) -> str | None:
    """Running estimate and always-valid interval against units observed (one line per variant).

    The five sequences hold one entry per look; looks without a finite estimate are left out.
    """
    rows = [
        (str(v), _num(u), _num(e), _num(lo), _num(hi))
        for v, u, e, lo, hi in zip(variants, units, estimates, lows, highs, strict=True)
        if np.isfinite(_num(e))
    ]
    if not rows:
        return None
    fig, ax = _figure()
    for c, v in zip(_COLORS, sorted({r[0] for r in rows}), strict=False):
        sel = np.array([r[1:] for r in rows if r[0] == v])
        x, est, lo, hi = sel.T
        ax.fill_between(
            x, lo, hi, color=c, alpha=0.2, step="post", label=f"{v}: 95% always-valid CI"
        )
        ax.step(x, est, where="post", color=c, label=f"{v}: estimate")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("units observed")
    ax.set_ylabel("CTR difference (treatment - control)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return _encode(fig)


def interval_chart(
    labels: Sequence[str],
    estimates: Sequence[Any],
    lows: Sequence[Any],
    highs: Sequence[Any],
    *,
    title: str,
    xlabel: str,
    zero_line: bool = True,
) -> str | None:
    """Horizontal point-and-interval chart (a forest plot)."""
    if not labels:
        return None
    est = np.array([_num(e) for e in estimates])
    lo = np.array([_num(e) for e in lows])
    hi = np.array([_num(e) for e in highs])
    fig, ax = _figure(6.4, 0.5 + 0.45 * len(labels) + 0.8)
    y = np.arange(len(labels))[::-1]
    err = np.vstack([np.nan_to_num(est - lo), np.nan_to_num(hi - est)])
    ax.errorbar(est, y, xerr=err, fmt="o", color=_COLORS[0], capsize=4)
    if zero_line:
        ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, list(labels), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _encode(fig)


def bar_chart(
    labels: Sequence[str],
    observed: Sequence[float],
    expected: Sequence[float] | None,
    *,
    title: str,
    ylabel: str,
) -> str | None:
    """Bars of observed counts per label, with expected counts as markers."""
    if not labels:
        return None
    fig, ax = _figure(5.0, 3.0)
    x = np.arange(len(labels))
    ax.bar(x, [_num(o) for o in observed], color=_COLORS[: len(labels)], label="observed")
    if expected is not None:
        ax.scatter(
            x, [_num(e) for e in expected], color="black", marker="_", s=600, label="expected"
        )
        ax.legend(fontsize=7, frameon=False)
    ax.set_xticks(x, list(labels))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return _encode(fig)


def rounds_chart(
    rounds: Sequence[int], values: Sequence[float | None], users: Sequence[int], *, title: str
) -> str | None:
    """Online CTR of the champion per round (line) over the users each round cost (bars)."""
    if not rounds:
        return None
    fig, ax = _figure(6.4, 3.0)
    x = np.asarray(rounds)
    ax.bar(x, [_num(u) for u in users], color="#d9dee5", label="simulated users")
    ax.set_xlabel("round")
    ax.set_ylabel("users the round cost")
    ax.set_xticks(x)
    ax2 = ax.twinx()
    ax2.plot(x, [_num(v) for v in values], "o-", color=_COLORS[0], label="champion CTR")
    ax2.set_ylabel("champion CTR")
    ax.set_title(title, fontsize=10)
    return _encode(fig)
