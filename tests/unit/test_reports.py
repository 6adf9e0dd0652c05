"""Chart links: a chart under the served reports dir gets a URL; otherwise artifacts name its path."""

from __future__ import annotations

from ticketlens.adapters.reports import chart_markdown, chart_url
from ticketlens.adapters.settings import Settings


def test_chart_urls_follow_the_served_reports_dir(tmp_path):
    reports = tmp_path / "reports"
    chart = reports / "csat-drivers" / "2026-09-02_2026-12-01" / "drivers.png"
    served = Settings(reports_dir=str(reports), reports_base_url="http://127.0.0.1:8766/")
    assert chart_url(served, chart) == "http://127.0.0.1:8766/csat-drivers/2026-09-02_2026-12-01/drivers.png"
    assert chart_url(served, tmp_path / "elsewhere.png") is None  # outside the served dir: no made-up URL
    legacy = Settings(reports_dir=str(reports), spike_chart_base_url="https://charts.example.org")
    assert chart_url(legacy, reports / "spike-a.png") == "https://charts.example.org/spike-a.png"
    assert chart_url(Settings(reports_dir=str(reports)), chart) is None

    lines = chart_markdown(served, [str(chart)], "Charts")
    assert "![drivers](http://127.0.0.1:8766/csat-drivers/2026-09-02_2026-12-01/drivers.png)" in lines
    unserved = "\n".join(chart_markdown(Settings(reports_dir=str(reports)), [str(chart)], "Charts"))
    assert f"`{chart}`" in unserved and "TICKETLENS_REPORTS_BASE_URL" in unserved
    assert chart_markdown(served, [], "Charts") == []
