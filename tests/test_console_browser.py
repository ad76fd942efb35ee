"""The web console in a real browser: Debian's Chromium driven by Playwright (Python).

Playwright's own browser download does not work on this network, so the tests launch the
system ``chromium`` (``JL_CHROMIUM`` overrides the path). Without Playwright or without a
Chromium the whole module is skipped with the reason printed (the suite runs with ``-ra``);
``./dev.sh test`` installs Debian's ``chromium`` when it runs as root and finds none.

Every page load listens to the browser console: any JavaScript error, uncaught exception or
Content-Security-Policy violation fails the test, except HTTP error statuses a test provokes
on purpose (Chromium logs "Failed to load resource" for those). Screenshots of each main view
at 1280x800 and 390x844 go to a temporary directory whose path is printed at the end of the
module; ``JL_UPDATE_SCREENSHOTS=1`` also copies them to docs/console-screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console_support import STRUCTURING_IDENTITY, ConsoleSite, running_console_site

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("browser tests skipped: the Python package 'playwright' is not installed "
                "(pip install -e '.[dev]')", allow_module_level=True)

pytestmark = pytest.mark.slow


def find_chromium() -> str | None:
    """The Chromium to drive: $JL_CHROMIUM, else `chromium` on PATH, else /usr/bin/chromium."""
    configured = os.environ.get("JL_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = find_chromium()
if CHROMIUM is None:  # pragma: no cover - depends on the machine
    pytest.skip("browser tests skipped: no Chromium found (apt-get install chromium, or set "
                "JL_CHROMIUM; ./dev.sh test installs it when run as root)",
                allow_module_level=True)

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
"""Flags that keep Chromium from calling home on a closed network (and run it as root)."""
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "console-screenshots"
DOCS_SHOTS = frozenset({
    "timeline-auditor-1280x800", "charts-regulator-1280x800", "verify-failed-1280x800",
    "alert-verified-regulator-1280x800", "disclosures-auditor-1280x800",
    "alerts-1-regulator-zh-1280x800", "timeline-auditor-390x844", "verify-failed-390x844",
    "alerts-1-regulator-390x844",
})
"""The screenshots kept in docs/console-screenshots/ (JL_UPDATE_SCREENSHOTS=1 rewrites them)."""
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class ConsolePage:
    """A browser page on the console with everything its console reported."""

    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    allowed_statuses: set[int] = field(default_factory=set)

    def on_console(self, message: ConsoleMessage) -> None:
        """Keep console errors (CSP violations are reported as errors too)."""
        if message.type == "error":
            self.errors.append(message.text)

    def unexpected_errors(self) -> list[str]:
        """Errors other than the HTTP statuses this test provokes on purpose."""
        unexpected = []
        for error in self.errors:
            failed = FAILED_LOAD.search(error)
            if failed and int(failed.group(1)) in self.allowed_statuses:
                continue
            unexpected.append(error)
        return unexpected

    def open(self, url: str | None = None) -> None:
        """Load the console (or ``url``) and wait until its first view is rendered."""
        self.page.goto(url or self.base_url + "/console/")
        # A login link opened over the console is a hash change, not a new document.
        self.page.wait_for_function("""() => document.body.dataset.ready === 'true'
                                          && !location.hash.startsWith('#login=')""")

    def go(self, route: str) -> None:
        """Navigate to the hash route ``route`` (e.g. "charts") as a link would."""
        self.page.evaluate("(route) => { location.hash = '#/' + route; }", route)
        self.page.wait_for_function(
            "() => !document.getElementById('main').hasAttribute('aria-busy')")

    def testid(self, name: str) -> Any:
        """The locator of the elements with data-testid ``name``."""
        return self.page.get_by_test_id(name)

    def no_horizontal_overflow(self) -> None:
        """The page is no wider than the window (tables scroll inside their own box)."""
        widths = self.page.evaluate(
            "() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px window"


@dataclass
class Screenshots:
    """Where this module's screenshots go."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, console: ConsolePage, name: str) -> Path:
        """A full-page screenshot named ``name``."""
        path = self.directory / f"{name}.png"
        console.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture(scope="module")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    """A regulator node with data (tests/console_support.py) on a real HTTP server."""
    with running_console_site(tmp_path_factory.mktemp("console-browser")) as site:
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; every launch gets a fresh temporary user data dir."""
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    """Launch the system Chromium with the closed-network flags."""
    assert CHROMIUM is not None
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory,
                pytestconfig: pytest.Config) -> Iterator[Screenshots]:
    """A directory for screenshots; its path is printed (and copied to docs when asked)."""
    shots = Screenshots(tmp_path_factory.mktemp("console-screenshots"))
    yield shots
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and shots.taken:
        reporter.write_line(f"\nconsole screenshots ({len(shots.taken)}): {shots.directory}")
    if os.environ.get("JL_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        pngquant = shutil.which("pngquant")
        for path in shots.taken:
            if path.stem in DOCS_SHOTS:
                target = DOCS_SCREENSHOTS / path.name
                shutil.copyfile(path, target)
                if pngquant:  # 256 colours: a third of the size, same look for these pages
                    subprocess.run([pngquant, "--force", "--skip-if-larger", "--ext", ".png",
                                    str(target)], check=False)


def new_console(browser: Browser, site: ConsoleSite, viewport: dict[str, int] = WIDE,
                locale: str = "en-US") -> Iterator[ConsolePage]:
    """A fresh browser context (no cookies, no storage) on the console; checks its console."""
    context = browser.new_context(viewport=viewport, locale=locale)  # type: ignore[arg-type]
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    console = ConsolePage(page, site.base_url)
    page.on("console", console.on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    try:
        yield console
        assert console.unexpected_errors() == [], "the page logged errors"
    finally:
        context.close()


@pytest.fixture
def console(browser: Browser, console_site: ConsoleSite) -> Iterator[ConsolePage]:
    """A fresh page at 1280x800 in English."""
    yield from new_console(browser, console_site)


def flipped(bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with one byte of the leaf's commitment changed."""
    copy = json.loads(json.dumps(bundle))
    commitment = copy["leaf"]["commitment"]
    copy["leaf"]["commitment"] = ("0" if commitment[0] != "0" else "1") + commitment[1:]
    return copy


BEIJING_TIME = re.compile(r"(2\d{3}-\d\d-\d\d \d\d:\d\d:\d\d) \(UTC\+8\)")


def assert_beijing_time(element: Any, zone: str = " (UTC+8)") -> None:
    """``element`` is a <time> showing Beijing time with ``zone`` after it, its UTC moment in
    ``datetime`` and on hover (``title``), eight hours behind the shown time."""
    text = element.inner_text()
    assert text.endswith(zone), text
    shown = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")
    moment = datetime.fromisoformat(element.get_attribute("datetime").replace("Z", "+00:00"))
    assert shown == moment.replace(tzinfo=None) + timedelta(hours=8)
    title = element.get_attribute("title")
    assert moment.strftime("%Y-%m-%d %H:%M:%S") in title and "UTC" in title


# ---------------------------------------------------------------------------------------------
# Auditor view


def test_auditor_timeline_shows_both_logs(console: ConsolePage, console_site: ConsoleSite,
                                          screenshots: Screenshots) -> None:
    console.open()
    banner = console.testid("role-banner")
    assert banner.inner_text() == "Auditor view (read-only)"
    assert banner.get_attribute("data-role") == "auditor"
    assert console.page.evaluate("document.documentElement.lang") == "en"
    assert not console.testid("nav-alerts").is_visible()
    assert not console.testid("nav-trace").is_visible()
    assert not console.page.get_by_role("button", name="Log out").is_visible()
    logs = console.testid("timeline-log")
    assert logs.count() == 2
    platforms = {logs.nth(i).get_attribute("data-platform") for i in range(2)}
    assert platforms == {"unionpay", "wechatpay"}
    for name, submitted in console_site.data.submitted.items():
        log = console.page.locator(f"[data-testid=timeline-log][data-platform={name}]")
        rows = log.locator("tbody tr")
        assert rows.count() == 3  # three submissions, three checkpoints
        # newest first: the first row is the whole log
        assert rows.first.get_attribute("data-tree-size") == str(len(submitted))
        assert re.search(r"\d+ s", rows.first.inner_text())  # anchoring latency
        assert "UTC" in rows.first.inner_text()
        times = rows.first.locator("time")
        assert times.count() == 2  # block time, signed at: Beijing time, UTC on hover
        for i in range(2):
            assert_beijing_time(times.nth(i))
        assert_beijing_time(log.locator("dd time"))  # last anchored


def test_older_checkpoints_page_in_by_keyboard(browser: Browser,
                                              console_site: ConsoleSite) -> None:
    """With one checkpoint per page (``?page_size=1``), each log shows its newest checkpoint
    and a "Show older checkpoints" button; pressing it by keyboard appends the next older
    one until the first is shown, and then the button goes, leaving the focus in the table.
    On the narrow window, so the button must fit it too."""
    for console in new_console(browser, console_site, viewport=NARROW):
        console.open(console_site.base_url + "/console/?page_size=1#/timeline")
        page = console.page
        logs = {name: page.locator(f"[data-testid=timeline-log][data-platform={name}]")
                for name in console_site.data.submitted}
        for log in logs.values():
            assert log.locator("tbody tr").count() == 1
            assert log.get_by_test_id("older-checkpoints").is_visible()
            assert "Newest 1 checkpoint." in log.inner_text()  # one, not "1 checkpoints"
        console.testid("lang-toggle").click()
        log = logs["unionpay"]
        older = log.get_by_test_id("older-checkpoints")
        assert older.inner_text() == "显示更早的检查点"
        assert "最新的 1 个检查点。" in log.inner_text()
        console.testid("lang-toggle").click()
        assert older.inner_text() == "Show older checkpoints"
        assert older.get_attribute("aria-label") == "Show older checkpoints of unionpay · Shard 0"
        older.focus()
        for key, rows in (("Enter", 2), ("Space", 3)):
            page.keyboard.press(key)
            page.wait_for_function(
                "(n) => document.querySelectorAll("
                "'[data-platform=unionpay] tbody tr').length === n", arg=rows)
            console.no_horizontal_overflow()
        older.wait_for(state="hidden")
        sizes = [int(log.locator("tbody tr").nth(i).get_attribute("data-tree-size") or 0)
                 for i in range(3)]
        anchored = console_site.data.regulator.store.all_anchors()
        unionpay = console_site.data.nodes["unionpay"].log_id
        assert sizes == sorted((a.tree_size for a in anchored if a.log_id == unionpay),
                               reverse=True)  # newest first, back to the first checkpoint
        assert "Newest 3 checkpoints" in log.inner_text()
        assert page.evaluate("document.activeElement.getAttribute('role')") == "region"
        assert page.evaluate("document.activeElement.closest('[data-platform]')"
                             ".dataset.platform") == "unionpay"
        assert page.locator("#status").inner_text() == ""  # nothing announced
        assert logs["wechatpay"].locator("tbody tr").count() == 1  # the other log stays
        assert logs["wechatpay"].get_by_test_id("older-checkpoints").is_visible()


def test_auditor_charts_render_svg_with_data(console: ConsolePage,
                                             screenshots: Screenshots) -> None:
    console.open()
    console.testid("nav-charts").click()
    console.page.wait_for_selector("[data-testid=chart-volume] svg")
    for chart in ("chart-volume", "chart-latency"):
        figure = console.testid(chart)
        assert figure.locator("svg path.series-line").count() == 2  # one line per platform
        assert figure.locator("svg circle.series-dot").count() > 2
        assert figure.locator("svg text.axis-label").count() == 2
        assert figure.locator(".chart-legend li").all_inner_texts() == ["unionpay", "wechatpay"]
        table_rows = figure.locator(".visually-hidden table tbody tr")
        assert table_rows.count() == figure.locator("svg circle.series-dot").count()
    volume = console.testid("chart-volume").locator(".visually-hidden table tbody tr")
    anchored = sum(int(volume.nth(i).locator("td").nth(1).inner_text())
                   for i in range(volume.count()))
    assert anchored == 29  # every record of both logs, bucketed by block time
    assert console.testid("chart-alerts").count() == 0  # counts are for the regulator only


def test_disclosure_log_lists_both_requests(console: ConsolePage, console_site: ConsoleSite,
                                            screenshots: Screenshots) -> None:
    console.open()
    console.testid("nav-disclosures").click()
    rows = console.testid("disclosure-row")
    rows.first.wait_for()
    assert rows.count() == 2
    states = {rows.nth(i).locator("th").inner_text(): rows.nth(i).get_attribute("data-fulfilled")
              for i in range(2)}
    assert states == {str(console_site.data.fulfilled_request): "true",
                      str(console_site.data.pending_request): "false"}
    assert "Opening collected" not in console.page.locator("thead").inner_text()  # auditor
    assert console.testid("disclosure-count").inner_text() == "2 shown of 2 requests ever made."
    console.testid("lang-toggle").click()
    console.page.wait_for_selector("main h1 >> text=披露记录")
    assert console.testid("disclosure-count").inner_text() == "显示 2 条，链上共 2 条请求。"


# ---------------------------------------------------------------------------------------------
# Verify page


def test_verify_pasted_bundle_is_valid(console: ConsolePage, console_site: ConsoleSite,
                                       screenshots: Screenshots) -> None:
    console.open()
    console.testid("nav-verify").click()
    console.testid("verify-paste").fill(console_site.bundle_text)
    console.testid("verify-submit").click()
    verdict = console.testid("verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-valid") == "true"
    statuses = console.testid("verdict-check").evaluate_all(
        "(rows) => rows.map((row) => row.dataset.status)")
    assert statuses and set(statuses) == {"passed"}
    assert "Valid" in verdict.inner_text()
    console.page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Verdict: valid')")
    screenshots.take(console, "verify-valid-1280x800")


def test_verify_flipped_byte_fails_with_reason(console: ConsolePage, console_site: ConsoleSite,
                                               screenshots: Screenshots) -> None:
    console.open()
    console.go("verify")
    console.testid("verify-paste").fill(json.dumps(flipped(console_site.bundle)))
    console.testid("verify-submit").click()
    verdict = console.testid("verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-valid") == "false"
    failed = console.page.locator("[data-testid=verdict-check][data-status=failed]")
    assert failed.count() == 1
    assert failed.locator(".check-name").inner_text() == "inclusion"
    reason = failed.locator(".check-detail").inner_text()
    assert "compute root" in reason and failed.locator(".check-detail").is_visible()
    assert "Failed" in verdict.inner_text()


def test_verify_invalid_json_shows_error(console: ConsolePage) -> None:
    console.open()
    console.go("verify")
    console.testid("verify-paste").fill('{"format": "jointledger/proof-bundle/v1",')
    console.testid("verify-submit").click()
    error = console.testid("error")
    error.wait_for()
    assert "not valid JSON" in error.inner_text()
    assert error.get_attribute("role") == "alert"
    assert console.testid("verdict").count() == 0


def test_verify_unknown_format_shows_problem_detail(console: ConsolePage,
                                                    console_site: ConsoleSite) -> None:
    console.allowed_statuses.add(422)
    document = json.dumps({"format": "jointledger/unknown/v9"})
    answer = httpx.post(console_site.base_url + "/console/api/verify", content=document,
                        headers={"X-JL-Console": "1", "Content-Type": "application/json"})
    assert answer.status_code == 422
    console.open()
    console.go("verify")
    console.testid("verify-paste").fill(document)
    console.testid("verify-submit").click()
    error = console.testid("error")
    error.wait_for()
    assert answer.json()["detail"] in error.inner_text()
    assert error.get_attribute("data-status") == "422"


def test_verify_empty_input_says_so(console: ConsolePage) -> None:
    console.open()
    console.go("verify")
    console.testid("verify-submit").click()
    assert "Paste a document or choose a file first." in console.testid("error").inner_text()


def test_verify_file_picker(console: ConsolePage, console_site: ConsoleSite,
                            tmp_path: Path) -> None:
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(console_site.bundle_text)
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(console_site.case_file))
    console.open()
    console.go("verify")
    console.testid("verify-input").set_input_files(str(bundle_file))
    verdict = console.testid("verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-valid") == "true"
    assert console.testid("verify-paste").input_value() == console_site.bundle_text
    console.testid("verify-input").set_input_files(str(case_file))
    console.page.wait_for_selector("[data-testid=verdict] >> text=Case file")
    assert console.testid("verdict").get_attribute("data-valid") == "true"


def test_verify_drop_of_a_file(console: ConsolePage, console_site: ConsoleSite) -> None:
    console.open()
    console.go("verify")
    transfer = console.page.evaluate_handle(
        """(text) => {
             const transfer = new DataTransfer();
             transfer.items.add(new File([text], "bundle.json", {type: "application/json"}));
             return transfer;
           }""", json.dumps(flipped(console_site.bundle)))
    console.testid("drop-zone").dispatch_event("drop", {"dataTransfer": transfer})
    verdict = console.testid("verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-valid") == "false"


# ---------------------------------------------------------------------------------------------
# Regulator view


def test_regulator_alert_drill_down_and_record_verify(
        console: ConsolePage, console_site: ConsoleSite, screenshots: Screenshots) -> None:
    console.open(console_site.login_url())
    banner = console.testid("role-banner")
    assert banner.get_attribute("data-role") == "regulator"
    assert banner.inner_text() == "Regulator view: pboc"
    assert "login" not in console.page.url  # the one-time token left the address bar
    assert console.testid("nav-alerts").is_visible() and console.testid("nav-trace").is_visible()

    console.testid("nav-alerts").click()
    rows = console.testid("alert-row")
    rows.first.wait_for()
    assert rows.count() == 2
    assert [rows.nth(i).get_attribute("data-alert-id") for i in range(2)] == ["1", "2"]
    assert rows.first.get_by_role("link").inner_text() == "Alert 1"  # numbered from 1
    structuring = rows.filter(has_text="structuring")
    assert "¥600,000.00" in structuring.inner_text()
    window = structuring.locator(".time-range")
    assert window.inner_text().endswith(" (UTC+8)")  # the zone once for the range
    for i in range(2):
        assert_beijing_time(window.locator("time").nth(i), zone="")
    structuring.get_by_role("link").click()
    explanation = console.testid("alert-explanation")
    explanation.wait_for()
    assert explanation.inner_text() == (
        "Detail: 4 domestic personal payments as payer, each under the threshold of "
        "¥500,000.00, came to ¥600,000.00 on unionpay, wechatpay within 24 h, reaching the "
        "threshold.")
    assert "fen" not in console.testid("alert-detail").inner_text()

    records = console.testid("record-row")
    records.first.wait_for()
    assert records.count() == 4
    platforms = [records.nth(i).get_attribute("data-platform") for i in range(4)]
    assert sorted(platforms) == ["unionpay", "unionpay", "wechatpay", "wechatpay"]
    for i in range(4):
        assert records.nth(i).get_by_test_id("record-amount").inner_text() == "¥150,000.00"
        assert BEIJING_TIME.fullmatch(records.nth(i).get_by_test_id("record-time").inner_text())
        assert_beijing_time(records.nth(i).get_by_test_id("record-time"))
    wechat = console.page.locator("[data-testid=record-row][data-platform=wechatpay]").first
    wechat.get_by_test_id("record-verify").click()
    verdict = wechat.get_by_test_id("verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-valid") == "true"
    screenshots.take(console, "alert-verified-regulator-1280x800")

    console.testid("alert-trace").click()  # the alert's identity on every platform
    console.page.wait_for_selector("main h1 >> text=Records of one identity")
    traced = console.testid("record-row")
    traced.first.wait_for()
    assert traced.count() == 4

    console.testid("nav-charts").click()
    alerts_chart = console.testid("chart-alerts")
    alerts_chart.wait_for()
    assert alerts_chart.locator("rect.series-bar").count() == 2
    screenshots.take(console, "charts-regulator-1280x800")

    console.testid("nav-disclosures").click()
    console.testid("disclosure-row").first.wait_for()
    assert "Opening collected" in console.page.locator("thead").inner_text()


def test_regulator_trace_and_logout(console: ConsolePage, console_site: ConsoleSite) -> None:
    console.open(console_site.login_url())
    console.testid("nav-trace").click()
    console.page.get_by_label("Identity").fill(STRUCTURING_IDENTITY)
    console.testid("trace-submit").click()
    records = console.testid("record-row")
    records.first.wait_for()
    assert records.count() == 4
    assert console.page.locator("main").get_by_text("4 records found.").is_visible()
    ref = records.first.get_attribute("data-ref")
    records.first.get_by_role("link", name="Open record").click()
    console.page.wait_for_selector(f"main h1 >> text=Record {ref}")
    assert console.testid("record-row").count() == 1
    assert console.testid("record-row").get_attribute("data-ref") == ref
    with console.page.expect_download() as download:
        console.page.get_by_role("button", name="Download proof bundle").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["format"] == "jointledger/proof-bundle/v1"
    assert f"{saved['checkpoint']['platform']}/{saved['checkpoint']['log_id']}/{saved['index']}" \
        == ref

    console.allowed_statuses.add(404)
    console.go("alerts/999")
    assert console.testid("error").get_attribute("data-status") == "404"

    console.page.get_by_role("button", name="Log out").click()
    console.page.wait_for_selector("[data-testid=role-banner][data-role=auditor]")
    assert not console.testid("nav-alerts").is_visible()


def test_large_value_alert_speaks_yuan_and_beijing_time_in_both_languages(
        console: ConsolePage, console_site: ConsoleSite) -> None:
    """Alert 1 (whale's single ¥600,000 payment): explained from its fields, amounts in yuan,
    the natural day in Beijing time; the same in Chinese, with the window's zone in words."""
    console.open(console_site.login_url())
    console.go("alerts/1")
    explanation = console.testid("alert-explanation")
    explanation.wait_for()
    assert console.page.locator("main h1").inner_text() == "Alert 1"
    assert explanation.inner_text() == (
        "Detail: A single domestic personal payment as payer of ¥600,000.00 on the natural "
        "day 2026-11-27 (UTC+8) reached the large-value threshold of ¥500,000.00 on "
        "unionpay.")
    detail = console.testid("alert-detail")
    assert "fen" not in detail.inner_text()
    assert "2026-11-27 00:00:00 – 2026-11-28 00:00:00 (UTC+8)" in detail.inner_text()
    console.testid("lang-toggle").click()
    console.page.wait_for_selector("main h1 >> text=预警 1")
    explanation = console.testid("alert-explanation")
    assert explanation.inner_text() == (
        "说明：单笔自然人境内转账（付款）¥600,000.00，自然日 2026-11-27（UTC+8），在 unionpay "
        "达到大额交易报告标准 ¥500,000.00。")
    window = console.testid("alert-detail").locator(".time-range")
    assert window.inner_text() == "2026-11-27 00:00:00 – 2026-11-28 00:00:00（北京时间）"
    assert window.locator("time").first.get_attribute("title") == "UTC 时间 2026-11-26 16:00:00"
    record_time = console.testid("record-time").first
    assert_beijing_time(record_time, zone="（北京时间）")


def test_counts_read_right_in_both_languages(console: ConsolePage,
                                             console_site: ConsoleSite) -> None:
    """One record is "1 record", four are "4 records"; Chinese counts with its counter."""
    console.open(console_site.login_url())
    console.testid("nav-trace").click()
    for identity, english, chinese in (("whale", "1 record found.", "找到 1 条记录。"),
                                       (STRUCTURING_IDENTITY, "4 records found.",
                                        "找到 4 条记录。")):
        console.page.get_by_label("Identity").fill(identity)
        console.testid("trace-submit").click()
        found = console.page.locator("main").get_by_text(english)
        found.wait_for()
        console.testid("lang-toggle").click()
        console.page.locator("main").get_by_text(chinese).wait_for()
        console.testid("lang-toggle").click()
        console.page.locator("main").get_by_text(english).wait_for()


def _skew_latencies(route: Any, where: str) -> None:
    """Answer the console's request with its real answer, two latencies changed: the newest
    checkpoint's block stamped 5 s before it was signed, the one before 1 s before."""
    answer = route.fetch()
    body = answer.json()
    if where == "checkpoints":
        points = body["logs"][0]["checkpoints"]
        key = "latency_s"
    else:
        points = body["latency"][0]["points"]
        key = "latency_s"
    points[-1][key] = -5  # beyond the tolerance: the clocks disagree
    points[-2][key] = -1  # within it: shown as 0 s
    route.fulfill(response=answer, json=body)


def test_a_block_stamped_before_signing_is_never_a_negative_latency(
        console: ConsolePage) -> None:
    """Clocks that disagree (a chain behind the platform) are said in words, like a chain
    running ahead: "clocks disagree" in the row, a notice, the point left out of the chart;
    a second of disagreement reads 0 s. Never a negative latency."""
    page = console.page
    page.route("**/console/api/checkpoints*",
               lambda route: _skew_latencies(route, "checkpoints"))
    console.open()
    rows = console.testid("timeline-log").first.locator("tbody tr")
    newest = rows.nth(0).get_by_test_id("latency-clocks")
    assert newest.inner_text() == "clocks disagree"
    assert "5 s before the platform signed" in (newest.get_attribute("title") or "")
    assert rows.nth(1).get_by_test_id("latency").inner_text() == "0 s"
    notice = console.testid("clock-behind")
    assert notice.inner_text().startswith(
        "1 checkpoint was anchored in a block stamped 5 s before the platform signed it")
    main = page.locator("main").inner_text()
    assert not re.search(r"[-−]\s*\d+\s*(s|min|h)\b", main), "a negative duration is shown"
    console.testid("lang-toggle").click()
    page.wait_for_selector("main h1 >> text=检查点时间线")
    assert console.testid("timeline-log").first.locator("tbody tr").nth(0).get_by_test_id(
        "latency-clocks").inner_text() == "时钟不一致"
    assert "早 5 秒" in console.testid("clock-behind").inner_text()
    assert "0 秒" in console.testid("timeline-log").first.locator("tbody tr").nth(1).inner_text()
    console.testid("lang-toggle").click()

    page.route("**/console/api/charts*", lambda route: _skew_latencies(route, "charts"))
    console.go("charts")
    figure = console.testid("chart-latency")
    figure.locator("svg").wait_for()
    assert console.testid("clock-behind").inner_text().startswith("1 checkpoint was anchored")
    values = [float(v) for v in figure.locator(".visually-hidden table tbody tr td:nth-child(3)"
                                               ).all_inner_texts()]
    assert values and min(values) >= 0
    volume_dots = console.testid("chart-volume").locator("svg circle.series-dot").count()
    assert figure.locator("svg circle.series-dot").count() == 6 - 1  # the -5 s point is out
    assert volume_dots > 0


def test_session_closed_elsewhere_falls_back_to_auditor(console: ConsolePage,
                                                        console_site: ConsoleSite) -> None:
    console.allowed_statuses.add(401)
    console.open(console_site.login_url())
    assert console.testid("role-banner").get_attribute("data-role") == "regulator"
    closed = console.page.request.delete(  # the same cookie, as another tab would
        console_site.base_url + "/console/api/session",
        headers={"X-JL-Console": "1", "Content-Type": "application/json"})
    assert closed.status == 204
    console.testid("nav-alerts").click()
    assert console.testid("error").get_attribute("data-status") == "401"
    console.page.wait_for_selector("[data-testid=role-banner][data-role=auditor]")
    assert not console.testid("nav-alerts").is_visible()


def test_reused_login_token_is_refused(browser: Browser, console_site: ConsoleSite) -> None:
    url = console_site.login_url()
    for attempt in range(2):
        for console in new_console(browser, console_site):
            if attempt == 1:
                console.allowed_statuses.add(401)
            console.open(url)
            role = console.testid("role-banner").get_attribute("data-role")
            if attempt == 0:
                assert role == "regulator"
            else:
                assert role == "auditor"
                assert "Login failed" in console.testid("error").first.inner_text()


def test_regulator_routes_need_a_session(console: ConsolePage) -> None:
    console.allowed_statuses.add(401)
    console.open()
    console.go("alerts")
    error = console.testid("error")
    error.wait_for()
    assert error.get_attribute("data-status") == "401"
    assert console.testid("alert-row").count() == 0
    console.go("nowhere")
    assert "No such page: /nowhere" in console.testid("error").inner_text()


# ---------------------------------------------------------------------------------------------
# Language, keyboard, layout


def test_language_toggle(console: ConsolePage) -> None:
    console.open()
    toggle = console.testid("lang-toggle")
    assert toggle.inner_text() == "中文"
    toggle.click()
    assert console.page.evaluate("document.documentElement.lang") == "zh-CN"
    assert console.testid("nav-timeline").inner_text() == "时间线"
    assert console.testid("role-banner").inner_text() == "审计视图（只读）"
    console.page.wait_for_selector("main h1 >> text=检查点时间线")
    assert "最新区块" in console.page.locator("main").inner_text()
    console.page.reload()  # remembered
    console.page.wait_for_selector("body[data-ready='true']")
    assert console.testid("nav-verify").inner_text() == "验证"
    console.testid("lang-toggle").click()
    assert console.testid("nav-timeline").inner_text() == "Timeline"
    assert console.page.evaluate("document.documentElement.lang") == "en"


def test_chinese_browser_gets_chinese_labels(browser: Browser, console_site: ConsoleSite,
                                             screenshots: Screenshots) -> None:
    for console in new_console(browser, console_site, locale="zh-CN"):
        console.open()
        assert console.testid("nav-charts").inner_text() == "图表"
        assert console.page.evaluate("document.documentElement.lang") == "zh-CN"
        console.open(console_site.login_url())
        assert console.testid("role-banner").inner_text() == "监管视图：pboc"
        console.go("alerts/1")
        console.testid("record-row").first.wait_for()
        assert "关联记录" in console.page.locator("main").inner_text()
        screenshots.take(console, "alerts-1-regulator-zh-1280x800")


def test_page_errors_and_csp_violations_are_caught(console: ConsolePage) -> None:
    """The console listener sees what these tests forbid (so that it can fail them)."""
    console.open()
    page = console.page
    with page.expect_event("pageerror"), \
            page.expect_console_message(lambda m: "style-src-attr" in m.text), \
            page.expect_console_message(lambda m: "script-src-elem" in m.text):
        page.evaluate("""() => {
            document.body.insertAdjacentHTML('beforeend', '<p style="color: red">inline</p>');
            const script = document.createElement('script');
            script.textContent = 'window.inlineRan = true;';
            document.body.append(script);
            setTimeout(() => { throw new Error('boom'); }, 0);
        }""")
    assert console.page.evaluate("window.inlineRan === undefined")  # blocked by the CSP
    caught = "\n".join(console.unexpected_errors())
    assert "CSP violation: style-src-attr" in caught
    assert "CSP violation: script-src-elem" in caught
    assert "uncaught: boom" in caught
    console.errors.clear()


def test_every_label_exists_in_both_languages(console: ConsolePage) -> None:
    console.open()
    missing = console.page.evaluate("""async () => {
        const i18n = await import('./assets/i18n.js');
        const en = new Set(i18n.keys('en'));
        const zh = new Set(i18n.keys('zh'));
        return [...en].filter((k) => !zh.has(k)).concat([...zh].filter((k) => !en.has(k)));
    }""")
    assert missing == []
    without_other = console.page.evaluate("""async () => {
        const i18n = await import('./assets/i18n.js');
        return i18n.pluralsWithoutOther('en').concat(i18n.pluralsWithoutOther('zh'));
    }""")
    assert without_other == []  # every plural label has a form for any count


def test_keyboard_only_navigation(console: ConsolePage) -> None:
    console.open()
    page = console.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    assert page.evaluate("document.activeElement.getBoundingClientRect().top") >= 0  # shown
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Shift+Tab")
    for _ in range(20):
        if page.evaluate("document.activeElement.dataset.testid") == "nav-charts":
            break
        page.keyboard.press("Tab")
    else:  # pragma: no cover - fails the test
        pytest.fail("Tab never reached the Charts link")
    outline = page.evaluate("""() => {
        const style = getComputedStyle(document.activeElement);
        return [style.outlineStyle, parseFloat(style.outlineWidth)];
    }""")
    assert outline[0] != "none" and outline[1] >= 2, f"no visible focus: {outline}"
    page.keyboard.press("Enter")
    console.testid("chart-volume").wait_for()
    assert page.url.endswith("#/charts")
    assert page.evaluate("document.activeElement.tagName") == "H1"
    # on to the verify page and its file picker, by keyboard only
    page.keyboard.press("Shift+Tab")
    for _ in range(20):
        if page.evaluate("document.activeElement.dataset.testid") == "nav-verify":
            break
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    console.testid("verify-paste").wait_for()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.testid") == "verify-input":
            break
    else:  # pragma: no cover - fails the test
        pytest.fail("Tab never reached the file picker")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "verify-paste"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "verify-submit"
    page.keyboard.press("Space")
    assert "Paste a document" in console.testid("error").inner_text()


AUDITOR_VIEWS = ("timeline", "charts", "disclosures", "verify")
REGULATOR_VIEWS = ("alerts", "alerts/1", "trace")


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280x800", "390x844"])
def test_layout_fits_the_window(browser: Browser, console_site: ConsoleSite,
                                screenshots: Screenshots, viewport: dict[str, int]) -> None:
    size = f"{viewport['width']}x{viewport['height']}"
    for console in new_console(browser, console_site, viewport=viewport):
        console.open()
        for view in AUDITOR_VIEWS:
            console.go(view)
            console.no_horizontal_overflow()
            screenshots.take(console, f"{view}-auditor-{size}")
        console.testid("verify-paste").fill(json.dumps(flipped(console_site.bundle)))
        console.testid("verify-submit").click()
        console.testid("verdict").wait_for()
        console.no_horizontal_overflow()  # long hex reasons wrap
        screenshots.take(console, f"verify-failed-{size}")
        console.open(console_site.login_url())
        for view in REGULATOR_VIEWS:
            console.go(view)
            console.no_horizontal_overflow()
            screenshots.take(console, f"{view.replace('/', '-')}-regulator-{size}")
        links = console.page.locator(".site-nav a:visible")
        assert links.count() == 6
        for i in range(links.count()):
            box = links.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0
            assert box["x"] + box["width"] <= viewport["width"]
        console.testid("nav-disclosures").click()
        console.testid("disclosure-row").first.wait_for()
        console.no_horizontal_overflow()


def test_chain_clock_running_ahead_is_said(console: ConsolePage,
                                           console_site: ConsoleSite) -> None:
    """A chain whose block times run ahead of the node's clock makes every anchoring
    latency overstate: the timeline and the charts say so. (Last in the module: the
    chain's clock stays ahead afterwards.)"""
    regulator = console_site.data.regulator
    head = regulator.chain.w3.eth.get_block("latest")
    tester = regulator.chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    target = max(int(head["timestamp"]), int(time.time())) + 600
    tester.time_travel(target)
    opened = int(time.time())
    console.open()
    notice = console.testid("clock-ahead")
    notice.wait_for()
    seconds = int(re.search(r"(\d+) s ahead", notice.inner_text()).group(1))  # type: ignore[union-attr]
    assert target - int(time.time()) - 1 <= seconds <= target - opened + 1
    console.testid("nav-charts").click()
    console.page.wait_for_selector("[data-testid=chart-volume] svg")
    assert console.testid("clock-ahead").is_visible()
    console.testid("lang-toggle").click()
    assert "秒" in console.testid("clock-ahead").inner_text()
