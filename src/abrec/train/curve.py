"""The learning curve: train loss and validation metric per epoch, as JSON and a PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abrec.jsonsafe import json_safe


def write_curve_json(path: Path, payload: dict[str, Any]) -> Path:
    """The curve and the run's summary as JSON (NaN -> null)."""
    path.write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    return path


def plot_curve(
    path: Path, history: Sequence[dict[str, Any]], metric: str, best_epoch: int | None
) -> Path:
    """Train loss (left axis) and the validation metric (right axis) against the epoch.

    Same look as the report's figures (matplotlib Agg, no top/right spines, light grid).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=110)
    ax.spines[["top"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    trained = [h for h in history if h.get("train_loss") is not None]
    ax.plot(
        [h["epoch"] for h in trained],
        [h["train_loss"] for h in trained],
        marker="o",
        color="#3b6ea5",
        label="train loss",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="#3b6ea5")
    right = ax.twinx()
    right.spines[["top"]].set_visible(False)
    right.plot(
        [h["epoch"] for h in history],
        [h["metrics"][metric] for h in history],
        marker="s",
        color="#d1762b",
        label=f"validation {metric}",
    )
    right.set_ylabel(f"validation {metric}", color="#d1762b")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="#4c9a5b", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set_xticks([h["epoch"] for h in history])
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, frameon=False)
    ax.set_title("learning curve (epoch 0 = the base model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


__all__ = ["plot_curve", "write_curve_json"]
