"""Where report charts can be seen: a URL under ``TICKETLENS_REPORTS_BASE_URL`` when the reports dir is served.

Charts are PNG files in ``TICKETLENS_REPORTS_DIR`` on the worker. A path on the worker's disk is useless in the
Prefect UI or Slack, so when the directory is served over HTTP(S) (``make up`` starts a small static server for
``var/reports`` and sets the base URL) artifacts show the charts as images and Slack links them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ticketlens.adapters.settings import Settings


def reports_base_url(settings: Settings) -> str | None:
    """The served reports dir (``spike_chart_base_url`` is the older, spike-only name of the same thing)."""
    base = settings.reports_base_url or settings.spike_chart_base_url
    return base.rstrip("/") if base else None


def chart_url(settings: Settings, path: str | Path) -> str | None:
    """The URL of a chart written under ``reports_dir``; None when the dir is not served (or it lies outside)."""
    base = reports_base_url(settings)
    if base is None:
        return None
    try:
        relative = Path(path).resolve().relative_to(Path(settings.reports_dir).resolve())
    except ValueError:
        return None
    return f"{base}/{quote(relative.as_posix())}"


def chart_markdown(settings: Settings, paths: list[str], title: str) -> list[str]:
    """Markdown lines: the charts as inline images when served, otherwise their paths on the worker."""
    if not paths:
        return []
    urls = [(p, chart_url(settings, p)) for p in paths]
    if all(url for _, url in urls):
        return ["", f"## {title}", ""] + [f"![{Path(p).stem}]({url})" for p, url in urls]
    return ["", f"{title} (on the worker; set TICKETLENS_REPORTS_BASE_URL to see them here): "
            + ", ".join(f"`{p}`" for p in paths)]
