"""Copy as code, the history and loading a run file back, in headless Chromium against the
app launched with --history-dir (so a reload finds the session's runs again)."""

import json
import os
from pathlib import Path

import pytest

from playground.launch import launched_app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("session")
    log_path = folder / "app.log"
    with open(log_path, "w") as log, launched_app(
            ["--engine", "cpu", "--history-dir", str(folder / "history")], output=log) as app:
        try:
            app.wait_served(limit_s=120)
        except RuntimeError as exc:
            pytest.fail(f"{exc}:\n{log_path.read_text()}")
        yield app.url, folder / "history"


@pytest.fixture(scope="module")
def page(app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        page.goto(app[0])
        page.wait_for_selector("#engine-panel:has-text('ready')", timeout=180_000)
        yield page
        browser.close()


def _code(page, mode: str) -> str:
    return page.locator(f"#{mode}-export .cm-content").inner_text()


def _history_rows(page) -> int:
    return page.locator("#history-table tbody tr").count()


def _run(page, mode: str, expected_rows: int) -> None:
    """Run, then wait in the History tab until the run is listed (it is, once finished)."""
    page.locator(f"#{mode}-run").click()
    page.get_by_role("tab", name="History").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#history-table tbody tr').length === n",
        arg=expected_rows, timeout=120_000)


def test_copy_as_code_follows_the_editor_and_settings(page):
    page.get_by_role("tab", name="Choice").click()
    page.get_by_text("Copy as code").click()
    page.wait_for_selector("#choice-export .cm-content", timeout=10_000)
    code = _code(page, "choice")
    assert "StructuredOutputsParams(choice=choices)" in code and "Positive" in code
    page.locator("#choice-export-form").get_by_text("curl", exact=True).click()
    page.wait_for_function("() => document.querySelector('#choice-export .cm-content')"
                           ".innerText.includes('curl http')", timeout=10_000)
    prompt = page.locator("#choice-prompt textarea")
    prompt.fill("Classify this sentiment: browsers are fast.")
    page.wait_for_function("() => document.querySelector('#choice-export .cm-content')"
                           ".innerText.includes('browsers are fast')", timeout=10_000)
    body = _code(page, "choice")
    assert '"structured_outputs": {' in body and '"include_stop_str_in_output": true' in body
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.locator("#choice-export-form").get_by_text("python", exact=True).click()
        page.wait_for_function("() => document.querySelector('#choice-export .cm-content')"
                               ".innerText.includes('from vllm import')", timeout=10_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "copy-as-code.png", full_page=True)


def test_two_runs_are_listed_reopened_and_compared(page):
    page.get_by_role("tab", name="Choice").click()
    page.locator("#choice-prompt textarea").fill("Classify this sentiment: I love it!")
    _run(page, "choice", 1)
    page.get_by_role("tab", name="Choice").click()
    page.locator("#choice-prompt textarea").fill("Classify this sentiment: I hate it.")
    _run(page, "choice", 2)
    table = page.locator("#history-table")
    assert table.get_by_text("I hate it.").count() >= 1
    assert table.get_by_text("I love it!").count() >= 1
    # The older run (second row), then the newer one: A is #2, B is #1.
    page.locator("#history-table tbody tr").nth(1).locator("td").nth(3).click()
    page.wait_for_function("() => document.querySelector('#history-a input').value === '1'",
                           timeout=10_000)
    page.locator("#history-table tbody tr").nth(0).locator("td").nth(3).click()
    page.wait_for_function("() => document.querySelector('#history-b input').value === '1'",
                           timeout=10_000)
    compared = page.locator("#history-compare")
    compared.locator("table.compare").wait_for(timeout=10_000)
    text = compared.inner_text()
    assert "run #2 (choice)" in text and "run #1 (choice)" in text
    assert "I hate it." in text and "I love it!" in text
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.screenshot(path=SCREENSHOTS / "history.png", full_page=True)
    page.locator("#choice-prompt textarea").fill("something else")  # hidden tab: still set
    page.locator("#history-open").click()
    page.wait_for_function("() => document.querySelector('#choice-prompt textarea').value"
                           " === 'Classify this sentiment: I hate it.'", timeout=10_000)
    assert page.locator("#choice-prompt textarea").is_visible()  # its tab is open
    assert page.locator("#choice-constrained-verdict .badge").inner_text() == "valid"
    assert "tokens" in page.locator("#choice-metrics").inner_text()


def test_a_saved_run_loads_back_and_a_reload_keeps_the_history(page, app, tmp_path):
    page.get_by_role("tab", name="History").click()
    page.locator("#history-save-run").click()
    link = page.locator("#history-file a").first
    link.wait_for(timeout=10_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "run.json"
    download.value.save_as(saved)
    data = json.loads(saved.read_text())
    assert data["kind"] == "run" and data["runs"][0]["id"] == 2
    # The session's file under --history-dir: one, named by a random id.
    (session_file,) = app[1].glob("*.json")
    assert len(json.loads(session_file.read_text())["runs"]) == 2
    page.reload()
    page.wait_for_selector("#engine-panel:has-text('ready')", timeout=60_000)
    page.get_by_role("tab", name="History").click()
    page.wait_for_function("() => document.querySelectorAll('#history-table tbody tr')"
                           ".length === 2", timeout=20_000)
    page.locator("#history-load input[type=file]").set_input_files(str(saved))
    page.wait_for_selector("#history-message:has-text('Run loaded as #3')", timeout=20_000)
    assert _history_rows(page) == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "extra": 1}))
    page.locator("#history-load input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("#history-message:has-text('Extra inputs are not permitted')",
                           timeout=20_000)
    assert _history_rows(page) == 3
