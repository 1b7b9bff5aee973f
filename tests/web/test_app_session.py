"""Copy as code, the history and loading a run file back, in headless Chromium against the
app launched with --history-dir (so a reload finds the session's runs again)."""

import json
import os
from pathlib import Path

import pytest
from support import ROOT

from playground.bench.launch import launched_app

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    with launched_app(["--engine", "cpu", "--history-dir", str(folder / "history")],
                      log_path=folder / "app.log") as app:
        app.wait_served(limit_s=120)
        yield app.url, folder / "history"


@pytest.fixture(scope="module")
def page(app, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page.goto(app[0])
    page.wait_for_selector("#engine-panel:has-text('ready')", timeout=180_000)
    return page


def _code(page, mode: str) -> str:
    return page.locator(f"#{mode}-export .cm-content").inner_text()


ROWS_JS = ("() => Number(document.querySelector('#history-table [role=grid]')"
           ".getAttribute('aria-rowcount')) - 1")  # the header is a row too


def _history_rows(page) -> int:
    return page.evaluate(ROWS_JS)


def _wait_rows(page, count: int, timeout: int = 300_000) -> None:
    page.wait_for_function(f"() => ({ROWS_JS})() === {count}", timeout=timeout)


def _cell(page, text: str):
    """A visible cell of the history table (it also keeps hidden rows for sizing)."""
    return page.locator("#history-table").get_by_text(text, exact=True).filter(visible=True)


def _upload(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#history-load").click()
    chooser.value.set_files(str(path))


def _run(page, mode: str, expected_rows: int) -> None:
    """Run, then wait in the History tab until the run is listed (it is, once finished)."""
    page.locator(f"#{mode}-run").click()
    page.get_by_role("tab", name="History").click()
    _wait_rows(page, expected_rows)


def test_copy_as_code_follows_the_editor_and_settings(page):
    page.get_by_role("tab", name="Choice").click()
    page.get_by_text("Copy as code").click()
    page.wait_for_function("() => document.querySelector('#choice-export .cm-content')"
                           "?.innerText.includes('StructuredOutputsParams')", timeout=10_000)
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
    # The older run, then the newer one: A is #2, B is #1.
    _cell(page, "Classify this sentiment: I love it!").click()
    page.wait_for_function("() => document.querySelector('#history-a input').value === '1'",
                           timeout=10_000)
    _cell(page, "Classify this sentiment: I hate it.").click()
    page.wait_for_function("() => document.querySelector('#history-b input').value === '1'",
                           timeout=10_000)
    compared = page.locator("#history-compare")
    compared.locator("table.compare").wait_for(timeout=10_000)
    text = compared.inner_text()
    assert "run #2 (choice)" in text and "run #1 (choice)" in text
    assert "I hate it." in text and "I love it!" in text
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.screenshot(path=SCREENSHOTS / "history.png", full_page=True)
    page.get_by_role("tab", name="Choice").click()
    page.locator("#choice-prompt textarea").fill("something else")
    page.get_by_role("tab", name="History").click()
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
    _wait_rows(page, 2, timeout=20_000)
    _upload(page, saved)
    page.wait_for_selector("#history-message:has-text('Run loaded as #3')", timeout=20_000)
    assert _history_rows(page) == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "extra": 1}))
    _upload(page, bad)
    page.wait_for_selector("#history-message:has-text('Extra inputs are not permitted')",
                           timeout=20_000)
    assert _history_rows(page) == 3
