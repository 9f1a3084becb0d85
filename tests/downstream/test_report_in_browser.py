"""`privmon report capacity`'s HTML as a planner sees it: opened in a real headless
Chromium, every image decoded, nothing in the console; the screenshot is kept."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from privmon.agents.capacity_report import PANELS, render
from privmon.agents.releases import to_frame
from tests.downstream.synthetic import capacity_days
from tests.oncall_programs import chromium, version

ARTIFACTS = Path(os.environ.get("PRIVMON_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))


def test_the_report_renders_in_chromium_with_every_image_and_no_console_error(tmp_path,
                                                                              figures):
    frame = to_frame(capacity_days(21, end_ms=int(time.time() * 1000), growth_per_day=0.004))
    page = render(frame, tmp_path)
    with chromium() as driver:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => "
            "[i.complete, i.naturalWidth, i.naturalHeight, i.alt || i.src.slice(0, 30)]);")
        console = driver.get_log("browser")
        title = driver.title
        shot = tmp_path / "capacity-report.png"
        assert driver.save_screenshot(str(shot))
    assert len(images) == len(PANELS), images
    for complete, width, height, name in images:
        assert complete and width > 0 and height > 0, name
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == [], console
    assert "capacity" in title.lower(), title
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = shutil.copy(shot, ARTIFACTS / shot.name)
    figures(f"{version('chromium')}: {len(images)} images decoded "
            f"({', '.join(f'{w}x{h}' for _, w, h, _ in images)}), 0 console errors; "
            f"screenshot {kept}")


def test_the_browser_check_catches_a_broken_image_and_a_console_error(tmp_path):
    """Negative control: a page with an undecodable image and a script error."""
    page = tmp_path / "broken.html"
    page.write_text('<html><head><title>broken</title></head><body>'
                    '<img alt="bad" src="data:image/png;base64,AAAA">'
                    '<script>undefinedFunction()</script></body></html>')
    with chromium() as driver:
        driver.get(page.as_uri())
        width = driver.execute_script("return document.images[0].naturalWidth;")
        console = driver.get_log("browser")
    assert width == 0
    assert any(e["level"] == "SEVERE" and "undefinedFunction" in e["message"]
               for e in console), console
