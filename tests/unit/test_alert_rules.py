"""deploy/prometheus: the alert rules pass `promtool check` and their unit tests.

Needs promtool (Debian package `prometheus`; `.ci/run` installs it): skipped without it,
failed under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def tool(name: str) -> str:
    """Path of a Prometheus binary; skip without it (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROM, capture_output=True, text=True, timeout=120)


def test_rules_and_config_are_valid() -> None:
    promtool = tool("promtool")
    rules = _run(promtool, "check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 9 rules found" in rules.stdout
    config = _run(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_pass() -> None:
    promtool = tool("promtool")
    out = _run(promtool, "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_unit_tests_cover_every_alert() -> None:
    import yaml

    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    fired = {
        t["alertname"]
        for test in tests
        for t in test.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    silent = {
        t["alertname"]
        for test in tests
        for t in test.get("alert_rule_test", [])
        if not t.get("exp_alerts")
    }
    assert alerts == fired, f"alerts never expected to fire: {sorted(alerts - fired)}"
    assert alerts <= silent, f"alerts never expected silent: {sorted(alerts - silent)}"


def test_a_broken_rule_fails_the_unit_tests(tmp_path: Path) -> None:
    """The promtool tests can fail: a looser SRM threshold makes them fail."""
    promtool = tool("promtool")
    text = (PROM / "alerts.yml").read_text()
    assert "(abrec_experiment_srm_pvalue) < 0.001" in text
    (tmp_path / "alerts.yml").write_text(
        text.replace(
            "(abrec_experiment_srm_pvalue) < 0.001", "(abrec_experiment_srm_pvalue) < 0.01"
        )
    )
    shutil.copy(PROM / "alerts_test.yml", tmp_path)
    out = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
