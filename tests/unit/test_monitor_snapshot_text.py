"""`MonitorSnapshot.to_text` / `from_text`: what followers read back is what the leader had."""

from __future__ import annotations

import math

from abrec.monitor.health import (
    ExperimentHealth,
    GuardrailHealth,
    MonitorSnapshot,
    VariantHealth,
)
from abrec.stats.drift import DriftCheck


def snapshot() -> MonitorSnapshot:
    return MonitorSnapshot(
        at=1765170000.25,
        experiments=(
            ExperimentHealth(
                "exp1",
                "ab",
                (
                    VariantHealth("control", 10, 100.0, 7.0),
                    VariantHealth("treatment", 12, 120.0, 9.0),
                ),
                float("nan"),
                (GuardrailHealth("treatment", "ctr", True, float("-inf"), -0.01),),
            ),
            ExperimentHealth("exp2", "bandit", (), None, (), error="no exposures yet"),
        ),
        unmonitored=3,
        drift=(
            DriftCheck("scores", "ease", 0.31, 0.2, 1e-9, True, 5000, 800),
            DriftCheck("embedding", "lm", None, None, None, False, 0, 0, math.inf, "too few"),
        ),
        drift_error=None,
    )


def test_text_round_trip_keeps_types_and_non_finite_values() -> None:
    s = snapshot()
    back = MonitorSnapshot.from_text(s.to_text())
    assert back.to_text() == s.to_text()
    e = back.experiments[0]
    assert isinstance(e, ExperimentHealth) and isinstance(e.variants[1], VariantHealth)
    assert math.isnan(e.srm_pvalue) and e.guardrails[0].low == -math.inf  # type: ignore[arg-type]
    assert (
        back.experiments[1].srm_pvalue is None and back.experiments[1].error == "no exposures yet"
    )
    assert back.drift is not None and back.drift[1].cosine_shift == math.inf
    assert back.drift[0] == s.drift[0] and back.at == s.at and back.unmonitored == 3  # type: ignore[index]


def test_no_drift_stays_none() -> None:
    s = MonitorSnapshot(at=1.0, experiments=(), unmonitored=0, drift=None, drift_error="boom")
    back = MonitorSnapshot.from_text(s.to_text())
    assert back == s
