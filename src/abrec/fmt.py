"""Number formatting for every human-facing output (terminal tables, the demo, the HTML report).

One place for how abrec writes numbers: a missing or non-finite value is an en dash,
estimates keep 4 significant digits unless told otherwise, signed differences carry their
sign, shares are percentages, and small p-values are floored at ``<1e-4``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: What a missing, NaN or infinite value prints as.
MISSING = "–"


def as_float(x: Any) -> float | None:
    """``x`` as a finite float, or None when it is missing, non-numeric, NaN or infinite."""
    if x is None or isinstance(x, bool | str):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def num(x: Any, digits: int = 4, *, signed: bool = False, fixed: bool = False) -> str:
    """``x`` with ``digits`` significant digits (``fixed``: decimals); integers exactly.

    ``signed`` adds a ``+`` to positive values (for differences).
    """
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        return f"{int(x):+d}" if signed else str(int(x))
    v = as_float(x)
    if v is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{v:{sign}.{digits}f}" if fixed else f"{v:{sign}.{digits}g}"


def pct(x: Any, digits: int = 2, *, signed: bool = True) -> str:
    """A share as a percentage, signed by default (``+12.34%``)."""
    v = as_float(x)
    if v is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{100 * v:{sign}.{digits}f}%"


def pvalue(p: Any) -> str:
    """A p-value with 2 significant digits, floored at ``<1e-4``."""
    v = as_float(p)
    if v is None:
        return MISSING
    return "<1e-4" if v < 1e-4 else f"{v:.2g}"


def interval(low: Any, high: Any, fmt: Any = num) -> str:
    """``[low, high]`` with each end formatted by ``fmt``."""
    return f"[{fmt(low)}, {fmt(high)}]"


__all__ = ["MISSING", "as_float", "interval", "num", "pct", "pvalue"]
