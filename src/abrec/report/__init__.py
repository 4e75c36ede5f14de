"""Self-contained HTML/JSON reports with inline plots (nothing fetched from a CDN)."""

from abrec.report.html import ReportError, render_html, write_report
from abrec.report.model import (
    Agreement,
    Decision,
    DemoReport,
    LeaderboardRow,
    Look,
    OfflineComparison,
    OfflineSection,
    RunInfo,
    SimulationInfo,
)

__all__ = [
    "Agreement",
    "Decision",
    "DemoReport",
    "LeaderboardRow",
    "Look",
    "OfflineComparison",
    "OfflineSection",
    "ReportError",
    "RunInfo",
    "SimulationInfo",
    "render_html",
    "write_report",
]
