"""The status page in a real browser (Debian's chromium driven by Playwright) against the demo
run as a user runs it: `python -m dataflow demo` with a token for the actions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dataflow.state import SqliteStore
from tests._paths import ROOT
from tests._peers import require_module
from tests.web.conftest import need_chromium

pytestmark = pytest.mark.slow
TOKEN = "demo-token-7f3a"
PAYLOAD = '{"order": 41, "customer": "ada"}'
# The README's picture is taken again with DATAFLOW_UPDATE_SCREENSHOT=1; a test run leaves the
# work tree as it was.
SCREENSHOT = ROOT / "docs" / "status-page.png"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo running with a dead letter in its state and the page on a free port."""
    require_module("playwright.sync_api", "Playwright for Python (pip install playwright)")
    need_chromium()
    folder = tmp_path_factory.mktemp("demo")
    store = SqliteStore(folder / "demo.db")
    store.add_dead_letter("demo", "sync_orders", PAYLOAD, "ValueError: amount 'n/a' is no number")
    store.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_LOG_FORMAT": "json",
        "DATAFLOW_STATE_PATH": str(folder / "demo.db"),
        "DATAFLOW_TIMEZONE": "Europe/Berlin",
        "DATAFLOW_HTTP_TOKEN": TOKEN,
        "DEMO_DATA_DIR": str(folder / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflow", "demo", "--metrics-port", "0"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    yield from _served(proc)


SLOW = """
import time
from pathlib import Path
from dataflow import Workflow, cronjob

RELEASE = Path(__file__).parent / "release"

class Crawl(Workflow):
    @cronjob("* * * * * *", overlap="skip")
    def crawl(self):
        while not RELEASE.exists():  # held until the test saw a fire skipped meanwhile
            time.sleep(0.01)
"""


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A workflow whose overlap="skip" trigger fires every second; its run holds until the
    folder's `release` file exists. Its page URL and its folder."""
    require_module("playwright.sync_api", "Playwright for Python (pip install playwright)")
    folder = tmp_path_factory.mktemp("slow")
    (folder / "crawl.py").write_text(SLOW)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_LOG_FORMAT": "json",
        "DATAFLOW_STATE_PATH": str(folder / "crawl.db"),
    }
    command = [sys.executable, "-m", "dataflow", str(folder / "crawl.py"), "--metrics-port", "0"]
    proc = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    served = _served(proc)
    try:
        yield next(served), folder
    finally:
        (folder / "release").touch()  # a held run must not hold the stop
        served.close()  # the stop


def test_the_page_lists_triggers_with_next_fires_in_their_zone(demo: str, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(demo)
    expect(page.locator("#workflow-name")).to_have_text("demo")
    expect(page.locator("#workflow-info")).to_contain_text("running")
    for name in ("seed_source", "place_orders", "sync_orders"):
        expect(page.locator(f'#triggers tr[data-trigger="{name}"]')).to_be_visible()
    sync = page.locator('#triggers tr[data-trigger="sync_orders"]')
    expect(sync).to_contain_text("every 3 seconds")
    expect(sync).to_contain_text("Europe/Berlin")
    expect(sync.locator("td.next div").first).to_contain_text(" CET")  # winter; CEST in summer
    page.close()


def test_a_run_appears_live_within_two_seconds_of_finishing(demo: str, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(demo)
    expect(page.locator("#runs tbody tr.run").first).to_be_visible()
    seen = set(page.locator("#runs tbody tr.run").evaluate_all("r => r.map(e => e.dataset.run)"))
    newest = _next_finished_run(demo, seen)  # read from the API the moment it is recorded
    expect(page.locator(f'#runs tr[data-run="{newest}"]')).to_be_visible(timeout=2000)
    page.close()


def test_a_dead_letter_shows_its_payload(demo: str, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(demo)
    letter = page.locator("#dead-letters tbody tr").first
    expect(letter.locator("pre.payload")).to_have_text(PAYLOAD)
    expect(letter).to_contain_text("ValueError: amount 'n/a' is no number")
    page.close()


def test_buttons_come_with_the_token_and_a_wrong_one_gets_401(
    demo: str, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    page.goto(demo)
    expect(page.locator("#triggers tbody tr").first).to_be_visible()
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    page.fill('#login input[name="token"]', "not-the-token")
    with page.expect_response(lambda r: r.url.endswith("/login")) as wrong:
        page.click("#login button")
    assert wrong.value.status == 401
    page.goto(demo)
    page.fill('#login input[name="token"]', TOKEN)
    page.click("#login button")
    expect(page.locator("#login")).to_have_count(0)
    run_now = page.locator('#triggers tr[data-trigger="place_orders"] button')
    expect(run_now).to_have_text("Run now")
    with page.expect_response(lambda r: r.url.endswith("/run")) as started:
        run_now.click()
    assert started.value.status == 202
    page.locator("#runs tbody tr.run").first.click()
    expect(page.locator("#charts svg.chart circle").first).to_be_visible()  # in the picture
    shot = SCREENSHOT if os.environ.get("DATAFLOW_UPDATE_SCREENSHOT") == "1" else tmp_path / "p.png"
    page.screenshot(path=str(shot), full_page=True)
    retry = page.locator("#dead-letters tbody tr").first.get_by_role("button", name="Retry")
    with page.expect_response(lambda r: r.url.endswith("/retry")) as retried:
        retry.click()
    assert retried.value.status == 202
    expect(page.locator("#dead-letters tbody tr")).to_have_count(0, timeout=10_000)
    context.close()


def test_the_charts_draw_a_point_for_each_of_the_demos_runs(demo: str, browser: Any) -> None:
    """Every run of `sync_orders` finished before the page loaded is a point on its duration
    and its fire lag chart; each chart draws as many points as it says it has data for."""
    from playwright.sync_api import expect

    points = _chart_points(demo, "sync_orders")  # a dead letter's retry has no fire lag
    ends = time.monotonic() + 20
    while not any(p["lag"] is not None for p in points) and time.monotonic() < ends:
        time.sleep(0.2)  # run on its own, the test may come before the first fire
        points = _chart_points(demo, "sync_orders")
    drawn = {
        kind: {p["run_id"] for p in points if p[kind] is not None} for kind in ("duration", "lag")
    }
    assert drawn["lag"], "the demo has not run sync_orders yet"
    page = browser.new_page()
    page.goto(demo)
    row = page.locator('#charts tr[data-trigger="sync_orders"]')
    expect(row.locator("svg.chart.duration circle").first).to_be_visible()
    for kind in ("duration", "lag"):
        count, circles, runs = row.locator(f"svg.chart.{kind}").evaluate(
            "s => [Number(s.dataset.count), s.querySelectorAll('circle').length,"
            " [...s.querySelectorAll('circle')].map(c => c.dataset.run)]"
        )
        assert count == circles >= len(drawn[kind])
        assert drawn[kind] <= set(runs)
    seed = page.locator('#charts tr[data-trigger="seed_source"]')
    expect(seed.locator("svg.chart.lag")).to_have_attribute("data-count", "0")  # no schedule
    expect(seed.locator("svg.chart.lag")).to_contain_text("no scheduled runs")
    page.close()


def test_the_fire_strip_shows_a_skipped_fire_with_its_reason(
    slow: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    url, folder = slow
    page = browser.new_page()
    page.goto(url)
    strip = page.locator('#triggers tr[data-trigger="crawl"] td.fires')
    ran = strip.locator('span.fire[data-outcome="ran"]').first
    skipped = strip.locator('span.fire[data-outcome="skipped"]').first
    expect(skipped).to_be_visible(timeout=15_000)
    (folder / "release").touch()  # the held run ends
    expect(ran).to_be_visible(timeout=15_000)
    expect(skipped).to_have_attribute(
        "title",
        re.compile(r"skipped: the \S+ run \(run [0-9a-f]{8}\) was still running \(overlap=skip\)$"),
    )
    page.close()


def _served(proc: subprocess.Popen[str]) -> Generator[str, None, None]:
    """The page's URL once the workflow runs; SIGTERM at the end (killed if it hangs)."""
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        url = _page_url(proc)
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        watchdog.cancel()


def _page_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "serving metrics":
            url = str(event["page"])
        elif event.get("event") == "workflow running":
            return url
    raise AssertionError("the demo never ran")


def _chart_points(url: str, trigger: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + f"api/charts?trigger={trigger}", timeout=5) as response:
        (series,) = json.loads(response.read())["triggers"]
    return list(series["points"])


def _next_finished_run(url: str, seen: set[str]) -> str:
    ends = time.monotonic() + 20
    while time.monotonic() < ends:
        with urllib.request.urlopen(url + "api/runs?limit=5", timeout=5) as response:
            runs = json.loads(response.read())["runs"]
        fresh = [r for r in runs if r["run_id"] not in seen and r["ended_at"] is not None]
        if fresh:
            return str(fresh[0]["run_id"])
        time.sleep(0.05)
    raise AssertionError("no run finished in 20 s")
