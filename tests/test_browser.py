"""report.html in a real headless Chromium (Debian's): renders, no console errors, no network requests,
and hostile values in data, feature names and the model name appear as text and never run."""
from __future__ import annotations

import json
import re
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


# Measures where the first-screen elements end, in a copy of the report: the report itself forbids scripts (CSP
# default-src 'none'), so the copy drops that meta tag and gets this script; the layout is the report's own.
MEASURE = """<script>
addEventListener('load', () => {
  const bottom = s => {
    const e = document.querySelector(s);
    return e ? Math.ceil(e.getBoundingClientRect().bottom) : -1;
  };
  document.title = 'LAYOUT ' + JSON.stringify({verdict: bottom('#verdict'), matrix: bottom('table.matrix'),
    actions: bottom('#actions + ol, #actions + p'), width: document.documentElement.scrollWidth});
});
</script>"""


def first_screen_layout(report: Path, tmp: Path) -> dict:
    html = report.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html).replace("</body>", MEASURE + "</body>")
    probe = tmp / "probe.html"
    probe.write_text(html)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,800", "--hide-scrollbars",
           "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(re.search(r"<title>LAYOUT (.*?)</title>", proc.stdout).group(1).replace("&quot;", '"'))


@pytest.mark.parametrize("case", ["fail", "inconclusive"])
def test_verdict_matrix_and_first_actions_fit_the_first_screen(case, tmp_path):
    layout = first_screen_layout(_render(case, tmp_path), tmp_path)
    assert 0 < layout["verdict"] < layout["matrix"] < layout["actions"] <= 800, layout
    assert layout["width"] <= 1280, layout                              # no sideways scrolling either


def test_the_layout_check_can_fail(tmp_path):
    """Control: with a tall block above the matrix the actions leave the first screen, and the probe says so."""
    report = _render("fail", tmp_path)
    report.write_text(report.read_text().replace('<section id="first-screen">',
                                                 '<div style="height:700px"></div><section id="first-screen">'))
    assert first_screen_layout(report, tmp_path)["actions"] > 800


def test_prints_to_pdf_with_collapsed_sections_opened(tmp_path):
    results = json.loads((FIXTURES / "fail.json").read_text())
    attribution = next(c for c in results["checks"] if c["check"] == "attribution")
    attribution["tables"]["top_words"]["rows"] = [["adapted", i, f"word{i:02d}"] for i in range(1, 21)]
    render_all(results, tmp_path)
    report = tmp_path / "report.html"
    assert '<details class="table"><summary><strong>Top words</strong>' in report.read_text()   # collapsed
    pdf = tmp_path / "report.pdf"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
           f"--print-to-pdf={pdf}", report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and pdf.exists(), proc.stderr[-2000:]
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))
    assert 2 <= pages <= 12, pages                                   # the first screen is a page of its own
    pdftotext = shutil.which("pdftotext")
    if pdftotext:                                                     # poppler-utils: read the printed text
        text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
        assert "word20" in text                                       # inside a closed <details>, printed
        assert "FAIL because" in text and "First things to do" in text
