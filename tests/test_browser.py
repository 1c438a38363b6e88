"""report.html in a real headless Chromium (Debian's): renders, no console errors, no network requests,
and hostile values in data, feature names and the model name appear as text and never run."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from transfer_audit.render import render_all

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--enable-logging=stderr", "--v=0"]


def open_in_chromium(html: Path, tmp: Path) -> tuple[str, str, list[str]]:
    """(DOM after load, browser log, every URL the page asked for)."""
    netlog = tmp / "net.json"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
           "--virtual-time-budget=3000", "--dump-dom", html.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    urls = []
    if netlog.exists():
        raw = netlog.read_text(errors="replace").rstrip().rstrip(",")
        if not raw.endswith("}"):
            raw += "]}"
        try:
            events = json.loads(raw).get("events", [])
        except json.JSONDecodeError:
            events = []
        # Requests the page made carry the document as initiator; the browser's own background requests
        # (time sync, updates) say "not an origin" and are not the report's doing.
        urls = sorted({e["params"]["url"] for e in events if isinstance(e.get("params"), dict)
                       and "url" in e["params"] and e["params"].get("initiator", "not an origin") != "not an origin"})
    return proc.stdout, proc.stderr, urls


def console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def test_the_console_check_can_fail(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<html><body><script>undefinedFn();</script></body></html>')
    _, log, _ = open_in_chromium(page, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console_messages(log))


def test_the_network_check_can_fail(tmp_path):
    """Control: a page that loads a remote image is caught, so the checks below are not vacuous."""
    page = tmp_path / "control.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    _, _, urls = open_in_chromium(page, tmp_path)
    assert urls == ["http://127.0.0.1:9/x.png"]


def _render(case: str, tmp: Path) -> Path:
    results = json.loads((FIXTURES / f"{case}.json").read_text())
    render_all(results, tmp)
    return tmp / "report.html"


def test_report_renders_offline_without_errors(tmp_path):
    dom, log, urls = open_in_chromium(_render("fail", tmp_path), tmp_path)
    assert 'class="verdict FAIL"' in dom and "<svg" in dom
    assert console_messages(log) == []
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []


def test_hostile_values_show_as_text_and_never_run(tmp_path):
    dom, log, urls = open_in_chromium(_render("hostile", tmp_path), tmp_path)
    assert "<script" not in dom.lower()
    assert "PWNED" not in dom.split("<title>")[1].split("</title>")[0]       # the title script never ran
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom          # ...and shows as text
    assert "onerror=" not in dom.replace("onerror=alert(1)&gt;", "") and "<img" not in dom
    assert "<svg onload" not in dom
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []
