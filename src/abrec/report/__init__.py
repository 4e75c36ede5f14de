"""Self-contained HTML/JSON reports with inline plots (nothing fetched from a CDN)."""

from abrec.report.html import ReportError, render_html, write_report

__all__ = ["ReportError", "render_html", "write_report"]
