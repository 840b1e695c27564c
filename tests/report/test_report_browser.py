"""report.html as people will see it: opened in headless Chromium (DevTools protocol), no console
error, no request leaving the machine, every checklist id on the page, and a screenshot kept with
the evidence. The same check fails on a page with a JS error, an external load and a missing id."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from report_chromium import PageCheck, check_page, find_chromium
from report_support import COMMIT, NOW

from harness.pytest_evidence import session_evidence
from harness.report.build import write_report
from harness.report.checklist import load_checklist

pytestmark = pytest.mark.skipif(
    find_chromium() is None and os.environ.get("GAMEDAY_REQUIRE_SERVICES") != "1",
    reason="no chromium binary: apt-get install -y chromium (with GAMEDAY_REQUIRE_SERVICES=1 this fails instead)")


def problems(check: PageCheck, ids: list[str]) -> list[str]:
    out = [f"console error: {e}" for e in check.console_errors]
    out += [f"request left the machine: {u}" for u in check.external_requests]
    out += [f"checklist id not on the page: {i}" for i in ids if i not in check.text]
    return out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_report_opens_in_chromium_without_errors_showing_every_checklist_id(gallery, tmp_path, request):
    out = write_report(list(gallery.sets), tmp_path, config_dir=gallery.config, commit=COMMIT, now=NOW)
    keep = session_evidence(request.config).path / "report-check"  # kept with the evidence (CI uploads reports/)
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(out.html, keep / "report.html")
    check = check_page(out.html, screenshot=keep / "report.png")
    ids = [i.id for i in load_checklist(gallery.config)]
    assert problems(check, ids) == []
    assert "Readiness report" in check.text and "What failed" in check.text
    width, height = png_size(keep / "report.png")
    assert width == 1280 and height >= 2000, (width, height)


def test_the_browser_check_fails_on_a_js_error_an_external_load_and_a_missing_id(gallery, tmp_path):
    ids = [i.id for i in load_checklist(gallery.config)]
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>"
                      + "".join(f"<p>{i}</p>" for i in ids[1:])
                      + "<img src='http://127.0.0.1:9/pixel.png' alt=''>"
                      + "<script>console.error('rendering went wrong'); undefinedFunction();</script>"
                      + "</body></html>")
    found = problems(check_page(broken), ids)
    assert any("undefinedFunction is not defined" in p for p in found), found
    assert any("console.error: rendering went wrong" in p for p in found), found
    assert any("request left the machine: http://127.0.0.1:9/pixel.png" in p for p in found), found
    assert f"checklist id not on the page: {ids[0]}" in found
    # the report's own Content-Security-Policy turns a smuggled external load into a console error
    out = write_report(list(gallery.sets), tmp_path / "r", config_dir=gallery.config, commit=COMMIT, now=NOW)
    html = out.html.read_text().replace("</main>", "<img src='http://127.0.0.1:9/beacon.png' alt=''></main>")
    out.html.write_text(html)
    found = problems(check_page(out.html), ids)
    assert any("Content Security Policy" in p and "beacon.png" in p for p in found), found
