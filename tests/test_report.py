"""The HTML report: self-contained, and every chart is drawn in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pipelines.report import CHARTS, build_report
from pipelines.views import build_views
from test_views import write_fixture, write_rated_responses

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    write_fixture(root / "out")
    write_rated_responses(root / "out")
    build_views(str(root / "out"), str(root / "motpipe.duckdb"))
    result = build_report(str(root / "motpipe.duckdb"), str(root / "report.html"))
    return root, result


def test_report_is_self_contained(report):
    _, result = report
    page = open(result["path"], encoding="utf-8").read()
    assert result["charts"] == list(CHARTS)
    assert not re.search(r"<script[^>]+src=", page) and "cdn.jsdelivr" not in page and "<link" not in page
    assert "vegaEmbed" in page and "waited far too long" in page  # the at-risk table
    for name in CHARTS:
        assert f'id="chart-{name}"' in page


def _chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=15000", "--window-size=1280,2600", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_every_chart_in_headless_chromium(report, tmp_path):
    root, result = report
    url = f"file://{result['path']}"
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for name in CHARTS:
        match = re.search(rf'<div[^>]*id="chart-{name}"[^>]*>(.*?)</svg>', html, re.S)
        assert match, f"chart {name}: no <svg> in its container"
        opening = re.search(rf'<div[^>]*id="chart-{name}"[^>]*>', html).group(0)
        assert 'data-rendered="true"' in opening and "data-error" not in opening, opening
        svg = match.group(1)
        # a drawn chart has marks: paths, rects or text inside the svg, not an empty element
        assert len(re.findall(r"<(path|rect|text|line)\b", svg)) > 5, f"chart {name}: the svg is empty"
    screenshot = tmp_path / "report.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
