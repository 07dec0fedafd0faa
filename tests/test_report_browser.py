"""The HTML report and the HAR export in a real browser: headless Chromium (Debian's package, not a Playwright
download) driven by Playwright. The report renders without script errors, its charts and sequence diagrams have
size on screen, and clicking a message shows that message's JSON; a HAR loads and parses in the browser.

Skipped when Playwright or Chromium is missing, except under CI (``CI`` or ``VALR_REPLAY_REQUIRE_CHROMIUM`` set, as
``.ci/run`` does), where that is a failure.
``VALR_REPLAY_CHROMIUM`` names another Chromium binary (default /usr/bin/chromium)."""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replay.cli import main

from conftest import ROOT

# The race, short (as tests/test_report.py has it): naive leaks an order in every 2 s refresh cycle, reconcile holds.
RACE = (ROOT / "scenarios" / "open_orders_race.toml").read_text().replace('duration = "60s"', 'duration = "8s"')
REFERENCE = ROOT / "captures" / "reference_session.jsonl"

# No internet here: without the background-networking flags Chromium keeps dialling out and logging refusals.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000  # Playwright's auto-waiting (expectations, clicks, navigation) gives up after this


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """The Chromium binary; skip (fail under CI) when it or Playwright is missing. Autouse and module-scoped, so it
    runs before the fixtures that make the report and the HAR."""
    path = os.environ.get("VALR_REPLAY_CHROMIUM", "/usr/bin/chromium")
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not os.access(path, os.X_OK):
        missing.append(f"Chromium at {path} (apt-get install chromium, or set VALR_REPLAY_CHROMIUM)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI") or os.environ.get("VALR_REPLAY_REQUIRE_CHROMIUM"):
            pytest.fail(f"{reason}; CI or VALR_REPLAY_REQUIRE_CHROMIUM is set, so this is not skipped", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives the browser a fresh temporary profile (user-data-dir) of its own: parallel workers
        # (pytest -n) do not share one.
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page that records console errors and uncaught exceptions in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    p = context.new_page()
    problems: list[str] = []
    p.on("console", lambda m: problems.append(f"console.error: {m.text} at {m.location}") if m.type == "error"
         else None)
    p.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    p.problems = problems
    try:
        yield p
    finally:
        context.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("browser-report")
    (d / "race.toml").write_text(RACE)
    out = d / "r.html"
    res = CliRunner().invoke(main, ["run", str(d / "race.toml"), "--policy", "naive", "--policy", "reconcile",
                                    "--report", str(out), "--no-timeline"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def har(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser-har") / "session.har"
    res = CliRunner().invoke(main, ["export", str(REFERENCE), "--har", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_report_renders_and_shows_a_clicked_messages_json(report: Path, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(report.as_uri(), wait_until="load")

    rows = page.locator("table#verdicts tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 2 and all(t.strip() for t in rows.all_inner_texts())

    charts = page.locator("svg.open-orders[data-run]")
    expect(charts.first).to_be_visible()
    for i in range(charts.count()):
        for cls in ("truth", "belief"):
            line = charts.nth(i).locator(f"polyline.{cls}")
            assert (line.get_attribute("points") or "").strip(), (i, cls)
            box = line.bounding_box()
            assert box is not None and box["width"] > 0, (i, cls, box)

    msgs = page.locator("svg.sequence g.msg[data-json]")
    expect(msgs.first).to_be_attached()
    expect(page.locator(".violating").first).to_be_visible()

    # Click the middle of a message's row (the whole row takes the click) other than the violating one, then the
    # violating one's label: each time the JSON view shows that message.
    view = page.locator("pre#json-view")
    for msg in (page.locator("svg.sequence g.msg[data-json]:not(.violating)").first,
                page.locator("svg.sequence g.msg.violating[data-json]").first):
        expected = json.loads(msg.get_attribute("data-json") or "")
        before = view.text_content()
        target = msg.locator("text.label") if "violating" in (msg.get_attribute("class") or "") else msg
        target.click()
        page.wait_for_function("([el, before]) => el.textContent !== before", arg=[view.element_handle(), before],
                               timeout=WAIT_MS)
        assert json.loads(view.text_content() or "") == expected
        expect(msg).to_have_class(re.compile(r"\bselected\b"))
    assert page.locator(".msg.selected").count() == 1

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")

    assert page.problems == []


# Runs in the page: fetch the HAR over HTTP, JSON.parse it, and list what a HAR 1.2 reader would trip over.
CHECK_HAR = """
async () => {
  const text = await (await fetch('session.har')).text();
  const har = JSON.parse(text);
  const problems = [];
  const log = har.log || {};
  if (log.version !== '1.2') problems.push('log.version: ' + log.version);
  const entries = log.entries;
  if (!Array.isArray(entries) || entries.length === 0) return {problems: ['log.entries: empty or not an array']};
  let ws = 0, messages = 0;
  entries.forEach((e, i) => {
    if (isNaN(new Date(e.startedDateTime).getTime())) problems.push(i + ': startedDateTime ' + e.startedDateTime);
    if (!e.request || typeof e.request.method !== 'string' || typeof e.request.url !== 'string')
      problems.push(i + ': request.method/url');
    if (!e.response || typeof e.response.status !== 'number') problems.push(i + ': response.status');
    if (!e.timings || typeof e.timings !== 'object') problems.push(i + ': timings');
    const msgs = e._webSocketMessages;
    if (msgs === undefined) return;
    if (!Array.isArray(msgs)) { problems.push(i + ': _webSocketMessages not an array'); return; }
    if (msgs.length) ws += 1;
    messages += msgs.length;
    msgs.forEach((m, j) => {
      if (!['send', 'receive'].includes(m.type) || typeof m.time !== 'number' || typeof m.opcode !== 'number'
          || typeof m.data !== 'string') problems.push(i + '.' + j + ': ' + JSON.stringify(m).slice(0, 200));
    });
  });
  return {problems, entries: entries.length, ws, messages};
}
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_exported_har_loads_in_the_browser(har: Path, page: Any) -> None:
    (har.parent / "index.html").write_text(  # an empty icon: no request for /favicon.ico
        '<!doctype html><link rel="icon" href="data:,"><title>HAR</title><p>HAR check</p>\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(har.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html", wait_until="load")
        result = page.evaluate(CHECK_HAR)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result["problems"] == []
    assert result["entries"] > 0 and result["ws"] >= 1 and result["messages"] > 0
    assert page.problems == []
