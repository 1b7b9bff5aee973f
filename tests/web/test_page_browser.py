"""The page as a demo shows it, in headless Chromium against the shared CPU app: the batch
table's headers and queue label, the doctor's tables within their panel, the preset label
after a hand edit, History before a pick, and the dialect notes folded away.

At 1280 pixels wide, a laptop's screen; PLAYGROUND_SCREENSHOTS=1 refreshes the docs'
screenshots of the batch tab and the doctor."""

import json
import os
import time
from pathlib import Path

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
WIDTH = 1280
WAIT_MS = 30_000  # a page event on two busy cores
UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}

# Each visible header of a table: its text, the lines it takes and whether any part of it
# is cut (wider than its box). Header words broke into letters ("e r r o r s").
HEADERS_JS = """(sel) => [...document.querySelectorAll(sel + ' th')]
  .filter(th => th.offsetParent !== null).map(th => {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    const tops = new Set(); let text = '';
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (!n.textContent.replace('\u22ee', '').trim()) continue;  // the column menu
      text += n.textContent.replace('\u22ee', '');
      const range = document.createRange(); range.selectNodeContents(n);
      for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
    }
    const cut = [...th.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1);
    return {text: text.trim(), lines: tops.size, cut};
  })"""
FITS_JS = """(sel) => { const v = document.querySelector(sel + ' .virtual-table-viewport');
  return v.scrollWidth <= v.clientWidth + 1 }"""
# Gradio's progress (the queue's place, the timer) shown on a component of the batch tab.
PROGRESS_JS = """() => [...document.querySelectorAll('#tab-batch [data-testid=status-tracker]')]
  .filter(e => !e.classList.contains('hide') && e.offsetParent !== null)
  .map(e => e.closest('[id]')?.id)"""


def settled(page, tab: str):
    """The page once no part of the tab is still being updated, or after WAIT_MS: only
    for a screenshot, which a slow check line must not fail."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "(tab) => ![...document.querySelectorAll(tab + ' [data-testid=status-tracker]')]"
            ".some(e => !e.classList.contains('hide') && e.offsetParent !== null)",
            arg=tab, timeout=WAIT_MS)
    except PlaywrightTimeout:
        pass
    page.wait_for_timeout(500)
    return page


@pytest.fixture(scope="module")
def page(app_url, browser):
    return open_page(browser, app_url, 1000, "#engine-panel:has-text('ready')", 120_000)


def assert_readable(page, selector: str) -> list[str]:
    headers = page.evaluate(HEADERS_JS, selector)
    for header in headers:
        assert "_" not in header["text"], header  # a field name, not a label
        assert header["lines"] <= len(header["text"].split()), header  # broke in a word
        assert not header["cut"], header
    assert page.evaluate(FITS_JS, selector), f"{selector} runs past its right edge"
    return [header["text"] for header in headers]


def test_browser_batch_table_reads_and_its_queue_label_stays_off_the_rows(page, tmp_path):
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-mode").get_by_text("choice", exact=True).click()
    editor = page.locator("#batch-constraint .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("yes\nno")
    page.locator("#batch-prompts textarea").fill("a prompt the file replaces")
    prompts = Path(tmp_path) / "three.txt"
    prompts.write_text("Is the sky blue?\nIs fire cold?\nIs water wet?\n")
    page.locator("#batch-file input[type=file]").set_input_files(str(prompts))
    page.wait_for_selector("#batch-prompts:has-text('three.txt run instead')",
                           timeout=WAIT_MS)
    page.locator("#batch-run").click()
    shown_on: set[str] = set()
    deadline = time.monotonic() + 300
    while not page.locator("#batch-totals:has-text('Validity')").count():
        shown_on.update(page.evaluate(PROGRESS_JS))
        assert time.monotonic() < deadline, "the batch did not finish"
        page.wait_for_timeout(100)
    assert "batch-table" not in shown_on and shown_on <= {"batch-status"}, shown_on
    assert page.locator("#batch-status").inner_text().startswith(
        "Done: 3 prompts of three.txt")
    table = page.locator("#batch-table")
    for prompt in ("Is the sky blue?", "Is fire cold?", "Is water wet?"):
        assert table.get_by_text(prompt, exact=True).count() >= 1
    assert not table.get_by_text("a prompt the file replaces").count()
    headers = assert_readable(page, "#batch-table")
    assert {"output tokens", "first token (s)", "tokens/s"} <= set(headers)
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        settled(page, "#tab-batch").screenshot(path=SCREENSHOTS / "batch.png",
                                               full_page=True)


def test_browser_coverage_and_test_strings_tables_fit_their_panel(page):
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    page.get_by_role("tab", name="JSON Schema").click()
    page.locator("#json-constraint .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(UNIQUE))
    page.wait_for_function(
        "() => document.querySelector('#json-coverage')?.innerText.includes('NOT ENFORCED')",
        timeout=60_000)
    assert "xgrammar (this engine)" in assert_readable(page, "#json-coverage")
    page.locator("#tab-json").get_by_text("Test strings", exact=True).click()
    page.locator("#json-test-strings textarea").fill('- {}\n+ {"tags": ["a", "a"]}')
    page.locator("#json-test").click()
    page.wait_for_function(
        "() => document.querySelector('#json-test-results')?.innerText.includes('disagree')",
        timeout=60_000)
    assert {"xgrammar", "guidance", "flag"} <= set(assert_readable(page, "#json-test-results"))
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        settled(page, "#tab-json").screenshot(path=SCREENSHOTS / "doctor.png",
                                              full_page=True)


def test_browser_preset_reads_edited_after_a_hand_edit(page):
    page.get_by_role("tab", name="Regex").click()
    preset = page.locator("#regex-preset input")
    preset.click()
    page.get_by_role("option", name="ISO date", exact=True).click()
    prompt = page.locator("#regex-prompt textarea")
    page.wait_for_function("() => document.querySelector('#regex-prompt textarea').value"
                           ".includes('Berlin Wall')", timeout=WAIT_MS)
    assert preset.input_value() == "ISO date"
    original = prompt.input_value()
    prompt.fill("On what date did Apollo 11 land?")
    page.wait_for_function("() => document.querySelector('#regex-preset input').value"
                           " === 'ISO date (edited)'", timeout=WAIT_MS)
    prompt.fill(original)  # its own prompt again: the name alone again
    page.wait_for_function("() => document.querySelector('#regex-preset input').value"
                           " === 'ISO date'", timeout=WAIT_MS)
    constraint = page.locator("#regex-constraint textarea, #regex-constraint input").first
    constraint.fill(r"\d{4}")
    page.wait_for_function("() => document.querySelector('#regex-preset input').value"
                           " === 'ISO date (edited)'", timeout=WAIT_MS)
    preset.click()  # picking a preset again fills it and drops the "(edited)" entry
    page.get_by_role("option", name="US phone number", exact=True).click()
    page.wait_for_function("() => document.querySelector('#regex-prompt textarea').value"
                           ".includes('(XXX) XXX-XXXX')", timeout=WAIT_MS)
    page.wait_for_timeout(1_000)  # any late label event has come by now
    assert preset.input_value() == "US phone number"


def test_browser_history_is_empty_before_a_pick_and_the_dialect_notes_fold(page):
    page.get_by_role("tab", name="History").click()
    for box in ("#history-a input", "#history-b input"):
        assert page.locator(box).input_value() == ""  # a number box said "0"
    assert page.locator("#history-a input").get_attribute("placeholder") == "click a row"
    # The SQL preset's six `?rule` notes change nothing xgrammar enforces: folded away.
    page.get_by_role("tab", name="Lark grammar").click()
    page.wait_for_selector("#grammar-dialect details", state="attached", timeout=60_000)
    dialect = page.locator("#grammar-dialect")
    assert "Dialect notes (6)" in dialect.inner_text()
    assert not dialect.locator(".warn").count()
    assert not dialect.locator("details").evaluate("e => e.open")


def test_the_verdict_says_it_judges_the_format_not_the_truth():
    from playground.web.page import verdict_html

    assert "not a check that it is true" in verdict_html({"verdict": "valid"})
    assert "does not fit the format" in verdict_html({"verdict": "invalid"})


def _run_choice(page, choices: str, prompt: str) -> str:
    """One click in the Choice tab; the constrained side's verdict area once judged."""
    page.get_by_role("tab", name="Choice").click()
    page.locator("#choice-prompt textarea").fill(prompt)
    page.locator("#choice-constraint textarea, #choice-constraint input").first.fill(choices)
    page.locator("#choice-run").click()
    # This click's output (not the last one's) judged valid.
    page.wait_for_function(
        "choices => choices.includes(document.querySelector('#choice-constrained-text "
        "textarea')?.value) && document.querySelector('#choice-constrained-verdict .badge')"
        "?.classList.contains('valid')", arg=choices.split("\n"), timeout=60_000)
    page.wait_for_function("() => !document.querySelector('#choice-unconstrained-verdict')"
                           ".innerText.includes('running')", timeout=60_000)
    return page.locator("#choice-constrained-verdict").inner_text()


def test_browser_says_when_a_choice_was_spelled_out_and_not_when_it_was_not(page):
    """The issue's case on the CPU model: "Strongly agree" letter by letter; then a choice
    the model writes in its own tokens."""
    spelled = _run_choice(page, "Strongly agree\nStrongly disagree\nNeutral",
                          "Do you agree that cats are great?")
    assert "Odd tokenization" in spelled and "leading space" in spelled
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.locator("#choice-constrained-verdict").locator("xpath=../..").screenshot(
            path=str(SCREENSHOTS / "odd-tokenization.png"))
    natural = _run_choice(page, "positive\nnegative", "Is 'I loved it' positive or negative?")
    assert "Odd tokenization" not in natural
